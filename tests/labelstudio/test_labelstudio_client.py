"""The Label Studio client and the pull's canonical content, without a Label Studio server.

A stub HTTP server stands in for Label Studio where the behaviour under test is the
client's own: token kinds, renewing an expired access token, and error messages that
never contain the token, even when the server echoes it back.
"""

from __future__ import annotations

import base64
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
from geoal.labelstudio import Client, LabelStudioError, resolve_token
from geoal.labelstudio.client import normalize_url, token_kind
from geoal.labelstudio.sync import canonical_tasks, config_labels


def jwt(token_type: str, signature: str = "c2ln") -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return (
        f"{part({'alg': 'HS256'})}.{part({'token_type': token_type, 'user_id': '1'})}.{signature}"
    )


REFRESH = jwt("refresh", "cmVmcmVzaC1zZWNyZXQ")
LEGACY = "0123456789abcdef0123456789abcdef01234567"


class Stub(BaseHTTPRequestHandler):
    """Label Studio as far as the client is concerned; behaviour set on the server object."""

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _answer(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/api/token/refresh/":
            if body.get("refresh") != REFRESH:
                return self._answer(401, {"detail": f"Token is invalid: {body.get('refresh')}"})
            self.server.issued += 1  # type: ignore[attr-defined]
            return self._answer(200, {"access": f"access-{self.server.issued}"})  # type: ignore[attr-defined]
        return self._answer(404, {"detail": "Not found."})

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        self.server.seen.append(auth)  # type: ignore[attr-defined]
        valid = {f"Token {LEGACY}", f"Bearer access-{self.server.issued}"}  # type: ignore[attr-defined]
        if self.server.expire_first and auth == "Bearer access-1":  # type: ignore[attr-defined]
            valid.discard(auth)
        if self.path == "/api/current-user/whoami":
            if auth not in valid:
                return self._answer(401, {"detail": f"Invalid token: {auth}"})
            return self._answer(200, {"id": 1, "email": "a@b.c"})
        if self.path == "/api/echo":
            return self._answer(500, {"detail": f"crashed while handling {auth}"})
        return self._answer(404, {"detail": "Not found."})


@pytest.fixture
def stub() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    server.issued = 0  # type: ignore[attr-defined]
    server.seen = []  # type: ignore[attr-defined]
    server.expire_first = False  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url_of(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_token_kinds_and_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    assert token_kind(REFRESH) == "refresh"
    assert token_kind(jwt("access")) == "access"
    assert token_kind(LEGACY) == "legacy"
    assert token_kind("a.b.c") == "legacy"
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_TOKEN", raising=False)
    with pytest.raises(LabelStudioError, match="set LABEL_STUDIO_API_KEY"):
        resolve_token(None)
    monkeypatch.setenv("LABEL_STUDIO_TOKEN", "from-token")
    assert resolve_token(None) == "from-token"
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", " from-key\n")
    assert resolve_token(None) == "from-key"
    assert resolve_token("from-flag") == "from-flag"
    assert normalize_url("http://localhost:8080/") == "http://localhost:8080"
    with pytest.raises(ConfigError, match="give the Label Studio address"):
        normalize_url("localhost:8080")


def test_personal_access_token_is_exchanged_and_renewed(stub: ThreadingHTTPServer) -> None:
    stub.expire_first = True  # type: ignore[attr-defined]
    with Client(url_of(stub), REFRESH) as client:
        assert client.whoami()["id"] == 1
    # the first access token was refused as expired: a second one was fetched, once
    assert stub.seen == ["Bearer access-1", "Bearer access-2"]  # type: ignore[attr-defined]
    with Client(url_of(stub), LEGACY) as client:
        assert client.whoami()["id"] == 1
    assert stub.seen[-1] == f"Token {LEGACY}"  # type: ignore[attr-defined]


def test_errors_never_contain_the_token(stub: ThreadingHTTPServer) -> None:
    url = url_of(stub)
    forged = jwt("refresh", "Zm9yZ2Vk")
    for token in (forged, "legacy-but-wrong-0123456789"):
        with Client(url, token) as client, pytest.raises(LabelStudioError) as err:
            client.whoami()
        assert f"token rejected by {url} (HTTP 401" in str(err.value)
        assert token not in str(err.value) and "***" in str(err.value)
    with Client(url, LEGACY) as client, pytest.raises(LabelStudioError) as err:
        client.request("GET", "/api/echo")
    assert "HTTP 500" in str(err.value) and LEGACY not in str(err.value)


def test_server_down_names_the_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    with Client(url, LEGACY) as client, pytest.raises(LabelStudioError) as err:
        client.whoami()
    assert f"cannot reach Label Studio at {url}" in str(err.value)
    assert LEGACY not in str(err.value)


def test_cli_without_token_or_push(
    stub: ThreadingHTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_TOKEN", raising=False)
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(tmp_path / "p"), "--classes", "ship"]).exit_code == 0
    url = url_of(stub)
    res = runner.invoke(main, ["-p", str(tmp_path / "p"), "labelstudio", "pull", "--url", url])
    assert res.exit_code == 1 and "no Label Studio token" in res.output
    res = runner.invoke(
        main,
        ["-p", str(tmp_path / "p"), "labelstudio", "pull", "--url", url + "/"],
        env={"LABEL_STUDIO_API_KEY": LEGACY},
    )
    assert res.exit_code == 1
    assert f"no round pushed to {url} yet: run 'geoal labelstudio push --url {url}'" in res.output
    assert LEGACY not in res.output


def test_config_labels() -> None:
    from geoal.formats import labelstudio_config

    assert config_labels(labelstudio_config(["ship", "oil tank"])) == ["ship", "oil tank"]
    assert config_labels("<View><Image name='image' value='$image'/></View>") is None
    assert config_labels("not xml") is None


def test_canonical_tasks_keep_only_what_decides_labels() -> None:
    def task(tid: int, annotations: list, **extra: object) -> dict:
        data = {"chip_id": tid, "window": [0, 0, 64, 64], "image": f"/data/upload/1/x{tid}.png"}
        return {"id": tid, "data": data, "annotations": annotations, **extra}

    box = {"type": "rectanglelabels", "value": {"x": 1}}
    live = {"id": 7, "result": [box], "was_cancelled": False, "updated_at": "2026-01-01T00:00:00Z"}
    skip = {"id": 8, "result": [], "was_cancelled": True}
    tasks = [task(3, [live]), task(1, []), task(2, [skip]), task(4, [skip, {**live, "id": 9}])]
    canon = canonical_tasks(tasks)
    assert [t["id"] for t in canon] == [3, 4]  # open and only-skipped tasks decide nothing
    assert canon[0]["data"] == {"chip_id": 3, "window": [0, 0, 64, 64]}
    # order, images, counters and annotation extras do not change the canonical content
    noisy = [
        task(4, [skip, {**live, "id": 9, "lead_time": 3.0}], total_annotations=2),
        task(1, [], inner_id=5),
        {**task(3, [{**live, "completed_by": 2}]), "data": {**task(3, [])["data"], "image": "x"}},
    ]
    assert canonical_tasks(noisy) == canon
    # an edited annotation does
    edited = [task(3, [{**live, "updated_at": "2026-01-02T00:00:00Z"}]), tasks[3]]
    assert canonical_tasks(edited) != canon
