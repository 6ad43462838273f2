"""Instance uncertainty: one value in [0, 1] per detection or anchor, higher = more uncertain.

Every function takes ``probs (N, C)``: class scores in [0, 1] of N instances over C classes.
YOLOv8 heads give an independent sigmoid score per class, so rows need not sum to 1.
``least_confidence`` and ``margin`` read the scores as they are; ``ratio`` is the same either
way; ``entropy`` needs a distribution and normalises each row to ``p / (sum(p) + EPS)``.
Softmax heads, whose rows already sum to 1, get the textbook values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from geoal.uncertainty._arrays import as_float, lookup

InstanceUncertainty = Callable[[npt.ArrayLike], npt.NDArray[np.float64]]

EPS = 1e-12
"""Added to a row's sum before normalising it, so an all-zero row stays all zero."""


def _as_probs(probs: npt.ArrayLike) -> npt.NDArray[np.float64]:
    arr = as_float(probs, 2, "probs")
    if arr.shape[1] == 0:
        raise ValueError(f"probs must have at least one class column, got shape {arr.shape}")
    return arr


def _top_two(
    p: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(N,) highest and (N,) second-highest score of each row; the second is 0 when C == 1."""
    c = p.shape[1]
    if c == 1:
        return p[:, 0], np.zeros(len(p))
    part = np.partition(p, (c - 2, c - 1), axis=1)
    return part[:, -1], part[:, -2]


def least_confidence(probs: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(N,) ``1 - max_c p`` in [0, 1] of (N, C) class scores in [0, 1]."""
    p = _as_probs(probs)
    top, _ = _top_two(p)
    return np.clip(1.0 - top, 0.0, 1.0)


def margin(probs: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(N,) ``1 - (p1 - p2)`` in [0, 1] of the two highest of (N, C) class scores in [0, 1].

    With C == 1 the second score is 0, so this equals ``least_confidence``.
    """
    p = _as_probs(probs)
    top, second = _top_two(p)
    return np.clip(1.0 - (top - second), 0.0, 1.0)


def ratio(probs: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(N,) ``p2 / p1`` in [0, 1] of the two highest of (N, C) class scores in [0, 1].

    A row whose top score is 0 is a tie and gets 1; with C == 1 there is no rival and every
    row gets 0.
    """
    p = _as_probs(probs)
    if p.shape[1] == 1:
        return np.zeros(len(p))
    top, second = _top_two(p)
    out = np.divide(second, top, out=np.ones(len(p)), where=top > 0)
    return np.clip(out, 0.0, 1.0)


def entropy(probs: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(N,) Shannon entropy in [0, 1], divided by log C, of (N, C) class scores in [0, 1].

    Rows are normalised to ``p / (sum(p) + EPS)`` first. With C == 1 the single sigmoid score
    is read as the distribution (p, 1 - p) and its entropy is divided by log 2, so a
    one-class detector still gets an uncertainty (0 at p = 0 or 1, 1 at p = 0.5).
    """
    p = _as_probs(probs)
    if p.shape[1] == 1:
        q = np.clip(p[:, 0], 0.0, 1.0)
        q = np.stack([q, 1.0 - q], axis=1)
        log_c = np.log(2.0)
    else:
        q = p / (p.sum(axis=1, keepdims=True) + EPS)
        log_c = np.log(p.shape[1])
    plogp = q * np.log(np.where(q > 0, q, 1.0))
    return np.clip(-plogp.sum(axis=1) / log_c, 0.0, 1.0)


INSTANCE_UNCERTAINTY: dict[str, InstanceUncertainty] = {
    "entropy": entropy,
    "least_confidence": least_confidence,
    "margin": margin,
    "ratio": ratio,
}


def get_instance_uncertainty(name: str) -> InstanceUncertainty:
    """The instance uncertainty function called ``name``; ValueError lists the valid names."""
    return lookup(INSTANCE_UNCERTAINTY, name, "instance uncertainty")


def list_instance_uncertainty() -> list[str]:
    """Names of the registered instance uncertainty functions, sorted."""
    return sorted(INSTANCE_UNCERTAINTY)
