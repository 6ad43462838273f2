"""Budgets and the oracle: how many labels each round holds, and which images a round buys.

Pure functions over arrays (the model's scores come in as ``Features``), with an
explicit ``np.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from geoal.errors import ConfigError
from geoal.select import Budget, SelectionPool, get_strategy, strategy_score


@dataclass(frozen=True, eq=False)
class Features:
    """What the current model says about every pool image (rows of labelled images unused).

    - ``scores``: (N,) float64 chip uncertainty (higher = more worth labelling).
    - ``embeddings``: (N, D) float32 L2-normalised neck embeddings.
    - ``expected``: (N,) float64 expected boxes (sum of detection confidences).
    - ``det_image``, ``det_cls``, ``det_conf``: (M,) the detections of the scored images,
      flat: pool index, class index, confidence (for ``class_balance``).
    - ``calibrated``: (N,) difficulty-calibrated uncertainty (``calibrated_scores``), NaN for
      labelled images; None = not computed.
    - ``quality``: the model's fit to the labelled images, 0-1 (``model_quality``).
    - ``objectness``: (N,) float64 top-k anchor objectness (``chip_objectness``); None = not
      computed.
    """

    scores: np.ndarray
    embeddings: np.ndarray
    expected: np.ndarray
    det_image: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    det_cls: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    det_conf: np.ndarray = field(default_factory=lambda: np.zeros(0))
    calibrated: np.ndarray | None = None
    quality: float | None = None
    objectness: np.ndarray | None = None


def class_balanced(features: Features, labelled_counts: np.ndarray) -> Features:
    """``features`` with each image's score multiplied by its class-balance factor.

    ``labelled_counts``: (C,) true boxes per class among the labelled images. See
    ``geoal.select.balance``: detections of classes rare among the labels raise a score.
    """
    from geoal.select import balance_factors, class_weights

    factors = balance_factors(
        features.det_image,
        features.det_cls,
        features.det_conf,
        class_weights(labelled_counts),
        len(features.scores),
    )
    return replace(features, scores=features.scores * factors)


def budget_targets(fractions: tuple[float, ...], total: int, what: str = "images") -> np.ndarray:
    """(R,) int64 cumulative labelled counts, round(f * total) each; ConfigError unless increasing."""
    targets = np.array([max(1, round(f * total)) for f in fractions], dtype=np.int64)
    if (np.diff(targets) <= 0).any():
        raise ConfigError(
            f"--budgets {list(fractions)} of {total} {what} give round sizes {targets.tolist()}: "
            "each round must add at least one; use fewer or more spread-out budgets"
        )
    return targets


def initial_set(n_pool: int, target: int, counts: np.ndarray, unit: str, seed: int) -> np.ndarray:
    """Round 0: a uniformly random set of pool indices, the same for every strategy of a seed.

    ``target`` is images, or boxes with ``unit == "boxes"`` (images are bought in random
    order until their true ``counts`` (N,) reach it).
    """
    order = np.random.default_rng(seed).permutation(n_pool).astype(np.int64)
    if unit == "images":
        return order[:target]
    return buy_until(order, counts, target)


def buy_until(order: np.ndarray, counts: np.ndarray, need: float) -> np.ndarray:
    """The shortest prefix of ``order`` (pool indices) whose true ``counts`` sum to >= ``need``."""
    if need <= 0 or not len(order):
        return order[:0]
    reach = np.cumsum(counts[order]) >= need
    stop = int(np.argmax(reach)) + 1 if reach.any() else len(order)
    return order[:stop]


def acquire(
    strategy: str,
    features: Features | None,
    labelled: np.ndarray,
    need: int,
    counts: np.ndarray,
    unit: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """Pool indices the oracle reveals next, in selection order.

    ``need`` is images (exactly that many are bought) or, with ``unit == "boxes"``, true
    boxes: the strategy selects against the model's expected counts, the oracle charges the
    true ``counts`` (N,) and images are taken in selection order until the charge reaches
    ``need`` (selecting again from what is left if the estimate fell short; when no image
    fits the estimated remainder, the strategy's top image is bought). ``features``
    may be None for "random".
    """
    n_pool = len(counts)
    chosen: list[np.ndarray] = []
    taken = np.zeros(n_pool, dtype=bool)
    taken[labelled] = True
    remaining = float(need)
    while remaining > 0 and not taken.all():
        cand = np.flatnonzero(~taken)
        pool = _selection_pool(strategy, features, cand, np.flatnonzero(taken), counts, labelled)
        budget = (
            Budget(k=min(int(remaining), len(cand)))
            if unit == "images"
            else Budget(max_objects=remaining)
        )
        picked = cand[get_strategy(strategy)(pool, budget, rng).indices]
        if not len(picked):  # no image fits the estimate of what is left: buy the top one
            picked = cand[get_strategy(strategy)(pool, Budget(k=1), rng).indices]
        if unit == "boxes":
            picked = buy_until(picked, counts, remaining)
            remaining -= float(counts[picked].sum())
        else:
            remaining -= len(picked)
        if not len(picked):
            break
        chosen.append(picked)
        taken[picked] = True
    return np.concatenate(chosen).astype(np.int64) if chosen else np.zeros(0, dtype=np.int64)


def _selection_pool(
    strategy: str,
    features: Features | None,
    cand: np.ndarray,
    taken: np.ndarray,
    counts: np.ndarray,
    labelled: np.ndarray,
) -> SelectionPool:
    if features is None:
        # No model view of the pool (random): estimate every image at the labelled mean.
        mean = float(counts[labelled].mean()) if len(labelled) else 1.0
        return SelectionPool(expected_objects=np.full(len(cand), mean))
    scores = features.scores
    if strategy_score(strategy) == "calibrated" and features.calibrated is not None:
        scores = features.calibrated
    return SelectionPool(
        scores=scores[cand],
        embeddings=features.embeddings[cand],
        expected_objects=features.expected[cand],
        labelled_embeddings=features.embeddings[taken] if len(taken) else None,
        quality=features.quality,
        objectness=None if features.objectness is None else features.objectness[cand],
    )
