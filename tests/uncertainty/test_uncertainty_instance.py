"""Instance uncertainty: bounds, known values, edge cases and the registry."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from geoal.uncertainty import (
    INSTANCE_UNCERTAINTY,
    entropy,
    get_instance_uncertainty,
    least_confidence,
    list_instance_uncertainty,
    margin,
    ratio,
)

NAMES = sorted(INSTANCE_UNCERTAINTY)
unit = st.floats(0.0, 1.0, allow_nan=False, allow_infinity=False)


@st.composite
def score_matrices(draw: st.DrawFn, min_rows: int = 0) -> np.ndarray:
    """(N, C) class scores in [0, 1], N in [min_rows, 20], C in [1, 6]."""
    n = draw(st.integers(min_rows, 20))
    c = draw(st.integers(1, 6))
    return draw(hnp.arrays(np.float64, (n, c), elements=unit))


@pytest.mark.parametrize("name", NAMES)
@settings(deadline=None)
@given(probs=score_matrices())
def test_bounds_and_shape(name: str, probs: np.ndarray) -> None:
    out = INSTANCE_UNCERTAINTY[name](probs)
    assert out.shape == (len(probs),)
    assert out.dtype == np.float64
    assert np.all((out >= 0.0) & (out <= 1.0))


@pytest.mark.parametrize("name", NAMES)
@settings(deadline=None)
@given(probs=score_matrices(min_rows=1), data=st.data())
def test_rows_and_classes_can_be_reordered(
    name: str, probs: np.ndarray, data: st.DataObject
) -> None:
    fn = INSTANCE_UNCERTAINTY[name]
    rows = np.array(data.draw(st.permutations(range(len(probs)))))
    cols = np.array(data.draw(st.permutations(range(probs.shape[1]))))
    np.testing.assert_allclose(fn(probs[rows][:, cols]), fn(probs)[rows], atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_empty_input_gives_empty_output(name: str) -> None:
    out = INSTANCE_UNCERTAINTY[name](np.zeros((0, 3)))
    assert out.shape == (0,)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(3,), (2, 0), (1, 2, 3)])
def test_bad_shapes_raise(name: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="probs"):
        INSTANCE_UNCERTAINTY[name](np.zeros(shape))


def test_known_values() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(least_confidence(probs), [0.3, 0.6, 0.0])
    np.testing.assert_allclose(margin(probs), [0.5, 1.0, 0.0])
    np.testing.assert_allclose(ratio(probs), [0.2 / 0.7, 1.0, 0.0])
    assert entropy(probs)[2] == pytest.approx(0.0, abs=1e-9)


def test_entropy_normalises_independent_sigmoid_scores() -> None:
    # Rows need not sum to 1: equal scores are a uniform distribution whatever their level.
    probs = np.array([[0.02, 0.02, 0.02, 0.02], [0.9, 0.9, 0.9, 0.9], [0.6, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(entropy(probs), [1.0, 1.0, 0.0], atol=1e-9)


def test_one_class_is_handled() -> None:
    probs = np.array([[0.0], [0.5], [0.9], [1.0]])
    np.testing.assert_allclose(entropy(probs)[[0, 1, 3]], [0.0, 1.0, 0.0], atol=1e-12)
    assert 0.0 < entropy(probs)[2] < 1.0
    np.testing.assert_allclose(margin(probs), least_confidence(probs))
    np.testing.assert_allclose(ratio(probs), 0.0)


def test_all_zero_row() -> None:
    probs = np.zeros((1, 3))
    assert entropy(probs)[0] == 0.0
    assert ratio(probs)[0] == 1.0  # a tie between every class
    assert margin(probs)[0] == 1.0


def test_registry() -> None:
    assert list_instance_uncertainty() == ["entropy", "least_confidence", "margin", "ratio"]
    assert get_instance_uncertainty("margin") is margin
    with pytest.raises(ValueError, match="unknown instance uncertainty 'bald'") as err:
        get_instance_uncertainty("bald")
    for name in NAMES:
        assert name in str(err.value)
