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
def _lut(lo: float, hi: float, n: int) -> np.ndarray:
    x = np.arange(n, dtype=np.float64)
    return np.clip((x - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


def apply_stretch(bands: np.ndarray, clip: Sequence[tuple[float, float]] | None) -> np.ndarray:
    """Map (B, H, W) pixels to (B, H, W) uint8 with per-band (lo, hi) -> (0, 255).

    ``clip=None`` passes uint8 through and clips other dtypes to 0-255. uint8 and
    uint16 use a lookup table (fast); other dtypes compute in float32. NaN -> 0.
    """
    if clip is None:
        if bands.dtype == np.uint8:
            return bands
        return np.clip(np.nan_to_num(bands), 0, 255).astype(np.uint8)
    out = np.empty(bands.shape, dtype=np.uint8)
    if bands.dtype in (np.uint8, np.uint16):
        n = 256 if bands.dtype == np.uint8 else 65536
        for i, (lo, hi) in enumerate(clip):
            np.take(_lut(lo, hi, n), bands[i], out=out[i])
        return out
    for i, (lo, hi) in enumerate(clip):
        scaled = (bands[i].astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
        np.nan_to_num(scaled, copy=False, nan=0.0)
        np.clip(scaled + 0.5, 0, 255, out=scaled)
        out[i] = scaled.astype(np.uint8)
    return out
