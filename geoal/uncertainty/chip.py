"""One chip's scores: the detector's arrays for a chip -> chip scores and per-detection values.

Pure numpy. The input is anything shaped like ``geoal.detect.ChipResult`` (the
:class:`ChipArrays` protocol); the output, :class:`ChipScores`, is what the store keeps
of the maths (``geoal.store.scores`` encodes it) and what ``geoal simulate`` ranks by.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from geoal.uncertainty.aggregate import aggregate_all, expected_count
from geoal.uncertainty.discrepancy import anchor_uncertainty, box_instability
from geoal.uncertainty.instance import INSTANCE_UNCERTAINTY


class ChipArrays(Protocol):
    """The arrays of one chip that its scores are computed from (N detections, C classes).

    ``boxes`` (N, 4) xyxy chip pixels, ``conf`` (N,), ``cls`` (N,) int, ``probs`` (N, C)
    class scores in [0, 1], ``anchor_idx`` (N,) each detection's anchor, ``anchor_probs``
    (V, A, C) every anchor's scores per view on one grid, ``view_boxes`` / ``view_cls``
    the V - 1 other views' post-NMS boxes (N_v, 4) and classes (N_v,), mapped back.
    """

    @property
    def boxes(self) -> np.ndarray: ...
    @property
    def conf(self) -> np.ndarray: ...
    @property
    def cls(self) -> np.ndarray: ...
    @property
    def probs(self) -> np.ndarray: ...
    @property
    def anchor_idx(self) -> np.ndarray: ...
    @property
    def anchor_probs(self) -> np.ndarray: ...
    @property
    def view_boxes(self) -> Sequence[np.ndarray]: ...
    @property
    def view_cls(self) -> Sequence[np.ndarray]: ...


@dataclass(frozen=True, eq=False)
class ChipScores:
    """What uncertainty makes of one chip.

    ``scores``: chip score by name (every aggregation of ``geoal.uncertainty.aggregate``,
    plus ``box_instability`` with two views or more), each >= 0. ``expected_count``: the
    sum of the detections' confidences. ``per_detection``: (N,) values by measure (every
    instance uncertainty, ``box_instability`` with views, and ``anchor_value``, the anchor
    uncertainty at each detection's own anchor: MI-AOD's instance value).
    """

    scores: Mapping[str, float]
    expected_count: float
    per_detection: Mapping[str, npt.NDArray[np.float64]]


def score_chip(chip: ChipArrays, top_k: int) -> ChipScores:
    """The scores of one chip: aggregations of its anchor uncertainty, box instability, counts.

    Anchor values and weights are ``anchor_uncertainty`` of ``chip.anchor_probs`` (two-view
    discrepancy weighted by objectness, or entropy for one view), aggregated with ``top_k``;
    ``box_instability`` is the mean ``1 - IoU`` of each detection with its best same-class
    box in every other view (CALD), averaged over views, 0.0 for a chip without detections.
    """
    values, weights = anchor_uncertainty(chip.anchor_probs)
    scores = aggregate_all(values, weights, top_k)
    per_det = {name: fn(chip.probs) for name, fn in INSTANCE_UNCERTAINTY.items()}
    n = len(chip.conf)
    if chip.view_boxes:
        inst = (
            np.mean(
                [
                    box_instability(chip.boxes, vb, chip.cls, vc)
                    for vb, vc in zip(chip.view_boxes, chip.view_cls, strict=True)
                ],
                axis=0,
            )
            if n
            else np.zeros(0)
        )
        per_det["box_instability"] = inst
        scores["box_instability"] = float(inst.mean()) if n else 0.0
    per_det["anchor_value"] = values[chip.anchor_idx] if n else np.zeros(0)
    return ChipScores(
        scores={k: float(v) for k, v in scores.items()},
        expected_count=float(expected_count(chip.conf)),
        per_detection=per_det,
    )
