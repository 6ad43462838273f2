"""The adaptive strategy: its schedule, its exploration share, budgets and constraints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from geoal.errors import SelectionError
from geoal.select import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    STRATEGY_INFO,
    Budget,
    Constraints,
    SelectionPool,
    get_strategy,
    strategy_score,
)

adaptive = get_strategy("adaptive")


def _pool(quality: float | None, n: int = 400, seed: int = 0) -> SelectionPool:
    """Scores and expected objects that disagree: the top by each are disjoint halves."""
    rng = np.random.default_rng(seed)
    expected = np.zeros(n)
    expected[: n // 4] = rng.uniform(1, 5, n // 4)  # the model sees objects in a quarter
    scores = np.zeros(n)
    scores[n // 4 : n // 2] = rng.uniform(0.5, 1, n // 4)  # it doubts another quarter
    return SelectionPool(
        scores=scores,
        embeddings=rng.standard_normal((n, 8)).astype(np.float32),
        expected_objects=expected,
        labelled_embeddings=rng.standard_normal((5, 8)).astype(np.float32),
        quality=quality,
    )


def test_the_registry_knows_it_and_it_is_the_default() -> None:
    assert DEFAULT_STRATEGY == "adaptive" and "adaptive" in STRATEGIES
    assert set(STRATEGY_INFO) == set(STRATEGIES)
    assert strategy_score("adaptive") == "calibrated" and strategy_score("hybrid") == "aggregation"
    assert STRATEGY_INFO["adaptive"].cold_fallback == "typiclust"


def test_a_weak_model_ranks_by_expected_objects_a_fitted_one_by_scores() -> None:
    n = 400
    for quality, lo, hi in ((0.1, 0, n // 4), (None, 0, n // 4), (0.8, n // 4, n // 2)):
        sel = adaptive(_pool(quality), Budget(k=20), np.random.default_rng(0))
        assert len(sel) == 20 and sel.complete
        main = sel.indices[:16]  # 1 - explore_share of 20
        assert ((main >= lo) & (main < hi)).all(), (quality, main)


def test_a_weak_model_ranks_by_objectness_when_its_detections_are_empty() -> None:
    """Survey case: nothing passes the detection threshold, yet anchors rank the chips."""
    n = 400
    rng = np.random.default_rng(1)
    objectness = rng.uniform(0.0, 0.01, n)
    objectness[300:] += 0.02  # the chips where objects are: faint, but above the rest
    base = _pool(0.1)
    pool = SelectionPool(
        scores=base.scores,
        embeddings=base.embeddings,
        expected_objects=np.zeros(n),  # no detection above the threshold anywhere
        labelled_embeddings=base.labelled_embeddings,
        quality=0.1,
        objectness=objectness,
    )
    sel = adaptive(pool, Budget(k=20), np.random.default_rng(0))
    assert (sel.indices[:16] >= 300).all(), sel.indices[:16]
    assert "objectness" in sel.note
    older = objectness.copy()
    older[:100] = np.nan  # a quarter scored before objectness was stored: one ranking for all
    sel = adaptive(
        dataclasses.replace(pool, objectness=older), Budget(k=20), rng=np.random.default_rng(0)
    )
    assert "expected objects" in sel.note
    fitted = dataclasses.replace(pool, quality=0.8)
    sel = adaptive(fitted, Budget(k=20), np.random.default_rng(0))
    main = sel.indices[:16]
    assert ((main >= n // 4) & (main < n // 2)).all(), main  # fitted: by scores again


def test_objectness_must_be_a_probability_per_chip() -> None:
    SelectionPool(scores=np.zeros(2), objectness=np.array([0.5, np.nan]))  # NaN: not scored
    with pytest.raises(SelectionError, match="objectness must be in"):
        SelectionPool(scores=np.zeros(3), objectness=np.array([0.1, 1.5, 0.2]))
    with pytest.raises(SelectionError, match="disagree on N"):
        SelectionPool(scores=np.zeros(3), objectness=np.zeros(4))


def test_the_exploration_share_goes_where_the_model_sees_nothing() -> None:
    pool = _pool(0.8)
    sel = adaptive(pool, Budget(k=20), np.random.default_rng(0))
    explore = sel.indices[16:]
    assert len(explore) == 4
    assert (pool.expected_objects[explore] < 0.5).all()
    none = adaptive(pool, Budget(k=20), np.random.default_rng(0), explore_share=0.0)
    assert len(none) == 20 and (none.indices < 400 // 2).all()


def test_deterministic_for_a_generator_and_picks_are_distinct() -> None:
    a = adaptive(_pool(0.8), Budget(k=30), np.random.default_rng(3))
    b = adaptive(_pool(0.8), Budget(k=30), np.random.default_rng(3))
    assert a.indices.tolist() == b.indices.tolist()
    assert len(set(a.indices.tolist())) == 30


def test_objects_budget_is_never_exceeded() -> None:
    pool = _pool(0.8)
    sel = adaptive(pool, Budget(max_objects=25), np.random.default_rng(0))
    assert 0 < sel.cost <= 25


def test_spatial_constraint_holds_across_its_parts() -> None:
    n = 400
    pool = _pool(0.8, n)
    # chips on a line, 10 units wide, touching: min_distance 15 forbids neighbours
    x = np.arange(n, dtype=float) * 10
    bounds = np.stack([x, np.zeros(n), x + 10, np.full(n, 10.0)], axis=1)
    pool = SelectionPool(
        scores=pool.scores,
        embeddings=pool.embeddings,
        expected_objects=pool.expected_objects,
        bounds=bounds,
        quality=0.8,
    )
    sel = adaptive(pool, Budget(k=40), np.random.default_rng(0), Constraints(min_distance=15))
    picked = np.sort(sel.indices)
    assert (np.diff(picked) >= 3).all()


def test_a_small_pool_is_filled_and_bad_options_refused() -> None:
    pool = _pool(0.8, n=12)
    sel = adaptive(pool, Budget(k=12), np.random.default_rng(0))
    assert sorted(sel.indices.tolist()) == list(range(12))
    with pytest.raises(SelectionError, match="explore_share"):
        adaptive(pool, Budget(k=2), np.random.default_rng(0), explore_share=1.0)
    bare = SelectionPool(embeddings=pool.embeddings)
    with pytest.raises(SelectionError, match="expected objects or scores"):
        adaptive(bare, Budget(k=2), np.random.default_rng(0))
    with pytest.raises(SelectionError, match="quality"):
        SelectionPool(scores=np.zeros(3), quality=1.5)
