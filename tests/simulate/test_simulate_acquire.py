"""Budgets and the oracle (pure): cumulative exact image budgets, box budgets, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoal.errors import ConfigError
from geoal.simulate import Features, acquire, budget_targets, buy_until, initial_set


def _features(n: int, seed: int = 0) -> Features:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return Features(scores=rng.random(n), embeddings=emb, expected=rng.random(n) * 5)


def test_budget_targets_are_cumulative_rounded_counts() -> None:
    assert budget_targets((0.05, 0.10, 0.15, 0.20, 0.30), 454).tolist() == [23, 45, 68, 91, 136]
    assert budget_targets((0.25, 0.5), 12).tolist() == [3, 6]
    with pytest.raises(ConfigError, match="each round must add at least one"):
        budget_targets((0.05, 0.06), 12)


@given(
    n=st.integers(2, 500),
    fractions=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=6, unique=True),
)
def test_budget_targets_are_increasing_and_within_the_pool(n: int, fractions: list[float]) -> None:
    fractions = sorted(fractions)
    try:
        targets = budget_targets(tuple(fractions), n)
    except ConfigError:
        return
    assert (np.diff(targets) > 0).all() and targets[0] >= 1 and targets[-1] <= n


@settings(max_examples=60)
@given(
    counts=st.lists(st.integers(0, 9), min_size=1, max_size=40),
    need=st.integers(0, 60),
    seed=st.integers(0, 100),
)
def test_buy_until_is_the_shortest_prefix_reaching_the_need(
    counts: list[int], need: int, seed: int
) -> None:
    c = np.array(counts)
    order = np.random.default_rng(seed).permutation(len(c))
    bought = buy_until(order, c, need)
    assert bought.tolist() == order[: len(bought)].tolist()
    if need <= 0:
        assert len(bought) == 0
    elif c.sum() >= need:
        assert c[bought].sum() >= need and c[bought[:-1]].sum() < need
    else:
        assert len(bought) == len(c)


def test_initial_set_is_the_same_for_a_seed_and_exact() -> None:
    counts = np.arange(20) % 4
    a = initial_set(20, 5, counts, "images", seed=3)
    assert a.tolist() == initial_set(20, 5, counts, "images", seed=3).tolist()
    assert len(a) == 5 == len(set(a.tolist()))
    assert a.tolist() != initial_set(20, 5, counts, "images", seed=4).tolist()
    boxes = initial_set(20, 10, counts, "boxes", seed=3)
    assert counts[boxes].sum() >= 10 > counts[boxes[:-1]].sum()


@pytest.mark.parametrize("strategy", ["random", "uncertainty", "coreset", "hybrid"])
def test_image_budgets_are_exact_and_new(strategy: str) -> None:
    n, counts = 50, np.full(50, 3)
    labelled = np.arange(0, 50, 7)
    feats = None if strategy == "random" else _features(n)
    picked = acquire(strategy, feats, labelled, 9, counts, "images", np.random.default_rng(0))
    assert len(picked) == 9 == len(set(picked.tolist()))
    assert not set(picked.tolist()) & set(labelled.tolist())


def test_random_arm_is_reproducible_per_seed() -> None:
    counts, labelled = np.ones(40, dtype=np.int64), np.arange(4)

    def pick(seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        first = acquire("random", None, labelled, 5, counts, "images", rng)
        second = acquire("random", None, np.r_[labelled, first], 5, counts, "images", rng)
        return [*first.tolist(), *second.tolist()]

    assert pick(1) == pick(1)
    assert pick(1) != pick(2)


@pytest.mark.parametrize("strategy", ["random", "hybrid"])
def test_box_budgets_charge_true_counts(strategy: str) -> None:
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 12, size=60)
    labelled = np.arange(5)
    feats = None if strategy == "random" else _features(60)
    picked = acquire(strategy, feats, labelled, 40, counts, "boxes", np.random.default_rng(0))
    assert counts[picked].sum() >= 40
    assert counts[picked[:-1]].sum() < 40  # stops at the image that reaches the budget
    assert not set(picked.tolist()) & set(labelled.tolist())


def test_box_budget_larger_than_the_pool_takes_everything() -> None:
    counts = np.full(10, 2)
    picked = acquire("random", None, np.arange(2), 1000, counts, "boxes", np.random.default_rng(0))
    assert sorted(picked.tolist()) == list(range(2, 10))
