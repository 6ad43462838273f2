"""evaluate_coco against hand-computed COCO numbers, its edge cases, and load_coco."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geoal.errors import FormatError
from geoal.train import evaluate_coco, load_coco
from geoal.train.evaluate import box_iou_xywh, greedy_match_count


def _gt(boxes: list[tuple[int, int, list[float]]], n_images: int = 2) -> dict[str, Any]:
    """COCO ground truth: (image_id, category_id, bbox) triples over images 1..n_images."""
    return {
        "images": [{"id": i, "width": 200, "height": 200} for i in range(1, n_images + 1)],
        "annotations": [
            {
                "id": k + 1,
                "image_id": im,
                "category_id": cat,
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
            }
            for k, (im, cat, bbox) in enumerate(boxes)
        ],
        "categories": [
            {"id": 1, "name": "ship"},
            {"id": 2, "name": "tank"},
            {"id": 3, "name": "car"},
        ],
    }


GT_BOXES = [
    (1, 1, [10.0, 10.0, 50.0, 40.0]),
    (1, 2, [100.0, 100.0, 30.0, 30.0]),
    (2, 1, [5.0, 60.0, 80.0, 20.0]),
    (2, 2, [120.0, 10.0, 40.0, 60.0]),
]


def _perfect(gt: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
        }
        for a in gt["annotations"]
    ]


def test_perfect_detections_score_one() -> None:
    gt = _gt(GT_BOXES)
    result = evaluate_coco(gt, _perfect(gt))
    assert result.mAP50 == result.mAP50_95 == 1.0
    assert result.recall == 1.0
    assert result.ap50 == {"ship": 1.0, "tank": 1.0, "car": pytest.approx(math.nan, nan_ok=True)}
    assert math.isnan(result.ap50_95["car"])  # no ground truth: undefined, left out of the mean
    assert result.class_recall["ship"] == result.class_recall["tank"] == 1.0
    assert (result.n_images, result.n_gt, result.n_detections) == (2, 4, 4)


def test_no_detections_score_zero() -> None:
    result = evaluate_coco(_gt(GT_BOXES), [])
    assert result.mAP50 == result.mAP50_95 == result.recall == 0.0
    assert result.ap50["ship"] == result.ap50_95["tank"] == 0.0
    assert math.isnan(result.ap50["car"])


def test_hand_checked_average_precision() -> None:
    """2 ships; a false positive (score 0.9) ranks above a hit of IoU 0.72 (score 0.8).

    Ranked: FP (P 0, R 0), TP (P 1/2, R 1/2). COCO's interpolated precision is
    1/2 at the 51 recall points 0.00..0.50 and 0 at the 50 above, so
    AP = 51 * 0.5 / 101 at every IoU threshold the hit passes: 0.50..0.70, 5 of
    the 10 in 0.50:0.95. The car detection has no car ground truth: it is ignored.
    """
    gt = _gt([(1, 1, [0.0, 0.0, 100.0, 100.0]), (2, 1, [50.0, 50.0, 40.0, 40.0])])
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [150.0, 150.0, 20.0, 20.0], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 100.0, 72.0], "score": 0.8},
        {"image_id": 2, "category_id": 3, "bbox": [50.0, 50.0, 40.0, 40.0], "score": 0.99},
    ]
    result = evaluate_coco(gt, dets)
    ap = 51 * 0.5 / 101
    assert result.ap50["ship"] == pytest.approx(ap)
    assert result.ap50_95["ship"] == pytest.approx(ap * 5 / 10)
    assert result.mAP50 == pytest.approx(ap)  # tank and car have no ground truth
    assert result.mAP50_95 == pytest.approx(ap / 2)
    assert math.isnan(result.ap50["tank"]) and math.isnan(result.ap50["car"])
    assert result.recall == 0.5
    assert evaluate_coco(gt, dets, conf_threshold=0.85).recall == 0.0
    assert evaluate_coco(gt, dets, iou_threshold_recall=0.75).recall == 0.0


def test_matches_pycocotools_summary_on_noisy_detections() -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    gt = _gt(GT_BOXES)
    dets = []
    for det in _perfect(gt) * 3:
        bbox = (np.array(det["bbox"]) + rng.normal(0, 6, 4)).clip(1).tolist()
        dets.append({**det, "bbox": bbox, "score": float(rng.uniform())})
    result = evaluate_coco(gt, dets)
    coco = COCO()
    coco.dataset = json.loads(json.dumps(gt))
    for ann in coco.dataset["annotations"]:
        ann["iscrowd"] = 0  # pycocotools needs it; evaluate_coco defaults it
    coco.createIndex()
    evaluator = COCOeval(coco, coco.loadRes(json.loads(json.dumps(dets))), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert result.mAP50_95 == pytest.approx(evaluator.stats[0])
    assert result.mAP50 == pytest.approx(evaluator.stats[1])


def test_recall_counts_each_ground_truth_box_once() -> None:
    gt = _gt([(1, 1, [0.0, 0.0, 10.0, 10.0]), (1, 1, [100.0, 0.0, 10.0, 10.0])], n_images=1)
    twice = [
        {"image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 10.0, 10.0], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 10.0, 10.0], "score": 0.8},
    ]
    assert evaluate_coco(gt, twice).recall == 0.5
    wrong_class = [{**twice[0], "category_id": 2}]
    assert evaluate_coco(gt, wrong_class).recall == 0.0


def test_ground_truth_without_boxes_is_undefined() -> None:
    gt = _gt([])
    det = {"image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 5.0, 5.0], "score": 0.5}
    for dets in ([], [det]):
        result = evaluate_coco(gt, dets)
        assert math.isnan(result.mAP50) and math.isnan(result.mAP50_95)
        assert math.isnan(result.recall) and result.n_gt == 0


def test_inputs_are_not_modified() -> None:
    gt = _gt(GT_BOXES)
    dets = _perfect(gt)
    before = json.dumps([gt, dets])
    evaluate_coco(gt, dets)
    assert json.dumps([gt, dets]) == before


def test_bad_detections_are_refused() -> None:
    gt = _gt(GT_BOXES)
    good = {"image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 5.0, 5.0], "score": 0.5}
    with pytest.raises(FormatError, match="image_id 9"):
        evaluate_coco(gt, [{**good, "image_id": 9}])
    with pytest.raises(FormatError, match="category_id 7"):
        evaluate_coco(gt, [{**good, "category_id": 7}])
    with pytest.raises(FormatError, match="score"):
        evaluate_coco(gt, [{k: v for k, v in good.items() if k != "score"}])


def test_iou_and_greedy_matching() -> None:
    a = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 10.0, 10.0]])
    iou = box_iou_xywh(a, a)
    assert iou[0, 1] == pytest.approx(50 / 150) and iou[0, 0] == 1.0
    assert box_iou_xywh(np.zeros((1, 4)), np.zeros((1, 4)))[0, 0] == 0.0
    gt = np.array([[0.0, 0.0, 10.0, 10.0], [6.0, 0.0, 10.0, 10.0]])
    # the first detection takes its best box (IoU 0.67 with gt 1), leaving gt 0 to the second
    dets = np.array([[5.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    assert greedy_match_count(gt, dets, 0.5) == 2
    assert greedy_match_count(gt, dets[:0], 0.5) == 0


def test_load_coco_reads_nwpu_and_names_bad_files(tmp_path: Path, shared_data: Path) -> None:
    coco = load_coco(shared_data / "nwpu-vhr10" / "annotations" / "test.json")
    assert len(coco["images"]) == 196 and len(coco["annotations"]) == 1106
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(FormatError, match=r"bad.json.*not valid JSON"):
        load_coco(bad)
    with pytest.raises(FormatError, match="not found"):
        load_coco(tmp_path / "missing.json")
    bad.write_text('{"images": []}')
    with pytest.raises(FormatError, match="annotations"):
        load_coco(bad)
