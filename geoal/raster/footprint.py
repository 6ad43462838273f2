"""Chip footprints in the scene's CRS (exact) and in EPSG:4326, and pixel <-> CRS maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from geoal.errors import ConfigError
from geoal.raster.grid import clip_windows, window_corners
from geoal.raster.scene import Scene

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


def scene_footprints(scene: Scene, windows: np.ndarray) -> np.ndarray:
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


def read_aoi(path: Path) -> tuple[Any, Any]:
    """An area of interest: the union of a vector file's polygons (shapely) and its pyproj CRS.

    Any file geopandas reads (GeoJSON, GeoPackage: its first layer, shapefile), any CRS;
    ConfigError for an unreadable file, one without polygons or without a CRS.
    """
    import geopandas as gpd
    import shapely

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--aoi {path}: no such file")
    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # pyogrio's DataSourceError and friends: no common base class
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"--aoi {path}: not a readable vector file ({first})") from None
    geoms = frame.geometry[frame.geometry.notna()]
    geoms = geoms[geoms.geom_type.isin(["Polygon", "MultiPolygon"])]
    if geoms.empty:
        raise ConfigError(
            f"--aoi {path}: holds no polygon ({len(frame)} features); draw the area as a polygon"
        )
    if frame.crs is None:
        raise ConfigError(
            f"--aoi {path}: has no CRS (a shapefile without its .prj?); save it with its CRS"
        )
    return shapely.union_all(shapely.make_valid(geoms.values)), frame.crs


def aoi_in_crs(area: Any, area_crs: Any, crs: str) -> Any:
    """``area`` (a shapely geometry in ``area_crs``) in ``crs``, edges densified to stay faithful."""
    import shapely
    from pyproj import CRS, Transformer

    src, dst = CRS.from_user_input(area_crs), CRS.from_user_input(crs)
    if src.equals(dst):
        return area
    minx, miny, maxx, maxy = area.bounds
    dense = shapely.segmentize(area, max(maxx - minx, maxy - miny, 1e-9) / 256)
    transformer = Transformer.from_crs(src, dst, always_xy=True)

    def project(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.make_valid(shapely.transform(dense, project))
