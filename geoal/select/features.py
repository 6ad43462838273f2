"""Model-free chip embeddings for a cold start (coreset before any detector exists)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from geoal.errors import SelectionError

_LEVELS = 4  # colour histogram levels per channel: 4 ** 3 = 64 joint bins
_COARSE = 4  # block size of the coarse scale of the gradient energy

IMAGE_STATS_DIM = 3 + 3 + _LEVELS**3 + 2


def image_stats_embedding(chip: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """(IMAGE_STATS_DIM,) = (72,) float32 summary of one (H, W, 3) uint8 chip, every entry 0-1.

    Blocks: per-channel mean / 255 (3), per-channel std / 127.5 (3), joint RGB histogram of
    4 levels per channel as fractions of the pixels (64, sums to 1), and the RMS grey-level
    gradient at full resolution and at 1/4 resolution, / (255 * sqrt(2)) (2). Every block is
    on a 0-1 scale, so Euclidean distances weigh colour, contrast and texture alike.
    """
    arr = np.asarray(chip)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise SelectionError(
            f"image_stats_embedding wants an (H, W, 3) uint8 chip, got {arr.shape} {arr.dtype}: "
            "stretch the chip to 8-bit RGB first"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise SelectionError(f"image_stats_embedding got an empty chip of shape {arr.shape}")
    pixels = arr.reshape(-1, 3).astype(np.float64)
    mean = pixels.mean(axis=0) / 255.0
    std = pixels.std(axis=0) / 127.5
    q = (arr >> (8 - 2)).astype(np.int64)  # 0-255 -> 0-3
    codes = (q[..., 0] * _LEVELS + q[..., 1]) * _LEVELS + q[..., 2]
    hist = np.bincount(codes.ravel(), minlength=_LEVELS**3) / codes.size
    grey = pixels.mean(axis=1).reshape(arr.shape[:2])
    h, w = (s - s % _COARSE for s in grey.shape)
    coarse = grey[:h, :w].reshape(h // _COARSE, _COARSE, w // _COARSE, _COARSE).mean(axis=(1, 3))
    energy = [_gradient_rms(grey), _gradient_rms(coarse)]
    out = np.concatenate([mean, std, hist, energy])
    return out.astype(np.float32)


def _gradient_rms(grey: npt.NDArray[np.float64]) -> float:
    """RMS gradient magnitude of a 0-255 grey image, scaled to 0-1; 0 when too small."""
    if grey.shape[0] < 2 or grey.shape[1] < 2:
        return 0.0
    gx = np.diff(grey, axis=1)[:-1, :]
    gy = np.diff(grey, axis=0)[:, :-1]
    return float(np.sqrt(np.mean(gx**2 + gy**2)) / (255.0 * np.sqrt(2.0)))
