"""Shared builders for the formats tests: scenes, chips, boxes, real rasters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from geoal.formats import Boxes, Chip
from geoal.raster.grid import chip_grid
from geoal.raster.scene import Scene
from tests.raster.scenes import fake_scene

CLASSES = ("ship", "tank", "plane")


def grid_chips(scene: Scene, size: int, overlap: float, first_id: int = 1) -> list[Chip]:
    """The Chip of every chip of the scene's grid, ids from ``first_id``."""
    windows = chip_grid(scene.width, scene.height, size, overlap)
    return [Chip.at(scene, first_id + k, w) for k, w in enumerate(windows)]


def real_scene(path: Path, scene_id: int = 1) -> Scene:
    """A Scene for a real GeoTIFF (grid and CRS read with rasterio)."""
    import rasterio

    with rasterio.open(path) as ds:
        return fake_scene(
            scene_id=scene_id,
            name=path.stem,
            width=ds.width,
            height=ds.height,
            transform=tuple(ds.transform)[:6],
            crs=ds.crs.to_wkt() if ds.crs else None,
        )


def random_boxes(
    rng: np.random.Generator, width: int, height: int, n: int, scored: bool, margin: float = 0.0
) -> Boxes:
    """n boxes (>= 0.5 px sides) inside the chip shrunk by ``margin`` px."""
    x1 = rng.uniform(margin, width - margin - 1.0, n)
    y1 = rng.uniform(margin, height - margin - 1.0, n)
    x2 = x1 + rng.uniform(0.5, 1.0, n) * (width - margin - x1)
    y2 = y1 + rng.uniform(0.5, 1.0, n) * (height - margin - y1)
    cls = rng.integers(0, len(CLASSES), n)
    score = rng.uniform(0.01, 1.0, n) if scored else None
    return Boxes(np.stack([x1, y1, x2, y2], axis=1), cls, score)


@st.composite
def boxes_in(draw: st.DrawFn, width: int, height: int, scored: bool, max_n: int = 6) -> Boxes:
    """Hypothesis strategy: 0..max_n boxes with positive size inside a width x height chip."""
    n = draw(st.integers(0, max_n))
    rows, cls = [], []
    for _ in range(n):
        x1 = draw(st.floats(0.0, width - 0.01))
        x2 = draw(st.floats(min(x1 + 0.01, float(width)), float(width)))
        y1 = draw(st.floats(0.0, height - 0.01))
        y2 = draw(st.floats(min(y1 + 0.01, float(height)), float(height)))
        rows.append((x1, y1, x2, y2))
        cls.append(draw(st.integers(0, len(CLASSES) - 1)))
    score = [draw(st.floats(0.0, 1.0)) for _ in range(n)] if scored else None
    return Boxes(np.array(rows).reshape(-1, 4), np.array(cls, dtype=np.int64), score)


def assert_same_boxes(got: Boxes, want: Boxes, tol: float) -> None:
    """Same classes and coordinates (within ``tol`` px), in the same order."""
    assert len(got) == len(want), (len(got), len(want))
    np.testing.assert_array_equal(got.cls, want.cls)
    if len(want):
        np.testing.assert_allclose(got.xyxy, want.xyxy, rtol=0, atol=tol)
