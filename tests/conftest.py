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
# The suite runs the torch backend unless a test asks for another (tests/detect/test_detect_backends.py
# covers the exported ones); exports of shipped .yaml models go to a temporary cache.
os.environ.setdefault("GEOAL_BACKEND", "torch")
os.environ.setdefault("GEOAL_CACHE_DIR", tempfile.mkdtemp(prefix="geoal-cache-"))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data beside the project's root (../shared/data)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data not found at {SHARED_DATA}: see DEVELOPERS notes")
    return SHARED_DATA


@pytest.fixture
def make_raster(tmp_path: Path):
    """Factory for synthetic GeoTIFFs (size, dtype, bands, CRS, nodata/mask/alpha, overviews).

    Returns (path, boxes) where boxes are the ground-truth objects in pixels.
    """
    from geoal.synthetic import SceneSpec, write_scene

    counter = iter(range(10_000))

    def make(name: str | None = None, **kwargs):
        path = tmp_path / (name or f"scene_{next(counter)}.tif")
        kwargs.setdefault("width", 300)
        kwargs.setdefault("height", 200)
        boxes = write_scene(path, SceneSpec(**kwargs))
        return path, boxes

    return make


@pytest.fixture
def project(tmp_path: Path):
    """A fresh project with classes ship, tank and 64 px chips (small, fast)."""
    from geoal.config import with_tiling
    from geoal.project import init_project

    proj = init_project(tmp_path / "proj", "ship,tank")
    proj.config = with_tiling(proj.config, size=64, overlap=0.25)
    yield proj
    proj.close()
