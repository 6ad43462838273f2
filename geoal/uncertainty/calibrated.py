"""Difficulty-calibrated uncertainty (after PPAL, Yang et al. CVPR 2024): pure numpy.

A detector is not equally sure of every class. PPAL measures, per class, how well the
model reproduces its own training positives, and weighs each detection's uncertainty by
its class's difficulty, so that an ambiguous box of a class the model has not learnt
counts more than an equally ambiguous box of a class it has. geoal does the same:

    q_g   = max over detections d of the same chip: IoU(g, d) * p_d[class of g]
    d_c   = 1 - mean of q_g over the labelled boxes g of class c      (difficulty, 0-1)
    u_i   = (1 + d_c) * H(conf_i)                                     (instance, 0-2)
    score = sum of u_i over the chip's detections with conf_i >= min_conf

``H`` is the binary entropy of the detection's confidence in bits (1 at 0.5, 0 at 0 or 1).
A class without a labelled box has difficulty 1 (nothing says the model knows it). The sum
(not a mean) makes a chip with several doubtful candidates outrank one with a single one;
under a budget in boxes the selection pays for that.

``model_quality`` = 1 - mean difficulty over the classes that have labels: how well the model
fits what is labelled (0-1), the switch of the ``adaptive`` strategy's schedule.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from geoal.uncertainty.discrepancy import box_iou

__all__ = ["binary_entropy", "box_iou", "calibrated_scores", "class_difficulty", "model_quality"]

FloatArray = npt.NDArray[np.float64]


def class_difficulty(
    gt_boxes: npt.ArrayLike,
    gt_cls: npt.ArrayLike,
    gt_image: npt.ArrayLike,
    det_boxes: npt.ArrayLike,
    det_probs: npt.ArrayLike,
    det_image: npt.ArrayLike,
    n_classes: int,
) -> FloatArray:
    """(C,) difficulty in [0, 1] of each class on labelled chips; NaN for a class with no box.

    ``gt_boxes`` (G, 4), ``gt_cls`` (G,), ``gt_image`` (G,): the labelled boxes, their class
    and chip; ``det_boxes`` (M, 4), ``det_probs`` (M, C), ``det_image`` (M,): the model's
    detections on the same chips (same pixel frame), with their full class-score vectors.
    """
    gb = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    gc = np.asarray(gt_cls, dtype=np.int64).reshape(-1)
    gi = np.asarray(gt_image, dtype=np.int64).reshape(-1)
    db = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    dp = np.asarray(det_probs, dtype=np.float64).reshape(len(db), n_classes)
    di = np.asarray(det_image, dtype=np.int64).reshape(-1)
    if not len(gb) == len(gc) == len(gi) or not len(db) == len(di):
        raise ValueError("gt and detection arrays must agree in length")
    if len(gc) and (gc.min() < 0 or gc.max() >= n_classes):
        raise ValueError(f"gt_cls must be class indices in [0, {n_classes})")
    quality = np.zeros(len(gb))
    if len(gb) and len(db):
        same = gi[:, None] == di[None, :]
        q = box_iou(gb, db) * dp[:, gc].T * same
        quality = q.max(axis=1)
    total = np.bincount(gc, weights=quality, minlength=n_classes)
    count = np.bincount(gc, minlength=n_classes).astype(np.float64)
    out = np.full(n_classes, np.nan)
    has = count > 0
    out[has] = 1.0 - total[has] / count[has]
    return np.clip(out, 0.0, 1.0)


def model_quality(difficulty: npt.ArrayLike) -> float:
    """1 - mean difficulty over the classes with labels (0-1); 0.0 when no class has any."""
    d = np.asarray(difficulty, dtype=np.float64).reshape(-1)
    known = d[np.isfinite(d)]
    return float(1.0 - known.mean()) if len(known) else 0.0


def binary_entropy(conf: npt.ArrayLike) -> FloatArray:
    """(N,) entropy in bits of Bernoulli(conf): 1 at 0.5, 0 at 0 and 1."""
    p = np.clip(np.asarray(conf, dtype=np.float64), 1e-12, 1 - 1e-12)
    out: FloatArray = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return out


def calibrated_scores(
    det_image: npt.ArrayLike,
    det_cls: npt.ArrayLike,
    det_conf: npt.ArrayLike,
    difficulty: npt.ArrayLike,
    n_chips: int,
    min_conf: float = 0.1,
) -> FloatArray:
    """(n_chips,) difficulty-calibrated chip scores (see the module docstring); 0 = nothing.

    ``det_image``, ``det_cls``, ``det_conf``: (M,) detections of all chips, flat (chip index,
    class index, confidence 0-1); ``difficulty``: (C,) from ``class_difficulty`` (NaN = 1).
    """
    chip = np.asarray(det_image, dtype=np.int64).reshape(-1)
    cls = np.asarray(det_cls, dtype=np.int64).reshape(-1)
    conf = np.asarray(det_conf, dtype=np.float64).reshape(-1)
    d = np.nan_to_num(np.asarray(difficulty, dtype=np.float64).reshape(-1), nan=1.0)
    if not len(chip) == len(cls) == len(conf):
        raise ValueError("det_image, det_cls and det_conf must have one length")
    if len(chip) and (chip.min() < 0 or chip.max() >= n_chips):
        raise ValueError(f"det_image must be chip indices in [0, {n_chips})")
    if len(cls) and (cls.min() < 0 or cls.max() >= len(d)):
        raise ValueError(f"det_cls must be class indices in [0, {len(d)})")
    keep = conf >= min_conf
    u = (1.0 + d[cls[keep]]) * binary_entropy(conf[keep])
    scores: FloatArray = np.bincount(chip[keep], weights=u, minlength=n_chips).astype(np.float64)
    return scores
