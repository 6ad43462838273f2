"""Label-preserving views of a square chip and the exact maps back to the original.

Pure numpy, no torch: the geometry that test-time views need.

Overhead imagery has no "up", so the eight symmetries of the square (the dihedral
group D4) all preserve labels. They are applied in this fixed order; ``views=V``
means the first V of them:

====  ===============  ==================================  =========================
 v    name             array operation on (H, W, ...)      pixel (x, y) goes to
====  ===============  ==================================  =========================
 0    identity         ``a``                               (x, y)
 1    hflip            ``a[:, ::-1]``                      (S - x, y)
 2    vflip            ``a[::-1, :]``                      (x, S - y)
 3    rot90            ``np.rot90(a, 1)`` (counter-clock)  (y, S - x)
 4    rot180           ``np.rot90(a, 2)``                  (S - x, S - y)
 5    rot270           ``np.rot90(a, 3)`` (clockwise)      (S - y, x)
 6    transpose        ``a.swapaxes(0, 1)``                (y, x)
 7    antitranspose    ``np.rot90(a, 2).swapaxes(0, 1)``   (S - y, S - x)
====  ===============  ==================================  =========================

Coordinates are continuous pixel coordinates of a square of side S (pixel
(col, row) covers [col, col + 1) x [row, row + 1)), so pixel centres, anchor
centres and box corners all map exactly, with no half-pixel shifts.

Each transform is stored once, as (swap axes?, flip rows?, flip columns?) applied
in that order; the image operation, the point map, the box map and the anchor
permutation are all derived from that triple.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class ViewOps(NamedTuple):
    """A view as array operations: swap the two spatial axes, then flip rows, then columns."""

    swap: bool
    flip_rows: bool
    flip_cols: bool


VIEW_OPS: dict[str, ViewOps] = {
    "identity": ViewOps(False, False, False),
    "hflip": ViewOps(False, False, True),
    "vflip": ViewOps(False, True, False),
    "rot90": ViewOps(True, True, False),
    "rot180": ViewOps(False, True, True),
    "rot270": ViewOps(True, False, True),
    "transpose": ViewOps(True, False, False),
    "antitranspose": ViewOps(True, True, True),
}

VIEW_TRANSFORMS: tuple[str, ...] = tuple(VIEW_OPS)
"""The view order: ``views=V`` runs the first V of these (view 0 is the chip itself)."""

MAX_VIEWS = len(VIEW_TRANSFORMS)


def get_view_ops(transform: str) -> ViewOps:
    """The (swap, flip_rows, flip_cols) triple of a view; ValueError lists the valid names."""
    try:
        return VIEW_OPS[transform]
    except KeyError:
        raise ValueError(
            f"unknown view transform {transform!r}; valid: {', '.join(VIEW_TRANSFORMS)}"
        ) from None


def view_names(views: int) -> tuple[str, ...]:
    """The names of the first ``views`` transforms; ValueError unless 1 <= views <= 8."""
    if isinstance(views, bool) or not isinstance(views, int) or not 1 <= views <= MAX_VIEWS:
        raise ValueError(f"views must be an int from 1 to {MAX_VIEWS}, got {views!r}")
    return VIEW_TRANSFORMS[:views]


def inverse_transform(transform: str) -> str:
    """The view that undoes ``transform``: rot90 <-> rot270; the others undo themselves."""
    matrix = transform_matrix(transform)
    for name in VIEW_TRANSFORMS:
        if np.array_equal(transform_matrix(name), matrix.T):
            return name
    raise AssertionError(f"D4 is closed under inversion; no inverse for {transform}")  # unreachable


def transform_matrix(transform: str) -> np.ndarray:
    """(2, 2) int64 signed permutation M with (x', y') - c = M @ ((x, y) - c), c the chip centre."""
    ops = get_view_ops(transform)
    m = np.array([[0, 1], [1, 0]] if ops.swap else [[1, 0], [0, 1]], dtype=np.int64)
    flips = np.diag([-1 if ops.flip_cols else 1, -1 if ops.flip_rows else 1]).astype(np.int64)
    return flips @ m


def transform_image(image: np.ndarray, transform: str) -> np.ndarray:
    """The view of one (H, W, ...) image: a numpy view, no copy. Swapping views need H == W."""
    return transform_axes(image, transform, rows=0, cols=1)


def transform_axes(array: np.ndarray, transform: str, rows: int, cols: int) -> np.ndarray:
    """Apply a view to the (rows, cols) axes of any array, e.g. rows=1, cols=2 for (B, H, W, 3)."""
    ops = get_view_ops(transform)
    if ops.swap:
        if array.shape[rows] != array.shape[cols]:
            raise ValueError(f"{transform} needs a square image, got shape {array.shape}")
        array = np.swapaxes(array, rows, cols)
    if ops.flip_rows:
        array = np.flip(array, axis=rows)
    if ops.flip_cols:
        array = np.flip(array, axis=cols)
    return array


def transform_points(points: np.ndarray, transform: str, size: float) -> np.ndarray:
    """Map (N, 2) float (x, y) points of a chip of side ``size`` pixels into the view."""
    centre = size / 2.0
    matrix = transform_matrix(transform).astype(np.float64)
    return (np.asarray(points, dtype=np.float64) - centre) @ matrix.T + centre


def inverse_transform_points(points: np.ndarray, transform: str, size: float) -> np.ndarray:
    """Map (N, 2) (x, y) points of the view back to the original chip (side ``size``)."""
    centre = size / 2.0
    matrix = transform_matrix(transform).astype(np.float64)
    # M is orthogonal, so M^-1 = M^T, and row vectors times M apply M^T.
    return (np.asarray(points, dtype=np.float64) - centre) @ matrix + centre


def inverse_transform_boxes(boxes: np.ndarray, transform: str, size: float) -> np.ndarray:
    """Map (N, 4) xyxy boxes in view pixels back to (N, 4) xyxy boxes in original chip pixels."""
    boxes = np.asarray(boxes)
    dtype = boxes.dtype if boxes.dtype.kind == "f" else np.dtype(np.float32)
    # (N, 2, 2): the two corners (x1, y1), (x2, y2) of each box, mapped; then re-sorted.
    corners = inverse_transform_points(boxes.reshape(-1, 2), transform, size).reshape(-1, 2, 2)
    return np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1).astype(dtype)


def grid_shapes_for(size: int, strides: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """(rows, cols) of each detection level's anchor grid for a square input of ``size`` pixels."""
    shapes = []
    for stride in strides:
        if size % stride:
            raise ValueError(f"input size {size} is not a multiple of stride {stride}")
        shapes.append((size // stride, size // stride))
    return tuple(shapes)


def anchor_centres(grid_shapes: Sequence[tuple[int, int]], strides: Sequence[int]) -> np.ndarray:
    """(A, 2) float64 (x, y) anchor centres in input pixels, in the YOLO head's order.

    Levels are concatenated in order; within a level anchors run row-major over
    (y, x), centre ((x + 0.5) * stride, (y + 0.5) * stride), as ultralytics'
    ``make_anchors`` lays them out.
    """
    out = []
    for (rows, cols), stride in zip(grid_shapes, strides, strict=True):
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        out.append(np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1) * stride)
    return np.concatenate(out, axis=0) if out else np.zeros((0, 2))


def anchor_permutation(grid_shapes: Sequence[tuple[int, int]], transform: str) -> np.ndarray:
    """(A,) int64 ``perm``: ``view_scores[perm]`` is a view's anchor output on the original grid.

    ``grid_shapes`` is the (rows, cols) of each level, in head order. Original
    anchor ``a`` at (level, y, x) sees the ground that the view shows at
    T(y, x) on the same level, so ``perm[a]`` is the index of that view anchor:
    for a view's (A, C) scores ``s``, ``s[perm][a]`` is the view's score for the
    ground under original anchor ``a``. Exact: cell centres of a square grid map
    onto cell centres.
    """
    parts = []
    offset = 0
    for rows, cols in grid_shapes:
        index = np.arange(rows * cols, dtype=np.int64).reshape(rows, cols)
        # view_index[y', x'] is the flat index of view anchor (y', x'); pulling it back
        # through the inverse array operation gives, at (y, x), the view anchor at T(y, x).
        mapped = _inverse_array_op(index, transform)
        parts.append(mapped.ravel() + offset)
        offset += rows * cols
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _inverse_array_op(array: np.ndarray, transform: str) -> np.ndarray:
    """Apply T^-1 to the first two axes of ``array`` (so that out[y, x] = array[T(y, x)])."""
    return transform_image(array, inverse_transform(transform))
