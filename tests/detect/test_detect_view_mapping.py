"""Exactness of the view mapping with a real (random) YOLO.

"A T-symmetric image gives zero discrepancy" holds only for a T-equivariant
network; a random YOLO is not one (asymmetric kernels, stride-2 sampling on an
even grid), so after an exact mapping its views of a symmetric image still
disagree. What an exact mapping does guarantee, for any network, is this: when
two views show the network the same pixels in the same orientation, their
mapped outputs agree exactly. So the test puts chip I and J = T(I) in one batch
and runs every view. J's view T^-1 is the tensor T^-1(T(I)) == I, bit for bit,
so its mapped scores must equal I's own (view 0) scores carried onto J's grid
-- carried by a reference mapping built here from numpy's named operations
(np.rot90, np.fliplr, ...), not from geoal.detect.views. The same check with
the identity mapping, or with T where T^-1 is needed, must fail, and does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from detect_fixtures import CHIP, NUMPY_OPS, POINT_MAPS

from geoal.detect import VIEW_TRANSFORMS, ChipResult

STRIDES = (8, 16, 32)
INVERSE = {name: name for name in VIEW_TRANSFORMS} | {"rot90": "rot270", "rot270": "rot90"}
NON_IDENTITY = VIEW_TRANSFORMS[1:]


def reference_anchor_map(name: str, size: int = CHIP) -> np.ndarray:
    """(A,) for each anchor of T(I)'s grid, the anchor of I's grid over the same ground.

    Draw I's anchor numbers as an image, one per level, and apply the view's
    numpy operation to it: cell q of the result shows the number of I's anchor
    whose ground the view puts at q.
    """
    parts, offset = [], 0
    for stride in STRIDES:
        g = size // stride
        numbers = np.arange(g * g).reshape(g, g) + offset
        parts.append(NUMPY_OPS[name](numbers).ravel())
        offset += g * g
    return np.concatenate(parts)


def map_boxes(boxes: np.ndarray, name: str, size: int = CHIP) -> np.ndarray:
    """(N, 4) xyxy boxes of a chip into the view ``name``, corner by corner."""
    out = []
    for x1, y1, x2, y2 in boxes.astype(np.float64):
        (ax, ay), (bx, by) = POINT_MAPS[name](x1, y1, size), POINT_MAPS[name](x2, y2, size)
        out.append([min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)])
    return np.array(out).reshape(-1, 4)


@pytest.fixture(scope="module")
def pairs(detector: Any, chips: np.ndarray) -> tuple[ChipResult, dict[str, ChipResult]]:
    """Chip I and every T(I), all eight views of each, in one predict_batch call."""
    image = chips[0]
    batch = np.stack([image] + [NUMPY_OPS[name](image) for name in NON_IDENTITY])
    results = detector.predict_batch(batch, views=len(VIEW_TRANSFORMS), conf=0.5)
    return results[0], dict(zip(NON_IDENTITY, results[1:], strict=True))


def discrepancy(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


@pytest.mark.parametrize("name", NON_IDENTITY)
def test_same_pixels_give_zero_discrepancy_after_mapping(
    pairs: tuple[ChipResult, dict[str, ChipResult]], name: str
) -> None:
    original, transformed = pairs
    view = VIEW_TRANSFORMS.index(INVERSE[name])  # the view of T(I) that shows I again
    mapped = transformed[name].anchor_probs[view]  # (A, C) on T(I)'s grid
    expected = original.anchor_probs[0][reference_anchor_map(name)]
    assert discrepancy(mapped, expected) < 1e-5


@pytest.mark.parametrize("name", NON_IDENTITY)
def test_wrong_mappings_give_a_large_discrepancy(
    pairs: tuple[ChipResult, dict[str, ChipResult]], name: str
) -> None:
    """The check above is sharp: the identity mapping, or T for T^-1, fails it."""
    original, transformed = pairs
    view = VIEW_TRANSFORMS.index(INVERSE[name])
    expected = original.anchor_probs[0][reference_anchor_map(name)]
    unmapped = original.anchor_probs[0]  # what an identity mapping would report
    assert discrepancy(unmapped, expected) > 0.05
    # Carrying J's view by T(...) instead of T^-1(...): differs for rot90 / rot270.
    if INVERSE[name] != name:
        backwards = original.anchor_probs[0][reference_anchor_map(INVERSE[name])]
        assert discrepancy(backwards, expected) > 0.05
        assert discrepancy(transformed[name].anchor_probs[view], backwards) > 0.05


def test_all_views_of_one_chip_are_mapped_onto_its_grid(
    pairs: tuple[ChipResult, dict[str, ChipResult]],
) -> None:
    """Each view v of I was computed on T_v(I), the chip the batch holds as T_v(I) itself."""
    original, transformed = pairs
    for v, name in enumerate(VIEW_TRANSFORMS[1:], start=1):
        raw_view = transformed[name].anchor_probs[0]  # T_v(I) on its own grid, unmapped
        # I's anchor a sees the ground T_v(I) shows at the cell whose reference entry is a.
        expected = np.empty_like(raw_view)
        expected[reference_anchor_map(name)] = raw_view
        assert discrepancy(original.anchor_probs[v], expected) < 1e-5


@pytest.mark.parametrize("name", NON_IDENTITY)
def test_view_boxes_map_back_exactly(
    pairs: tuple[ChipResult, dict[str, ChipResult]], name: str
) -> None:
    """T(I)'s view T^-1 detects on I; mapped back into T(I) they are T(I's boxes)."""
    original, transformed = pairs
    k = VIEW_TRANSFORMS.index(INVERSE[name]) - 1  # view_boxes leaves out view 0
    result = transformed[name]
    assert len(original) > 0
    np.testing.assert_allclose(result.view_conf[k], original.conf, atol=1e-5)
    assert np.array_equal(result.view_cls[k], original.cls)
    np.testing.assert_allclose(result.view_boxes[k], map_boxes(original.boxes, name), atol=1e-3)
