"""Fixtures for geoal.formats: synthetic chips and the real GeoTIFFs' chips."""

from __future__ import annotations

from pathlib import Path

import pytest
from formats_helpers import grid_chips, real_scene

from geoal.formats import Chip
from tests.raster.scenes import fake_scene


@pytest.fixture
def chips() -> list[Chip]:
    """Six overlapping 64 px chips of a 128 x 100 px UTM scene (ids 1..6)."""
    return grid_chips(fake_scene(width=128, height=100), 64, 0.25)


@pytest.fixture(scope="session")
def geotiff(shared_data: Path) -> Path:
    """The real GeoTIFFs' folder."""
    return shared_data / "geotiff"


@pytest.fixture(scope="session")
def osbs(geotiff: Path):
    """The real 400 x 400 px, 0.1 m NEON raster (EPSG:32617) as a Scene."""
    return real_scene(geotiff / "osbs029_rgb_10cm.tif")
