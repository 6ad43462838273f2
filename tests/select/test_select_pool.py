"""Validation of pools, budgets and constraints: misuse raises SelectionError."""

from __future__ import annotations

import numpy as np
import pytest

from geoal.errors import SelectionError
from geoal.select import (
    Budget,
    Constraints,
    SelectionPool,
    boxes_conflict,
    select_coreset,
    select_hybrid,
    select_random,
    select_uncertainty,
)

RNG = np.random.default_rng(0)


def test_pool_converts_dtypes_and_counts_chips() -> None:
    pool = SelectionPool(
        scores=[0.1, 0.2, np.nan],
        embeddings=np.ones((3, 2), dtype=np.float64),
        bounds=[[0, 0, 1, 1]] * 3,
        groups=np.array([0, 0, 1], dtype=np.int32),
        expected_objects=[0, 1, 2],
    )
    assert pool.n == 3
    assert pool.embeddings is not None and pool.embeddings.dtype == np.float32
    assert pool.groups is not None and pool.groups.dtype == np.int64


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"scores": np.zeros(3), "embeddings": np.zeros((4, 2))},
        {"scores": np.zeros((3, 1))},
        {"scores": [0.1, np.inf]},
        {"embeddings": [[0.0, np.nan]]},
        {"bounds": [[0, 0, 1]]},
        {"bounds": [[1, 0, 0, 1]]},
        {"groups": [0.5, 1.0]},
        {"expected_objects": [-1.0]},
        {"expected_objects": [np.nan]},
        {"embeddings": np.zeros((2, 3)), "labelled_embeddings": np.zeros((1, 4))},
    ],
)
def test_bad_pool_raises(kwargs: dict) -> None:
    with pytest.raises(SelectionError):
        SelectionPool(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"k": 2, "max_objects": 3.0},
        {"k": 0},
        {"k": 2.5},
        {"max_objects": 0.0},
        {"k": 1, "min_cost": 0},
    ],
)
def test_bad_budget_raises(kwargs: dict) -> None:
    with pytest.raises(SelectionError):
        Budget(**kwargs)


@pytest.mark.parametrize("kwargs", [{"min_distance": -1.0}, {"max_share": 0.0}, {"max_share": 1.5}])
def test_bad_constraints_raise(kwargs: dict) -> None:
    with pytest.raises(SelectionError):
        Constraints(**kwargs)


def test_missing_inputs_raise() -> None:
    scored = SelectionPool(scores=np.ones(4))
    with pytest.raises(SelectionError, match="expected_objects"):
        select_random(scored, Budget(max_objects=3.0), RNG)
    with pytest.raises(SelectionError, match="bounds"):
        select_random(scored, Budget(k=2), RNG, Constraints(min_distance=0.0))
    with pytest.raises(SelectionError, match="embeddings"):
        select_coreset(scored, Budget(k=2), RNG)
    unscored = SelectionPool(scores=np.full(4, np.nan), embeddings=np.ones((4, 2)))
    for strategy in (select_uncertainty, select_hybrid):
        with pytest.raises(SelectionError, match="cold start"):
            strategy(unscored, Budget(k=2), RNG)
    with pytest.raises(SelectionError, match="pool_factor"):
        select_hybrid(scored, Budget(k=2), RNG, pool_factor=0.5)


@pytest.mark.parametrize(
    ("b", "d", "conflict"),
    [
        ([1, 0, 2, 1], 0.0, False),  # shares an edge
        ([1, 1, 2, 2], 0.0, False),  # shares a corner
        ([0.5, 0, 2, 1], 0.0, True),  # overlaps
        ([0.2, 0.2, 0.8, 0.8], 0.0, True),  # inside
        ([1, 0, 2, 1], 0.1, True),  # touching is closer than 0.1
        ([3, 0, 4, 1], 2.0, False),  # gap exactly 2
        ([2.9, 0, 4, 1], 2.0, True),
        ([2, 2, 3, 3], 1.5, True),  # diagonal gap sqrt(2) < 1.5
        ([2, 2, 3, 3], 1.4, False),
    ],
)
def test_boxes_conflict(b: list[float], d: float, conflict: bool) -> None:
    a = [0, 0, 1, 1]
    assert boxes_conflict(a, b, d) is conflict
    assert boxes_conflict(b, a, d) is conflict
