"""The chip grid of a scene: pure functions over integer windows.

A chip is a window of its scene, ``[col_off, row_off, width, height]`` in scene
pixels; its transform and footprint are derived from the scene's affine
transform, never stored twice. As in SAHI's slicer, the last row and column are
shifted inward so every chip is full size; a scene smaller than a chip gets one
chip at (0, 0) that reads padded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from affine import Affine

from geoal.errors import ConfigError


def axis_offsets(length: int, size: int, overlap: float) -> np.ndarray:
    """Start offsets (n,) int64 along one axis of ``length`` pixels for chips of ``size``.

    Consecutive chips share ``round(size * overlap)`` pixels (at least); the last
    chip ends exactly at ``length``. ``length <= size`` gives the single offset 0.
    """
    if size < 1:
        raise ConfigError(f"chip size must be >= 1 pixel, got {size}")
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"overlap must be in [0, 1), got {overlap}")
    if length <= size:
        return np.zeros(1, dtype=np.int64)
    step = max(1, size - round(size * overlap))
    offsets = np.arange(0, length - size, step, dtype=np.int64)
    return np.append(offsets, length - size)


def chip_grid(width: int, height: int, size: int, overlap: float) -> np.ndarray:
    """All chip windows of a ``width`` x ``height`` scene: (N, 4) int64 [col, row, w, h].

    Row-major order: chips of the first row left to right, then the next row.
    """
    cols = axis_offsets(width, size, overlap)
    rows = axis_offsets(height, size, overlap)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    n = rr.size
    out = np.empty((n, 4), dtype=np.int64)
    out[:, 0] = cc.ravel()
    out[:, 1] = rr.ravel()
    out[:, 2] = size
    out[:, 3] = size
    return out


def grid_count(width: int, height: int, size: int, overlap: float) -> int:
    """How many chips :func:`chip_grid` gives, without making them."""
    return len(axis_offsets(width, size, overlap)) * len(axis_offsets(height, size, overlap))


def covered_grid(
    width: int, height: int, size: int, overlap: float, rects: np.ndarray
) -> np.ndarray:
    """The windows of :func:`chip_grid` that overlap any of ``rects``: (N, 4) int64, row-major.

    ``rects``: (M, 4) [x0, y0, x1, y1] scene pixels (a VRT mosaic's sources). Works chip
    row by chip column, never making the whole grid (13 million chips for two distant
    scenes in one VRT).
    """
    cols = axis_offsets(width, size, overlap)
    rows = axis_offsets(height, size, overlap)
    hit = np.zeros((len(rows), len(cols)), dtype=bool)
    col_end = np.minimum(cols + size, width)
    row_end = np.minimum(rows + size, height)
    for x0, y0, x1, y1 in np.asarray(rects, dtype=np.float64).reshape(-1, 4):
        in_cols = np.flatnonzero((cols < x1) & (col_end > x0))
        in_rows = np.flatnonzero((rows < y1) & (row_end > y0))
        if len(in_cols) and len(in_rows):
            hit[in_rows[0] : in_rows[-1] + 1, in_cols[0] : in_cols[-1] + 1] = True
    rr, cc = np.nonzero(hit)
    out = np.empty((len(rr), 4), dtype=np.int64)
    out[:, 0] = cols[cc]
    out[:, 1] = rows[rr]
    out[:, 2] = size
    out[:, 3] = size
    return out


def covered_fractions(
    windows: np.ndarray, rects: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Fraction (N,) of each window (cut to the scene) inside the union of ``rects`` (M, 4)."""
    import shapely

    win = clip_windows(windows, width, height).astype(np.float64)
    r = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    union = shapely.union_all(shapely.box(r[:, 0], r[:, 1], r[:, 2], r[:, 3]))
    boxes = shapely.box(win[:, 0], win[:, 1], win[:, 0] + win[:, 2], win[:, 1] + win[:, 3])
    area = win[:, 2] * win[:, 3]
    return np.asarray(shapely.area(shapely.intersection(boxes, union)) / np.maximum(area, 1))


def clip_windows(windows: np.ndarray, width: int, height: int) -> np.ndarray:
    """Windows (N, 4) cut to the scene extent: the part of each chip that holds scene pixels."""
    w = np.asarray(windows, dtype=np.int64).reshape(-1, 4).copy()
    w[:, 2] = np.minimum(w[:, 0] + w[:, 2], width) - w[:, 0]
    w[:, 3] = np.minimum(w[:, 1] + w[:, 3], height) - w[:, 1]
    return w


def window_transform(transform: Affine, window: Sequence[int]) -> Affine:
    """Affine transform of a chip (its pixel (0, 0) is the window's top-left)."""
    col, row = int(window[0]), int(window[1])
    return transform @ Affine.translation(col, row)


def window_bounds(transform: Affine | Sequence[float], windows: np.ndarray) -> np.ndarray:
    """Footprint bounds (N, 4) [minx, miny, maxx, maxy] in CRS units, exact from the transform.

    Works for rotated transforms too (bounds of the four transformed corners).
    """
    a, b, c, d, e, f = tuple(transform)[:6]
    w = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    x0, y0 = w[:, 0], w[:, 1]
    x1, y1 = x0 + w[:, 2], y0 + w[:, 3]
    xs = np.stack(
        [a * x0 + b * y0 + c, a * x1 + b * y0 + c, a * x1 + b * y1 + c, a * x0 + b * y1 + c]
    )
    ys = np.stack(
        [d * x0 + e * y0 + f, d * x1 + e * y0 + f, d * x1 + e * y1 + f, d * x0 + e * y1 + f]
    )
    return np.stack([xs.min(0), ys.min(0), xs.max(0), ys.max(0)], axis=1)


def window_corners(transform: Affine | Sequence[float], windows: np.ndarray) -> np.ndarray:
    """The four corners of each window in CRS units: (N, 4, 2), clockwise from top-left."""
    a, b, c, d, e, f = tuple(transform)[:6]
    w = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    px = np.stack([w[:, 0], w[:, 0] + w[:, 2], w[:, 0] + w[:, 2], w[:, 0]], axis=1)
    py = np.stack([w[:, 1], w[:, 1], w[:, 1] + w[:, 3], w[:, 1] + w[:, 3]], axis=1)
    return np.stack([a * px + b * py + c, d * px + e * py + f], axis=-1)


def valid_fractions(mask: np.ndarray, windows: np.ndarray, width: int, height: int) -> np.ndarray:
    """Fraction (N,) of valid pixels in each window, from a (possibly decimated) mask.

    ``mask``: (h, w) bool, True = valid, covering the whole ``width`` x ``height``
    scene at any resolution. Only the part of a window inside the scene counts.
    Uses a summed-area table: O(1) per window.
    """
    h, w = mask.shape
    # int32 holds any count of a mask up to 46k x 46k and halves the memory traffic
    dtype = np.int32 if h * w < 2**31 else np.int64
    sat = np.zeros((h + 1, w + 1), dtype=dtype)
    np.cumsum(mask, axis=0, dtype=dtype, out=sat[1:, 1:])
    np.cumsum(sat[1:, 1:], axis=1, out=sat[1:, 1:])
    win = clip_windows(windows, width, height)
    sx, sy = w / width, h / height
    c0 = np.clip(np.floor(win[:, 0] * sx).astype(np.int64), 0, w - 1)
    r0 = np.clip(np.floor(win[:, 1] * sy).astype(np.int64), 0, h - 1)
    c1 = np.clip(np.ceil((win[:, 0] + win[:, 2]) * sx).astype(np.int64), c0 + 1, w)
    r1 = np.clip(np.ceil((win[:, 1] + win[:, 3]) * sy).astype(np.int64), r0 + 1, h)
    total = sat[r1, c1].astype(np.int64) - sat[r0, c1] - sat[r1, c0] + sat[r0, c0]
    return total / ((r1 - r0) * (c1 - c0))
