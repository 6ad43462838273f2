"""Shared test set-up: keep ultralytics offline and out of the home folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# ultralytics reads these at import time; set them before any test imports it.
_SETTINGS = tempfile.mkdtemp(prefix="geoal-yolo-settings-")
os.environ.setdefault("YOLO_CONFIG_DIR", _SETTINGS)
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("MPLBACKEND", "Agg")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data beside the project's root (../shared/data)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data not found at {SHARED_DATA}: see DEVELOPERS notes")
    return SHARED_DATA
