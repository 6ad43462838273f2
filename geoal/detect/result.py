"""What the detector returns for one chip: plain numpy arrays, no torch."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True, eq=False)
class ChipResult:
    """Detections, class-score vectors and an embedding for one chip (arrays are read-only).

    Scores are the YOLO head's per-class sigmoid scores: each in [0, 1], a row
    does not sum to 1. Coordinates are pixels of the chip as given (before any
    resize to the model's input size). N detections after NMS, C classes,
    A anchors of the model input grid, V views.

    Attributes:
        boxes: (N, 4) float32 xyxy boxes in chip pixels, by descending ``conf``.
        conf: (N,) float32 confidence = the best class score of the box.
        cls: (N,) int64 class index; ``probs[i, cls[i]] == conf[i]``.
        probs: (N, C) float32 full class-score vector of each detection.
        anchor_idx: (N,) int64 anchor of each detection in the head output (levels
            concatenated, row-major (y, x) per level).
        anchor_probs: (V, A, C) float32 class scores of every anchor for each view,
            views 1.. permuted onto the original anchor grid (row a = the ground
            under original anchor a).
        view_boxes: V - 1 arrays (N_v, 4) float32: post-NMS boxes of views 1.. (not
            view 0, which is ``boxes``), mapped back into original chip pixels.
        view_conf: V - 1 arrays (N_v,) float32: their confidences.
        view_cls: V - 1 arrays (N_v,) int64: their classes.
        embedding: (D,) float32 L2-normalised global average pool of the feature
            maps fed to the detection head (view 0 only), concatenated over levels.
        views: the V view names, see ``geoal.detect.views.VIEW_TRANSFORMS``.
        backend: the runtime that ran the forward pass (``geoal.detect.backends``).
    """

    boxes: np.ndarray
    conf: np.ndarray
    cls: np.ndarray
    probs: np.ndarray
    anchor_idx: np.ndarray
    anchor_probs: np.ndarray
    view_boxes: tuple[np.ndarray, ...]
    view_conf: tuple[np.ndarray, ...]
    view_cls: tuple[np.ndarray, ...]
    embedding: np.ndarray
    views: tuple[str, ...]
    backend: str = "torch"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            arrays = value if isinstance(value, tuple) else (value,)
            for array in arrays:
                if isinstance(array, np.ndarray):
                    array.flags.writeable = False

    def __len__(self) -> int:
        """The number of detections N."""
        return int(self.conf.shape[0])
