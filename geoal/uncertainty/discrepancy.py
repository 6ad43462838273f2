"""Disagreement between views of one chip: anchor discrepancy, objectness, box instability.

A view is one forward pass: another classifier head (MI-AOD's two adversarial classifiers),
another augmentation (a flip, mapped back) or another dropout sample. Anchor-level functions
take class scores already aligned to one anchor grid, ``(V, A, C)``: V views, A anchors
(8400 for YOLOv8 at 640 px), C classes, scores in [0, 1].
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from geoal.uncertainty._arrays import as_float
from geoal.uncertainty.instance import entropy

FloatArray = npt.NDArray[np.float64]


def _as_views(probs_views: npt.ArrayLike, min_views: int) -> FloatArray:
    arr = as_float(probs_views, 3, "probs_views")
    if arr.shape[0] < min_views or arr.shape[2] == 0:
        raise ValueError(
            f"probs_views must be (V, A, C) with V >= {min_views} and C >= 1, got shape {arr.shape}"
        )
    return arr


def anchor_discrepancy(p1: npt.ArrayLike, p2: npt.ArrayLike) -> FloatArray:
    """(A,) mean over classes of ``(p1 - p2)**2``, in [0, 1], of two (A, C) score arrays.

    MI-AOD's discrepancy between its two classifiers; symmetric, 0 where the views agree.
    """
    a = as_float(p1, 2, "p1")
    b = as_float(p2, 2, "p2")
    if a.shape != b.shape or a.shape[1] == 0:
        raise ValueError(f"p1 and p2 must be one (A, C) shape, C >= 1; got {a.shape}, {b.shape}")
    return np.mean((a - b) ** 2, axis=1)


def multi_view_discrepancy(probs_views: npt.ArrayLike) -> FloatArray:
    """(A,) mean over view pairs of ``anchor_discrepancy``, in [0, 1], of (V, A, C) scores.

    Computed without the V(V-1)/2 pairs: the mean pairwise squared difference of V numbers
    is twice their unbiased variance, so this is ``2 * var(ddof=1)`` over views, averaged over
    classes. With V == 2 it equals ``anchor_discrepancy(p[0], p[1])``. Needs V >= 2.
    """
    p = _as_views(probs_views, 2)
    return np.mean(2.0 * np.var(p, axis=0, ddof=1), axis=1)


def objectness(probs_views: npt.ArrayLike) -> FloatArray:
    """(A,) how object-like each anchor is: max over classes of the mean over views, in [0, 1].

    ``probs_views`` is (V, A, C) class scores in [0, 1], V >= 1.
    """
    p = _as_views(probs_views, 1)
    return np.max(np.mean(p, axis=0), axis=1)


def anchor_uncertainty(probs_views: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(A,) values and (A,) weights in [0, 1] of (V, A, C) class scores of one chip.

    With V >= 2: values are ``multi_view_discrepancy`` and weights ``objectness``.
    With V == 1: values are the normalised ``entropy`` of each anchor's scores and weights
    its highest class score. Feed both to an aggregation (default ``miaod``).
    """
    p = _as_views(probs_views, 1)
    if p.shape[0] == 1:
        return entropy(p[0]), np.max(p[0], axis=1)
    return multi_view_discrepancy(p), objectness(p)


def box_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """(N, M) IoU of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4), any pixel unit; 0 without union."""
    x = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    y = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(x[:, None, :2], y[None, :, :2])
    rb = np.minimum(x[:, None, 2:], y[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_x = np.clip(x[:, 2:] - x[:, :2], 0, None).prod(axis=1)
    area_y = np.clip(y[:, 2:] - y[:, :2], 0, None).prod(axis=1)
    union = area_x[:, None] + area_y[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_instability(
    boxes1: npt.ArrayLike,
    boxes2: npt.ArrayLike,
    cls1: npt.ArrayLike,
    cls2: npt.ArrayLike,
) -> FloatArray:
    """(N,) ``1 - IoU`` in [0, 1] of each view-1 box with its best same-class view-2 box.

    ``boxes1`` (N, 4) and ``boxes2`` (M, 4) are post-NMS xyxy boxes in pixels of two views of
    one chip (mapped back to one frame), ``cls1`` (N,) and ``cls2`` (M,) their class ids.
    A box with no same-class overlap in the other view gets 1.0 (as in CALD).
    """
    b1 = as_float(boxes1, 2, "boxes1")
    b2 = as_float(boxes2, 2, "boxes2")
    c1 = np.asarray(cls1).reshape(-1)
    c2 = np.asarray(cls2).reshape(-1)
    if b1.shape[1:] != (4,) or b2.shape[1:] != (4,):
        raise ValueError(f"boxes must be (N, 4) xyxy, got {b1.shape} and {b2.shape}")
    if len(c1) != len(b1) or len(c2) != len(b2):
        raise ValueError(
            f"one class id per box: {len(b1)} boxes1, {len(c1)} cls1, "
            f"{len(b2)} boxes2, {len(c2)} cls2"
        )
    if len(b1) == 0 or len(b2) == 0:
        return np.ones(len(b1))
    iou = np.where(c1[:, None] == c2[None, :], box_iou(b1, b2), 0.0)
    return np.clip(1.0 - iou.max(axis=1), 0.0, 1.0)
