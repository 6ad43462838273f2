"""Contrast stretch to 8 bits: per-band percentile clip, pure functions.

The clip is computed once per scene from a decimated read and stored in the
project, so a chip looks the same in every round and to the annotator.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np


def percentile_clip(
    bands: np.ndarray, valid: np.ndarray, low: float, high: float
) -> list[tuple[float, float]]:
    """Per-band (lo, hi) clip values from a sample.

    ``bands``: (B, h, w) any numeric dtype; ``valid``: (h, w) bool, True = use the
    pixel; ``low``/``high``: percentiles 0-100. A flat band gets hi = lo + 1.
    """
    out: list[tuple[float, float]] = []
    for band in bands:
        keep = valid & np.isfinite(band) if band.dtype.kind == "f" else valid
        values = band[keep]
        if values.size == 0:
            out.append((0.0, 1.0))
            continue
        lo, hi = np.percentile(values, [low, high])
        lo, hi = float(lo), float(hi)
        if not hi > lo:
            hi = lo + 1.0
        out.append((lo, hi))
    return out


@lru_cache(maxsize=64)
def _lut(lo: float, hi: float, n: int, zero: int | None) -> np.ndarray:
    x = np.arange(n, dtype=np.float64)
    lut = np.clip((x - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)
    if zero is not None and 0 <= zero < n:
        lut[zero] = 0
    return lut


def apply_stretch(
    bands: np.ndarray,
    clip: Sequence[tuple[float, float]] | None,
    zero: float | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Map (B, H, W) pixels to (B, H, W) uint8 with per-band (lo, hi) -> (0, 255).

    ``clip=None`` passes uint8 through and clips other dtypes to 0-255. uint8 and
    uint16 use a lookup table (fast), in which the value ``zero`` (a nodata value)
    maps to 0; other dtypes compute in float32. NaN -> 0. ``out``: an optional
    (B, H, W) uint8 array (any strides) to write into.
    """
    if out is None:
        out = np.empty(bands.shape, dtype=np.uint8)
    if clip is None:
        np.copyto(out, np.clip(np.nan_to_num(bands), 0, 255), casting="unsafe")
        return out
    if bands.dtype in (np.uint8, np.uint16):
        n = 256 if bands.dtype == np.uint8 else 65536
        z = None if zero is None or not float(zero).is_integer() else int(zero)
        for i, (lo, hi) in enumerate(clip):
            np.take(_lut(lo, hi, n, z), bands[i], out=out[i])
        return out
    for i, (lo, hi) in enumerate(clip):
        scaled = (bands[i].astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
        np.nan_to_num(scaled, copy=False, nan=0.0)
        np.clip(scaled + 0.5, 0, 255, out=scaled)
        np.copyto(out[i], scaled, casting="unsafe")
    return out
