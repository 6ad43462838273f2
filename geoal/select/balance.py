"""Class balance: lean the selection towards classes that are rare among the labels so far.

An active learner ranks chips by how unsure the model is, but a detector's test
mAP is a mean over classes: a budget spent on the classes already labelled most
(dense vehicles, storage tanks) buys less than one spent on the rare ones. These
pure functions turn labelled box counts per class into class weights, and a
chip's detections (their classes and confidences) into a factor on its score.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def class_weights(labelled_counts: npt.ArrayLike, smoothing: float = 1.0) -> np.ndarray:
    """(C,) inverse-frequency class weights, mean 1, from (C,) labelled box counts per class.

    ``w_c ∝ 1 / (n_c + smoothing)``, scaled so the weights average 1: with balanced
    labels every weight is 1, and a class with no label yet weighs the most.
    """
    n = np.asarray(labelled_counts, dtype=np.float64)
    if n.ndim != 1 or not len(n):
        raise ValueError(f"labelled_counts must be a non-empty (C,) array, got shape {n.shape}")
    if (n < 0).any() or not np.isfinite(n).all():
        raise ValueError("labelled_counts must be finite and >= 0")
    if smoothing <= 0:
        raise ValueError(f"smoothing must be > 0, got {smoothing}")
    w = 1.0 / (n + smoothing)
    return w * (len(w) / w.sum())


def balance_factors(
    chip_index: npt.ArrayLike,
    det_cls: npt.ArrayLike,
    det_conf: npt.ArrayLike,
    weights: npt.ArrayLike,
    n_chips: int,
) -> np.ndarray:
    """(n_chips,) confidence-weighted mean class weight of each chip's detections.

    ``chip_index``, ``det_cls``, ``det_conf``: (M,) the detections of all chips, flat
    (chip of each, class index, confidence in [0, 1]); ``weights``: (C,) from
    ``class_weights``. A chip without detections (or with zero total confidence) gets 1.
    Multiply the chips' scores by these factors before selecting.
    """
    chip = np.asarray(chip_index, dtype=np.int64).reshape(-1)
    cls = np.asarray(det_cls, dtype=np.int64).reshape(-1)
    conf = np.asarray(det_conf, dtype=np.float64).reshape(-1)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if not (len(chip) == len(cls) == len(conf)):
        raise ValueError(
            f"chip_index, det_cls and det_conf must have one length, got "
            f"{len(chip)}, {len(cls)}, {len(conf)}"
        )
    if len(chip) and (chip.min() < 0 or chip.max() >= n_chips):
        raise ValueError(f"chip_index must be in [0, {n_chips})")
    if len(cls) and (cls.min() < 0 or cls.max() >= len(w)):
        raise ValueError(f"det_cls must be class indices in [0, {len(w)})")
    total = np.bincount(chip, weights=conf, minlength=n_chips)
    weighted = np.bincount(chip, weights=conf * w[cls] if len(cls) else conf, minlength=n_chips)
    return np.divide(weighted, total, out=np.ones(n_chips), where=total > 0)
