"""The label-efficiency record: ALC, paired differences, labels to reach random, objects found."""

from __future__ import annotations

from typing import Any

import pytest

from geoal.simulate.efficiency import alc, efficiency_record

BUDGETS = [0.1, 0.2, 0.3]


def _rows(
    strategy: str, seed: int, map50: list[float], images: list[int], boxes: list[int]
) -> list[dict[str, Any]]:
    return [
        {"strategy": strategy, "seed": seed, "round": r, "mAP50": m, "recall": m,
         "n_images": n, "n_boxes": b}
        for r, (m, n, b) in enumerate(zip(map50, images, boxes, strict=True))
    ]  # fmt: skip


def test_alc_is_the_mean_over_the_budget_range() -> None:
    assert alc([0.1, 0.3], [0.2, 0.2]) == pytest.approx(0.2)
    assert alc([0.0, 0.5, 1.0], [0.0, 1.0, 1.0]) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        alc([0.1], [0.2])


def test_record_pairs_seeds_and_reports_the_gains() -> None:
    rows = [
        *_rows("random", 0, [0.1, 0.2, 0.4], [10, 20, 30], [2, 4, 6]),
        *_rows("adaptive", 0, [0.1, 0.4, 0.5], [10, 20, 30], [2, 12, 20]),
        *_rows("random", 1, [0.1, 0.3, 0.4], [10, 20, 30], [3, 6, 9]),
        *_rows("adaptive", 1, [0.1, 0.3, 0.5], [10, 20, 30], [3, 9, 15]),
        *_rows("random", 2, [0.1, 0.2], [10, 20], [1, 2]),  # unfinished: left out
    ]
    rec = efficiency_record(rows, "adaptive", [0, 1, 2], BUDGETS, "cpu")
    assert rec["seeds"] == [0, 1]
    assert rec["random"]["map50"] == [[0.1, 0.2, 0.4], [0.1, 0.3, 0.4]]
    assert rec["alc"]["random"] == [pytest.approx(0.225), pytest.approx(0.275)]
    assert rec["alc"]["default"] == [pytest.approx(0.35), pytest.approx(0.3)]
    assert rec["alc_paired_difference"]["per_seed"] == [pytest.approx(0.125), pytest.approx(0.025)]
    # random's final mean 0.4; adaptive's mean curve 0.1, 0.35, 0.5 reaches it at 20 + 1/3 * 10
    assert rec["labels_to_reach_random_final"] == pytest.approx((20 + 10 / 3) / 30, abs=1e-3)
    assert rec["objects_per_labelled_chip"]["default"][-1] == pytest.approx(7 / 12, abs=1e-4)
    # acquisitions 1-2: random (4 + 6) / 20 boxes per chip on average, adaptive (18 + 12) / 20
    assert rec["objects_per_acquired_chip_first_two"]["random"] == pytest.approx(0.25)
    assert rec["objects_per_acquired_chip_first_two"]["default"] == pytest.approx(0.75)


def test_never_reaching_random_is_none() -> None:
    rows = [
        *_rows("random", 0, [0.1, 0.2, 0.4], [10, 20, 30], [2, 4, 6]),
        *_rows("adaptive", 0, [0.1, 0.2, 0.3], [10, 20, 30], [2, 4, 6]),
    ]
    assert (
        efficiency_record(rows, "adaptive", [0], BUDGETS, "cpu")["labels_to_reach_random_final"]
        is None
    )


def test_rounds_past_the_budgets_of_an_extended_run_are_left_out() -> None:
    rows = [
        *_rows("random", 0, [0.1, 0.2, 0.4, 0.6], [10, 20, 30, 40], [2, 4, 6, 8]),
        *_rows("adaptive", 0, [0.1, 0.4, 0.5, 0.5], [10, 20, 30, 40], [2, 12, 20, 25]),
    ]
    rec = efficiency_record(rows, "adaptive", [0], BUDGETS, "cpu")
    assert rec["seeds"] == [0]
    assert rec["random"]["map50"] == [[0.1, 0.2, 0.4]]
    assert rec["alc"]["default"] == [pytest.approx(0.35)]
