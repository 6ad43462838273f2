"""The pure view geometry: image transforms, point and box maps, the anchor permutation."""

from __future__ import annotations

import numpy as np
import pytest
from detect_fixtures import NUMPY_OPS, POINT_MAPS
from hypothesis import given, settings
from hypothesis import strategies as st

from geoal.detect.views import (
    MAX_VIEWS,
    VIEW_TRANSFORMS,
    anchor_centres,
    anchor_permutation,
    grid_shapes_for,
    inverse_transform,
    inverse_transform_boxes,
    inverse_transform_points,
    transform_image,
    transform_matrix,
    transform_points,
    view_names,
)

NON_IDENTITY = VIEW_TRANSFORMS[1:]
STRIDES = (8, 16, 32)


def test_view_order_is_fixed() -> None:
    assert VIEW_TRANSFORMS == (
        "identity",
        "hflip",
        "vflip",
        "rot90",
        "rot180",
        "rot270",
        "transpose",
        "antitranspose",
    )
    assert view_names(1) == ("identity",)
    assert view_names(3) == ("identity", "hflip", "vflip")
    for bad in (0, MAX_VIEWS + 1, 1.0, True):
        with pytest.raises(ValueError, match="views must be"):
            view_names(bad)  # type: ignore[arg-type]


def test_unknown_transform_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="hflip"):
        transform_matrix("shear")


@pytest.mark.parametrize("name", VIEW_TRANSFORMS)
def test_image_transform_is_the_documented_numpy_operation(name: str) -> None:
    image = np.arange(5 * 5 * 3).reshape(5, 5, 3)
    assert np.array_equal(transform_image(image, name), NUMPY_OPS[name](image))


@pytest.mark.parametrize("name", VIEW_TRANSFORMS)
@given(size=st.integers(1, 12))
@settings(max_examples=20, deadline=None)
def test_pixel_centres_move_as_the_point_map_says(name: str, size: int) -> None:
    """The value at original pixel centre p is found in the view at T(p), for every pixel."""
    image = np.arange(size * size).reshape(size, size)
    view = transform_image(image, name)
    rows, cols = np.mgrid[0:size, 0:size]
    centres = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], axis=1)
    moved = transform_points(centres, name, size)
    expected = np.array([POINT_MAPS[name](x, y, size) for x, y in centres])
    assert np.array_equal(moved, expected)
    at = np.floor(moved).astype(int)
    assert np.array_equal(view[at[:, 1], at[:, 0]], image.ravel())


@pytest.mark.parametrize("name", VIEW_TRANSFORMS)
def test_inverse_undoes_the_transform(name: str) -> None:
    image = np.random.default_rng(0).integers(0, 255, (7, 7, 3))
    inverse = inverse_transform(name)
    assert np.array_equal(transform_image(transform_image(image, name), inverse), image)
    points = np.random.default_rng(1).uniform(0, 7, (20, 2))
    back = inverse_transform_points(transform_points(points, name, 7), name, 7)
    assert np.allclose(back, points, atol=1e-12)
    assert inverse_transform("rot90") == "rot270"


@pytest.mark.parametrize("name", VIEW_TRANSFORMS)
def test_box_drawn_in_a_view_maps_back_to_the_original_box(name: str) -> None:
    size = 64
    image = np.zeros((size, size), dtype=np.uint8)
    x1, y1, x2, y2 = 5, 12, 30, 20  # pixel box [x1, x2) x [y1, y2)
    image[y1:y2, x1:x2] = 1
    view = transform_image(image, name)
    rows, cols = np.nonzero(view)
    seen = np.array([[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]], dtype=np.float32)
    back = inverse_transform_boxes(seen, name, size)
    assert back.dtype == np.float32
    assert np.array_equal(back, np.array([[x1, y1, x2, y2]], dtype=np.float32))


@given(
    boxes=st.lists(
        st.tuples(*[st.floats(0, 640, allow_nan=False, width=32)] * 4), min_size=0, max_size=8
    ),
    name=st.sampled_from(VIEW_TRANSFORMS),
)
@settings(max_examples=60, deadline=None)
def test_box_mapping_keeps_boxes_valid_and_sizes(
    boxes: list[tuple[float, float, float, float]], name: str
) -> None:
    array = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    array = np.concatenate(
        [np.minimum(array[:, :2], array[:, 2:]), np.maximum(array[:, :2], array[:, 2:])], 1
    )
    out = inverse_transform_boxes(array, name, 640)
    assert out.shape == array.shape
    assert (out[:, :2] <= out[:, 2:]).all()
    assert (out >= 0).all() and (out <= 640).all()
    # sides are kept (swapped by a quarter turn), up to float32 rounding near 640 px
    sides = np.sort(array[:, 2:] - array[:, :2], axis=1)
    assert np.allclose(np.sort(out[:, 2:] - out[:, :2], axis=1), sides, atol=1e-3)


def test_anchor_centres_follow_ultralytics_layout() -> None:
    """The layout assumed by the permutation is ultralytics' make_anchors (levels, then y, x)."""
    import torch
    from ultralytics.utils.tal import make_anchors

    for size in (64, 128, 160):
        grids = grid_shapes_for(size, STRIDES)
        feats = [torch.zeros(1, 1, h, w) for h, w in grids]
        points, strides = make_anchors(feats, torch.tensor(STRIDES, dtype=torch.float32), 0.5)
        expected = (points * strides).numpy().astype(np.float64)
        assert np.array_equal(anchor_centres(grids, STRIDES), expected)


GRID_CASES = [
    (size, strides)
    for size in (32, 64, 96, 128, 256, 640)
    for strides in (STRIDES, (4, 8, 16, 32), (8, 16, 32, 64))
    if size % max(strides) == 0
]


@pytest.mark.parametrize("name", VIEW_TRANSFORMS)
@pytest.mark.parametrize(("size", "strides"), GRID_CASES)
def test_anchor_permutation_is_exact(name: str, size: int, strides: tuple[int, ...]) -> None:
    """The view anchor that perm picks for original anchor a sits exactly at T(centre of a)."""
    grids = grid_shapes_for(size, strides)
    perm = anchor_permutation(grids, name)
    centres = anchor_centres(grids, strides)  # original grid == view grid (square chips)
    assert perm.dtype == np.int64
    assert np.array_equal(np.sort(perm), np.arange(len(centres)))
    levels = np.repeat(np.arange(len(grids)), [h * w for h, w in grids])
    assert np.array_equal(levels[perm], levels)  # never leaves its level
    assert np.array_equal(centres[perm], transform_points(centres, name, size))


@pytest.mark.parametrize("name", NON_IDENTITY)
def test_a_wrong_permutation_fails_the_exactness_check(name: str) -> None:
    """The check above is not vacuous: the identity and the inverse mapping fail it."""
    size = 128
    grids = grid_shapes_for(size, STRIDES)
    centres = anchor_centres(grids, STRIDES)
    target = transform_points(centres, name, size)
    assert not np.array_equal(centres, target)  # identity mapping
    wrong = anchor_permutation(grids, inverse_transform(name))
    if inverse_transform(name) != name:  # rot90 / rot270: mapping by T^-1 instead of T
        assert not np.array_equal(centres[wrong], target)


def test_permutation_moves_scores_onto_the_original_grid() -> None:
    """A score map drawn in the view's grid returns to the original grid through perm."""
    rng = np.random.default_rng(3)
    grids = grid_shapes_for(64, STRIDES)
    original = [rng.normal(size=(h, w)) for h, w in grids]  # a per-anchor score, per level
    for name in VIEW_TRANSFORMS:
        view_flat = np.concatenate([NUMPY_OPS[name](level).ravel() for level in original])
        perm = anchor_permutation(grids, name)
        assert np.array_equal(view_flat[perm], np.concatenate([a.ravel() for a in original]))


def test_grid_shapes_need_a_multiple_of_every_stride() -> None:
    assert grid_shapes_for(640, STRIDES) == ((80, 80), (40, 40), (20, 20))
    assert sum(h * w for h, w in grid_shapes_for(640, STRIDES)) == 8400
    with pytest.raises(ValueError, match="multiple"):
        grid_shapes_for(100, STRIDES)
