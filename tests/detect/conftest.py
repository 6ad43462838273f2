"""Fixtures for geoal.detect: a small calibrated random YOLO, synthetic chips, no network."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from detect_fixtures import CLASSES, make_checkpoint, make_chips

_NETWORK_ATTEMPTS: list[str] = []


def _refuse(*args: Any, **kwargs: Any) -> Any:
    _NETWORK_ATTEMPTS.append(repr(args)[:200])
    raise OSError("network access attempted in geoal.detect tests")


@pytest.fixture(scope="module", autouse=True)
def _no_network() -> Iterator[None]:
    """Refuse every outgoing connection or name look-up while this folder's tests run.

    Module scope: the guard is lifted after each module, so other folders'
    tests (which may use local sockets) are not affected.
    """
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


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .pt file of a calibrated random yolov8n for CLASSES."""
    return make_checkpoint(tmp_path_factory.mktemp("models") / "calibrated.pt", CLASSES)


@pytest.fixture(scope="session")
def detector(checkpoint: Path) -> Any:
    """The checkpoint loaded by geoal on the CPU."""
    from geoal.detect import load_detector

    return load_detector(checkpoint, CLASSES)


@pytest.fixture(scope="session")
def chips() -> np.ndarray:
    """Two (CHIP, CHIP, 3) uint8 RGB chips."""
    return make_chips(2)
