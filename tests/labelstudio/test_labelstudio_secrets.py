"""Secrets stay secret: a token echoed at the cut, a password in --url; image paths stay inside.

A stub HTTP server echoes the Authorization header at the 400-character cut of the
error message; a server that is down is addressed with a password in the URL.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from geoal.cli import main
from geoal.errors import ConfigError
from geoal.formats.labelstudio import from_labelstudio
from geoal.labelstudio import Client, LabelStudioError
from geoal.labelstudio.client import normalize_url
from geoal.raster.chip import Chip
from tests.raster.scenes import fake_scene

TOKEN = "0123456789abcdef0123456789abcdef01234567"  # a legacy token, 40 characters
PASSWORD = "s3cr3t-pa55"


class Echo(BaseHTTPRequestHandler):
    """Answers every request with a 500 whose detail ends in the request's Authorization."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        pad = "x" * self.server.pad  # type: ignore[attr-defined]
        auth = self.headers.get("Authorization", "")
        data = json.dumps({"detail": f"{pad} {auth} {self.path}"}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def echo() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.pad = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def leaked(secret: str, text: str, n: int = 5) -> list[str]:
    """Every run of ``n`` characters of ``secret`` found in ``text``."""
    return [secret[i : i + n] for i in range(len(secret) - n + 1) if secret[i : i + n] in text]


@pytest.mark.parametrize("pad", [380, 390, 395, 398])
def test_token_at_the_cut_is_scrubbed(echo: ThreadingHTTPServer, pad: int) -> None:
    echo.pad = pad  # type: ignore[attr-defined]
    # "Token " + the token straddles the 400th character: cut first, it was never matched
    url = f"http://127.0.0.1:{echo.server_address[1]}"
    with Client(url, TOKEN) as client, pytest.raises(LabelStudioError) as err:
        client.request("GET", "/api/echo")
    assert "HTTP 500" in str(err.value)
    assert leaked(TOKEN, str(err.value)) == []


def test_password_in_url_is_refused_and_never_shown() -> None:
    # requests would send user:password as HTTP Basic auth in place of the token
    for url in (f"http://annotator:{PASSWORD}@127.0.0.1:8080", f"ftp://annotator:{PASSWORD}@h"):
        with pytest.raises(ConfigError) as err:
            normalize_url(url)
        assert PASSWORD not in str(err.value) and "annotator:***@" in str(err.value)
    with pytest.raises(ConfigError, match="signs in with the token"):
        Client(f"http://annotator:{PASSWORD}@127.0.0.1:8080", TOKEN)


def test_cli_never_prints_the_password(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(tmp_path / "p"), "--classes", "ship"]).exit_code == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = f"http://annotator:{PASSWORD}@127.0.0.1:{s.getsockname()[1]}"
    for verb in ("push", "pull"):
        res = runner.invoke(
            main,
            ["-p", str(tmp_path / "p"), "labelstudio", verb, "--url", down],
            env={"LABEL_STUDIO_API_KEY": TOKEN},
        )
        assert res.exit_code == 2 and "give the URL without them" in res.output
        assert PASSWORD not in res.output and TOKEN not in res.output


def chip() -> Chip:
    scene = fake_scene(1, "s", 64, 64, (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), crs=None)
    return Chip(7, scene, (0, 0, 64, 64))


@pytest.mark.parametrize(
    "image",
    [
        "../../etc/passwd",
        "images/../../secret.png",
        "..\\..\\windows\\win.ini",
        "/data/local-files/?d=..%2F..%2Fetc%2Fpasswd",
        "http://ls.example/data/../../etc/passwd",
    ],
)
def test_image_reaching_outside_is_refused(image: str) -> None:
    task = {"id": 1, "data": {"image": image, "chip_id": 7}, "annotations": []}
    result = from_labelstudio([task], {7: chip()}, ["ship"], "ls.json")
    assert [p.message for p in result.problems] == [
        f"data.image {image!r}: reaches outside the export folder ('..'); refused"
    ]


@pytest.mark.parametrize(
    "image", ["images/s_7.png", "/data/upload/3/ab12-s_7.png", "http://h:8080/data/x..y.png"]
)
def test_ordinary_images_are_fine(image: str) -> None:
    task = {"id": 1, "data": {"image": image, "chip_id": 7}, "annotations": []}
    assert from_labelstudio([task], {7: chip()}, ["ship"], "ls.json").problems == []
