"""Offline guards shared by the test folders that run ultralytics (detect, train).

Import the fixtures into a folder's conftest.py. Module scope: the guard is lifted
after each module, so other folders' tests (Label Studio, Ray) keep their local sockets.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

_NETWORK_ATTEMPTS: list[str] = []


def _refuse(*args: Any, **kwargs: Any) -> Any:
    _NETWORK_ATTEMPTS.append(repr(args)[:200])
    raise OSError("network access attempted in an offline test")


@pytest.fixture(scope="module", autouse=True)
def _no_network() -> Iterator[None]:
    """Refuse every outgoing connection or name look-up while the module's tests run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _refuse)
        patch.setattr(socket.socket, "connect_ex", _refuse)
        patch.setattr(socket, "create_connection", _refuse)
        patch.setattr(socket, "getaddrinfo", _refuse)
        yield


@pytest.fixture(autouse=True)
def _assert_offline(_no_network: None) -> Iterator[None]:
    """Fail the test in which (or before which) anything tried to reach the network."""
    yield
    attempts, _NETWORK_ATTEMPTS[:] = list(_NETWORK_ATTEMPTS), []
    assert not attempts, f"network access attempted: {attempts}"


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    """YOLO.predict on CPU calls torch.set_num_threads(cpu_count - 1); undo it after each test."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def assert_imports_none_of(statement: str, heavy: tuple[str, ...]) -> None:
    """Run ``statement`` in a fresh interpreter; fail if it imported any module of ``heavy``."""
    import subprocess
    import sys

    code = f"import sys; {statement}; bad = [m for m in {heavy!r} if m in sys.modules]; "
    subprocess.run([sys.executable, "-c", code + "assert not bad, bad"], check=True)
