"""Aggregation: N instance values of one chip -> one chip score.

Every aggregation is a pure function ``(values (N,), weights (N,) | None, k) -> float``;
``values`` are instance uncertainties in [0, 1] (higher = more uncertain), ``weights`` how
object-like each instance is, in [0, 1]. Only ``miaod`` reads ``weights``; the others are the
unweighted baselines. An empty chip scores 0.0.

Why ``miaod`` weights, and how. A YOLOv8 chip of 640 px has 8400 anchors, nearly all of them
background: open sea, bare field. Their class scores are low (0.01-0.05), yet two views of
featureless water can disagree about them as much as about a real object, and a near-uniform
low-score row has near-maximal entropy. Unweighted, thousands of background anchors in an
empty sea chip outvote the one ambiguous whale in another chip. MI-AOD answers by re-weighting
each instance's uncertainty by how object-like it is. geoal scores a chip as

    score = mean of the k largest w_i * v_i,   default k = 3   (DEFAULT_K)

with ``v_i`` the instance's uncertainty and ``w_i`` its objectness (its highest class score,
averaged over views), used on its own absolute [0, 1] scale: the only normalisation across the
chip's instances is the top-k mean itself, over min(k, N) instances. Chip-relative weights
were rejected. ``w_i / max_j w_j`` and the weighted mean ``sum w v / sum w`` are blind to the
chip's overall objectness: in an all-background chip the least faint anchors weigh like
objects and the sea wins again. ``w_i / sum_j w_j``, a softmax over instances and
``N w_i / sum_j w_j`` make every weight depend on how much objectness the rest of the chip
holds (how many objects, how many anchors), so chips no longer share one scale; the last is
also unbounded. Sigmoid class scores already share one [0, 1] scale across chips, so used as
they are the score is comparable and bounded: for values >= 0 and weights in [0, 1],
``0 <= miaod <= topk_mean <= max(values)``, and raising any value or weight never lowers it.

Why k = 3. One anchor of objectness w_o and uncertainty v_o outranks a chip of background
anchors (objectness w_b, uncertainty v_b) whenever ``w_o v_o / k > w_b v_b``: the background
may be up to ``(w_o / w_b) / k`` times more uncertain and still lose. For w_o = 0.5 against
w_b = 0.05 that is 3.3x with k = 3, but only 1x with k = 10, where the ranking becomes a
coin toss. A real object fires several neighbouring anchors, so its top 3 are usually all
its own and k hardly matters then; k > 1 keeps a single stray anchor from being the whole
score.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from geoal.uncertainty._arrays import as_float, lookup

Aggregation = Callable[[npt.ArrayLike, npt.ArrayLike | None, int], float]

DEFAULT_K = 3
"""Instances averaged by ``topk_mean`` and ``miaod`` (see the module docstring for why 3)."""


def _as_values(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    return as_float(values, 1, "values")


def _topk_mean(x: npt.NDArray[np.float64], k: int) -> float:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(x) == 0:
        return 0.0
    k = min(k, len(x))
    return float(np.mean(np.partition(x, len(x) - k)[-k:]))


def max_(values: npt.ArrayLike, weights: npt.ArrayLike | None = None, k: int = DEFAULT_K) -> float:
    """Largest of (N,) values; ``weights`` and ``k`` are ignored."""
    v = _as_values(values)
    return float(v.max()) if len(v) else 0.0


def mean(values: npt.ArrayLike, weights: npt.ArrayLike | None = None, k: int = DEFAULT_K) -> float:
    """Mean of (N,) values; ``weights`` and ``k`` are ignored."""
    v = _as_values(values)
    return float(v.mean()) if len(v) else 0.0


def sum_(values: npt.ArrayLike, weights: npt.ArrayLike | None = None, k: int = DEFAULT_K) -> float:
    """Sum of (N,) values; ``weights`` and ``k`` are ignored."""
    return float(_as_values(values).sum())


def topk_mean(
    values: npt.ArrayLike, weights: npt.ArrayLike | None = None, k: int = DEFAULT_K
) -> float:
    """Mean of the min(k, N) largest of (N,) values; ``weights`` is ignored."""
    return _topk_mean(_as_values(values), k)


def miaod(values: npt.ArrayLike, weights: npt.ArrayLike | None = None, k: int = DEFAULT_K) -> float:
    """Mean of the min(k, N) largest ``weights * values``; (N,) values, (N,) weights in [0, 1].

    MI-AOD-style re-weighting by objectness, on the weights' absolute scale (module docstring
    says why). ``weights=None`` means all 1, which is ``topk_mean``.
    """
    v = _as_values(values)
    if weights is None:
        return _topk_mean(v, k)
    w = as_float(weights, 1, "weights")
    if w.shape != v.shape:
        raise ValueError(f"values and weights must have one shape, got {v.shape} and {w.shape}")
    return _topk_mean(w * v, k)


AGGREGATIONS: dict[str, Aggregation] = {
    "max": max_,
    "mean": mean,
    "miaod": miaod,
    "sum": sum_,
    "topk_mean": topk_mean,
}

DEFAULT_AGGREGATION = "miaod"


def get_aggregation(name: str) -> Aggregation:
    """The aggregation called ``name``; ValueError lists the valid names."""
    return lookup(AGGREGATIONS, name, "aggregation")


def list_aggregations() -> list[str]:
    """Names of the registered aggregations, sorted."""
    return sorted(AGGREGATIONS)


def aggregate_all(
    values: npt.ArrayLike, weights: npt.ArrayLike | None = None, k: int = DEFAULT_K
) -> dict[str, float]:
    """Every registered aggregation of (N,) values and (N,) weights, by name."""
    return {name: fn(values, weights, k) for name, fn in AGGREGATIONS.items()}


def chip_objectness(weights: npt.ArrayLike, k: int = DEFAULT_K) -> float:
    """How object-like a chip's k most object-like anchors are: the top-k mean of (A,) weights.

    ``weights`` are the per-anchor objectness of ``anchor_uncertainty`` (highest class score,
    in [0, 1]) over every anchor, before any confidence threshold or NMS. A weak model scores
    rare objects far below the detection threshold, so its detections (and ``expected_count``)
    are empty on nearly every chip, yet the anchors on objects still score above those on
    background: this keeps that ranking. 0 for a chip with no anchors.
    """
    return _topk_mean(_as_values(weights), k)


def expected_count(conf: npt.ArrayLike) -> float:
    """Expected number of objects in a chip: the sum of its (N,) post-NMS confidences in [0, 1]."""
    return float(as_float(conf, 1, "conf").sum())
