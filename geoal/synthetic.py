"""Synthetic georeferenced scenes with known objects, for the demo, benchmarks and tests.

Scenes are written strip by strip, so a 20,000 x 20,000 scene never sits in
memory. Objects are two kinds seen from above: 'ship' (a bright elongated hull
with a darker wake) and 'tank' (a bright disc with a dark rim).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ("ship", "tank")


@dataclass(frozen=True)
class Box:
    """A ground-truth box in scene pixels: [x1, y1, x2, y2) and a class index."""

    x1: int
    y1: int
    x2: int
    y2: int
    cls: int


def _value_range(dtype: str) -> tuple[float, float]:
    if dtype == "uint8":
        return 0.0, 255.0
    if dtype == "uint16":
        return 0.0, 4095.0  # 12-bit data in 16-bit containers, as many sensors deliver
    return 0.0, 1.0  # float reflectance


def place_objects(
    width: int,
    height: int,
    n: int,
    rng: np.random.Generator,
    *,
    margin: int = 0,
    size: tuple[int, int] = (18, 48),
    clusters: int = 0,
    spread: float = 120.0,
) -> list[Box]:
    """``n`` non-overlapping objects inside the valid area (``margin`` px from each edge).

    ``clusters`` = 0 spreads them uniformly; otherwise they gather around that many
    random centres (normal, ``spread`` px standard deviation), as ships do at anchorages
    and along lanes in a survey scene that is empty elsewhere.
    """
    boxes: list[Box] = []
    tries = 0
    centres = (
        rng.uniform(
            [margin + spread, margin + spread],
            [width - margin - spread, height - margin - spread],
            size=(clusters, 2),
        )
        if clusters > 0
        else None
    )
    while len(boxes) < n and tries < n * 50:
        tries += 1
        cls = int(rng.integers(0, len(CLASSES)))
        long_side = int(rng.integers(size[0], size[1] + 1))
        if cls == 0:
            w, h = (
                (long_side, max(6, long_side // 3))
                if rng.random() < 0.5
                else (max(6, long_side // 3), long_side)
            )
        else:
            w = h = max(8, long_side * 2 // 3)
        lo_x, lo_y = margin, margin
        hi_x, hi_y = width - margin - w, height - margin - h
        if hi_x <= lo_x or hi_y <= lo_y:
            break
        if centres is None:
            x1 = int(rng.integers(lo_x, hi_x))
            y1 = int(rng.integers(lo_y, hi_y))
        else:
            cx, cy = centres[int(rng.integers(0, clusters))] + rng.normal(0.0, spread, size=2)
            x1 = int(np.clip(cx - w / 2, lo_x, hi_x - 1))
            y1 = int(np.clip(cy - h / 2, lo_y, hi_y - 1))
        cand = Box(x1, y1, x1 + w, y1 + h, cls)
        if all(
            cand.x2 + 4 <= b.x1 or b.x2 + 4 <= cand.x1 or cand.y2 + 4 <= b.y1 or b.y2 + 4 <= cand.y1
            for b in boxes
        ):
            boxes.append(cand)
    return boxes


def _background(
    rows: np.ndarray, cols: np.ndarray, bands: int, rng: np.random.Generator
) -> np.ndarray:
    """Sea-like texture in 0-1: (bands, len(rows), len(cols)) float32."""
    yy, xx = np.meshgrid(rows.astype(np.float32), cols.astype(np.float32), indexing="ij")
    base = 0.25 + 0.05 * np.sin(xx / 97.0) * np.cos(yy / 131.0) + 0.03 * np.sin((xx + yy) / 23.0)
    out = np.empty((bands, len(rows), len(cols)), dtype=np.float32)
    for b in range(bands):
        out[b] = base * (0.9 + 0.1 * b) + rng.normal(0.0, 0.02, size=base.shape).astype(np.float32)
    return out


def _draw(block: np.ndarray, row0: int, boxes: list[Box]) -> None:
    """Paint objects into a (bands, h, w) float block whose first row is scene row ``row0``."""
    h = block.shape[1]
    for b in boxes:
        if b.y2 <= row0 or b.y1 >= row0 + h:
            continue
        ys = np.arange(max(b.y1, row0), min(b.y2, row0 + h))
        xs = np.arange(b.x1, b.x2)
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        cy, cx = (b.y1 + b.y2 - 1) / 2, (b.x1 + b.x2 - 1) / 2
        ry, rx = (b.y2 - b.y1) / 2, (b.x2 - b.x1) / 2
        r = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        if b.cls == 0:  # ship: bright hull, dark outline
            value = np.where(r < 0.55, 0.9, np.where(r < 1.0, 0.08, np.nan))
        else:  # tank: bright disc, dark rim, grey centre dot
            value = np.where(
                r < 0.08, 0.5, np.where(r < 0.6, 0.95, np.where(r < 1.0, 0.05, np.nan))
            )
        paint = ~np.isnan(value)
        for band in range(block.shape[0]):
            sub = block[band, ys[0] - row0 : ys[-1] - row0 + 1, b.x1 : b.x2]  # a view into block
            sub[paint] = value[paint] * (1.0 - 0.05 * band)


@dataclass(frozen=True)
class SceneSpec:
    """What :func:`write_scene` writes.

    Attributes:
        width, height: the scene in pixels; ``bands`` of ``dtype`` (uint8 0-255, uint16
            12-bit 0-4095, float32 0-1), in ``crs`` (None: none) from the top-left
            ``origin`` (CRS units) at ``resolution`` CRS units a pixel.
        nodata, border, mask: ``border`` is the width in pixels of an invalid frame around
            the scene, marked by ``nodata`` (a value), or by ``mask='internal'`` (GDAL
            internal mask) or ``mask='alpha'`` (an extra alpha band).
        overviews, tiled, compress, strip: 2x..32x overviews, 256 px tiles, the
            compression, and the rows written at a time.
        objects, seed, clusters, spread, size: ``objects`` ground-truth objects (``size``:
            range of the long side, px; ``clusters``, ``spread``: see :func:`place_objects`);
            ``seed`` fixes the objects and the background noise.
    """

    width: int
    height: int
    bands: int = 3
    dtype: str = "uint8"
    crs: str | None = "EPSG:32631"
    origin: tuple[float, float] = (500_000.0, 4_000_000.0)
    resolution: float = 0.5
    nodata: float | None = None
    border: int = 0
    mask: str | None = None
    overviews: bool = False
    tiled: bool = True
    compress: str | None = "deflate"
    strip: int = 512
    objects: int = 0
    seed: int = 0
    clusters: int = 0
    spread: float = 120.0
    size: tuple[int, int] = (18, 48)


def write_scene(path: Path, spec: SceneSpec) -> list[Box]:
    """Write the synthetic scene ``spec`` to ``path``; returns its ground-truth objects in pixels."""
    import rasterio
    from rasterio.enums import ColorInterp

    rng = np.random.default_rng(spec.seed)
    boxes = place_objects(
        spec.width,
        spec.height,
        spec.objects,
        rng,
        margin=spec.border + 2,
        size=spec.size,
        clusters=spec.clusters,
        spread=spec.spread,
    )
    env = rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True)
    with env, rasterio.open(path, "w", **_profile(spec)) as ds:
        if spec.mask == "alpha":
            ds.colorinterp = [*list(ds.colorinterp)[: spec.bands], ColorInterp.alpha]
        for row0 in range(0, spec.height, spec.strip):
            _write_strip(ds, spec, row0, boxes, rng)
        if spec.overviews:
            _build_overviews(ds, spec)
    return boxes


def _profile(spec: SceneSpec) -> dict[str, object]:
    """The rasterio creation profile of ``spec``."""
    from rasterio.transform import from_origin

    profile: dict[str, object] = {
        "driver": "GTiff",
        "width": spec.width,
        "height": spec.height,
        "count": spec.bands + (1 if spec.mask == "alpha" else 0),
        "dtype": spec.dtype,
        "transform": from_origin(*spec.origin, spec.resolution, spec.resolution),
    }
    if spec.crs is not None:
        profile["crs"] = spec.crs
    if spec.nodata is not None:
        profile["nodata"] = spec.nodata
    if spec.tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if spec.compress:
        profile["compress"] = spec.compress
    if spec.mask == "alpha" and spec.dtype == "uint8":
        profile["photometric"] = "RGB" if spec.bands == 3 else "MINISBLACK"
    return profile


def _write_strip(
    ds: Any, spec: SceneSpec, row0: int, boxes: list[Box], rng: np.random.Generator
) -> None:
    """Write the rows from ``row0`` (at most ``spec.strip``): pixels, then nodata / mask / alpha."""
    import rasterio

    width, height, dtype = spec.width, spec.height, spec.dtype
    lo, hi = _value_range(dtype)
    h = min(spec.strip, height - row0)
    rows = np.arange(row0, row0 + h)
    block = _background(rows, np.arange(width), spec.bands, rng)
    _draw(block, row0, boxes)
    data = (lo + np.clip(block, 0, 1) * (hi - lo)).astype(dtype)
    valid = np.ones((h, width), dtype=bool)
    if spec.border:
        border = spec.border
        valid[:, :border] = False
        valid[:, width - border :] = False
        valid[(rows < border) | (rows >= height - border)] = False
    if spec.nodata is not None:
        data[:, ~valid] = np.asarray(spec.nodata).astype(dtype)
    window = rasterio.windows.Window(0, row0, width, h)
    ds.write(data, indexes=list(range(1, spec.bands + 1)), window=window)
    if spec.mask == "alpha":
        alpha = (valid * (255 if dtype == "uint8" else hi)).astype(dtype)
        ds.write(alpha, indexes=spec.bands + 1, window=window)
    elif spec.mask == "internal":
        ds.write_mask(valid.astype(np.uint8) * 255, window=window)


def _build_overviews(ds: Any, spec: SceneSpec) -> None:
    """2x..32x nearest-neighbour overviews, down to 64 px on the long side."""
    from rasterio.enums import Resampling

    factors = [f for f in (2, 4, 8, 16, 32) if max(spec.width, spec.height) // f >= 64]
    if factors:
        ds.build_overviews(factors, Resampling.nearest)
