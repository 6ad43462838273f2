"""Cross-chip merging: symmetric (order-free), idempotent, class-aware, SAHI-like."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoal.predict.merge import MERGE_METHODS, candidate_pairs, merge_detections


def random_dets(seed: int, n: int, classes: int = 2, extent: float = 200.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(4, 40, (n, 2))
    score = np.round(rng.uniform(0.05, 1, n), 3)
    cls = rng.integers(0, classes, n)
    return np.column_stack([xy, xy + wh, score, cls])


def canon(dets: np.ndarray) -> np.ndarray:
    return dets[np.lexsort(dets[:, :6].T[::-1])]


def clustered_dets(seed: int, objects: int) -> np.ndarray:
    """Distinct objects, each seen by 1-4 overlapping chips: whole, or cut by a chip edge."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(objects):
        x, y = 80.0 * (k % 10), 80.0 * (k // 10)  # objects 40 px apart at least
        w, h = rng.uniform(10, 40, 2)
        cls = int(rng.integers(0, 2))
        for _ in range(int(rng.integers(1, 5))):
            jitter = rng.normal(0, 0.5, 4)
            cut = (
                rng.uniform(0.5, 1.0) if rng.random() < 0.4 else 1.0
            )  # a chip edge cuts the right side
            rows.append(
                [
                    x + jitter[0],
                    y + jitter[1],
                    x + w * cut + jitter[2],
                    y + h + jitter[3],
                    round(float(rng.uniform(0.3, 1)), 3),
                    cls,
                ]
            )
    return np.array(rows).reshape(-1, 6)


def merge_cases(most: int) -> Callable[[Callable[..., None]], Any]:
    """40 hypothesis cases: a seed, up to ``most`` objects or boxes, a merge method, a metric."""
    cases = given(
        seed=st.integers(0, 10_000),
        n=st.integers(0, most),
        method=st.sampled_from(MERGE_METHODS),
        metric=st.sampled_from(["iou", "ios"]),
    )
    return lambda test: settings(max_examples=40, deadline=None)(cases(test))


def merged_in_any_order(
    dets: np.ndarray, seed: int, method: str, metric: str, **kwargs: Any
) -> tuple[np.ndarray, list[list[int]]]:
    """``merge_detections`` of (N, 6) ``dets``, checked to give the same boxes shuffled."""
    once, groups = merge_detections(dets, method, metric, 0.5, **kwargs)
    perm = np.random.default_rng(seed + 1).permutation(len(dets))
    shuffled, _ = merge_detections(dets[perm], method, metric, 0.5, **kwargs)
    np.testing.assert_array_equal(canon(once), canon(shuffled))
    return once, groups


@merge_cases(40)
def test_symmetric_and_idempotent_on_objects_seen_by_several_chips(
    seed: int, n: int, method: str, metric: str
) -> None:
    dets = clustered_dets(seed, n)
    once, groups = merged_in_any_order(dets, seed, method, metric)
    if method == "nms" or metric == "ios":
        # with IoU a union box can cross the threshold against a borderline cut view
        twice, _ = merge_detections(once, method, metric, 0.5)
        np.testing.assert_array_equal(canon(once), canon(twice))
    assert sorted(i for g in groups for i in g) == list(range(len(dets)))
    if metric == "ios":
        assert (
            len(once) == n
        )  # each object once: a cut view lies inside the whole one (IoU may keep it)


@merge_cases(60)
def test_until_stable_is_idempotent_on_any_boxes(
    seed: int, n: int, method: str, metric: str
) -> None:
    once, groups = merged_in_any_order(
        random_dets(seed, n), seed, method, metric, until_stable=True
    )
    twice, _ = merge_detections(once, method, metric, 0.5, until_stable=True)
    np.testing.assert_array_equal(canon(once), canon(twice))
    assert sorted(i for g in groups for i in g) == list(range(n))
    if len(once):
        i, j = candidate_pairs(once[:, :4], metric, 0.5)
        assert np.all(once[i, 5] != once[j, 5]), "no two merged objects of one class still match"


def test_object_cut_by_chip_edge_is_reported_whole_once() -> None:
    whole = [100.0, 50.0, 140.0, 70.0, 0.9, 0]  # seen whole in the right chip
    cut = [100.0, 50.0, 128.0, 70.0, 0.8, 0]  # cut by the left chip's edge at x = 128
    other_class = [100.0, 50.0, 140.0, 70.0, 0.6, 1]
    dets = np.array([cut, whole, other_class])
    for method in ("greedy-nmm", "nmm"):
        merged, _ = merge_detections(dets, method, "ios", 0.5)
        assert merged[:, :5].tolist() == [whole[:5], other_class[:5]]
    nms, _ = merge_detections(dets, "nms", "ios", 0.5)
    assert nms[0, :4].tolist() == whole[:4] and len(nms) == 2
    iou, _ = merge_detections(dets, "nms", "iou", 0.8)  # IoU 0.7 < 0.8: both kept
    assert len(iou) == 3


def test_extra_columns_follow_the_best_box() -> None:
    dets = np.array([[0, 0, 10, 10, 0.5, 0, 7.0], [1, 1, 11, 11, 0.9, 0, 3.0]])
    merged, groups = merge_detections(dets, "greedy-nmm", "iou", 0.5)
    assert (
        merged.shape == (1, 7) and merged[0, 6] == 3.0 and merged[0, :4].tolist() == [0, 0, 11, 11]
    )
    assert groups == [[0, 1]]


def sahi_merge(dets: np.ndarray, method: str, metric: str) -> np.ndarray:
    """SAHI's whole postprocess (grouping, then the merge step) on (N, 6) detections."""
    from sahi.postprocess.combine import GreedyNMMPostprocess, NMSPostprocess
    from sahi.prediction import ObjectPrediction

    preds = [
        ObjectPrediction(
            bbox=row[:4].tolist(),
            category_id=int(row[5]),
            score=float(row[4]),
            category_name=str(int(row[5])),
            full_shape=[10_000, 10_000],
        )
        for row in dets
    ]
    post = {"greedy-nmm": GreedyNMMPostprocess, "nms": NMSPostprocess}[method]
    out = post(match_threshold=0.5, match_metric=metric.upper(), class_agnostic=False)(preds)
    rows = [[*p.bbox.to_xyxy(), p.score.value, p.category.id] for p in out]
    return np.array(rows, dtype=np.float64).reshape(-1, 6)


@pytest.mark.parametrize("method", ["greedy-nmm", "nms"])
@pytest.mark.parametrize("metric", ["ios", "iou"])
def test_equals_sahi_postprocess(method: str, metric: str) -> None:
    for seed in range(4):
        # SAHI clips boxes to x, y >= 0: keep them inside the image
        clustered = clustered_dets(seed, 30) + np.array([5.0, 5.0, 5.0, 5.0, 0.0, 0.0])
        for dets in (random_dets(seed, 300, extent=400), clustered):
            merged, groups = merge_detections(dets, method, metric, 0.5)
            np.testing.assert_allclose(canon(merged), canon(sahi_merge(dets, method, metric)))
            assert sorted(i for g in groups for i in g) == list(range(len(dets)))
    # until stable merges chains SAHI leaves apart: fewer, never more objects
    dets = random_dets(3, 300, extent=400)
    stable, _ = merge_detections(dets, method, metric, 0.5, until_stable=True)
    assert len(stable) <= len(sahi_merge(dets, method, metric))


def test_greedy_nmm_narrow_keeper_does_not_chain_two_objects() -> None:
    # The best box is a sliver at a chip edge (x = 1104-1152) inside two objects' boxes,
    # left (528-1152) and right (1024-1648): both match the sliver by IoS, but once the
    # left one has widened it, the right one no longer matches the union (IoS 0.2).
    sliver = [1104.0, 512.0, 1152.0, 1008.0, 0.94, 0]
    left = [528.0, 512.0, 1152.0, 1152.0, 0.93, 0]
    right = [1024.0, 512.0, 1648.0, 1152.0, 0.85, 0]
    dets = np.array([right, sliver, left])
    merged, groups = merge_detections(dets, "greedy-nmm", "ios", 0.5)
    # as SAHI: the right box is suppressed into the group, not unioned into a 1,120 px box
    assert merged.tolist() == [[528.0, 512.0, 1152.0, 1152.0, 0.94, 0]]
    assert groups == [[0, 1, 2]]
    np.testing.assert_array_equal(merged, sahi_merge(dets, "greedy-nmm", "ios"))
    # nmm (transitive) takes the union of the whole chain
    chained, _ = merge_detections(dets, "nmm", "ios", 0.5)
    assert chained[0, :4].tolist() == [528.0, 512.0, 1648.0, 1152.0]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="merge method"):
        merge_detections(np.zeros((1, 6)), "avg")
    with pytest.raises(ValueError, match="match metric"):
        merge_detections(random_dets(0, 5), "nms", "giou")
    assert merge_detections(np.zeros((0, 6)))[0].shape == (0, 6)
