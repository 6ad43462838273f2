"""Chip footprints in the scene's CRS (exact) and in EPSG:4326, and pixel <-> CRS maps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from affine import Affine

from geoal.raster.grid import clip_windows, window_corners
from geoal.store import SceneRecord

WGS84 = "EPSG:4326"


def pixel_to_crs(
    transform: Affine | Sequence[float], cols: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (col, row; any shape, fractional ok) to CRS (x, y) of the same shape."""
    a, b, c, d, e, f = tuple(transform)[:6]
    cols = np.asarray(cols, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.float64)
    return a * cols + b * rows + c, d * cols + e * rows + f


def crs_to_pixel(
    transform: Affine | Sequence[float], xs: np.ndarray, ys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """CRS coordinates (x, y) to fractional pixel (col, row) of the same shape."""
    inv = ~Affine(*tuple(transform)[:6])
    return pixel_to_crs(inv, xs, ys)


def scene_footprints(scene: SceneRecord, windows: np.ndarray) -> np.ndarray:
    """Chip footprints (N,) shapely Polygons in the scene's CRS, cut to the scene extent.

    Exact from the affine transform: the corners of the window's pixel edges.
    """
    import shapely

    win = clip_windows(windows, scene.width, scene.height)
    corners = window_corners(scene.transform, win)  # (N, 4, 2)
    return shapely.polygons(corners)


def to_wgs84(polygons: np.ndarray, crs: str | None, densify: int = 8) -> np.ndarray | None:
    """Reproject polygons (N,) from ``crs`` to EPSG:4326 (lon, lat); None when there is no CRS.

    Edges are densified into ``densify`` segments so the curved result stays faithful.
    """
    import shapely
    from pyproj import CRS, Transformer

    if crs is None:
        return None
    src = CRS.from_user_input(crs)
    if src.equals(CRS.from_epsg(4326)):
        return polygons
    transformer = Transformer.from_crs(src, CRS.from_epsg(4326), always_xy=True)
    lengths = shapely.length(polygons) / 4.0 / max(1, densify)
    dense = shapely.segmentize(polygons, np.maximum(lengths, 1e-12))

    def project(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(dense, project)
