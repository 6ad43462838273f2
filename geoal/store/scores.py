"""The scoring step's tables, ``chip_scores`` and ``detections``: codecs and typed queries.

One row of ``chip_scores`` per chip scored by a model (the "done" marker, written in the
same transaction as the chip's detections), one row of ``detections`` per detection. How
values are stored: chip scores as float64 bytes with their names once in ``score_names``
(:mod:`geoal.store.arrays`), each detection's uncertainties as a JSON object, the
embedding and each detection's class-score vector as little-endian float32 bytes.

Every function takes an open ``sqlite3.Connection``, so the same inserts and reads serve the
project's store and shard files (``geoal.store.shards``), whose tables are the store's own
(:func:`scores_ddl`). Writers call them inside a transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geoal.store.arrays import ScoreNames, ScoreValues, encode_scores, names_id, score_names
from geoal.uncertainty.chip import ChipScores

if TYPE_CHECKING:
    from geoal.detect.result import ChipResult

ChipItem = tuple[int, int, tuple[int, int, int, int]]
"""(chip_id, scene_id, window [col_off, row_off, width, height] in scene pixels)."""

DetectionRow = tuple[float, float, float, float, int, float, bytes, str]
"""A ``detections`` row as stored: x1, y1, x2, y2 (chip pixels), class, confidence,
class-score vector (float32 bytes), uncertainties (JSON)."""

SCORE_TABLES = ("chip_scores", "detections", "score_names")

_INSERT_SCORE = (
    "INSERT INTO chip_scores (chip_id, model_hash, views, n_detections, "
    "expected_count, score_names, score_values, embedding, backend) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_DETECTION = (
    "INSERT INTO detections (chip_id, model_hash, x1, y1, x2, y2, class_id, "
    "confidence, probs, uncertainty) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True)
class ScoreRecord:
    """One scored chip, encoded as stored: its ``chip_scores`` values and ``detections`` rows.

    Small and picklable: what a Ray worker sends back and what a shard file holds.
    """

    score_names: ScoreNames  # the chip scores' names, in the order of score_values
    score_values: bytes  # (K,) float64 little-endian chip scores
    expected_count: float
    embedding: bytes | None  # (D,) float32 little-endian; None: not stored
    backend: str | None  # None: a shard file of a geoal that did not record it (torch)
    detections: tuple[DetectionRow, ...]


def encode_chip(result: ChipResult, scores: ChipScores) -> ScoreRecord:
    """Encode one chip's detections and scores for storage (per-detection values to 6 places)."""
    names = list(scores.per_detection)
    per_det = [[round(v, 6) for v in np.asarray(scores.per_detection[k]).tolist()] for k in names]
    probs = np.asarray(result.probs, dtype="<f4")
    detections = tuple(
        (
            *box,
            cls,
            conf,
            probs[i].tobytes(),
            json.dumps({k: per_det[j][i] for j, k in enumerate(names)}),
        )
        for i, (box, cls, conf) in enumerate(
            zip(
                np.asarray(result.boxes, dtype=np.float64).tolist(),
                np.asarray(result.cls, dtype=np.int64).tolist(),
                np.asarray(result.conf, dtype=np.float64).tolist(),
                strict=True,
            )
        )
    )
    return ScoreRecord(
        *encode_scores(scores.scores),  # score_names, score_values
        expected_count=scores.expected_count,
        embedding=np.asarray(result.embedding, dtype="<f4").tobytes(),
        backend=result.backend,
        detections=detections,
    )


def insert_records(
    conn: sqlite3.Connection,
    model_hash: str,
    views: int,
    chip_ids: Sequence[int],
    records: Sequence[ScoreRecord],
) -> None:
    """Insert scored chips (done rows + detections) inside the caller's open transaction."""
    ids = {names: names_id(conn, names) for names in {rec.score_names for rec in records}}
    conn.executemany(
        _INSERT_SCORE,
        [
            (
                chip_id,
                model_hash,
                views,
                len(rec.detections),
                rec.expected_count,
                ids[rec.score_names],
                rec.score_values,
                rec.embedding,
                rec.backend,
            )
            for chip_id, rec in zip(chip_ids, records, strict=True)
        ],
    )
    conn.executemany(
        _INSERT_DETECTION,
        [
            (chip_id, model_hash, *d)
            for chip_id, rec in zip(chip_ids, records, strict=True)
            for d in rec.detections
        ],
    )


def insert_new_records(
    conn: sqlite3.Connection,
    model_hash: str,
    views: int,
    chip_ids: Sequence[int],
    records: Sequence[ScoreRecord],
) -> int:
    """Insert the chips not yet stored for ``model_hash`` (inside a transaction); how many."""
    have = scored_chip_ids(conn, model_hash, chip_ids)
    keep = [i for i, chip_id in enumerate(chip_ids) if chip_id not in have]
    insert_records(conn, model_hash, views, [chip_ids[i] for i in keep], [records[i] for i in keep])
    return len(keep)


def scored_chip_ids(
    conn: sqlite3.Connection, model_hash: str | None = None, chip_ids: Iterable[int] | None = None
) -> set[int]:
    """Ids of the chips scored by ``model_hash`` (None: by any model), among ``chip_ids`` if given."""
    return {r[0] for r in _rows(conn, "chip_id", "chip_scores", model_hash, chip_ids)}


def _rows(
    conn: sqlite3.Connection,
    columns: str,
    table: str,
    model_hash: str | None,
    chip_ids: Iterable[int] | None = None,
    order: str = "chip_id",
) -> sqlite3.Cursor:
    """``columns`` of ``table``'s rows of ``model_hash`` (None: any) and ``chip_ids`` (None: all)."""
    where, params = _where(model_hash, chip_ids)
    return conn.execute(f"SELECT {columns} FROM {table} WHERE {where} ORDER BY {order}", params)


def _where(model_hash: str | None, chip_ids: Iterable[int] | None) -> tuple[str, list[Any]]:
    """A WHERE clause (and its parameters) on ``model_hash`` and ``chip_id``."""
    clauses: list[str] = ["1"]
    params: list[Any] = []
    if model_hash is not None:
        clauses.append("model_hash = ?")
        params.append(model_hash)
    if chip_ids is not None:
        ids = list(chip_ids)
        clauses.append(f"chip_id IN ({', '.join('?' for _ in ids)})")
        params.extend(ids)
    return " AND ".join(clauses), params


def unscored_chips(
    conn: sqlite3.Connection, model_hash: str, scene_ids: Sequence[int] = ()
) -> tuple[list[ChipItem], int]:
    """Chips (of ``scene_ids``, or all) not yet scored by ``model_hash``, and how many are.

    In scoring order: by chip height, then id, so chips of one size run together.
    """
    where: str = "1"
    params: list[Any] = []
    if scene_ids:
        where = f"c.scene_id IN ({', '.join('?' for _ in scene_ids)})"
        params.extend(scene_ids)
    rows = conn.execute(
        f"""
        SELECT c.id, c.scene_id, c.col_off, c.row_off, c.width, c.height,
               EXISTS (SELECT 1 FROM chip_scores s WHERE s.chip_id = c.id AND s.model_hash = ?)
        FROM chips c WHERE {where} ORDER BY c.height, c.id
        """,
        [model_hash, *params],
    ).fetchall()
    todo = [(r[0], r[1], (r[2], r[3], r[4], r[5])) for r in rows if not r[6]]
    return todo, len(rows) - len(todo)


def chip_ids(conn: sqlite3.Connection) -> set[int]:
    """The ids of every chip of the store."""
    return {r[0] for r in conn.execute("SELECT id FROM chips")}


def largest_chip_side(conn: sqlite3.Connection) -> int | None:
    """The longest side of any chip, pixels (None: no chips)."""
    side = conn.execute("SELECT MAX(MAX(width, height)) FROM chips").fetchone()[0]
    return None if side is None else int(side)


def recorded_metrics(conn: sqlite3.Connection, stored_path: str) -> dict[str, Any] | None:
    """The metrics recorded with the newest model stored under ``stored_path``, if any."""
    row = conn.execute(
        "SELECT metrics FROM models WHERE path = ? AND metrics IS NOT NULL ORDER BY id DESC",
        (stored_path,),
    ).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def read_records(
    conn: sqlite3.Connection, model_hash: str, chip_ids: Sequence[int]
) -> dict[int, list[tuple[int, ScoreRecord]]]:
    """The stored records of ``chip_ids`` for ``model_hash``, as (chip_id, record) by views."""
    detections: dict[int, list[DetectionRow]] = {c: [] for c in chip_ids}
    columns = "chip_id, x1, y1, x2, y2, class_id, confidence, probs, uncertainty"
    for row in _rows(conn, columns, "detections", model_hash, chip_ids, "id"):
        detections[row[0]].append(tuple(row[1:]))
    out: dict[int, list[tuple[int, ScoreRecord]]] = {}
    names = score_names(conn)
    columns = "chip_id, views, expected_count, score_names, score_values, embedding, backend"
    for chip_id, views, expected, stored_names, values, embedding, backend in _rows(
        conn, columns, "chip_scores", model_hash, chip_ids
    ):
        record = ScoreRecord(
            names[stored_names], values, expected, embedding, backend, tuple(detections[chip_id])
        )
        out.setdefault(views, []).append((chip_id, record))
    return out


@dataclass(frozen=True, eq=False)
class StoredScore:
    """One ``chip_scores`` row, decoded."""

    chip_id: int
    model_hash: str
    views: int
    n_detections: int
    expected_count: float
    scores: dict[str, float]
    embedding: np.ndarray  # (D,) float32
    backend: str | None


@dataclass(frozen=True, eq=False)
class StoredDetection:
    """One ``detections`` row, decoded."""

    chip_id: int
    model_hash: str
    box: tuple[float, float, float, float]  # xyxy, chip pixels
    class_id: int
    confidence: float
    probs: np.ndarray  # (C,) float32 class scores
    uncertainty: dict[str, float]


def stored_scores(conn: sqlite3.Connection, model_hash: str | None = None) -> list[StoredScore]:
    """The ``chip_scores`` rows (of ``model_hash``, or all), decoded, by chip id."""
    columns = "chip_id, model_hash, views, n_detections, expected_count, embedding, backend"
    rows = _rows(
        conn, f"{columns}, score_names, score_values", "chip_scores", model_hash
    ).fetchall()
    values = ScoreValues.of(conn, [r[-2] for r in rows], [r[-1] for r in rows])
    return [
        StoredScore(c, h, v, n, e, values.row(i), decode_vector(b), backend)
        for i, (c, h, v, n, e, b, backend, *_) in enumerate(rows)
    ]


def stored_detections(
    conn: sqlite3.Connection, model_hash: str | None = None
) -> list[StoredDetection]:
    """The ``detections`` rows (of ``model_hash``, or all), decoded, by chip, as stored."""
    columns = "chip_id, model_hash, x1, y1, x2, y2, class_id, confidence, probs, uncertainty"
    return [
        StoredDetection(c, h, (x1, y1, x2, y2), k, conf, decode_vector(p), json.loads(u))
        for c, h, x1, y1, x2, y2, k, conf, p, u in _rows(
            conn, columns, "detections", model_hash, order="chip_id, id"
        )
    ]


def decode_vector(blob: bytes | None) -> np.ndarray:
    """A stored float32 vector (embedding, class scores) as a (D,) float32 array."""
    return np.frombuffer(blob or b"", dtype="<f4")


@cache
def scores_ddl() -> tuple[str, ...]:
    """CREATE statements (IF NOT EXISTS) of ``chip_scores``, ``detections`` and their indexes.

    Taken from the store itself: its migrations replayed in memory, so a shard file's
    tables are the store's at the current schema version, said once (``geoal.store``).
    """
    from geoal.store import Store  # geoal.store may import this module

    with Store(Path(":memory:")) as store:
        rows = store.conn.execute(
            "SELECT type, sql FROM sqlite_master WHERE tbl_name IN (?, ?, ?) AND sql IS NOT NULL "
            "ORDER BY type DESC, name",  # tables before indexes
            SCORE_TABLES,
        ).fetchall()
    return tuple(
        sql.replace(f"CREATE {kind.upper()} ", f"CREATE {kind.upper()} IF NOT EXISTS ", 1)
        for kind, sql in rows
    )
