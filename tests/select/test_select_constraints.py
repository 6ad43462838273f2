"""Constraints hold for every strategy, and selections stop only when nothing else fits.

Brute force (all pairs, all candidates) is the reference: pools here are small.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoal.select import STRATEGIES, Budget, Constraints, Selection, SelectionPool, get_strategy


def _conflict(a: np.ndarray, b: np.ndarray, d: float) -> bool:
    dx = max(a[0] - b[2], b[0] - a[2])
    dy = max(a[1] - b[3], b[1] - a[3])
    return (dx < 0 and dy < 0) or math.hypot(max(dx, 0), max(dy, 0)) < d


def _check(pool: SelectionPool, budget: Budget, c: Constraints, sel: Selection, name: str) -> None:
    """Constraints hold, budget exact or never exceeded, and every left-out candidate is blocked."""
    idx = sel.indices.tolist()
    assert len(set(idx)) == len(idx)
    assert pool.bounds is not None and pool.groups is not None and pool.scores is not None
    assert pool.expected_objects is not None
    bounds, groups = pool.bounds, pool.groups
    if budget.k is not None:
        costs, capacity, unit = np.ones(pool.n), float(budget.k), 1.0
        quota = max(1, math.ceil(c.max_share * budget.k - 1e-9)) if c.max_share else math.inf
    else:
        assert budget.max_objects is not None
        costs = np.maximum(pool.expected_objects, budget.min_cost)
        capacity, unit = budget.max_objects, budget.min_cost
        quota = c.max_share * capacity if c.max_share else math.inf
    spent = float(costs[idx].sum())
    assert spent <= capacity + 1e-9
    assert math.isnan(sel.cost) or sel.cost == pytest.approx(
        float(np.maximum(pool.expected_objects[idx], budget.min_cost).sum())
    )
    taken: dict[int, float] = {}
    count: dict[int, int] = {}
    for i in idx:
        taken[int(groups[i])] = taken.get(int(groups[i]), 0.0) + costs[i]
        count[int(groups[i])] = count.get(int(groups[i]), 0) + 1
    for g, t in taken.items():
        assert count[g] == 1 or t <= quota + 1e-9, f"group {g} over its quota"
    if c.min_distance is not None:
        for a, i in enumerate(idx):
            for j in idx[a + 1 :]:
                if groups[i] == groups[j]:
                    assert not _conflict(bounds[i], bounds[j], c.min_distance), (i, j)
    # Maximal: no left-out candidate could still join.
    candidates = (
        range(pool.n)
        if name in ("random", "coreset", "typiclust")
        else np.flatnonzero(np.isfinite(pool.scores)).tolist()
    )
    left_out = set(candidates) - set(idx)
    if budget.k is not None:
        assert sel.complete == (len(idx) == budget.k)
    else:
        nothing_fits = all(spent + costs[i] > capacity for i in left_out)
        assert sel.complete == (capacity - spent < unit or (bool(left_out) and nothing_fits))
    for i in left_out:
        g = int(groups[i])
        blocked = (
            spent + costs[i] > capacity
            or (count.get(g, 0) > 0 and taken[g] + costs[i] > quota + 1e-9)
            or (
                c.min_distance is not None
                and any(
                    groups[j] == g and _conflict(bounds[i], bounds[j], c.min_distance) for j in idx
                )
            )
        )
        assert blocked, f"{name}: candidate {i} fits but was left out"


@st.composite
def problems(draw: st.DrawFn) -> tuple[SelectionPool, Budget, Constraints, int]:
    n = draw(st.integers(1, 40))
    ints = st.integers(0, 12)
    x0 = np.array(draw(st.lists(ints, min_size=n, max_size=n)), dtype=float)
    y0 = np.array(draw(st.lists(ints, min_size=n, max_size=n)), dtype=float)
    side = np.array(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), dtype=float)
    groups = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    scores[rng.random(n) < 0.2] = np.nan
    if np.isnan(scores).all():
        scores[0] = 0.5
    pool = SelectionPool(
        scores=scores,
        embeddings=rng.standard_normal((n, 3)),
        bounds=np.stack([x0, y0, x0 + side, y0 + side], axis=1),
        groups=groups,
        expected_objects=rng.integers(0, 6, n).astype(float),
        labelled_embeddings=rng.standard_normal((draw(st.integers(0, 2)), 3)),
    )
    if draw(st.booleans()):
        budget = Budget(k=draw(st.integers(1, 20)))
    else:
        budget = Budget(
            max_objects=draw(st.floats(0.5, 40.0)), min_cost=draw(st.sampled_from([0.5, 1.0]))
        )
    constraints = Constraints(
        min_distance=draw(st.sampled_from([None, 0.0, 0.5, 2.0, 3.7])),
        max_share=draw(st.sampled_from([None, 0.3, 0.5, 1.0])),
    )
    return pool, budget, constraints, seed


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@settings(max_examples=120, deadline=None)
@given(problem=problems())
def test_constraints_hold_and_selection_is_maximal(
    name: str, problem: tuple[SelectionPool, Budget, Constraints, int]
) -> None:
    pool, budget, constraints, seed = problem
    sel = get_strategy(name)(pool, budget, np.random.default_rng(seed), constraints)
    _check(pool, budget, constraints, sel, name)
    if not sel.complete:
        assert "refused" in sel.note


def test_adjacent_chip_grid_touching_allowed_overlap_not() -> None:
    # 10 x 10 grid of unit chips with stride 1 (touching) and stride 0.5 (overlapping).
    xs, ys = np.meshgrid(np.arange(10.0), np.arange(10.0))
    touching = np.stack([xs.ravel(), ys.ravel(), xs.ravel() + 1, ys.ravel() + 1], axis=1)
    pool = SelectionPool(scores=np.arange(100.0), bounds=touching)
    sel = get_strategy("uncertainty")(
        pool, Budget(k=100), np.random.default_rng(0), Constraints(min_distance=0.0)
    )
    assert len(sel) == 100 and sel.complete
    overlapping = touching * 0.5
    overlapping[:, 2:] += 0.5
    pool = SelectionPool(scores=np.arange(100.0), bounds=overlapping)
    sel = get_strategy("uncertainty")(
        pool, Budget(k=100), np.random.default_rng(0), Constraints(min_distance=0.0)
    )
    assert len(sel) == 25 and not sel.complete
    assert "25 of k=100" in sel.note


def test_groups_never_conflict_across_scenes() -> None:
    bounds = np.tile([[0.0, 0.0, 10.0, 10.0]], (4, 1))
    pool = SelectionPool(scores=np.arange(4.0), bounds=bounds, groups=[0, 1, 2, 3])
    sel = get_strategy("uncertainty")(
        pool, Budget(k=4), np.random.default_rng(0), Constraints(min_distance=5.0)
    )
    assert sorted(sel.indices.tolist()) == [0, 1, 2, 3]


def test_spatial_constraint_scales_to_many_chips() -> None:
    # 40,000 overlapping chips (stride half a chip) in 4 scenes; a k of 5,000 stays fast.
    rng = np.random.default_rng(0)
    n = 40_000
    slot = np.arange(n) // 4
    x, y = (slot % 100) * 128.0, (slot // 100) * 128.0
    pool = SelectionPool(
        scores=rng.random(n),
        bounds=np.stack([x, y, x + 256, y + 256], axis=1),
        groups=np.arange(n) % 4,
    )
    sel = get_strategy("uncertainty")(
        pool, Budget(k=5_000), rng, Constraints(min_distance=0.0, max_share=0.25)
    )
    assert len(sel) == 5_000
    assert np.bincount(pool.groups[sel.indices]).max() <= 1_250
