"""The chip grid: full-size chips, exact coverage, configured overlap."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from hypothesis import given
from hypothesis import strategies as st

from geoal.errors import ConfigError
from geoal.raster.grid import (
    axis_offsets,
    chip_grid,
    valid_fractions,
    window_bounds,
    window_corners,
)


@given(
    length=st.integers(1, 5000),
    size=st.integers(16, 1024),
    overlap=st.floats(0.0, 0.9),
)
def test_axis_offsets_cover_the_axis_with_full_chips(
    length: int, size: int, overlap: float
) -> None:
    offs = axis_offsets(length, size, overlap)
    assert offs[0] == 0
    assert np.all(np.diff(offs) > 0)
    if length <= size:
        assert offs.tolist() == [0]
        return
    assert offs[-1] == length - size  # last chip shifted inward, full size
    assert np.all(offs + size <= length)
    # consecutive chips overlap by at least the configured amount, never leave a gap
    gaps = offs[1:] - (offs[:-1] + size)
    assert np.all(gaps <= -round(size * overlap) + 0) or overlap == 0
    assert np.all(gaps <= 0)


def test_chip_grid_union_is_the_scene_and_overlap_holds() -> None:
    grid = chip_grid(1000, 700, 256, 0.2)
    cover = np.zeros((700, 1000), dtype=np.int32)
    for col, row, w, h in grid:
        assert (w, h) == (256, 256)
        cover[row : row + h, col : col + w] += 1
    assert cover.min() >= 1  # union == scene
    # neighbours in the first row share at least 20 % of a chip
    first_row = np.sort(grid[grid[:, 1] == 0][:, 0])
    assert np.all(first_row[:-1] + 256 - first_row[1:] >= round(256 * 0.2))


def test_small_scene_gives_one_padded_chip() -> None:
    assert chip_grid(100, 50, 256, 0.2).tolist() == [[0, 0, 256, 256]]


def test_bad_grid_arguments() -> None:
    with pytest.raises(ConfigError, match="overlap"):
        axis_offsets(100, 10, 1.0)
    with pytest.raises(ConfigError, match="size"):
        axis_offsets(100, 0, 0.1)


def test_window_bounds_match_corners_and_rotation() -> None:
    t = Affine(0.5, 0.1, 1000.0, 0.05, -0.5, 2000.0)  # rotated / sheared
    windows = np.array([[0, 0, 10, 10], [5, 7, 20, 3]])
    corners = window_corners(t, windows)
    for i, (col, row, w, h) in enumerate(windows):
        expected = [t @ (col, row), t @ (col + w, row), t @ (col + w, row + h), t @ (col, row + h)]
        np.testing.assert_allclose(corners[i], expected)
    b = window_bounds(t, windows)
    np.testing.assert_allclose(b[:, 0], corners[:, :, 0].min(1))
    np.testing.assert_allclose(b[:, 3], corners[:, :, 1].max(1))


def test_valid_fractions_from_a_decimated_mask() -> None:
    mask = np.ones((50, 100), dtype=bool)
    mask[:, :25] = False  # left quarter invalid (at half resolution of a 200 x 100 scene)
    windows = np.array([[0, 0, 50, 50], [100, 0, 50, 50], [25, 0, 50, 50], [180, 80, 64, 64]])
    frac = valid_fractions(mask, windows, 200, 100)
    np.testing.assert_allclose(frac, [0.0, 1.0, 0.5, 1.0])
