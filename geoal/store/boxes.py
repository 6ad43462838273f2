"""Boxes on chips as flat arrays, decoded from detection and label rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Boxes:
    """Boxes, flat: ``chip_ids`` (M,) int64, ``class_ids`` (M,) int64, ``xyxy`` (M, 4)
    float64 in pixels (of the chip, or of the scene where a query says so) and
    ``confidence`` (M,) float64 (1 for labels)."""

    chip_ids: np.ndarray
    class_ids: np.ndarray
    xyxy: np.ndarray
    confidence: np.ndarray


def boxes_from_rows(rows: Sequence[Any], with_confidence: bool) -> Boxes:
    """Boxes of rows (chip_id, class_id, x1, y1, x2, y2[, confidence]); confidence 1 if absent."""
    width = 7 if with_confidence else 6
    values = np.array([tuple(r[:width]) for r in rows], dtype=np.float64).reshape(-1, width)
    return Boxes(
        chip_ids=values[:, 0].astype(np.int64),
        class_ids=values[:, 1].astype(np.int64),
        xyxy=values[:, 2:6],
        confidence=values[:, 6] if with_confidence else np.ones(len(values)),
    )


def boxes_with_probs(rows: Sequence[Any], n_classes: int) -> tuple[Boxes, np.ndarray]:
    """Boxes of detection rows (chip_id, class_id, x1, y1, x2, y2, confidence, probs) and
    their (M, C) float32 class-score vectors (C = ``n_classes`` when there is none)."""
    probs = (
        np.stack([np.frombuffer(r[7], dtype="<f4") for r in rows])
        if rows
        else np.zeros((0, n_classes), dtype=np.float32)
    )
    return boxes_from_rows(rows, with_confidence=True), probs
