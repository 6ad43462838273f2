"""Selection rounds: gather the candidate pool from the store, run a strategy, record the round.

A round records which chips were picked, why (their scores), with which model,
strategy, budget and seed. Chips in an open round are not candidates again until
the round is cancelled; labelled chips never are.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoal.errors import SelectionError
from geoal.project import Project
from geoal.store.candidates import (
    CandidateChips,
    candidate_chips,
    candidate_scores,
    label_class_counts,
    labelled_detections,
    labelled_embeddings,
    model_detections,
    scored_labelled_count,
    scored_labels,
)
from geoal.store.models import latest_scoring_model, scored_model_hashes, untrained_scoring_model
from geoal.store.rounds import (
    NewRound,
    chips_of_round,
    insert_round,
    latest_open_round,
    mark_cancelled,
    round_state,
    rounds,
)
from geoal.store.states import RoundState


@dataclass(frozen=True)
class SelectOptions:
    """Options of ``geoal select``."""

    strategy: str = "adaptive"
    budget: int | None = 50  # chips
    budget_objects: float | None = None  # expected objects (annotators pay per box)
    aggregation: str = "miaod"
    model_hash: str | None = None  # default: the model that scored chips most recently
    seed: int = 0
    min_distance: float | None = 0.0  # CRS units; None = overlapping chips allowed
    max_share: float | None = None  # per-scene quota, 0-1
    pool_factor: float = 5.0  # hybrid: top pool_factor * k uncertain, then diversity
    class_balance: bool = False  # scores x rarity of the detected classes among the labels
    scene_ids: tuple[int, ...] = ()  # only chips of these scenes (empty: every scene)
    aoi: Path | None = None  # only chips whose footprint intersects this polygon file's area


@dataclass(frozen=True)
class RoundReport:
    """What ``geoal select`` recorded."""

    round_id: int
    chips: list[int]
    model_hash: str | None
    note: str


def scoring_model(project: Project, model_hash: str | None) -> str | None:
    """The model whose scores to use: given (hash or unique prefix), or the latest that scored.

    By default the scores of an untrained model (an architecture file, random weights)
    are passed over: they rank chips by noise. Give its hash to use them anyway.
    """
    if not model_hash:
        return latest_scoring_model(project.store)
    found = scored_model_hashes(project.store, model_hash)
    if len(found) != 1:
        known = [h[:12] for h in scored_model_hashes(project.store)]
        raise SelectionError(
            f"--model {model_hash}: {'ambiguous' if found else 'no scores'}; "
            f"models with scores: {', '.join(known) or 'none (run geoal score)'}"
        )
    return found[0]


def untrained_scores(project: Project) -> str | None:
    """The hash of an untrained model (architecture file) that scored chips, if any."""
    found = untrained_scoring_model(project.store)
    return None if found is None else f"{found[0][:12]} ({found[1]})"


def candidate_pool(
    project: Project,
    model_hash: str | None,
    aggregation: str,
    need_stats: bool,
    scene_ids: tuple[int, ...] = (),
    aoi: Path | None = None,
) -> tuple[np.ndarray, Any]:
    """Candidate chip ids (N,) and their SelectionPool (scores, embeddings, bounds, groups, costs).

    ``scene_ids`` and ``aoi`` (a polygon file, any CRS) limit the candidates to those
    scenes' chips and to chips whose footprint intersects the area.
    """
    from geoal.select import SelectionPool

    chips = candidate_chips(project.store)
    if not len(chips.ids):
        raise SelectionError(
            f"{project.root}: no candidate chips (all labelled or in open rounds); "
            "add scenes with 'geoal tile' or cancel a round"
        )
    scenes = {s.id: s for s in project.store.scenes()}
    if scene_ids or aoi is not None:
        chips = _in_scope(chips, scenes, scene_ids, aoi)
    stored = candidate_scores(project.store, model_hash, aggregation, chips.ids)
    if stored.lacking:
        raise SelectionError(
            f"--aggregation {aggregation}: not stored; stored: {', '.join(stored.lacking)}"
        )
    embeddings, labelled = stored.embeddings, None
    if need_stats:
        embeddings = image_stats_embeddings(project, chips.ids, chips.scene_ids, chips.windows)
    elif model_hash and embeddings is not None:
        labelled = labelled_embeddings(project.store, model_hash)
    pool = SelectionPool(
        scores=stored.scores,
        embeddings=embeddings,
        bounds=_chip_bounds(chips, scenes),
        groups=chips.scene_ids,
        expected_objects=stored.expected,
        labelled_embeddings=labelled,
        objectness=stored.objectness if np.isfinite(stored.objectness).any() else None,
    )
    return chips.ids, pool


def _chip_bounds(chips: CandidateChips, scenes: dict[int, Any]) -> np.ndarray:
    """(N, 4) footprint bounds [xmin, ymin, xmax, ymax] of the chips, in their scene's CRS."""
    from geoal.raster.grid import window_bounds

    bounds = np.empty((len(chips.ids), 4))
    for sid in np.unique(chips.scene_ids):
        m = chips.scene_ids == sid
        bounds[m] = window_bounds(scenes[int(sid)].transform, chips.windows[m])
    return bounds


def _in_scope(
    chips: CandidateChips, scenes: dict[int, Any], scene_ids: tuple[int, ...], aoi: Path | None
) -> CandidateChips:
    """The candidates of ``scene_ids`` (all when empty) whose footprints intersect ``aoi``."""
    import shapely

    from geoal.raster.footprint import aoi_in_crs, read_aoi, scene_footprints

    wanted = set(scene_ids) or set(scenes)
    chips = chips.take(np.isin(chips.scene_ids, sorted(wanted)))
    where = "--scene " + ", ".join(scenes[i].name for i in sorted(wanted)) if scene_ids else ""
    if aoi is not None and len(chips.ids):
        area, crs = read_aoi(aoi)
        keep = np.zeros(len(chips.ids), dtype=bool)
        for sid in np.unique(chips.scene_ids):
            scene = scenes[int(sid)]
            if scene.crs is None:
                continue  # pixel coordinates: cannot lie in a map area
            mine = chips.scene_ids == sid
            local = aoi_in_crs(area, crs, scene.crs)
            shapely.prepare(local)
            polys = scene_footprints(scene, chips.windows[mine])
            keep[mine] = shapely.intersects(local, polys) & ~shapely.touches(local, polys)
        chips = chips.take(keep)
        where = f"{where} and --aoi {aoi}" if where else f"--aoi {aoi}"
    if not len(chips.ids):
        raise SelectionError(
            f"{where}: no candidate chips there (none, or all labelled or in open rounds)"
        )
    return chips


def class_balance_factors(project: Project, model_hash: str, ids: np.ndarray) -> np.ndarray:
    """(N,) class-balance factor of each candidate chip ``ids`` (sorted), from the store.

    The labelled boxes per class give the class weights, the chip's stored detections
    of ``model_hash`` (class, confidence) its factor: see ``geoal.select.balance``.
    """
    from geoal.select import balance_factors, class_weights

    counts = label_class_counts(project.store, len(project.config.classes))
    pos, cls, conf = candidate_detections(project, model_hash, ids)
    return balance_factors(pos, cls, conf, class_weights(counts), len(ids))


def candidate_detections(
    project: Project, model_hash: str, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's stored detections on the candidates ``ids`` (N,), sorted chip ids.

    Returns (M,) candidate index into ``ids``, (M,) class index and (M,) confidence, flat;
    detections of other chips, or of classes the project no longer has, are left out.
    """
    dets = model_detections(project.store, model_hash)
    pos = np.minimum(np.searchsorted(ids, dets.chip_ids), len(ids) - 1)
    keep = (ids[pos] == dets.chip_ids) & (dets.class_ids < len(project.config.classes))
    return pos[keep], dets.class_ids[keep], dets.confidence[keep]


def calibrated_pool(project: Project, model_hash: str, ids: np.ndarray, pool: Any) -> Any:
    """``pool`` with difficulty-calibrated scores and the model's quality (``adaptive``).

    The model's stored detections on the labelled chips, against their labels, give each
    class's difficulty and the model's quality (``geoal.uncertainty.calibrated``); its
    detections on the candidates ``ids`` (N,) (sorted) give their calibrated scores. With no
    labelled chip scored by the model, difficulty is unknown (every class counts as hard)
    and so is the quality (``adaptive`` then ranks by expected objects).
    """
    from geoal.uncertainty.calibrated import calibrated_scores, class_difficulty, model_quality

    store, n_classes = project.store, len(project.config.classes)
    gt = scored_labels(store, model_hash, n_classes)
    fit, probs = labelled_detections(store, model_hash, n_classes)
    difficulty = class_difficulty(
        gt.xyxy, gt.class_ids, gt.chip_ids, fit.xyxy, probs, fit.chip_ids, n_classes
    )
    pos, cls, conf = candidate_detections(project, model_hash, ids)
    scores = calibrated_scores(pos, cls, conf, difficulty, len(ids))
    if pool.scores is not None:
        scores[~np.isfinite(pool.scores)] = np.nan  # chips the model has not scored
    quality = model_quality(difficulty) if scored_labelled_count(store, model_hash) else None
    return dataclasses.replace(pool, scores=scores, quality=quality)


def image_stats_embeddings(
    project: Project, ids: np.ndarray, groups: np.ndarray, windows: np.ndarray
) -> np.ndarray:
    """Cold start: (N, D) image-statistics embeddings of the chips (reads every candidate)."""
    from tqdm import tqdm

    from geoal.raster.reader import iter_chips
    from geoal.select import image_stats_embedding

    scenes = {s.id: s for s in project.store.scenes()}
    items = [(int(c), int(g), tuple(w)) for c, g, w in zip(ids, groups, windows, strict=True)]
    out = [
        image_stats_embedding(arr)
        for _, arr in tqdm(
            iter_chips(scenes, items),
            total=len(items),
            desc="image statistics",
            unit="chip",
            disable=len(items) < 200,
        )
    ]
    return np.stack(out)


@dataclass(frozen=True)
class _Start:
    """How a round starts: the scoring model (None = cold), the strategy run, notes."""

    model_hash: str | None
    strategy: str  # the strategy run: the one asked for, or its cold-start fallback
    cold_note: str
    ignored: str | None  # an untrained model whose scores were passed over

    @property
    def cold(self) -> bool:
        return self.model_hash is None


def _start(project: Project, opts: SelectOptions) -> _Start:
    """The scores to rank by and the strategy to run; SelectionError when nothing can rank."""
    from geoal.select import STRATEGY_INFO, strategy_info

    info = strategy_info(opts.strategy)
    model_hash = scoring_model(project, opts.model_hash)
    if model_hash is not None:
        return _Start(model_hash, opts.strategy, "", None)
    ignored = untrained_scores(project)
    if info.cold_fallback:
        note = (
            f"no model has scored the chips yet: {opts.strategy} starts with {info.cold_fallback}"
        )
        return _Start(None, info.cold_fallback, note, ignored)
    if info.cold_start:
        return _Start(None, opts.strategy, "", ignored)
    starters = ", ".join(k for k, v in STRATEGY_INFO.items() if v.cold_start)
    if ignored is not None:
        raise SelectionError(
            f"chips were scored only by the untrained model {ignored}, whose random weights "
            f"rank nothing, so '{opts.strategy}' has nothing to rank: train a model "
            f"('geoal train') and score again, cold-start with --strategy {starters}, "
            f"or pass --model {ignored[:12]} to use those scores anyway"
        )
    raise SelectionError(
        f"no chip has been scored yet, so '{opts.strategy}' has nothing to rank: "
        f"run 'geoal score', or cold-start with --strategy {starters}"
    )


def _ranked_pool(project: Project, opts: SelectOptions, start: _Start) -> tuple[np.ndarray, Any]:
    """Candidate ids (N,) and their pool, scored as the strategy and the options ask."""
    from geoal.select import strategy_info

    need_stats = start.cold and start.strategy != "random"
    ids, pool = candidate_pool(
        project, start.model_hash, opts.aggregation, need_stats, opts.scene_ids, opts.aoi
    )
    if start.model_hash is not None and strategy_info(opts.strategy).score == "calibrated":
        pool = calibrated_pool(project, start.model_hash, ids, pool)
    if opts.class_balance:
        if start.model_hash is None or pool.scores is None:
            raise SelectionError(
                "--class-balance weighs the model's detections: run 'geoal score' first"
            )
        factors = class_balance_factors(project, start.model_hash, ids)
        pool = dataclasses.replace(pool, scores=pool.scores * factors)
    if opts.budget_objects is not None and start.cold:
        raise SelectionError(
            "--budget-objects needs expected object counts: run 'geoal score' first"
        )
    return ids, pool


def select_round(project: Project, opts: SelectOptions) -> RoundReport:
    """Pick chips with a strategy under a budget and record them as a new open round."""
    from geoal.select import Budget, Constraints, get_strategy

    start = _start(project, opts)
    ids, pool = _ranked_pool(project, opts, start)
    budget = (
        Budget(max_objects=opts.budget_objects)
        if opts.budget_objects is not None
        else Budget(k=int(opts.budget or 0))
    )
    constraints = Constraints(min_distance=opts.min_distance, max_share=opts.max_share)
    rng = np.random.default_rng(opts.seed)
    kwargs: dict[str, Any] = {"pool_factor": opts.pool_factor} if start.strategy == "hybrid" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the fallback is reported in sel.note
        sel = get_strategy(start.strategy)(pool, budget, rng, constraints, **kwargs)
    if not len(sel):
        raise SelectionError(
            f"strategy '{opts.strategy}' selected no chip: {sel.note or 'empty pool'}"
        )
    note = "; ".join(n for n in (start.cold_note, sel.note) if n)
    if start.ignored is not None:
        unused = f"cold start: the scores of untrained model {start.ignored} were not used"
        note = "; ".join(n for n in (unused, note) if n)
    round_id = insert_round(project.store, _new_round(opts, start, ids, pool, sel, note))
    return RoundReport(round_id, [int(c) for c in ids[sel.indices]], start.model_hash, note)


def _new_round(
    opts: SelectOptions, start: _Start, ids: np.ndarray, pool: Any, sel: Any, note: str
) -> NewRound:
    """The round to record: the selection ``sel`` of the candidates ``ids`` (N,) in ``pool``."""
    params: dict[str, Any] = {
        "aggregation": opts.aggregation,
        "min_distance": opts.min_distance,
        "max_share": opts.max_share,
        "pool_factor": opts.pool_factor,
        "class_balance": opts.class_balance,
        "cold_start": start.cold,
        "note": note,
        "scene_ids": list(opts.scene_ids),
        "aoi": None if opts.aoi is None else str(opts.aoi),
    }
    budget = (
        {"chips": opts.budget} if opts.budget_objects is None else {"objects": opts.budget_objects}
    )
    scores = pool.scores if pool.scores is not None else np.full(pool.n, np.nan)
    reasons = [
        {
            "strategy_value": None if np.isnan(sel.reasons[rank]) else float(sel.reasons[rank]),
            "expected_objects": float(pool.expected_objects[i])
            if pool.expected_objects is not None
            else None,
        }
        for rank, i in enumerate(sel.indices)
    ]
    return NewRound(
        strategy=opts.strategy,
        model_hash=start.model_hash,
        seed=opts.seed,
        budget=budget,
        params=params,
        chip_ids=ids[sel.indices],
        scores=scores[sel.indices],
        reasons=reasons,
    )


def list_rounds(project: Project) -> list[dict[str, Any]]:
    """Every round with its chip and labelled counts."""
    return [
        {
            "id": r.id,
            "status": r.state.value,
            "strategy": r.strategy,
            "model_hash": r.model_hash,
            "seed": r.seed,
            "budget": r.budget,
            "created_at": r.created_at,
            "chips": r.chips,
            "labelled": r.labelled,
        }
        for r in rounds(project.store)
    ]


def round_chip_ids(project: Project, round_id: int | None) -> tuple[int, list[int]]:
    """The chips of a round (default: the latest open one), in selection order."""
    if round_id is None:
        round_id = latest_open_round(project.store)
        if round_id is None:
            raise SelectionError(f"{project.root}: no open round; create one with 'geoal select'")
    state = round_state(project.store, round_id)
    if state is None:
        raise SelectionError(f"{project.root}: no round {round_id}")
    if state is RoundState.CANCELLED:
        raise SelectionError(f"round {round_id} was cancelled")
    return round_id, chips_of_round(project.store, round_id)


def cancel_round(project: Project, round_id: int) -> int:
    """Cancel an open round: its unlabelled chips become candidates again. Returns its size."""
    state = round_state(project.store, round_id)
    if state is None:
        raise SelectionError(f"{project.root}: no round {round_id}")
    if state is not RoundState.OPEN:
        raise SelectionError(f"round {round_id} is {state}; only an open round can be cancelled")
    return mark_cancelled(project.store, round_id)
