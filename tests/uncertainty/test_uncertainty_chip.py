"""One chip's scores from the detector's arrays: aggregations, box instability, per detection."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from geoal.uncertainty import (
    INSTANCE_UNCERTAINTY,
    aggregate_all,
    anchor_uncertainty,
    chip_objectness,
    list_aggregations,
    score_chip,
)


def chip(views: int, n: int = 3, seed: int = 0, shift: float = 0.0) -> dict[str, Any]:
    """``score_chip``'s arrays: n detections, 2 classes, 50 anchors, ``views`` views.

    The other views see the same boxes moved by ``shift`` pixels.
    """
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 500, (n, 2))
    boxes = np.concatenate([xy, xy + 40], axis=1).astype(np.float32)
    probs = rng.uniform(0, 1, (n, 2)).astype(np.float32)
    return {
        "anchor_probs": rng.uniform(0, 0.2, (views, 50, 2)).astype(np.float32),
        "probs": probs,
        "anchor_idx": rng.integers(0, 50, n),
        "conf": probs.max(1),
        "boxes": boxes,
        "cls": probs.argmax(1),
        "other_views": tuple((boxes + shift, probs.argmax(1)) for _ in range(views - 1)),
    }


def test_one_view_scores_are_the_aggregations_of_anchor_entropy() -> None:
    c = chip(views=1)
    got = score_chip(**c, top_k=3)
    values, weights = anchor_uncertainty(c["anchor_probs"])
    want = {**aggregate_all(values, weights, 3), "objectness": chip_objectness(weights, 3)}
    assert got.scores == pytest.approx(want)
    assert set(got.scores) == {*list_aggregations(), "objectness"}  # no box instability
    assert set(got.per_detection) == {*INSTANCE_UNCERTAINTY, "anchor_value"}
    np.testing.assert_allclose(got.per_detection["anchor_value"], values[c["anchor_idx"]])
    assert got.expected_count == pytest.approx(float(c["conf"].sum()))


def test_box_instability_with_views() -> None:
    same = score_chip(**chip(views=3), top_k=3)
    assert same.scores["box_instability"] == 0.0
    np.testing.assert_allclose(same.per_detection["box_instability"], 0.0)
    moved = score_chip(**chip(views=3, shift=1000.0), top_k=3)  # no box of another view overlaps
    assert moved.scores["box_instability"] == 1.0
    assert all(len(v) == 3 for v in moved.per_detection.values())


def test_an_empty_chip_scores_zero_counts_and_instability() -> None:
    got = score_chip(**chip(views=2, n=0), top_k=3)
    assert got.expected_count == 0.0 and got.scores["box_instability"] == 0.0
    assert all(v.shape == (0,) for v in got.per_detection.values())
    assert all(np.isfinite(v) and v >= 0 for v in got.scores.values())


def test_detection_order_does_not_change_chip_scores() -> None:
    c = chip(views=2, n=6, seed=3, shift=5.0)
    order = np.random.default_rng(1).permutation(6)
    shuffled = dict(c)
    for name in ("boxes", "conf", "cls", "probs", "anchor_idx"):
        shuffled[name] = c[name][order]
    a, b = score_chip(**c, top_k=3), score_chip(**shuffled, top_k=3)
    assert a.scores == pytest.approx(b.scores)
    for name, values in a.per_detection.items():
        np.testing.assert_allclose(values[order], b.per_detection[name])
