"""TypiClust: k-means, typicality and the order of picks (geoal.select.typiclust)."""

from __future__ import annotations

import numpy as np
import pytest

from geoal.select import Budget, Constraints, SelectionPool, get_strategy
from geoal.select.typiclust import kmeans, typicality, typiclust_order


def blobs(sizes: list[int], seed: int = 0, d: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), d)) * 20
    x = np.concatenate([c + rng.normal(size=(n, d)) for c, n in zip(centres, sizes, strict=True)])
    truth = np.repeat(np.arange(len(sizes)), sizes)
    return x.astype(np.float32), truth


@pytest.mark.parametrize("fit_sample", [False, True])
def test_kmeans_recovers_separated_blobs(fit_sample: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if fit_sample:  # fit on a sample, assign every row
        monkeypatch.setattr("geoal.select.typiclust.FIT_ROWS_PER_CLUSTER", 8)
    x, truth = blobs([60, 50, 40, 30])
    labels, centres = kmeans(x, 4, np.random.default_rng(0))
    assert centres.shape == (4, 8)
    for t in range(4):  # each true blob is one cluster, and the clusters are distinct
        assert len(np.unique(labels[truth == t])) == 1
    assert len(np.unique(labels)) == 4


def test_typicality_is_highest_in_dense_regions() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(50, 4)), [[30.0, 30.0, 30.0, 30.0]]]).astype(np.float32)
    t = typicality(x, rng)
    assert t.shape == (51,) and t[-1] < t[:-1].min()
    assert typicality(x[:1], rng).tolist() == [0.0]


def test_order_takes_the_typical_point_of_each_uncovered_cluster_first() -> None:
    x, truth = blobs([60, 50, 40, 30])
    labelled = x[:1]  # blob 0 is covered; with 3 to pick: 1 + 3 clusters, one per blob
    cand = np.arange(1, len(x))
    order, typ = typiclust_order(x[cand], labelled, 3, np.random.default_rng(1))
    assert sorted(order.tolist()) == list(range(len(cand)))  # every candidate once
    first = truth[cand[order[:3]]]
    assert sorted(first.tolist()) == [1, 2, 3]  # the three uncovered blobs, largest first
    assert first.tolist() == [1, 2, 3]
    for t, i in zip(first.tolist(), order[:3].tolist(), strict=True):
        members = np.flatnonzero(truth[cand] == t)
        assert typ[list(order).index(i)] == pytest.approx(
            typicality(x[cand[members]], np.random.default_rng(0)).max()
        )


def test_strategy_budget_constraints_and_seed() -> None:
    x, _ = blobs([40, 40, 40], d=16)
    bounds = np.column_stack(
        [np.arange(120) * 10.0, np.zeros(120), np.arange(120) * 10.0 + 5, np.ones(120)]
    )
    pool = SelectionPool(embeddings=x, bounds=bounds)
    strategy = get_strategy("typiclust")
    a = strategy(pool, Budget(k=7), np.random.default_rng(3), Constraints(min_distance=0.0))
    b = strategy(pool, Budget(k=7), np.random.default_rng(3), Constraints(min_distance=0.0))
    assert len(a.indices) == 7 == len(set(a.indices.tolist())) and a.complete
    np.testing.assert_array_equal(a.indices, b.indices)
    assert np.all(a.reasons > 0)  # typicality
    objects = strategy(
        SelectionPool(embeddings=x, expected_objects=np.full(120, 2.0)),
        Budget(max_objects=10),
        np.random.default_rng(0),
    )
    assert len(objects.indices) == 5
