"""Score chips: read -> detect (with views) -> instance uncertainty -> chip scores -> store.

Reading overlaps model compute (a reader thread pool feeds a prefetching
iterator). Each batch of chips is written in one transaction together with its
"done" rows (``chip_scores``), so an interrupted run resumes exactly where it
stopped: no chip is scored twice for one model, none is skipped.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geoal.errors import ModelError, ProjectError
from geoal.pipeline.catalog import check_scenes_unchanged
from geoal.project import Project

UNTRAINED_SUFFIXES = (".yaml", ".yml")
"""A model given as an architecture file has random weights (geoal builds it from YAML_SEED)."""


@dataclass(frozen=True)
class ScoreOptions:
    """Options of ``geoal score`` (defaults come from the project's config)."""

    model: str | None = None
    views: int = 2
    batch: int = 16
    device: str = "cpu"
    top_k: int = 3
    conf: float = 0.05
    iou: float = 0.7
    scene_ids: tuple[int, ...] = ()
    workers: int = 2
    limit: int | None = None  # score at most this many chips (tests, quick looks)
    imgsz: int | None = None  # model input size, pixels; None = the one recorded with the model
    backend: str | None = None  # torch, openvino, onnxruntime; None: auto (geoal.detect.backends)


@dataclass(frozen=True)
class ScoreReport:
    """What a scoring run did."""

    model_hash: str
    model_path: str
    scored: int
    skipped: int  # already scored by this model
    remaining: int
    imgsz: int | None = None  # the model's input size, pixels (None: each chip's own size)
    backend: str = ""  # the runtime of the forward pass ("" when each Ray worker chose its own)


@dataclass(frozen=True)
class ScoringModel:
    """The model a scoring run loads, how it came to be chosen, and its input size."""

    path: str  # what load_detector opens: an absolute path or an architecture name
    kind: str  # trained (by geoal train) | external (given)
    imgsz: int | None  # pixels chips are resized to; None = each chip's own size


def resolve_model(project: Project, model: str | None, imgsz: int | None = None) -> ScoringModel:
    """The model to score with: given, else the latest trained, else the config's ``.pt``.

    With no trained model and an architecture (``.yaml``) as the config's model, scoring
    would rank chips by random weights: refused unless the model is given explicitly.
    """
    if model:
        path, kind = project.model_file(project.stored_model_path(model)), "external"
    else:
        latest = project.store.latest_model("trained")
        if latest is not None:
            path, kind = project.model_file(str(latest["path"])), "trained"
        elif not is_untrained(project.config.model.arch):
            path, kind = project.config.model.arch, "external"
        else:
            raise ModelError(
                f"{project.root}: no trained model yet: run 'geoal train' first, or select with "
                "a cold-start strategy ('geoal select --strategy random', coreset or typiclust); "
                f"'geoal score --model {project.config.model.arch}' scores with untrained weights"
            )
    return ScoringModel(path, kind, imgsz or model_imgsz(project, path))


def is_untrained(model: str) -> bool:
    """Whether a model path names an architecture file, i.e. random weights."""
    return model.lower().endswith(UNTRAINED_SUFFIXES)


def model_imgsz(project: Project, path: str) -> int | None:
    """The input size (pixels) a model was trained at, as recorded with it.

    The project's record of the model first, then the checkpoint (geoal's record or
    ultralytics' train_args), then the config's ``model.imgsz``, then what ``geoal
    train`` would choose: the chip size up to a multiple of 32 (None: no chips).
    """
    from geoal.detect.loading import checkpoint_input, stride_size

    row = project.store.conn.execute(
        "SELECT metrics FROM models WHERE path = ? AND metrics IS NOT NULL ORDER BY id DESC",
        (project.stored_model_path(path),),
    ).fetchone()
    recorded = json.loads(row[0]).get("imgsz") if row is not None else None
    if isinstance(recorded, int) and recorded >= 32:
        return recorded
    found = checkpoint_input(path)
    if found is not None:
        return found.imgsz
    if project.config.model.imgsz is not None:
        return project.config.model.imgsz
    side = project.store.conn.execute("SELECT MAX(MAX(width, height)) FROM chips").fetchone()[0]
    return None if side is None else stride_size(int(side))


def chips_to_score(
    project: Project, model_hash: str, scene_ids: Sequence[int] = ()
) -> tuple[list[tuple[int, int, tuple[int, int, int, int]]], int]:
    """Chips not yet scored by ``model_hash``: [(chip_id, scene_id, window)], n_done.

    Labelled chips are scored too: the model's detections on them, against their labels,
    measure how hard each class is for it (``adaptive`` selection), and their embeddings
    seed the diversity step; they are never candidates for selection.
    """
    where = ["1"]
    params: list[Any] = []
    if scene_ids:
        where.append(f"c.scene_id IN ({', '.join('?' for _ in scene_ids)})")
        params.extend(scene_ids)
    rows = project.store.conn.execute(
        f"""
        SELECT c.id, c.scene_id, c.col_off, c.row_off, c.width, c.height,
               EXISTS (SELECT 1 FROM chip_scores s WHERE s.chip_id = c.id AND s.model_hash = ?)
        FROM chips c WHERE {" AND ".join(where)} ORDER BY c.height, c.id
        """,
        [model_hash, *params],
    ).fetchall()
    todo = [(r[0], r[1], (r[2], r[3], r[4], r[5])) for r in rows if not r[6]]
    return todo, len(rows) - len(todo)


def chip_record(result: Any, top_k: int) -> dict[str, Any]:
    """Everything stored for one chip from a ChipResult: scores, detections, embedding.

    Scores: every registered aggregation of the per-anchor uncertainty (two-view
    discrepancy weighted by objectness, or entropy for one view), plus
    ``box_instability`` (mean 1 - IoU of matched detections between views; CALD) and
    ``objectness`` (top-k anchor objectness, below any threshold; ``chip_objectness``).
    """
    from geoal.uncertainty import (
        INSTANCE_UNCERTAINTY,
        aggregate_all,
        anchor_uncertainty,
        box_instability,
        chip_objectness,
        expected_count,
    )

    values, weights = anchor_uncertainty(result.anchor_probs)
    scores = aggregate_all(values, weights, top_k)
    scores["objectness"] = chip_objectness(weights, top_k)
    per_det = {name: fn(result.probs) for name, fn in INSTANCE_UNCERTAINTY.items()}
    if result.view_boxes:
        inst = (
            np.mean(
                [
                    box_instability(result.boxes, vb, result.cls, vc)
                    for vb, vc in zip(result.view_boxes, result.view_cls, strict=True)
                ],
                axis=0,
            )
            if len(result)
            else np.zeros(0)
        )
        per_det["box_instability"] = inst
        scores["box_instability"] = float(inst.mean()) if len(inst) else 0.0
    # discrepancy at each detection's own anchor: the instance-level MI-AOD value
    per_det["anchor_value"] = values[result.anchor_idx] if len(result) else np.zeros(0)
    return {
        "scores": {k: float(v) for k, v in scores.items()},
        "expected_count": float(expected_count(result.conf)),
        "backend": result.backend,
        "embedding": np.asarray(result.embedding, dtype="<f4").tobytes(),
        "detections": [
            (
                *(float(v) for v in result.boxes[i]),
                int(result.cls[i]),
                float(result.conf[i]),
                np.asarray(result.probs[i], dtype="<f4").tobytes(),
                json.dumps({k: round(float(v[i]), 6) for k, v in per_det.items()}),
            )
            for i in range(len(result))
        ],
    }


def write_batch(
    project: Project,
    model_hash: str,
    views: int,
    chip_ids: Sequence[int],
    records: Sequence[dict[str, Any]],
) -> None:
    """Store a batch of scored chips in one transaction (detections + scores + done rows)."""
    with project.store.transaction() as conn:
        insert_records(conn, model_hash, views, chip_ids, records)


def insert_records(
    conn: sqlite3.Connection,
    model_hash: str,
    views: int,
    chip_ids: Sequence[int],
    records: Sequence[dict[str, Any]],
) -> None:
    """Insert scored chips (done rows + detections) inside the caller's open transaction.

    Also writes shard files (``geoal.distributed.shards``), whose tables have the same columns.
    """
    for chip_id, rec in zip(chip_ids, records, strict=True):
        conn.execute(
            "INSERT INTO chip_scores (chip_id, model_hash, views, n_detections, "
            "expected_count, scores, embedding, backend) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                chip_id,
                model_hash,
                views,
                len(rec["detections"]),
                rec["expected_count"],
                json.dumps(rec["scores"]),
                rec["embedding"],
                rec.get("backend"),
            ),
        )
        conn.executemany(
            "INSERT INTO detections (chip_id, model_hash, x1, y1, x2, y2, class_id, "
            "confidence, probs, uncertainty) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(chip_id, model_hash, *d) for d in rec["detections"]],
        )


def _batches(
    project: Project,
    todo: list[tuple[int, int, tuple[int, int, int, int]]],
    batch: int,
    workers: int,
) -> Iterator[tuple[list[int], np.ndarray]]:
    """Batches of same-size chips, read ahead by a thread pool."""
    from geoal.raster.reader import iter_batches, iter_chips

    scenes = {s.id: s for s in project.store.scenes()}
    by_size: dict[tuple[int, int], list[tuple[int, int, tuple[int, int, int, int]]]] = {}
    for item in todo:
        by_size.setdefault((item[2][2], item[2][3]), []).append(item)
    for items in by_size.values():
        yield from iter_batches(iter_chips(scenes, items, workers=workers), batch)


def score_project(project: Project, opts: ScoreOptions, *, progress: bool = True) -> ScoreReport:
    """Score every chip not yet scored by the model (labelled ones too); resumable."""
    from tqdm import tqdm

    from geoal.detect import load_detector

    if not project.store.counts()["chips"]:
        raise ProjectError(f"{project.root}: no chips to score; add scenes with 'geoal tile'")
    chosen = resolve_model(project, opts.model, opts.imgsz)
    detector = load_detector(
        chosen.path,
        project.config.classes,
        device=opts.device,
        imgsz=chosen.imgsz,
        backend=opts.backend,
    )
    model_path = chosen.path
    project.store.register_model(
        detector.model_hash,
        project.stored_model_path(model_path),
        project.config.classes,
        kind=chosen.kind,
    )
    todo, done = chips_to_score(project, detector.model_hash, opts.scene_ids)
    pending = len(todo)  # --limit scores fewer now; the rest are still left
    if opts.limit is not None:
        todo = todo[: opts.limit]
    if not todo:
        return ScoreReport(
            detector.model_hash, model_path, 0, done, pending, chosen.imgsz, detector.backend
        )
    check_scenes_unchanged(project, [item[1] for item in todo])
    scored = 0
    bar = tqdm(total=len(todo), desc="scoring", unit="chip", disable=not progress, smoothing=0.1)
    stream = detector.iter_predict(
        _batches(project, todo, opts.batch, opts.workers),
        views=opts.views,
        conf=opts.conf,
        iou=opts.iou,
    )
    try:
        for chip_ids, results in stream:
            records = [chip_record(r, opts.top_k) for r in results]
            write_batch(project, detector.model_hash, opts.views, chip_ids, records)
            scored += len(chip_ids)
            bar.update(len(chip_ids))
    finally:
        stream.close()  # type: ignore[attr-defined]
        bar.close()
    return ScoreReport(
        detector.model_hash,
        model_path,
        scored,
        done,
        pending - scored,
        chosen.imgsz,
        detector.backend,
    )
