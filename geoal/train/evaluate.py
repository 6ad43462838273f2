"""COCO evaluation of detections: mAP with pycocotools, recall at an operating threshold.

Ground truth and detections stay plain COCO dicts (``images``, ``annotations``,
``categories``; results are ``image_id``, ``category_id``, ``bbox`` [x, y, w, h]
in pixels, ``score``). AP follows pycocotools exactly (101-point interpolated
precision, IoU 0.50:0.05:0.95, all areas, at most 100 detections per image and
class) and keeps its convention for a category without ground truth: its AP is
undefined (pycocotools' -1, NaN here) and left out of the mean, so that
category's false positives cost nothing. A category with ground truth and no
detections has AP 0.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoal.errors import FormatError


@dataclass(frozen=True)
class EvalResult:
    """Scores of detections against COCO ground truth (0-1; NaN where undefined).

    Attributes:
        mAP50: mean over categories with ground truth of AP at IoU 0.5.
        mAP50_95: the same, averaged over IoU 0.50:0.05:0.95 (COCO's "AP").
        recall: fraction of ground-truth boxes found at the operating point: matched
            (same class, IoU >= the recall threshold, greedily by descending score)
            by a detection scoring >= the confidence threshold. NaN without ground truth.
        ap50: AP at IoU 0.5 by category name (NaN for a category without ground truth).
        ap50_95: AP at IoU 0.50:0.95 by category name (NaN likewise).
        class_recall: recall at the operating point by category name (NaN likewise).
        n_images: images in the ground truth.
        n_gt: ground-truth boxes (crowd boxes excluded).
        n_detections: detections given.
    """

    mAP50: float
    mAP50_95: float
    recall: float
    ap50: dict[str, float]
    ap50_95: dict[str, float]
    class_recall: dict[str, float]
    n_images: int
    n_gt: int
    n_detections: int


def load_coco(path: Path) -> dict[str, Any]:
    """Read a COCO detection file (a dict with images, annotations and categories lists)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FormatError(f"COCO file {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise FormatError(f"cannot read COCO file {str(path)!r}: {error}") from error
    except json.JSONDecodeError as error:
        raise FormatError(
            f"COCO file {str(path)!r} is not valid JSON: {error.msg} at line {error.lineno}, "
            f"column {error.colno}"
        ) from error
    _check_gt(data, str(path))
    return data


def evaluate_coco(
    gt: Mapping[str, Any],
    detections: Sequence[Mapping[str, Any]],
    *,
    iou_threshold_recall: float = 0.5,
    conf_threshold: float = 0.25,
) -> EvalResult:
    """Score COCO ``detections`` against the COCO ground truth ``gt`` (neither is modified).

    Every detection must name an image and a category of ``gt``. No detections
    at all give AP 0 for every category with ground truth (pycocotools cannot
    take an empty result list, so this case is answered here).
    """
    _check_gt(gt, "ground truth")
    if not 0.0 < iou_threshold_recall <= 1.0:
        raise ValueError(f"iou_threshold_recall must be in (0, 1], got {iou_threshold_recall}")
    names = _category_names(gt)
    anns = _gt_annotations(gt)
    dets = _detections(detections, {int(im["id"]) for im in gt["images"]}, names)
    has_gt = {cat: False for cat in names}
    for ann in anns:
        if not ann["iscrowd"] and ann["category_id"] in has_gt:
            has_gt[ann["category_id"]] = True
    if dets:
        ap50, ap50_95 = _pycocotools_ap(gt, anns, dets)
    else:
        ap50 = {cat: 0.0 if has_gt[cat] else math.nan for cat in names}
        ap50_95 = dict(ap50)
    found, total = _operating_recall(anns, dets, iou_threshold_recall, conf_threshold)
    return EvalResult(
        mAP50=_mean(ap50.values()),
        mAP50_95=_mean(ap50_95.values()),
        recall=_ratio(sum(found.values()), sum(total.values())),
        ap50={names[c]: v for c, v in ap50.items()},
        ap50_95={names[c]: v for c, v in ap50_95.items()},
        class_recall={names[c]: _ratio(found[c], total[c]) for c in names},
        n_images=len(gt["images"]),
        n_gt=sum(total.values()),
        n_detections=len(dets),
    )


def _check_gt(data: Any, source: str) -> None:
    if not isinstance(data, Mapping):
        raise FormatError(f"{source}: a COCO file holds a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise FormatError(f"{source}: a COCO detection file needs a {key!r} list")


def _category_names(gt: Mapping[str, Any]) -> dict[int, str]:
    names: dict[int, str] = {}
    for cat in gt["categories"]:
        names[int(cat["id"])] = str(cat["name"])
    if len(set(names.values())) != len(names):
        raise FormatError(f"ground truth: category names are not unique: {sorted(names.values())}")
    return names


def _gt_annotations(gt: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Copies of the ground-truth boxes with the fields pycocotools needs (id, area, iscrowd)."""
    anns = []
    for i, ann in enumerate(gt["annotations"]):
        bbox = [float(v) for v in ann["bbox"]]
        anns.append(
            {
                "id": int(ann.get("id", i + 1)),
                "image_id": int(ann["image_id"]),
                "category_id": int(ann["category_id"]),
                "bbox": bbox,
                "area": float(ann.get("area", bbox[2] * bbox[3])),
                "iscrowd": int(ann.get("iscrowd", 0)),
            }
        )
    if len({a["id"] for a in anns}) != len(anns):
        raise FormatError("ground truth: annotation ids are not unique")
    return anns


def _detections(
    detections: Sequence[Mapping[str, Any]], image_ids: set[int], names: Mapping[int, str]
) -> list[dict[str, Any]]:
    """Checked copies of the detections (pycocotools writes into the dicts it is given)."""
    out = []
    for i, det in enumerate(detections):
        try:
            image_id, category_id = int(det["image_id"]), int(det["category_id"])
            bbox = [float(v) for v in det["bbox"]]
            score = float(det["score"])
        except (KeyError, TypeError, ValueError) as error:
            raise FormatError(
                f"detection {i} is not a COCO result (image_id, category_id, bbox, score): {error}"
            ) from error
        if image_id not in image_ids:
            raise FormatError(f"detection {i}: image_id {image_id} is not in the ground truth")
        if category_id not in names:
            raise FormatError(
                f"detection {i}: category_id {category_id} is not in the ground truth "
                f"(categories {sorted(names)})"
            )
        if len(bbox) != 4 or not all(map(math.isfinite, [*bbox, score])):
            raise FormatError(f"detection {i}: bbox must be 4 finite numbers and score finite")
        out.append({"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score})
    return out


def _pycocotools_ap(
    gt: Mapping[str, Any], anns: list[dict[str, Any]], dets: list[dict[str, Any]]
) -> tuple[dict[int, float], dict[int, float]]:
    """AP at IoU 0.5 and AP at 0.50:0.95 by category id, NaN where pycocotools gives -1."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": [{"id": int(im["id"])} for im in gt["images"]],
            "annotations": anns,
            "categories": [{"id": int(c["id"]), "name": c["name"]} for c in gt["categories"]],
        }
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"]  # (T iou, R recall, K category, A area, M max dets)
    at_50 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.5)))
    ap50: dict[int, float] = {}
    ap50_95: dict[int, float] = {}
    for k, cat in enumerate(evaluator.params.catIds):
        block = precision[:, :, k, 0, -1]  # all areas, 100 detections
        ap50[int(cat)] = _mean_valid(block[at_50])
        ap50_95[int(cat)] = _mean_valid(block)
    return ap50, ap50_95


def _operating_recall(
    anns: list[dict[str, Any]], dets: list[dict[str, Any]], iou_threshold: float, conf: float
) -> tuple[dict[int, int], dict[int, int]]:
    """(found, total) ground-truth boxes by category id at the operating point."""
    gt_boxes: dict[tuple[int, int], list[list[float]]] = defaultdict(list)
    det_boxes: dict[tuple[int, int], list[tuple[float, list[float]]]] = defaultdict(list)
    found: dict[int, int] = defaultdict(int)
    total: dict[int, int] = defaultdict(int)
    for ann in anns:
        if not ann["iscrowd"]:
            gt_boxes[ann["image_id"], ann["category_id"]].append(ann["bbox"])
            total[ann["category_id"]] += 1
    for det in dets:
        if det["score"] >= conf:
            det_boxes[det["image_id"], det["category_id"]].append((det["score"], det["bbox"]))
    for key, boxes in gt_boxes.items():
        candidates = det_boxes.get(key, [])
        if candidates:
            order = np.argsort([-score for score, _ in candidates], kind="stable")
            ranked = np.array([candidates[i][1] for i in order], dtype=np.float64)
            found[key[1]] += greedy_match_count(np.array(boxes), ranked, iou_threshold)
    return found, total


def greedy_match_count(gt: np.ndarray, dets: np.ndarray, iou_threshold: float) -> int:
    """Ground-truth boxes matched by ``dets`` taken in order, each to its best free box.

    ``gt`` (G, 4) and ``dets`` (D, 4) are xywh in pixels, ``dets`` by descending
    score; a detection takes the unmatched ground-truth box of highest IoU if
    that IoU is >= ``iou_threshold`` (as COCO matches).
    """
    ious = box_iou_xywh(dets, gt)  # (D, G)
    free = np.ones(ious.shape[1], dtype=bool)
    if not ious.size:
        return 0
    for row in ious:
        candidates = np.where(free & (row >= iou_threshold), row, -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= 0:
            free[best] = False
    return int((~free).sum())


def box_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) IoU of (A, 4) and (B, 4) xywh boxes (0 where the union is empty)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, 0, None], b[None, :, 0])
    ih = np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, 1, None], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else math.nan


def _mean(values: Any) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _ratio(found: int, total: int) -> float:
    return found / total if total else math.nan
