"""One chip's scores: the detector's arrays for a chip -> chip scores and per-detection values.

Pure numpy. ``geoal.detect.stream.chip_scores`` feeds it a ``ChipResult``; the output,
:class:`ChipScores`, is what the store keeps of the maths (``geoal.store.scores`` encodes
it) and what ``geoal simulate`` ranks by.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from geoal.uncertainty.aggregate import aggregate_all, chip_objectness, expected_count
from geoal.uncertainty.discrepancy import anchor_uncertainty, box_instability
from geoal.uncertainty.instance import INSTANCE_UNCERTAINTY


@dataclass(frozen=True, eq=False)
class ChipScores:
    """What uncertainty makes of one chip.

    ``scores``: chip score by name, each >= 0: every aggregation of
    ``geoal.uncertainty.aggregate``, ``objectness`` (top-k anchor objectness, below any
    threshold; ``chip_objectness``), and ``box_instability`` with two views or more. ``expected_count``: the
    sum of the detections' confidences. ``per_detection``: (N,) values by measure (every
    instance uncertainty, ``box_instability`` with views, and ``anchor_value``, the anchor
    uncertainty at each detection's own anchor: MI-AOD's instance value).
    """

    scores: Mapping[str, float]
    expected_count: float
    per_detection: Mapping[str, npt.NDArray[np.float64]]


def score_chip(
    anchor_probs: np.ndarray,
    probs: np.ndarray,
    anchor_idx: np.ndarray,
    conf: np.ndarray,
    boxes: np.ndarray,
    cls: np.ndarray,
    other_views: Sequence[tuple[np.ndarray, np.ndarray]],
    top_k: int,
) -> ChipScores:
    """The scores of one chip of N detections, C classes, A anchors, V views.

    ``anchor_probs`` (V, A, C) every anchor's class scores per view on one grid;
    ``probs`` (N, C) each detection's class scores, ``anchor_idx`` (N,) its anchor,
    ``conf`` (N,) its confidence, ``boxes`` (N, 4) xyxy pixels, ``cls`` (N,) its class;
    ``other_views``: V - 1 pairs (boxes (N_v, 4), cls (N_v,)) of the other views'
    post-NMS detections, mapped back into the chip.

    Chip scores are every aggregation of ``anchor_uncertainty(anchor_probs)`` (two-view
    discrepancy weighted by objectness, or entropy for one view) with ``top_k``,
    ``objectness`` (``chip_objectness`` of the anchors' objectness, top ``top_k``) and,
    with other views, ``box_instability``: the mean over detections of ``1 - IoU`` with
    the best same-class box of each other view (CALD), averaged over views; 0.0 for a
    chip without detections.
    """
    values, weights = anchor_uncertainty(anchor_probs)
    scores = aggregate_all(values, weights, top_k)
    scores["objectness"] = chip_objectness(weights, top_k)
    per_det = {name: fn(probs) for name, fn in INSTANCE_UNCERTAINTY.items()}
    n = len(conf)
    if other_views:
        inst = (
            np.mean([box_instability(boxes, vb, cls, vc) for vb, vc in other_views], axis=0)
            if n
            else np.zeros(0)
        )
        per_det["box_instability"] = inst
        scores["box_instability"] = float(inst.mean()) if n else 0.0
    per_det["anchor_value"] = values[anchor_idx] if n else np.zeros(0)
    return ChipScores(
        scores={k: float(v) for k, v in scores.items()},
        expected_count=float(expected_count(conf)),
        per_detection=per_det,
    )
