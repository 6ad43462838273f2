"""Selection strategies: random, uncertainty, coreset (k-center greedy), hybrid, typiclust, adaptive.

Each is ``strategy(pool, budget, rng, constraints=None) -> Selection``; the constraints of
``geoal.select.constraints`` apply to all of them through one ``Picker``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from geoal.errors import SelectionError
from geoal.select.constraints import Picker
from geoal.select.kcenter import k_center
from geoal.select.pool import Budget, Constraints, IntArray, Selection, SelectionPool


class Strategy(Protocol):
    """What every entry of ``STRATEGIES`` is."""

    def __call__(
        self,
        pool: SelectionPool,
        budget: Budget,
        rng: np.random.Generator,
        constraints: Constraints | None = None,
    ) -> Selection: ...


def select_random(
    pool: SelectionPool,
    budget: Budget,
    rng: np.random.Generator,
    constraints: Constraints | None = None,
) -> Selection:
    """Uniformly random chips without replacement (scores and embeddings ignored)."""
    picker = Picker(pool, budget, constraints)
    picked = _walk(rng.permutation(pool.n), picker)
    return _finish(pool, picker, picked, np.full(len(picked), np.nan), pool.n)


def select_uncertainty(
    pool: SelectionPool,
    budget: Budget,
    rng: np.random.Generator,
    constraints: Constraints | None = None,
) -> Selection:
    """The highest-scored chips; NaN scores are never picked, ties are broken by ``rng``."""
    scores = _require_scores(pool, "uncertainty")
    order = _score_order(scores, rng)
    picker = Picker(pool, budget, constraints)
    picked = _walk(order, picker)
    return _finish(pool, picker, picked, scores[picked], len(order))


def select_coreset(
    pool: SelectionPool,
    budget: Budget,
    rng: np.random.Generator,
    constraints: Constraints | None = None,
) -> Selection:
    """Greedy k-center on ``pool.embeddings`` (Sener & Savarese 2018).

    Starts from ``pool.labelled_embeddings`` when given, else from a random chip; each step
    picks the chip farthest (Euclidean) from everything selected or labelled so far.
    Cost per step is at most one float32 pass over the (N, D) embeddings, usually much less
    (see ``geoal.select.kcenter``); no N x N matrix is formed.
    Works before any model exists when the embeddings are ``image_stats_embedding`` vectors.
    """
    emb = _require_embeddings(pool, "coreset")
    picker = Picker(pool, budget, constraints)
    cand = np.arange(pool.n, dtype=np.int64)
    picked, dist = k_center(emb, cand, picker, rng, pool.labelled_embeddings, first="random")
    return _finish(pool, picker, picked, dist, pool.n)


def select_hybrid(
    pool: SelectionPool,
    budget: Budget,
    rng: np.random.Generator,
    constraints: Constraints | None = None,
    pool_factor: float = 5.0,
) -> Selection:
    """Uncertainty then diversity: k-center greedy over the M most uncertain chips.

    M = ceil(pool_factor * k) chips under a ``k`` budget; under a ``max_objects`` budget, the
    shortest run of top chips whose cost reaches ``pool_factor * max_objects``.
    k-center starts from ``pool.labelled_embeddings`` when given, else from the top chip.
    If constraints exhaust those M before the budget is met, the rest is filled in score order
    from the chips below M. Without embeddings it warns and falls back to ``uncertainty``.
    """
    if not pool_factor >= 1:
        raise SelectionError(f"hybrid pool_factor must be >= 1, got {pool_factor!r}")
    scores = _require_scores(pool, "hybrid")
    if pool.embeddings is None:
        note = "hybrid: no embeddings in the pool, fell back to uncertainty"
        warnings.warn(note, stacklevel=2)
        sel = select_uncertainty(pool, budget, rng, constraints)
        return Selection(sel.indices, sel.reasons, sel.cost, sel.complete, _join(note, sel.note))
    order = _score_order(scores, rng)
    picker = Picker(pool, budget, constraints)
    seeds = pool.labelled_embeddings
    picked, m = _diverse_top(pool.embeddings, order, picker, rng, seeds, pool_factor)
    rest = order[m:]
    note = ""
    if not picker.done and len(rest):
        extra = _walk(rest, picker)
        if len(extra):
            note = f"hybrid: constraints exhausted the top {m}; {len(extra)} filled in score order"
        picked = np.concatenate([picked, extra]).astype(np.int64)
    sel = _finish(pool, picker, picked, scores[picked], len(order))
    return Selection(sel.indices, sel.reasons, sel.cost, sel.complete, _join(note, sel.note))


def _diverse_top(
    emb: npt.NDArray[np.float32],
    order: IntArray,
    picker: Picker,
    rng: np.random.Generator,
    seeds: npt.NDArray[np.float32] | None,
    pool_factor: float,
) -> tuple[IntArray, int]:
    """k-center over the head of ``order`` (pool indices) whose cost reaches pool_factor x budget.

    k-center starts from ``seeds`` (labelled or already picked chips), else the head's first
    chip. Returns the picked pool indices and the head's length M.
    """
    reach = np.cumsum(picker.costs[order]) >= pool_factor * picker.capacity - 1e-9
    m = int(np.argmax(reach)) + 1 if reach.any() else len(order)
    top = order[:m]
    picked, _ = k_center(emb[top], top, picker, rng, seeds, first="top")
    return picked, m


def select_typiclust(
    pool: SelectionPool,
    budget: Budget,
    rng: np.random.Generator,
    constraints: Constraints | None = None,
) -> Selection:
    """TypiClust: the most typical chip of each cluster the labels do not cover yet.

    k-means over candidates and ``pool.labelled_embeddings`` into L + B clusters (B = the
    budget in chips, or the estimated chips of an objects budget); see
    ``geoal.select.typiclust``. Scores are not used: it suits the first rounds, when the
    model's uncertainty means little. Reasons are the chips' typicality.
    """
    from geoal.select.typiclust import typiclust_order

    emb = _require_embeddings(pool, "typiclust")
    picker = Picker(pool, budget, constraints)
    if budget.k is not None:
        want = budget.k
    else:
        mean_cost = float(np.mean(picker.costs)) if pool.n else 1.0
        want = max(1, math.ceil(picker.capacity / max(mean_cost, 1e-9)))
    order, typ = typiclust_order(emb, pool.labelled_embeddings, want, rng)
    picked = _walk(order, picker)
    reasons = dict(zip(order.tolist(), typ.tolist(), strict=True))
    return _finish(pool, picker, picked, np.array([reasons[i] for i in picked.tolist()]), pool.n)


def select_adaptive(
    pool: SelectionPool,
    budget: Budget,
    rng: np.random.Generator,
    constraints: Constraints | None = None,
    *,
    explore_share: float = 0.2,
    weak_below: float = 0.3,
    pool_factor: float = 4.0,
    empty_below: float = 0.5,
) -> Selection:
    """The default: find objects while the model is weak, its doubts once it is not, and misses.

    One budget, one ``Picker`` (the constraints hold across the parts):

    1. ``1 - explore_share`` of the budget: k-center over the head of a ranking that holds
       ``pool_factor`` x the budget, seeded by the labelled chips (PPAL's diversity step over
       about 4x the budget). While the model is weak (``pool.quality`` below ``weak_below``,
       or unknown) the ranking is its objectness below any threshold (``pool.objectness``;
       the expected objects without it): a weak model's doubts mean little, but where it
       sees candidates there usually are objects, and in a survey most chips hold none (AIDE
       samples confident candidates for the same reason). On sen2ships models trained on a
       few ships detect almost nothing above 0.05, yet ranked this way the first two
       acquisitions bought 0.46 ship boxes per chip against random's 0.16 (3 seeds,
       docs/benchmarks.md). Once the model fits its labels better, the ranking is
       ``pool.scores`` (e.g. difficulty-calibrated uncertainty,
       ``geoal.uncertainty.calibrated_scores``).
    2. ``explore_share``: chips where the model sees (almost) nothing (expected objects below
       ``empty_below``), farthest in embedding space from everything labelled or picked:
       what the model misses is what uncertainty cannot see.
    3. Whatever the constraints or a small pool leave is filled in the ranking's order.

    Reasons are each chip's ranking value (expected objects or score).
    """
    if not 0.0 <= explore_share < 1.0:
        raise SelectionError(f"adaptive explore_share must be in [0, 1), got {explore_share!r}")
    if not pool_factor >= 1:
        raise SelectionError(f"adaptive pool_factor must be >= 1, got {pool_factor!r}")
    emb = _require_embeddings(pool, "adaptive")
    ranking, phase = _adaptive_ranking(pool, weak_below)
    order = _score_order(ranking, rng)
    picker = Picker(pool, budget, constraints)
    # The diversity step looks only at chips the ranking puts above zero, if they can fill
    # the budget: in a survey most chips have no candidate at all, and a head padded with
    # them would spend the budget on empty chips at random.
    positive = order[ranking[order] > 0]  # order holds only the scored (finite) chips
    if picker.costs[positive].sum() >= picker.capacity:
        order = np.concatenate([positive, order[ranking[order] <= 0]])
        head_limit = len(positive)
    else:
        head_limit = len(order)
    explore = explore_share * picker.capacity
    if budget.k is not None:
        explore = float(round(explore))
    with picker.capped(picker.capacity - explore):
        main, m = _diverse_top(
            emb, order[:head_limit], picker, rng, pool.labelled_embeddings, pool_factor
        )
    quiet = np.isfinite(ranking)  # chips the model has not scored are not explored
    if pool.expected_objects is not None:
        quiet &= pool.expected_objects < empty_below
    quiet[main] = False
    cand = np.flatnonzero(quiet).astype(np.int64)
    seeds = [x for x in (pool.labelled_embeddings, emb[main]) if x is not None and len(x)]
    missed, _ = k_center(
        emb[cand], cand, picker, rng, np.concatenate(seeds) if seeds else None, first="random"
    )
    picked = np.concatenate([main, missed]).astype(np.int64)
    if not picker.done:
        taken = np.zeros(pool.n, dtype=bool)
        taken[picked] = True
        rest = order[~taken[order]]
        picked = np.concatenate([picked, _walk(rest, picker)]).astype(np.int64)
    reasons = np.nan_to_num(ranking[picked], nan=0.0)
    sel = _finish(pool, picker, picked, reasons, len(order))
    note = f"adaptive: {len(main)} by {phase} (top {m}), {len(missed)} where the model sees nothing"
    return Selection(sel.indices, sel.reasons, sel.cost, sel.complete, _join(note, sel.note))


def _adaptive_ranking(
    pool: SelectionPool, weak_below: float
) -> tuple[npt.NDArray[np.float64], str]:
    """(N,) what ``adaptive`` ranks by, NaN for chips the model has not scored, and the
    phase's name for its note."""
    weak = pool.quality is None or pool.quality < weak_below
    scored = pool.scores is not None and bool(np.isfinite(pool.scores).any())
    unscored = np.zeros(pool.n, dtype=bool)
    if pool.scores is not None and scored:
        unscored = np.isnan(pool.scores)
    if weak or not scored:
        # objectness only when every scored chip has it (older scores lack it: one ranking)
        if pool.objectness is not None and np.isfinite(pool.objectness[~unscored]).all():
            return np.where(unscored, np.nan, pool.objectness), "weak model: objectness"
        if pool.expected_objects is not None:
            return np.where(unscored, np.nan, pool.expected_objects), "weak model: expected objects"
    if scored and pool.scores is not None:
        return pool.scores, "scores"  # fitted model, or nothing else to rank by
    raise SelectionError(
        "strategy 'adaptive' needs the model's objectness, expected objects or scores per "
        "chip (score the chips first), or use 'typiclust', 'coreset' or 'random' for a cold "
        "start"
    )


STRATEGIES: dict[str, Strategy] = {
    "adaptive": select_adaptive,
    "random": select_random,
    "uncertainty": select_uncertainty,
    "coreset": select_coreset,
    "hybrid": select_hybrid,
    "typiclust": select_typiclust,
}


@dataclass(frozen=True)
class StrategyInfo:
    """What a strategy needs, so that callers ask the registry instead of testing names.

    - ``needs_scores``: it ranks by ``pool.scores`` (a model must have scored the chips).
    - ``cold_start``: it runs before any model, on image-statistics embeddings.
    - ``score``: the chip score it ranks by: "aggregation" (the configured stored
      aggregation, e.g. miaod) or "calibrated" (difficulty-calibrated uncertainty, computed
      at selection time from the labelled chips, ``geoal.uncertainty.calibrated``).
    - ``cold_fallback``: the strategy that runs in its place before any model has scored
      the chips (None: it cannot start cold, or needs no fallback).
    """

    needs_scores: bool
    cold_start: bool
    score: str = "aggregation"
    cold_fallback: str | None = None


STRATEGY_INFO: dict[str, StrategyInfo] = {
    "adaptive": StrategyInfo(
        needs_scores=True, cold_start=False, score="calibrated", cold_fallback="typiclust"
    ),
    "random": StrategyInfo(needs_scores=False, cold_start=True),
    "uncertainty": StrategyInfo(needs_scores=True, cold_start=False),
    "coreset": StrategyInfo(needs_scores=False, cold_start=True),
    "hybrid": StrategyInfo(needs_scores=True, cold_start=False),
    "typiclust": StrategyInfo(needs_scores=False, cold_start=True),
}

DEFAULT_STRATEGY = "adaptive"


def strategy_info(name: str) -> StrategyInfo:
    """The registry entry of ``name``; SelectionError listing the valid names."""
    get_strategy(name)
    return STRATEGY_INFO[name]


def strategy_score(name: str) -> str:
    """The chip score ``name`` ranks by: "aggregation" or "calibrated"."""
    return strategy_info(name).score


def list_strategies() -> list[str]:
    """Names of the registered strategies, sorted."""
    return sorted(STRATEGIES)


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``, or SelectionError listing the valid names."""
    try:
        return STRATEGIES[name]
    except KeyError:
        valid = ", ".join(list_strategies())
        raise SelectionError(f"unknown selection strategy {name!r}; valid names: {valid}") from None


def _require_scores(pool: SelectionPool, name: str) -> npt.NDArray[np.float64]:
    if pool.scores is None or not np.isfinite(pool.scores).any():
        raise SelectionError(
            f"strategy {name!r} needs scores and the pool has none: score the chips first, "
            "or use 'random' or 'coreset' for a cold start"
        )
    return pool.scores


def _require_embeddings(pool: SelectionPool, name: str) -> npt.NDArray[np.float32]:
    if pool.embeddings is None:
        raise SelectionError(
            f"strategy {name!r} needs pool.embeddings: pass the detector's embeddings, or "
            "image_stats_embedding vectors for a cold start"
        )
    return pool.embeddings


def _score_order(scores: npt.NDArray[np.float64], rng: np.random.Generator) -> IntArray:
    """(n_scored,) indices of the finite scores, highest first, ties in random order."""
    scored = np.flatnonzero(np.isfinite(scores))
    ranks = np.lexsort((rng.random(len(scored)), -scores[scored]))
    return scored[ranks].astype(np.int64)


def _walk(order: IntArray, picker: Picker) -> IntArray:
    """The candidates of ``order`` the picker admits, walking until its budget is met."""
    picked: list[int] = []
    for i in order.tolist():
        if picker.done:
            break
        if picker.try_add(i):
            picked.append(i)
    return np.asarray(picked, dtype=np.int64)


def _finish(
    pool: SelectionPool,
    picker: Picker,
    picked: IntArray,
    reasons: npt.NDArray[np.float64],
    n_candidates: int,
) -> Selection:
    """Wrap ``picked`` with its cost, and say why it falls short of the budget, if it does."""
    cost = math.nan
    if pool.expected_objects is not None:
        cost = float(np.maximum(pool.expected_objects[picked], picker.budget.min_cost).sum())
    b, refused = picker.budget, picker.refused
    if b.k is not None:
        complete = picker.done
        wanted = f"{len(picked)} of k={b.k} chips"
    else:
        # The objects budget is met when chips are left and none of them fits what is left:
        # those refused for cost never will; those refused by a constraint are checked here.
        left = picker.capacity - picker.spent
        complete = picker.done or (len(picked) < n_candidates and picker.min_blocked_cost > left)
        wanted = f"{picker.spent:g} of max_objects={b.max_objects:g}"
    note = ""
    if not complete:
        c = picker.constraints
        note = (
            f"selected {wanted} from {n_candidates} candidates; refused by the spatial "
            f"constraint (min_distance={c.min_distance}): {refused['spatial']}, by the "
            f"per-scene quota (max_share={c.max_share}): {refused['quota']}"
        )
    return Selection(picked, np.asarray(reasons, dtype=np.float64), cost, complete, note)


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)
