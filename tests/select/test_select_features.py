"""image_stats_embedding: shape, scale, and whether it tells different chips apart."""

from __future__ import annotations

import numpy as np
import pytest

from geoal.errors import SelectionError
from geoal.select import (
    IMAGE_STATS_DIM,
    Budget,
    SelectionPool,
    image_stats_embedding,
    select_coreset,
)


def test_shape_dtype_and_scale() -> None:
    chip = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    e = image_stats_embedding(chip)
    assert e.shape == (IMAGE_STATS_DIM,) and e.dtype == np.float32
    assert (e >= 0).all() and (e <= 1).all()
    assert e[6:70].sum() == pytest.approx(1.0)


def test_flat_chip_has_no_contrast_or_texture() -> None:
    e = image_stats_embedding(np.full((32, 32, 3), 200, dtype=np.uint8))
    np.testing.assert_allclose(e[:3], 200 / 255, rtol=1e-6)
    assert e[3:6].max() == 0 and e[-2:].max() == 0
    assert image_stats_embedding(np.zeros((1, 1, 3), dtype=np.uint8))[-2:].max() == 0


def test_texture_raises_gradient_energy() -> None:
    checker = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)
    e = image_stats_embedding(np.repeat(checker[..., None], 3, axis=2))
    assert e[-2] > 0.5  # fine scale sees the checkerboard; the 4 x 4 blocks average it away
    assert e[-1] < 1e-6


@pytest.mark.parametrize(
    "chip",
    [
        np.zeros((8, 8), np.uint8),
        np.zeros((8, 8, 4), np.uint8),
        np.zeros((8, 8, 3)),
        np.zeros((0, 8, 3), np.uint8),
    ],
)
def test_bad_chip_raises(chip: np.ndarray) -> None:
    with pytest.raises(SelectionError):
        image_stats_embedding(chip)


def test_cold_start_coreset_picks_one_chip_of_each_kind() -> None:
    rng = np.random.default_rng(0)
    kinds = [(30, 90, 30), (200, 190, 170), (20, 40, 120)]  # forest, bare soil, water
    chips, kind = [], []
    for label, rgb in enumerate(kinds):
        for _ in range(20):
            noise = rng.integers(-10, 11, (32, 32, 3))
            chips.append(np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8))
            kind.append(label)
    emb = np.stack([image_stats_embedding(c) for c in chips])
    sel = select_coreset(SelectionPool(embeddings=emb), Budget(k=3), rng)
    assert sorted(np.array(kind)[sel.indices].tolist()) == [0, 1, 2]
