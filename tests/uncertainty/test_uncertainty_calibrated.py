"""Difficulty-calibrated uncertainty: class difficulty from labelled chips, calibrated chip scores."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoal.uncertainty.calibrated import (
    binary_entropy,
    box_iou,
    calibrated_scores,
    class_difficulty,
    model_quality,
)

BOX = np.array([[10.0, 10.0, 30.0, 30.0]])


def test_box_iou() -> None:
    iou = box_iou(
        BOX, np.array([[10.0, 10.0, 30.0, 30.0], [20.0, 10.0, 40.0, 30.0], [50, 50, 60, 60]])
    )
    assert iou.shape == (1, 3)
    assert iou[0].tolist() == pytest.approx([1.0, 1 / 3, 0.0])


def test_difficulty_is_zero_when_found_exactly_and_one_when_missed() -> None:
    # class 0 found exactly (score 1) on chip 0; class 1's box on chip 1 is missed entirely;
    # class 2 has no labelled box at all
    gt_boxes = np.array([[10, 10, 30, 30], [10, 10, 30, 30]], dtype=float)
    det_probs = np.array([[1.0, 0.0, 0.0]])
    d = class_difficulty(gt_boxes, [0, 1], [0, 1], BOX, det_probs, [0], 3)
    assert d[0] == pytest.approx(0.0)
    assert d[1] == pytest.approx(1.0)
    assert np.isnan(d[2])
    assert model_quality(d) == pytest.approx(0.5)


def test_detections_of_another_chip_do_not_count() -> None:
    d = class_difficulty(BOX, [0], [0], BOX, np.array([[0.9]]), [1], 1)
    assert d[0] == pytest.approx(1.0)


def test_difficulty_weighs_iou_and_the_true_class_score() -> None:
    # a half-overlapping detection (IoU 1/3) that gives the true class 0.6
    det = np.array([[20.0, 10.0, 40.0, 30.0]])
    d = class_difficulty(BOX, [1], [0], det, np.array([[0.9, 0.6]]), [0], 2)
    assert d[1] == pytest.approx(1 - 0.6 / 3)
    assert np.isnan(d[0])


def test_no_detections_and_no_labels() -> None:
    d = class_difficulty(np.zeros((0, 4)), [], [], np.zeros((0, 4)), np.zeros((0, 2)), [], 2)
    assert np.isnan(d).all()
    assert model_quality(d) == 0.0
    d = class_difficulty(BOX, [0], [0], np.zeros((0, 4)), np.zeros((0, 2)), [], 2)
    assert d[0] == 1.0


def test_binary_entropy() -> None:
    assert binary_entropy([0.5, 0.0, 1.0]).tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-9)


def test_a_hard_class_outranks_an_easy_one_at_equal_doubt() -> None:
    difficulty = np.array([0.0, 0.9])
    s = calibrated_scores([0, 1], [0, 1], [0.5, 0.5], difficulty, 3)
    assert s[1] > s[0] > 0 == s[2]
    assert s[0] == pytest.approx(1.0) and s[1] == pytest.approx(1.9)


def test_unknown_class_counts_as_hardest_and_faint_detections_are_ignored() -> None:
    s = calibrated_scores([0, 1, 1], [0, 0, 0], [0.5, 0.5, 0.05], [np.nan], 2)
    assert s.tolist() == pytest.approx([2.0, 2.0])


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2), st.floats(0, 1)), max_size=30),
    st.lists(st.floats(0, 1), min_size=3, max_size=3),
)
def test_scores_are_bounded_and_sum_over_detections(dets: list, difficulty: list) -> None:
    chip = np.array([d[0] for d in dets], dtype=np.int64)
    cls = np.array([d[1] for d in dets], dtype=np.int64)
    conf = np.array([d[2] for d in dets])
    s = calibrated_scores(chip, cls, conf, difficulty, 5)
    counts = np.bincount(chip[conf >= 0.1], minlength=5)
    assert (s >= 0).all() and (s <= 2 * counts + 1e-9).all()
    perm = np.random.default_rng(0).permutation(len(dets))
    assert calibrated_scores(chip[perm], cls[perm], conf[perm], difficulty, 5) == pytest.approx(s)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        calibrated_scores([5], [0], [0.5], [0.0], 3)
    with pytest.raises(ValueError):
        class_difficulty(BOX, [3], [0], BOX, np.ones((1, 2)), [0], 2)
