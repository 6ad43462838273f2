"""Network reads end: a server that accepts and never answers gives one line, and Ctrl-C works.

The server is a socket on 127.0.0.1 that accepts connections and sends nothing; it stops
when the test ends (and by itself after two minutes at most).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from geoal.cli import main
from geoal.raster.scene import GDAL_NETWORK_DEFAULTS

ROOT = Path(__file__).resolve().parents[2]


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers; ``accepted`` counts them."""

    def __init__(self, lifetime_s: float = 120.0) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._end = time.monotonic() + lifetime_s
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._end:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self._held.append(conn)
            self.accepted += 1
        for conn in self._held:
            conn.close()
        self.sock.close()

    def url(self, name: str = "scene.tif") -> str:
        return f"/vsicurl/http://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.stop()


@pytest.fixture
def no_gdal_http_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in GDAL_NETWORK_DEFAULTS:
        monkeypatch.delenv(key, raising=False)


def test_a_silent_server_gives_one_line_and_frees_the_lock(
    silent: SilentServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_gdal_http_env: None
) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(tmp_path / "p"), "--classes", "ship"]).exit_code == 0
    # the user's own setting wins over geoal's default (30 s) and keeps the test short
    monkeypatch.setenv("GDAL_HTTP_LOW_SPEED_TIME", "1")
    result = runner.invoke(main, ["-p", str(tmp_path / "p"), "tile", silent.url()])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"{silent.url()}: the server did not answer" in result.output
    assert silent.accepted >= 1
    assert os.environ["GDAL_HTTP_LOW_SPEED_TIME"] == "1"
    for key in ("GDAL_HTTP_CONNECTTIMEOUT", "GDAL_HTTP_TIMEOUT", "GDAL_HTTP_MAX_RETRY"):
        assert os.environ[key] == GDAL_NETWORK_DEFAULTS[key]
    # the write lock is free again: another writer goes ahead
    status = runner.invoke(main, ["-p", str(tmp_path / "p"), "status", "--json"])
    assert json.loads(status.output)["counts"]["scenes"] == 0
    assert (tmp_path / "p" / ".geoal.lock").read_text() == ""


def test_ctrl_c_stops_a_tile_waiting_for_a_server(
    silent: SilentServer, tmp_path: Path, no_gdal_http_env: None
) -> None:
    project = tmp_path / "p"
    assert CliRunner().invoke(main, ["init", str(project), "--classes", "ship"]).exit_code == 0
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "geoal.cli", "-p", str(project), "tile", silent.url()],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(600):  # until GDAL is waiting on the server (a minute at most)
            if silent.accepted or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert silent.accepted, "geoal never reached the server"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        # geoal's own wait (30 s without data) is longer than this guard: only Ctrl-C ends it
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert (project / ".geoal.lock").read_text() == ""
