"""What each strategy picks: top-k, coverage, determinism, budgets, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoal.select import (
    STRATEGIES,
    Budget,
    Constraints,
    SelectionPool,
    get_strategy,
    select_coreset,
    select_hybrid,
    select_random,
    select_uncertainty,
)


def _pool(n: int = 200, d: int = 8, seed: int = 0) -> SelectionPool:
    rng = np.random.default_rng(seed)
    return SelectionPool(
        scores=rng.random(n),
        embeddings=rng.standard_normal((n, d)),
        expected_objects=rng.integers(0, 8, n).astype(float),
    )


def _clusters(seed: int) -> np.ndarray:
    """(~700, 6) points in 10 tight clusters of very unequal sizes."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-50, 50, (10, 6))
    sizes = [400, 150, 60, 30, 20, 10, 10, 5, 5, 3]
    return np.concatenate(
        [c + rng.standard_normal((s, 6)) for c, s in zip(centres, sizes, strict=True)]
    )


def _radius(x: np.ndarray, picked: np.ndarray, of: np.ndarray | None = None) -> float:
    """Largest distance from any point of ``x`` to its nearest picked row of ``of`` (or x)."""
    of = x if of is None else of
    d = np.linalg.norm(x[:, None, :] - of[None, picked, :], axis=2)
    return float(d.min(axis=1).max())


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_same_seed_same_result(name: str) -> None:
    pool = _pool()
    c = Constraints(max_share=1.0)
    a = get_strategy(name)(pool, Budget(k=20), np.random.default_rng(7), c)
    b = get_strategy(name)(pool, Budget(k=20), np.random.default_rng(7), c)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.reasons, b.reasons)


def test_random_differs_across_seeds() -> None:
    pool = _pool()
    picks = {
        tuple(select_random(pool, Budget(k=10), np.random.default_rng(s)).indices) for s in range(5)
    }
    assert len(picks) == 5


@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 60))
@settings(max_examples=50, deadline=None)
def test_uncertainty_returns_the_true_top_k(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.random(50)
    scores[rng.random(50) < 0.3] = np.nan
    sel = select_uncertainty(SelectionPool(scores=scores), Budget(k=k), rng)
    finite = np.flatnonzero(np.isfinite(scores))
    expected = finite[np.argsort(-scores[finite])][:k]
    np.testing.assert_array_equal(sel.indices, expected)
    np.testing.assert_array_equal(sel.reasons, scores[expected])
    assert sel.complete == (k <= len(finite))


def test_uncertainty_ties_are_broken_by_the_rng() -> None:
    pool = SelectionPool(scores=np.ones(100))
    picks = [
        select_uncertainty(pool, Budget(k=5), np.random.default_rng(s)).indices for s in (1, 1, 2)
    ]
    np.testing.assert_array_equal(picks[0], picks[1])
    assert not np.array_equal(picks[0], picks[2])


@pytest.mark.parametrize("name", ["uncertainty", "hybrid"])
@pytest.mark.parametrize("seed", range(5))
def test_nan_scores_are_never_selected(name: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.random(300)
    scores[rng.random(300) < 0.5] = np.nan
    pool = SelectionPool(scores=scores, embeddings=rng.standard_normal((300, 4)))
    for budget in (Budget(k=200), Budget(k=20)):
        sel = get_strategy(name)(pool, budget, rng)
        assert np.isfinite(scores[sel.indices]).all()
    assert len(get_strategy(name)(pool, Budget(k=300), rng)) == np.isfinite(scores).sum()


@pytest.mark.parametrize("seed", range(5))
def test_coreset_covers_the_space_better_than_random(seed: int) -> None:
    x = _clusters(seed)
    pool = SelectionPool(embeddings=x)
    cor = select_coreset(pool, Budget(k=10), np.random.default_rng(seed))
    rnd = select_random(pool, Budget(k=10), np.random.default_rng(seed))
    assert _radius(x, cor.indices) < _radius(x, rnd.indices)
    assert _radius(x, cor.indices) < 10  # one pick in every cluster


def _naive_k_center(x: np.ndarray, seeds: np.ndarray, k: int) -> list[int]:
    near = np.linalg.norm(x[:, None] - seeds[None], axis=2).min(axis=1)
    picked: list[int] = []
    for _ in range(k):
        j = int(np.argmax(near))
        picked.append(j)
        near = np.minimum(near, np.linalg.norm(x - x[j], axis=1))
    return picked


@pytest.mark.parametrize(("seed", "n"), [(0, 300), (1, 300), (2, 5000), (3, 5000)])
def test_coreset_matches_naive_k_center_from_labelled(seed: int, n: int) -> None:
    # 5,000 rows span several lazily updated blocks.
    rng = np.random.default_rng(seed)
    x, lab = rng.standard_normal((n, 5)), rng.standard_normal((7, 5))
    pool = SelectionPool(embeddings=x, labelled_embeddings=lab)
    sel = select_coreset(pool, Budget(k=40), rng)
    assert sel.indices.tolist() == _naive_k_center(x, lab, 40)
    # Each reason is the pick's distance to the nearest earlier centre: non-increasing.
    assert np.all(np.diff(sel.reasons) <= 1e-5)


def test_coreset_first_pick_is_random_without_labelled() -> None:
    pool = _pool()
    firsts = {
        int(select_coreset(pool, Budget(k=2), np.random.default_rng(s)).indices[0])
        for s in range(6)
    }
    assert len(firsts) > 1
    assert np.isnan(select_coreset(pool, Budget(k=2), np.random.default_rng(0)).reasons[0])


def test_hybrid_picks_diverse_chips_among_the_most_uncertain() -> None:
    rng = np.random.default_rng(0)
    n, k = 1000, 10
    x = _clusters(0)[:n]
    scores = rng.random(len(x))
    pool = SelectionPool(scores=scores, embeddings=x)
    sel = select_hybrid(pool, Budget(k=k), rng, pool_factor=5)
    top = np.argsort(-scores)[: 5 * k]
    assert set(sel.indices.tolist()) <= set(top.tolist())
    assert sel.indices[0] == top[0]  # no labelled chips: starts from the most uncertain
    np.testing.assert_array_equal(sel.reasons, scores[sel.indices])
    # Covers the top of the pool better than plain top-k does.
    plain = select_uncertainty(pool, Budget(k=k), rng)
    assert _radius(x[top], sel.indices, x) < _radius(x[top], plain.indices, x)


def test_hybrid_objects_budget_draws_from_the_top_by_cost() -> None:
    pool = _pool(n=300)
    assert pool.scores is not None and pool.expected_objects is not None
    sel = select_hybrid(pool, Budget(max_objects=30.0), np.random.default_rng(0), pool_factor=3)
    order = np.argsort(-pool.scores)
    reach = np.cumsum(np.maximum(pool.expected_objects[order], 1.0))
    top = order[: np.searchsorted(reach, 90.0) + 1]
    assert set(sel.indices.tolist()) <= set(top.tolist())
    assert sel.cost <= 30.0 and sel.complete


def test_hybrid_with_pool_factor_one_is_uncertainty() -> None:
    pool = _pool()
    a = select_hybrid(pool, Budget(k=15), np.random.default_rng(3), pool_factor=1)
    b = select_uncertainty(pool, Budget(k=15), np.random.default_rng(3))
    assert sorted(a.indices.tolist()) == sorted(b.indices.tolist())


def test_hybrid_without_embeddings_warns_and_falls_back() -> None:
    scores = np.random.default_rng(0).random(50)
    pool = SelectionPool(scores=scores)
    with pytest.warns(UserWarning, match="fell back to uncertainty"):
        sel = select_hybrid(pool, Budget(k=5), np.random.default_rng(0))
    np.testing.assert_array_equal(sel.indices, np.argsort(-scores)[:5])
    assert "fell back" in sel.note and sel.complete


def test_hybrid_fills_in_below_the_top_when_constraints_bite() -> None:
    # The 10 best chips all sit on one spot; only one of them may be taken.
    n = 40
    bounds = np.array([[i * 10.0, 0, i * 10.0 + 5, 5] for i in range(n)])
    bounds[:10] = [0, 0, 5, 5]
    scores = np.linspace(1, 0, n)
    pool = SelectionPool(scores=scores, embeddings=np.eye(n), bounds=bounds)
    sel = select_hybrid(
        pool, Budget(k=4), np.random.default_rng(0), Constraints(min_distance=0.0), pool_factor=2
    )
    assert len(sel) == 4 and sel.complete
    assert "filled in score order" in sel.note
    assert sel.indices.tolist()[1:] == [10, 11, 12]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_k_budget_is_exact_or_says_why(name: str) -> None:
    pool = _pool(n=30)
    assert len(get_strategy(name)(pool, Budget(k=30), np.random.default_rng(0))) == 30
    sel = get_strategy(name)(pool, Budget(k=31), np.random.default_rng(0))
    assert len(sel) == 30 and not sel.complete
    assert "30 of k=31" in sel.note and "from 30 candidates" in sel.note


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("max_objects", [0.5, 1.0, 7.5, 40.0, 1e9])
def test_objects_budget_is_never_exceeded(name: str, max_objects: float) -> None:
    pool = _pool(n=100)
    budget = Budget(max_objects=max_objects, min_cost=1.0)
    sel = get_strategy(name)(pool, budget, np.random.default_rng(0))
    assert pool.expected_objects is not None
    costs = np.maximum(pool.expected_objects[sel.indices], 1.0)
    assert costs.sum() <= max_objects
    assert sel.cost == pytest.approx(costs.sum())
    if max_objects < 1e9:
        assert sel.complete
    else:  # min_cost keeps even zero-object chips finite in number; the pool runs out first
        assert len(sel) == 100 and not sel.complete and "from 100 candidates" in sel.note


def test_zero_object_chips_cost_min_cost() -> None:
    pool = SelectionPool(scores=np.arange(10.0), expected_objects=np.zeros(10))
    sel = select_uncertainty(pool, Budget(max_objects=3.0, min_cost=1.0), np.random.default_rng(0))
    assert sel.indices.tolist() == [9, 8, 7] and sel.cost == 3.0
    sel = select_uncertainty(pool, Budget(max_objects=3.0, min_cost=0.5), np.random.default_rng(0))
    assert len(sel) == 6


def test_objects_budget_skips_a_chip_too_expensive_for_what_is_left() -> None:
    pool = SelectionPool(scores=[3.0, 2.0, 1.0], expected_objects=[4.0, 9.0, 5.0])
    sel = select_uncertainty(pool, Budget(max_objects=10.0), np.random.default_rng(0))
    assert sel.indices.tolist() == [0, 2] and sel.cost == 9.0


def test_coreset_constraints_hold_on_a_pool_of_many_blocks() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    xy = rng.uniform(0, 2000, (n, 2))
    bounds = np.concatenate([xy, xy + 10], axis=1)
    pool = SelectionPool(embeddings=rng.standard_normal((n, 16)), bounds=bounds)
    c = Constraints(min_distance=30.0)
    sel = select_coreset(pool, Budget(k=3000), rng, c)
    b = bounds[sel.indices]
    gap = (
        np.maximum(
            np.maximum(b[:, None, 0] - b[None, :, 2], b[None, :, 0] - b[:, None, 2]),
            0,
        )
        ** 2
        + np.maximum(np.maximum(b[:, None, 1] - b[None, :, 3], b[None, :, 1] - b[:, None, 3]), 0)
        ** 2
    )
    np.fill_diagonal(gap, np.inf)
    assert gap.min() >= 30.0**2
    assert not sel.complete and "refused by the spatial constraint" in sel.note
