"""Two-view discrepancy, objectness, the per-chip anchor uncertainty and box instability."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from geoal.uncertainty import (
    anchor_discrepancy,
    anchor_uncertainty,
    box_instability,
    entropy,
    multi_view_discrepancy,
    objectness,
)

unit = st.floats(0.0, 1.0, allow_nan=False, allow_infinity=False)


@st.composite
def view_stacks(draw: st.DrawFn, min_views: int = 1) -> np.ndarray:
    """(V, A, C) class scores in [0, 1], V in [min_views, 4], A in [0, 15], C in [1, 5]."""
    shape = (draw(st.integers(min_views, 4)), draw(st.integers(0, 15)), draw(st.integers(1, 5)))
    return draw(hnp.arrays(np.float64, shape, elements=unit))


@st.composite
def boxes(draw: st.DrawFn, n: int) -> np.ndarray:
    """(n, 4) xyxy boxes with positive width and height, in a 0-640 px chip."""
    xy = draw(hnp.arrays(np.float64, (n, 2), elements=st.floats(0.0, 600.0)))
    wh = draw(hnp.arrays(np.float64, (n, 2), elements=st.floats(1.0, 40.0)))
    return np.concatenate([xy, xy + wh], axis=1)


@settings(deadline=None)
@given(p=view_stacks(min_views=2))
def test_discrepancy_is_symmetric_bounded_and_zero_for_identical_views(p: np.ndarray) -> None:
    d = anchor_discrepancy(p[0], p[1])
    assert d.shape == (p.shape[1],)
    assert np.all((d >= 0.0) & (d <= 1.0))
    np.testing.assert_array_equal(d, anchor_discrepancy(p[1], p[0]))
    np.testing.assert_array_equal(anchor_discrepancy(p[0], p[0]), 0.0)
    np.testing.assert_allclose(multi_view_discrepancy(np.stack([p[0]] * 3)), 0.0, atol=1e-15)


@settings(deadline=None)
@given(p=view_stacks(min_views=2))
def test_multi_view_discrepancy_is_the_mean_over_pairs(p: np.ndarray) -> None:
    pairs = [anchor_discrepancy(p[i], p[j]) for i, j in combinations(range(len(p)), 2)]
    d = multi_view_discrepancy(p)
    np.testing.assert_allclose(d, np.mean(pairs, axis=0), atol=1e-12)
    assert np.all((d >= 0.0) & (d <= 1.0 + 1e-12))


@settings(deadline=None)
@given(p=view_stacks())
def test_objectness_is_max_class_of_the_view_mean(p: np.ndarray) -> None:
    o = objectness(p)
    assert o.shape == (p.shape[1],)
    np.testing.assert_allclose(o, p.mean(axis=0).max(axis=1, initial=0.0), atol=1e-12)
    assert np.all((o >= 0.0) & (o <= 1.0))


@settings(deadline=None)
@given(p=view_stacks())
def test_anchor_uncertainty_switches_on_the_number_of_views(p: np.ndarray) -> None:
    values, weights = anchor_uncertainty(p)
    if len(p) == 1:
        np.testing.assert_array_equal(values, entropy(p[0]))
        np.testing.assert_array_equal(weights, p[0].max(axis=1, initial=0.0))
    else:
        np.testing.assert_array_equal(values, multi_view_discrepancy(p))
        np.testing.assert_array_equal(weights, objectness(p))


def test_bad_view_shapes_raise() -> None:
    with pytest.raises(ValueError, match="V >= 2"):
        multi_view_discrepancy(np.zeros((1, 4, 2)))
    with pytest.raises(ValueError, match="3-D"):
        anchor_uncertainty(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="one"):
        anchor_discrepancy(np.zeros((4, 2)), np.zeros((4, 3)))


@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 8), m=st.integers(0, 8))
def test_box_instability_bounds_and_order_of_the_other_view(
    data: st.DataObject, n: int, m: int
) -> None:
    b1, b2 = data.draw(boxes(n)), data.draw(boxes(m))
    c1 = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, 2)))
    c2 = data.draw(hnp.arrays(np.int64, m, elements=st.integers(0, 2)))
    out = box_instability(b1, b2, c1, c2)
    assert out.shape == (n,)
    assert np.all((out >= 0.0) & (out <= 1.0))
    order = np.array(data.draw(st.permutations(range(m))), dtype=np.int64)
    np.testing.assert_array_equal(box_instability(b1, b2[order], c1, c2[order]), out)


@settings(deadline=None)
@given(data=st.data(), n=st.integers(1, 8))
def test_box_instability_identical_boxes_are_stable(data: st.DataObject, n: int) -> None:
    b = data.draw(boxes(n))
    c = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, 2)))
    np.testing.assert_allclose(box_instability(b, b, c, c), 0.0, atol=1e-12)


def test_box_instability_known_cases() -> None:
    b1 = np.array([[0.0, 0.0, 2.0, 2.0], [10.0, 10.0, 12.0, 12.0], [20.0, 20.0, 22.0, 22.0]])
    b2 = np.array([[1.0, 0.0, 3.0, 2.0], [10.0, 10.0, 12.0, 12.0], [50.0, 50.0, 52.0, 52.0]])
    # half-overlap (IoU 1/3), identical box of another class, disjoint box
    out = box_instability(b1, b2, [0, 0, 1], [0, 1, 1])
    np.testing.assert_allclose(out, [2.0 / 3.0, 1.0, 1.0])
    np.testing.assert_array_equal(box_instability(b1, np.zeros((0, 4)), [0, 0, 1], []), 1.0)
    assert box_instability(np.zeros((0, 4)), b2, [], [0, 1, 1]).shape == (0,)
    with pytest.raises(ValueError, match="class id"):
        box_instability(b1, b2, [0, 0], [0, 1, 1])
