"""Selection rounds: gather the candidate pool from the store, run a strategy, record the round.

A round records which chips were picked, why (their scores), with which model,
strategy, budget and seed. Chips in an open round are not candidates again until
the round is cancelled; labelled chips never are.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoal.errors import SelectionError
from geoal.project import Project


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
    conn = project.store.conn
    if model_hash:
        rows = conn.execute(
            "SELECT DISTINCT model_hash FROM chip_scores WHERE model_hash LIKE ?",
            (model_hash + "%",),
        ).fetchall()
        if len(rows) != 1:
            known = [r[0][:12] for r in conn.execute("SELECT DISTINCT model_hash FROM chip_scores")]
            raise SelectionError(
                f"--model {model_hash}: {'ambiguous' if rows else 'no scores'}; "
                f"models with scores: {', '.join(known) or 'none (run geoal score)'}"
            )
        return str(rows[0][0])
    row = conn.execute(
        f"""
        SELECT s.model_hash FROM chip_scores s LEFT JOIN models m ON m.hash = s.model_hash
        WHERE m.hash IS NULL OR NOT ({_UNTRAINED_SQL})
        ORDER BY s.scored_at DESC, s.rowid DESC LIMIT 1
        """
    ).fetchone()
    return None if row is None else str(row[0])


def untrained_scores(project: Project) -> str | None:
    """The hash of an untrained model (architecture file) that scored chips, if any."""
    row = project.store.conn.execute(
        f"""
        SELECT m.hash, m.path FROM models m
        WHERE {_UNTRAINED_SQL} AND EXISTS (SELECT 1 FROM chip_scores s WHERE s.model_hash = m.hash)
        ORDER BY m.id DESC LIMIT 1
        """
    ).fetchone()
    return None if row is None else f"{row[0][:12]} ({row[1]})"


# a model registered from an architecture file has random weights (see geoal.pipeline.scoring)
_UNTRAINED_SQL = "lower(m.path) LIKE '%.yaml' OR lower(m.path) LIKE '%.yml'"


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
    from geoal.raster.grid import window_bounds
    from geoal.select import SelectionPool

    conn = project.store.conn
    rows = conn.execute(
        """
        SELECT c.id, c.scene_id, c.col_off, c.row_off, c.width, c.height,
               s.scores, s.embedding, s.expected_count
        FROM chips c
        LEFT JOIN chip_scores s ON s.chip_id = c.id AND s.model_hash = ?
        WHERE NOT EXISTS (SELECT 1 FROM labelled_chips l WHERE l.chip_id = c.id)
          AND NOT EXISTS (SELECT 1 FROM round_chips rc JOIN rounds r ON r.id = rc.round_id
                          WHERE rc.chip_id = c.id AND r.status = 'open')
        ORDER BY c.id
        """,
        (model_hash or "",),
    ).fetchall()
    if not rows:
        raise SelectionError(
            f"{project.root}: no candidate chips (all labelled or in open rounds); "
            "add scenes with 'geoal tile' or cancel a round"
        )
    scenes = {s.id: s for s in project.store.scenes()}
    if scene_ids or aoi is not None:
        rows = _in_scope(rows, scenes, scene_ids, aoi)
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    groups = np.array([r[1] for r in rows], dtype=np.int64)
    windows = np.array([r[2:6] for r in rows], dtype=np.int64)
    bounds = np.empty((len(rows), 4))
    for sid in np.unique(groups):
        m = groups == sid
        bounds[m] = window_bounds(scenes[int(sid)].transform, windows[m])
    scores = np.full(len(rows), np.nan)
    expected = np.zeros(len(rows))
    objectness = np.full(len(rows), np.nan)  # chips scored before geoal stored it: NaN
    emb_list: list[np.ndarray | None] = []
    for i, r in enumerate(rows):
        if r[6] is not None:
            all_scores = json.loads(r[6])
            if aggregation not in all_scores:
                raise SelectionError(
                    f"--aggregation {aggregation}: not stored; stored: {', '.join(sorted(all_scores))}"
                )
            scores[i] = all_scores[aggregation]
            objectness[i] = all_scores.get("objectness", np.nan)
            expected[i] = r[8]
        emb_list.append(None if r[7] is None else np.frombuffer(r[7], dtype="<f4"))
    embeddings = None
    if need_stats:
        embeddings = image_stats_embeddings(project, ids, groups, windows)
    elif all(e is not None for e in emb_list):
        embeddings = np.stack(emb_list)  # type: ignore[arg-type]
    labelled = None
    if model_hash and embeddings is not None and not need_stats:
        lab = conn.execute(
            "SELECT s.embedding FROM chip_scores s JOIN labelled_chips l ON l.chip_id = s.chip_id "
            "WHERE s.model_hash = ? AND s.embedding IS NOT NULL",
            (model_hash,),
        ).fetchall()
        if lab:
            labelled = np.stack([np.frombuffer(r[0], dtype="<f4") for r in lab])
    pool = SelectionPool(
        scores=scores,
        embeddings=embeddings,
        bounds=bounds,
        groups=groups,
        expected_objects=expected,
        labelled_embeddings=labelled,
        objectness=objectness if np.isfinite(objectness).all() else None,
    )
    return ids, pool


def _in_scope(
    rows: list[Any], scenes: dict[int, Any], scene_ids: tuple[int, ...], aoi: Path | None
) -> list[Any]:
    """The candidate rows of ``scene_ids`` (all when empty) whose chips intersect ``aoi``."""
    import shapely

    from geoal.raster.footprint import aoi_in_crs, read_aoi, scene_footprints

    wanted = set(scene_ids) or set(scenes)
    rows = [r for r in rows if r[1] in wanted]
    where = "--scene " + ", ".join(scenes[i].name for i in sorted(wanted)) if scene_ids else ""
    if aoi is not None and rows:
        area, crs = read_aoi(aoi)
        kept = []
        for sid in sorted({r[1] for r in rows}):
            scene = scenes[sid]
            mine = [r for r in rows if r[1] == sid]
            if scene.crs is None:
                continue  # pixel coordinates: cannot lie in a map area
            local = aoi_in_crs(area, crs, scene.crs)
            shapely.prepare(local)
            polys = scene_footprints(scene, np.array([r[2:6] for r in mine], dtype=np.int64))
            inside = shapely.intersects(local, polys) & ~shapely.touches(local, polys)
            kept += [r for r, k in zip(mine, inside, strict=True) if k]
        rows = kept
        where = f"{where} and --aoi {aoi}" if where else f"--aoi {aoi}"
    if not rows:
        raise SelectionError(
            f"{where}: no candidate chips there (none, or all labelled or in open rounds)"
        )
    return rows


def class_balance_factors(project: Project, model_hash: str, ids: np.ndarray) -> np.ndarray:
    """(N,) class-balance factor of each candidate chip ``ids`` (sorted), from the store.

    The labelled boxes per class give the class weights, the chip's stored detections
    of ``model_hash`` (class, confidence) its factor: see ``geoal.select.balance``.
    """
    from geoal.select import balance_factors, class_weights

    conn = project.store.conn
    n_classes = len(project.config.classes)
    counts = np.zeros(n_classes, dtype=np.int64)
    for class_id, count in conn.execute("SELECT class_id, COUNT(*) FROM labels GROUP BY class_id"):
        if 0 <= int(class_id) < n_classes:
            counts[int(class_id)] = int(count)
    pos, cls, conf = candidate_detections(project, model_hash, ids)
    return balance_factors(pos, cls, conf, class_weights(counts), len(ids))


def candidate_detections(
    project: Project, model_hash: str, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's stored detections on the candidates ``ids`` (N,), sorted chip ids.

    Returns (M,) candidate index into ``ids``, (M,) class index and (M,) confidence, flat;
    detections of other chips, or of classes the project no longer has, are left out.
    """
    dets = np.array(
        project.store.conn.execute(
            "SELECT chip_id, class_id, confidence FROM detections WHERE model_hash = ?",
            (model_hash,),
        ).fetchall(),
        dtype=np.float64,
    ).reshape(-1, 3)
    chip = dets[:, 0].astype(np.int64)
    pos = np.minimum(np.searchsorted(ids, chip), len(ids) - 1)
    keep = (ids[pos] == chip) & (dets[:, 1] < len(project.config.classes))
    return pos[keep], dets[keep, 1].astype(np.int64), dets[keep, 2]


def calibrated_pool(project: Project, model_hash: str, ids: np.ndarray, pool: Any) -> Any:
    """``pool`` with difficulty-calibrated scores and the model's quality (``adaptive``).

    The model's stored detections on the labelled chips, against their labels, give each
    class's difficulty and the model's quality (``geoal.uncertainty.calibrated``); its
    detections on the candidates ``ids`` (N,) (sorted) give their calibrated scores. With no
    labelled chip scored by the model, difficulty is unknown (every class counts as hard)
    and so is the quality (``adaptive`` then ranks by expected objects).
    """
    from geoal.uncertainty.calibrated import calibrated_scores, class_difficulty, model_quality

    conn = project.store.conn
    n_classes = len(project.config.classes)
    gt = np.array(
        conn.execute(
            "SELECT l.chip_id, l.class_id, l.x1, l.y1, l.x2, l.y2 FROM labels l "
            "WHERE l.class_id < ? AND EXISTS (SELECT 1 FROM chip_scores s "
            "WHERE s.chip_id = l.chip_id AND s.model_hash = ?)",
            (n_classes, model_hash),
        ).fetchall(),
        dtype=np.float64,
    ).reshape(-1, 6)
    scored_labelled = conn.execute(
        "SELECT COUNT(*) FROM labelled_chips l JOIN chip_scores s ON s.chip_id = l.chip_id "
        "WHERE s.model_hash = ?",
        (model_hash,),
    ).fetchone()[0]
    fit = conn.execute(
        "SELECT d.chip_id, d.x1, d.y1, d.x2, d.y2, d.probs FROM detections d "
        "JOIN labelled_chips l ON l.chip_id = d.chip_id WHERE d.model_hash = ?",
        (model_hash,),
    ).fetchall()
    probs = np.stack([np.frombuffer(r[5], dtype="<f4") for r in fit]) if fit else None
    difficulty = class_difficulty(
        gt[:, 2:6],
        gt[:, 1].astype(np.int64),
        gt[:, 0].astype(np.int64),
        np.array([r[1:5] for r in fit], dtype=np.float64).reshape(-1, 4),
        probs if probs is not None else np.zeros((0, n_classes)),
        np.array([r[0] for r in fit], dtype=np.int64),
        n_classes,
    )
    pos, cls, conf = candidate_detections(project, model_hash, ids)
    scores = calibrated_scores(pos, cls, conf, difficulty, len(ids))
    if pool.scores is not None:
        scores[~np.isfinite(pool.scores)] = np.nan  # chips the model has not scored
    quality = model_quality(difficulty) if scored_labelled else None
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


def select_round(project: Project, opts: SelectOptions) -> RoundReport:
    """Pick chips with a strategy under a budget and record them as a new open round."""
    from geoal.select import STRATEGY_INFO, Budget, Constraints, get_strategy, strategy_info

    info = strategy_info(opts.strategy)
    model_hash = scoring_model(project, opts.model_hash)
    cold = model_hash is None
    ignored = untrained_scores(project) if cold else None
    name, cold_note = opts.strategy, ""
    if cold and info.cold_fallback:
        name = info.cold_fallback
        cold_note = f"no model has scored the chips yet: {opts.strategy} starts with {name}"
    elif cold and not info.cold_start:
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
    strategy = get_strategy(name)
    need_stats = cold and name != "random"
    ids, pool = candidate_pool(
        project, model_hash, opts.aggregation, need_stats, opts.scene_ids, opts.aoi
    )
    if model_hash is not None and info.score == "calibrated":
        pool = calibrated_pool(project, model_hash, ids, pool)
    if opts.class_balance:
        if model_hash is None or pool.scores is None:
            raise SelectionError(
                "--class-balance weighs the model's detections: run 'geoal score' first"
            )
        factors = class_balance_factors(project, model_hash, ids)
        pool = dataclasses.replace(pool, scores=pool.scores * factors)
    if opts.budget_objects is not None and cold:
        raise SelectionError(
            "--budget-objects needs expected object counts: run 'geoal score' first"
        )
    budget = (
        Budget(max_objects=opts.budget_objects)
        if opts.budget_objects is not None
        else Budget(k=int(opts.budget or 0))
    )
    constraints = Constraints(min_distance=opts.min_distance, max_share=opts.max_share)
    rng = np.random.default_rng(opts.seed)
    kwargs: dict[str, Any] = {"pool_factor": opts.pool_factor} if name == "hybrid" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the fallback is reported in sel.note
        sel = strategy(pool, budget, rng, constraints, **kwargs)
    if not len(sel):
        raise SelectionError(
            f"strategy '{opts.strategy}' selected no chip: {sel.note or 'empty pool'}"
        )
    chosen = ids[sel.indices]
    note = "; ".join(n for n in (cold_note, sel.note) if n)
    if ignored is not None:
        note = "; ".join(
            n
            for n in (f"cold start: the scores of untrained model {ignored} were not used", note)
            if n
        )
    params: dict[str, Any] = {
        "aggregation": opts.aggregation,
        "min_distance": opts.min_distance,
        "max_share": opts.max_share,
        "pool_factor": opts.pool_factor,
        "class_balance": opts.class_balance,
        "cold_start": cold,
        "note": note,
        "scene_ids": list(opts.scene_ids),
        "aoi": None if opts.aoi is None else str(opts.aoi),
    }
    budget_json = (
        {"chips": opts.budget} if opts.budget_objects is None else {"objects": opts.budget_objects}
    )
    scores = pool.scores if pool.scores is not None else np.full(pool.n, np.nan)
    with project.store.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO rounds (strategy, model_hash, seed, budget, params) VALUES (?, ?, ?, ?, ?)",
            (opts.strategy, model_hash, opts.seed, json.dumps(budget_json), json.dumps(params)),
        )
        round_id = int(cur.lastrowid or 0)
        conn.executemany(
            "INSERT INTO round_chips (round_id, chip_id, rank, score, reason) VALUES (?, ?, ?, ?, ?)",
            [
                (
                    round_id,
                    int(chosen[rank]),
                    rank,
                    None if np.isnan(scores[i]) else float(scores[i]),
                    json.dumps(
                        {
                            "strategy_value": None
                            if np.isnan(sel.reasons[rank])
                            else float(sel.reasons[rank]),
                            "expected_objects": float(pool.expected_objects[i])
                            if pool.expected_objects is not None
                            else None,
                        }
                    ),
                )
                for rank, i in enumerate(sel.indices)
            ],
        )
    return RoundReport(round_id, [int(c) for c in chosen], model_hash, note)


def list_rounds(project: Project) -> list[dict[str, Any]]:
    """Every round with its chip and labelled counts."""
    rows = project.store.conn.execute(
        """
        SELECT r.id, r.status, r.strategy, r.model_hash, r.seed, r.budget, r.created_at,
               COUNT(rc.chip_id) AS chips,
               SUM(EXISTS (SELECT 1 FROM labelled_chips l WHERE l.chip_id = rc.chip_id)) AS labelled
        FROM rounds r LEFT JOIN round_chips rc ON rc.round_id = r.id
        GROUP BY r.id ORDER BY r.id
        """
    ).fetchall()
    return [
        dict(r) | {"budget": json.loads(r["budget"]), "labelled": r["labelled"] or 0} for r in rows
    ]


def round_chip_ids(project: Project, round_id: int | None) -> tuple[int, list[int]]:
    """The chips of a round (default: the latest open one), in selection order."""
    conn = project.store.conn
    if round_id is None:
        row = conn.execute(
            "SELECT id FROM rounds WHERE status = 'open' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise SelectionError(f"{project.root}: no open round; create one with 'geoal select'")
        round_id = int(row[0])
    row = conn.execute("SELECT status FROM rounds WHERE id = ?", (round_id,)).fetchone()
    if row is None:
        raise SelectionError(f"{project.root}: no round {round_id}")
    if row[0] == "cancelled":
        raise SelectionError(f"round {round_id} was cancelled")
    ids = [
        int(r[0])
        for r in conn.execute(
            "SELECT chip_id FROM round_chips WHERE round_id = ? ORDER BY rank", (round_id,)
        )
    ]
    return round_id, ids


def cancel_round(project: Project, round_id: int) -> int:
    """Cancel an open round: its unlabelled chips become candidates again. Returns its size."""
    conn = project.store.conn
    row = conn.execute("SELECT status FROM rounds WHERE id = ?", (round_id,)).fetchone()
    if row is None:
        raise SelectionError(f"{project.root}: no round {round_id}")
    if row[0] != "open":
        raise SelectionError(f"round {round_id} is {row[0]}; only an open round can be cancelled")
    with project.store.transaction():
        conn.execute("UPDATE rounds SET status = 'cancelled' WHERE id = ?", (round_id,))
    return int(
        conn.execute("SELECT COUNT(*) FROM round_chips WHERE round_id = ?", (round_id,)).fetchone()[
            0
        ]
    )
