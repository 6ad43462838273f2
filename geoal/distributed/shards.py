"""Scoring without Ray: ``geoal score --shard I/N`` into a shard file, ``geoal merge-shards``.

For schedulers such as SLURM job arrays. Shard I of N holds the chips whose
id % N == I (of the chips not yet scored by the model when the shard starts),
scored by the local engine on that node. A shard file is a small SQLite
database with the store's ``chip_scores`` and ``detections`` columns, written
one transaction per batch: a shard killed and run again continues where it
stopped, and a finished one run again does nothing. The shard job only reads
the project's store; ``merge-shards`` brings shard files into it, one
transaction per file, skipping chips the model has already scored there, so
merging twice (or a shard that was run twice) adds nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoal.distributed.work import Shard
from geoal.distributed.worker import ScoreParams, score_chips
from geoal.errors import ConfigError, ProjectError
from geoal.pipeline.catalog import check_scenes_unchanged
from geoal.pipeline.scoring import (
    ScoreOptions,
    chips_to_score,
    insert_records,
    resolve_model,
)
from geoal.project import Project
from geoal.raster.chip import Chip

FORMAT = "geoal-shard/1"
SHARD_SUFFIX = ".sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scenes (id INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chip_scores (
    chip_id INTEGER NOT NULL,
    model_hash TEXT NOT NULL,
    views INTEGER NOT NULL,
    n_detections INTEGER NOT NULL,
    expected_count REAL NOT NULL,
    scores TEXT NOT NULL,
    embedding BLOB,
    scored_at TEXT NOT NULL DEFAULT (datetime('now')),
    backend TEXT,
    PRIMARY KEY (chip_id, model_hash)
);
CREATE TABLE IF NOT EXISTS detections (
    id INTEGER PRIMARY KEY,
    chip_id INTEGER NOT NULL,
    model_hash TEXT NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    class_id INTEGER NOT NULL,
    confidence REAL NOT NULL,
    probs BLOB NOT NULL,
    uncertainty TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS detections_chip ON detections(chip_id);
"""

# What a shard must agree on with a shard file it resumes.
_IDENTITY = ("format", "model_hash", "shard", "views", "top_k", "conf", "iou")


@dataclass(frozen=True)
class ShardReport:
    """What a shard run did."""

    path: Path
    shard: Shard
    model_hash: str
    scored: int
    already: int  # in the shard file from an earlier run
    remaining: int
    complete: bool


@dataclass(frozen=True)
class MergeReport:
    """What merging one shard file did."""

    path: Path
    model_hash: str
    shard: str
    merged: int
    skipped: int  # already in the store for that model
    complete: bool


def default_shard_path(project: Project, model_hash: str, shard: Shard) -> Path:
    """``<project>/shards/<model hash>-<I>-of-<N>.sqlite``."""
    name = f"{model_hash[:12]}-{shard.index}-of-{shard.count}{SHARD_SUFFIX}"
    return project.root / "shards" / name


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _add_backend_column(conn: sqlite3.Connection) -> None:
    """Give a shard file of an earlier geoal the ``backend`` column (NULL: torch)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(chip_scores)")}
    if "backend" not in columns:
        conn.execute("ALTER TABLE chip_scores ADD COLUMN backend TEXT")


def _meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def score_shard(
    project: Project,
    opts: ScoreOptions,
    shard: Shard,
    out: Path | None = None,
    *,
    progress: bool = True,
) -> ShardReport:
    """Score shard ``shard`` of the chips not yet scored by the model into a shard file.

    Only reads the project's store. ``out`` defaults to :func:`default_shard_path`.
    """
    from tqdm import tqdm

    from geoal.detect import load_detector

    chosen = resolve_model(project, opts.model, opts.imgsz)
    detector = load_detector(
        chosen.path,
        project.config.classes,
        device=opts.device,
        imgsz=chosen.imgsz,
        backend=opts.backend,
    )
    model_path, kind = chosen.path, chosen.kind
    path = Path(out) if out is not None else default_shard_path(project, detector.model_hash, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, _ = chips_to_score(project, detector.model_hash, opts.scene_ids)
    scenes = {s.id: s for s in project.store.scenes()}
    todo = shard.select([Chip.at(scenes[s], i, w) for i, s, w in rows])
    check_scenes_unchanged(project, [chip.scene_id for chip in todo])
    meta = {
        "format": FORMAT,
        "model_hash": detector.model_hash,
        "model_path": model_path,
        "model_kind": kind,
        "classes": json.dumps(list(project.config.classes)),
        "shard": str(shard),
        "views": str(opts.views),
        "top_k": str(opts.top_k),
        "conf": repr(opts.conf),
        "iou": repr(opts.iou),
        "project": str(project.root.resolve()),
    }
    with _connect(path) as conn:
        conn.execute("PRAGMA synchronous=NORMAL")
        _open_shard(conn, path, meta, {s.id: s.fingerprint for s in scenes.values()})
        have = {r[0] for r in conn.execute("SELECT chip_id FROM chip_scores")}
        already = sum(1 for chip in todo if chip.id in have)
        todo = [chip for chip in todo if chip.id not in have]
        pending = len(todo)
        if opts.limit is not None:
            todo = todo[: opts.limit]
        params = ScoreParams(opts.views, opts.conf, opts.iou, opts.top_k, opts.batch, opts.workers)
        scored = 0
        bar = tqdm(total=len(todo), desc=f"shard {shard}", unit="chip", disable=not progress)
        try:
            for chip_ids, records in score_chips(detector, todo, params):
                with _transaction(conn):  # a killed shard keeps every finished batch
                    insert_records(conn, detector.model_hash, opts.views, chip_ids, records)
                scored += len(chip_ids)
                bar.update(len(chip_ids))
        finally:
            bar.close()
        complete = scored == pending
        with _transaction(conn):
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('complete', ?)",
                ("1" if complete else "0",),
            )
    return ShardReport(
        path, shard, detector.model_hash, scored, already, pending - scored, complete
    )


def _open_shard(
    conn: sqlite3.Connection, path: Path, meta: dict[str, str], fingerprints: dict[int, str]
) -> None:
    """Create the shard file's tables and meta, or check that an existing one is this shard's."""
    try:
        conn.executescript(_SCHEMA)
        _add_backend_column(conn)
        old = _meta(conn)
    except sqlite3.DatabaseError as exc:
        raise ConfigError(
            f"{path}: not a geoal shard file ({exc}); give another --shard-out"
        ) from None
    if old:
        diff = [k for k in _IDENTITY if old.get(k) != meta[k]]
        if diff:
            raise ConfigError(
                f"{path}: a shard file of another run ({', '.join(f'{k} {old.get(k)!r}' for k in diff)}; "
                f"this run has {', '.join(f'{k} {meta[k]!r}' for k in diff)}): "
                "give another --shard-out, or delete it"
            )
    with _transaction(conn):
        conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(meta.items())
        )
        conn.executemany(
            "INSERT OR REPLACE INTO scenes (id, fingerprint) VALUES (?, ?)",
            list(fingerprints.items()),
        )


def shard_files(project: Project, paths: Sequence[Path]) -> list[Path]:
    """The files given, or every ``*.sqlite`` in the project's ``shards/`` folder."""
    if paths:
        return [Path(p) for p in paths]
    found = sorted((project.root / "shards").glob(f"*{SHARD_SUFFIX}"))
    if not found:
        raise ConfigError(
            f"no shard files given and none in {project.root / 'shards'}; "
            "give the files written by 'geoal score --shard I/N --shard-out PATH'"
        )
    return found


def merge_shards(project: Project, paths: Sequence[Path], *, chunk: int = 500) -> list[MergeReport]:
    """Bring shard files into the store: one transaction per file; chips already scored skipped.

    Each file is checked first: a geoal shard, for this project's classes and
    scenes (same scene ids, same content fingerprints).
    """
    reports = []
    for path in shard_files(project, paths):
        reports.append(_merge_one(project, path, chunk))
    return reports


def _merge_one(project: Project, path: Path, chunk: int) -> MergeReport:
    if not path.is_file():
        raise ConfigError(f"{path}: no such shard file")
    with _connect(path) as shard_conn:
        try:
            meta = _meta(shard_conn)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{path}: not a geoal shard file ({exc})") from None
        if meta.get("format") != FORMAT:
            raise ConfigError(f"{path}: not a geoal shard file (format {meta.get('format')!r})")
        _check_project(project, path, meta, shard_conn)
        _add_backend_column(shard_conn)
        model_hash = meta["model_hash"]
        project.store.register_model(
            model_hash,
            project.stored_model_path(meta["model_path"]),
            json.loads(meta["classes"]),
            kind=meta["model_kind"],
        )
        ids = [
            r[0]
            for r in shard_conn.execute(
                "SELECT chip_id FROM chip_scores WHERE model_hash = ? ORDER BY chip_id",
                (model_hash,),
            )
        ]
        merged = 0
        with project.store.transaction() as conn:
            stored = {
                r[0]
                for r in conn.execute(
                    "SELECT chip_id FROM chip_scores WHERE model_hash = ?", (model_hash,)
                )
            }
            new = [chip_id for chip_id in ids if chip_id not in stored]
            known = {r[0] for r in conn.execute("SELECT id FROM chips")}
            unknown = [chip_id for chip_id in new if chip_id not in known]
            if unknown:
                raise ProjectError(
                    f"{path}: {len(unknown)} chip(s) not in {project.root} (e.g. chip "
                    f"{unknown[0]}): the shard was made from another project's chips"
                )
            for start in range(0, len(new), chunk):
                part = new[start : start + chunk]
                records = _read_records(shard_conn, model_hash, part)
                for views, group in records.items():
                    insert_records(
                        conn, model_hash, views, [c for c, _ in group], [r for _, r in group]
                    )
                merged += len(part)
    return MergeReport(
        path,
        model_hash,
        meta.get("shard", "?"),
        merged,
        len(ids) - merged,
        meta.get("complete") == "1",
    )


def _check_project(
    project: Project, path: Path, meta: dict[str, str], shard_conn: sqlite3.Connection
) -> None:
    classes = json.loads(meta["classes"])
    if classes != list(project.config.classes):
        raise ConfigError(
            f"{path}: scored for classes {classes}, the project's are "
            f"{list(project.config.classes)}; merge it into the project it was made from"
        )
    ours = {s.id: s.fingerprint for s in project.store.scenes()}
    for scene_id, fingerprint in shard_conn.execute("SELECT id, fingerprint FROM scenes"):
        if ours.get(scene_id, fingerprint) != fingerprint:
            raise ProjectError(
                f"{path}: scene {scene_id} of the shard is not scene {scene_id} of "
                f"{project.root} (other content): merge it into the project it was made from"
            )


def _read_records(
    conn: sqlite3.Connection, model_hash: str, chip_ids: Sequence[int]
) -> dict[int, list[tuple[int, dict[str, Any]]]]:
    """Records of ``chip_ids`` from a shard file, as ``chip_record`` made them, by views."""
    marks = ", ".join("?" for _ in chip_ids)
    detections: dict[int, list[tuple[Any, ...]]] = {c: [] for c in chip_ids}
    for row in conn.execute(
        "SELECT chip_id, x1, y1, x2, y2, class_id, confidence, probs, uncertainty "
        f"FROM detections WHERE model_hash = ? AND chip_id IN ({marks}) ORDER BY id",
        [model_hash, *chip_ids],
    ):
        detections[row[0]].append(tuple(row[1:]))
    out: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for chip_id, views, expected, scores, embedding, backend in conn.execute(
        "SELECT chip_id, views, expected_count, scores, embedding, backend FROM chip_scores "
        f"WHERE model_hash = ? AND chip_id IN ({marks}) ORDER BY chip_id",
        [model_hash, *chip_ids],
    ):
        record = {
            "scores": json.loads(scores),
            "expected_count": expected,
            "embedding": embedding,
            "backend": backend,
            "detections": detections[chip_id],
        }
        out.setdefault(views, []).append((chip_id, record))
    return out
