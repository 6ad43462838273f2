"""Aggregation to a chip score: bounds, invariances, monotonicity and the MI-AOD case."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from geoal.uncertainty import (
    AGGREGATIONS,
    DEFAULT_AGGREGATION,
    DEFAULT_K,
    aggregate_all,
    anchor_uncertainty,
    expected_count,
    get_aggregation,
    list_aggregations,
    miaod,
    topk_mean,
)

NAMES = sorted(AGGREGATIONS)
WITHIN_RANGE = ["max", "mean", "topk_mean"]  # results lie in [min(values), max(values)]
MONOTONE = ["max", "mean", "miaod", "sum", "topk_mean"]
unit = st.floats(0.0, 1.0, allow_nan=False, allow_infinity=False)
ks = st.integers(1, 12)
N_ANCHORS = 8400  # YOLOv8 at 640 px


@st.composite
def chips(draw: st.DrawFn, min_size: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N,) values and (N,) weights in [0, 1], N in [min_size, 40]."""
    n = draw(st.integers(min_size, 40))
    values = draw(hnp.arrays(np.float64, n, elements=unit))
    weights = draw(hnp.arrays(np.float64, n, elements=unit))
    return values, weights


Chip = tuple[np.ndarray, np.ndarray]  # (N,) values, (N,) weights
# a non-empty chip, a k and a draw: the cases of the property tests that pick an element
non_empty_cases = given(chip=chips(min_size=1), k=ks, data=st.data())


@pytest.mark.parametrize("name", NAMES)
@settings(deadline=None)
@given(chip=chips(), k=ks)
def test_finite_and_within_bounds(name: str, chip: tuple[np.ndarray, np.ndarray], k: int) -> None:
    values, weights = chip
    out = AGGREGATIONS[name](values, weights, k)
    assert isinstance(out, float)
    assert np.isfinite(out)
    if len(values) == 0:
        assert out == 0.0
    elif name in WITHIN_RANGE:
        assert values.min() - 1e-12 <= out <= values.max() + 1e-12
    elif name == "miaod":
        assert 0.0 <= out <= topk_mean(values, None, k) + 1e-12
    else:
        assert 0.0 <= out <= len(values)


@pytest.mark.parametrize("name", NAMES)
@settings(deadline=None)
@non_empty_cases
def test_permutation_invariant(name: str, chip: Chip, k: int, data: st.DataObject) -> None:
    values, weights = chip
    order = np.array(data.draw(st.permutations(range(len(values)))), dtype=np.int64)
    fn = AGGREGATIONS[name]
    assert fn(values[order], weights[order], k) == pytest.approx(fn(values, weights, k), abs=1e-12)


@pytest.mark.parametrize("name", MONOTONE)
@settings(deadline=None)
@non_empty_cases
def test_raising_one_value_never_lowers_the_score(
    name: str, chip: Chip, k: int, data: st.DataObject
) -> None:
    values, weights = chip
    i = data.draw(st.integers(0, len(values) - 1))
    raised = values.copy()
    raised[i] = data.draw(st.floats(values[i], 1.0))
    fn = AGGREGATIONS[name]
    assert fn(raised, weights, k) >= fn(values, weights, k) - 1e-12


@settings(deadline=None)
@non_empty_cases
def test_raising_one_weight_never_lowers_miaod(chip: Chip, k: int, data: st.DataObject) -> None:
    values, weights = chip
    i = data.draw(st.integers(0, len(values) - 1))
    raised = weights.copy()
    raised[i] = data.draw(st.floats(weights[i], 1.0))
    assert miaod(values, raised, k) >= miaod(values, weights, k) - 1e-12


@settings(deadline=None)
@given(chip=chips(min_size=1))
def test_topk_mean_spans_max_to_mean_and_unit_weights_give_it(
    chip: tuple[np.ndarray, np.ndarray],
) -> None:
    values, _ = chip
    assert topk_mean(values, None, 1) == values.max()
    assert topk_mean(values, None, len(values)) == pytest.approx(values.mean(), abs=1e-12)
    assert miaod(values, None, 3) == topk_mean(values, None, 3)
    assert miaod(values, np.ones_like(values), 3) == pytest.approx(topk_mean(values, None, 3))


def _sea_and_whale(v_sea_max: float) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Two chips of 8400 anchors as (values, weights).

    The whale chip has one ambiguous anchor (objectness 0.5, uncertainty 0.3) in calm water
    (objectness 0.01-0.05, uncertainty 0.05-0.2). The empty sea chip has only background
    anchors (objectness 0.01-0.05) whose uncertainty, 0.3 to ``v_sea_max``, is as large as the
    whale's or larger.
    """
    rng = np.random.default_rng(7)
    whale_w = rng.uniform(0.01, 0.05, N_ANCHORS)
    whale_v = rng.uniform(0.05, 0.2, N_ANCHORS)
    whale_w[1234], whale_v[1234] = 0.5, 0.3
    sea = (rng.uniform(0.3, v_sea_max, N_ANCHORS), rng.uniform(0.01, 0.05, N_ANCHORS))
    return (whale_v, whale_w), sea


@pytest.mark.parametrize("v_sea_max", [0.3001, 0.6, 0.9])
def test_miaod_ranks_one_ambiguous_object_above_thousands_of_background_anchors(
    v_sea_max: float,
) -> None:
    whale, sea = _sea_and_whale(v_sea_max)
    for unweighted in ("mean", "sum", "topk_mean", "max"):
        assert AGGREGATIONS[unweighted](*sea, DEFAULT_K) > AGGREGATIONS[unweighted](
            *whale, DEFAULT_K
        )
    assert miaod(*whale) > miaod(*sea)
    assert get_aggregation(DEFAULT_AGGREGATION) is miaod


def test_chip_relative_weight_normalisations_would_rank_the_sea_first() -> None:
    # Why miaod keeps objectness on its absolute scale (see geoal.uncertainty.aggregate).
    whale, sea = _sea_and_whale(0.6)
    by_max = [topk_mean(v * w / w.max()) for v, w in (whale, sea)]
    weighted_mean = [float(np.average(v, weights=w)) for v, w in (whale, sea)]
    assert by_max[1] > by_max[0]
    assert weighted_mean[1] > weighted_mean[0]


def test_miaod_on_single_view_anchor_scores() -> None:
    # One view, two classes: faint near-uniform sea rows have the highest entropy of all.
    rng = np.random.default_rng(3)
    sea = rng.uniform(0.01, 0.05, (1, N_ANCHORS, 2))
    whale = np.tile([0.03, 0.002], (1, N_ANCHORS, 1))
    whale[0, 42] = [0.5, 0.2]
    sea_scores, whale_scores = anchor_uncertainty(sea), anchor_uncertainty(whale)
    assert topk_mean(sea_scores[0], None, N_ANCHORS) > topk_mean(whale_scores[0], None, N_ANCHORS)
    assert miaod(*whale_scores) > miaod(*sea_scores)


@pytest.mark.parametrize("name", NAMES)
def test_empty_chip_scores_zero(name: str) -> None:
    assert AGGREGATIONS[name](np.zeros(0), np.zeros(0), DEFAULT_K) == 0.0
    assert AGGREGATIONS[name](np.zeros(0), None, DEFAULT_K) == 0.0


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        topk_mean(np.ones(3), None, 0)
    with pytest.raises(ValueError, match="one shape"):
        miaod(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="1-D"):
        miaod(np.ones((3, 1)))


def test_aggregate_all_computes_every_registered_aggregation() -> None:
    values, weights = np.array([0.1, 0.9, 0.4, 0.6]), np.array([1.0, 0.1, 0.5, 0.5])
    out = aggregate_all(values, weights, 2)
    assert sorted(out) == list_aggregations()
    assert out == pytest.approx(
        {"max": 0.9, "mean": 0.5, "sum": 2.0, "topk_mean": 0.75, "miaod": 0.25}
    )


def test_expected_count() -> None:
    assert expected_count([0.5, 0.25, 0.25]) == 1.0
    assert expected_count(np.zeros(0)) == 0.0


def test_registry() -> None:
    assert list_aggregations() == ["max", "mean", "miaod", "sum", "topk_mean"]
    assert get_aggregation("topk_mean") is topk_mean
    with pytest.raises(ValueError, match="unknown aggregation 'median'") as err:
        get_aggregation("median")
    for name in NAMES:
        assert name in str(err.value)


def test_chip_objectness_ranks_a_faint_object_above_background_without_a_threshold() -> None:
    """A weak model: no anchor passes a 0.05 threshold, yet the object's anchors stand out."""
    from geoal.uncertainty import chip_objectness

    rng = np.random.default_rng(0)
    background = rng.uniform(0.0, 0.005, 8400)
    with_object = background.copy()
    with_object[[100, 101, 102]] = [0.03, 0.02, 0.025]
    assert chip_objectness(with_object) > 4 * chip_objectness(background)
    assert chip_objectness(with_object) == pytest.approx(0.025)  # top-3 mean
    assert chip_objectness(np.zeros(0)) == 0.0
