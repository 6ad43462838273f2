"""Fixtures for geoal.detect: a small calibrated random YOLO, synthetic chips, no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from detect_fixtures import CLASSES, make_checkpoint, make_chips

from tests.offline import _assert_offline, _keep_torch_threads, _no_network  # noqa: F401


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
