"""A real Label Studio server for the integration tests, and a small geoal project to push.

The server comes from ``.venv-labelstudio`` (``scripts/setup.sh`` installs it; or set
GEOAL_LABEL_STUDIO to a ``label-studio`` executable). It runs on 127.0.0.1 with SQLite in a
temporary data folder, offline (no version check, analytics or Sentry). A user is made at
start (``--username/--password``); the test then signs in like a browser and creates a
personal access token (``POST /api/token/``), the token type Label Studio 1.23 enables by
default. It also turns legacy tokens on for the organisation (``POST /api/jwt/settings``)
to test them. Without the server the tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner

from geoal.cli import main
from geoal.project import open_project
from geoal.store.arrays import encode_scores
from geoal.store.scores import ScoreRecord, insert_records

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "annotator@geoal.test", "geoal-test-password-1"
START_TIMEOUT = 300.0  # seconds; 30-90 s on two cores, more under load


@dataclass(frozen=True)
class Server:
    """A running Label Studio: its URL and the tokens of its one user."""

    url: str
    token: str = field(repr=False)  # personal access token (JWT refresh token)
    legacy_token: str = field(repr=False)


def _executable() -> Path | None:
    given = os.environ.get("GEOAL_LABEL_STUDIO")
    path = Path(given) if given else ROOT / ".venv-labelstudio" / "bin" / "label-studio"
    return path if path.is_file() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"label-studio exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    pytest.fail(f"label-studio not up after {START_TIMEOUT:g} s:\n{log.read_text()[-3000:]}")


def _provision(url: str) -> tuple[str, str]:
    """Sign in as the browser does, create a personal access token, enable legacy tokens."""
    s = requests.Session()
    s.get(url + "/user/login/", timeout=30).raise_for_status()
    r = s.post(
        url + "/user/login/",
        data={"email": USER, "password": PASSWORD, "csrfmiddlewaretoken": s.cookies["csrftoken"]},
        headers={"Referer": url + "/user/login/"},
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 302, f"login failed: {r.status_code} {r.text[:300]}"
    csrf = {"X-CSRFToken": s.cookies["csrftoken"], "Referer": url + "/"}
    r = s.post(url + "/api/token/", headers=csrf, timeout=30)
    assert r.status_code == 201, r.text[:300]
    pat = r.json()["token"]
    r = s.post(
        url + "/api/jwt/settings",
        json={"api_tokens_enabled": True, "legacy_api_tokens_enabled": True},
        headers=csrf,
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text[:300]
    legacy = s.get(url + "/api/current-user/token", timeout=30).json()["token"]
    return pat, legacy


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory):
    """A Label Studio server for the whole session (started once, stopped at the end)."""
    exe = _executable()
    if exe is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("Label Studio is not installed (.venv-labelstudio): run scripts/setup.sh")
        pytest.skip("Label Studio is not installed (.venv-labelstudio): run scripts/setup.sh")
    data = tmp_path_factory.mktemp("label-studio")
    port = _free_port()
    env = {
        **os.environ,
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
    }
    log = data / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(exe),
                "start",
                "--no-browser",
                "--internal-host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(data / "data"),
                "--username",
                USER,
                "--password",
                PASSWORD,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=data,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url, proc, log)
        token, legacy = _provision(url)
        yield Server(url, token, legacy)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def _cli(*args: str) -> None:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


MODEL = "f00dcafe" * 8  # the hash of a fake model


@pytest.fixture
def round_project(tmp_path: Path, make_raster) -> Path:
    """A project of 64 px chips, scored by a fake model, with an open round of 4 chips.

    Every chip has two fake detections (a ship and a tank), so each task gets predictions.
    """
    proj = tmp_path / "p"
    _cli("init", str(proj), "--classes", "ship,tank")
    scene, _ = make_raster(width=256, height=192, objects=4)
    _cli("-p", str(proj), "tile", str(scene), "--size", "64", "--overlap", "0", "-q")
    rng = np.random.default_rng(0)
    with open_project(proj) as p, p.store.transaction() as conn:
        (scene,) = p.store.scenes()
        for cid in p.store.chip_windows(scene.id)[0].tolist():
            s = float(rng.random())
            embedding = rng.random(8).astype("<f4").tobytes()
            record = ScoreRecord(*encode_scores({"miaod": s}), 2.0, embedding, None, ())
            insert_records(conn, MODEL, 1, [cid], [record])
            for cls, box, conf in ((0, (4, 6, 20, 30), 0.9), (1, (30, 32, 60, 63.5), 0.4)):
                conn.execute(
                    "INSERT INTO detections (chip_id, model_hash, x1, y1, x2, y2, class_id, "
                    "confidence, probs, uncertainty) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '{}')",
                    (cid, MODEL, *box, cls, conf, np.zeros(2, "<f4").tobytes()),
                )
    _cli("-p", str(proj), "select", "-k", "4", "-s", "uncertainty", "--min-distance", "-1")
    return proj
