"""Typed queries of the annotation round trip: chips, detections, labels and imports.

What ``geoal export`` reads (a round's chips and its model's detections) and what
``geoal import`` reads and writes (labelled chips, their labels and the imports that
made them). Boxes travel as arrays in chip pixels; callers wrap them in their own types.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from geoal.store.states import RoundState


@dataclass(frozen=True)
class ChipRow:
    """A chip as stored: its id, its scene and its window in scene pixels."""

    id: int
    scene_id: int
    window: tuple[int, int, int, int]  # col_off, row_off, width, height


@dataclass(frozen=True)
class ChipImport:
    """Which import labelled a chip: its id and content digest (None for labels of no import)."""

    import_id: int | None
    sha256: str | None


@dataclass(frozen=True)
class ImportRecord:
    """One row of the ``imports`` table: a label file (or pull) applied to the store."""

    id: int
    path: str
    sha256: str
    format: str
    n_chips: int
    n_boxes: int


@dataclass(frozen=True)
class LabelWrite:
    """The labels one import gives a chip: ``xyxy`` (K, 4) float chip pixels, ``cls`` (K,) int.

    K = 0 makes the chip a labelled negative.
    """

    xyxy: npt.NDArray[np.float64]
    cls: npt.NDArray[np.int64]


def chip_rows(conn: sqlite3.Connection, chip_ids: Iterable[int] | None = None) -> list[ChipRow]:
    """The given chips (default: every chip), in id order."""
    rows = conn.execute(
        "SELECT id, scene_id, col_off, row_off, width, height FROM chips ORDER BY id"
    ).fetchall()
    wanted = None if chip_ids is None else set(chip_ids)
    return [
        ChipRow(int(r[0]), int(r[1]), (int(r[2]), int(r[3]), int(r[4]), int(r[5])))
        for r in rows
        if wanted is None or r[0] in wanted
    ]


def detection_arrays(
    conn: sqlite3.Connection, chip_ids: Sequence[int], model_hash: str, min_conf: float = 0.0
) -> dict[int, npt.NDArray[np.float64]]:
    """A model's stored detections of each chip at or above ``min_conf`` (0-1).

    Per chip a (K, 6) float64 array [x1, y1, x2, y2, class_id, confidence] in chip
    pixels, most confident first.
    """
    out = {}
    for cid in chip_ids:
        rows = conn.execute(
            "SELECT x1, y1, x2, y2, class_id, confidence FROM detections "
            "WHERE chip_id = ? AND model_hash = ? AND confidence >= ? ORDER BY confidence DESC",
            (cid, model_hash, float(min_conf)),
        ).fetchall()
        out[cid] = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return out


def label_arrays(
    conn: sqlite3.Connection, chip_ids: Sequence[int]
) -> dict[int, npt.NDArray[np.float64]]:
    """The stored labels of each chip: (K, 5) float64 [x1, y1, x2, y2, class_id] in chip
    pixels, in the order they were stored (K = 0 for a negative or an unlabelled chip)."""
    out = {}
    for cid in chip_ids:
        rows = conn.execute(
            "SELECT x1, y1, x2, y2, class_id FROM labels WHERE chip_id = ? ORDER BY id", (cid,)
        ).fetchall()
        out[cid] = np.array(rows, dtype=np.float64).reshape(-1, 5)
    return out


def labelled_chip_ids(conn: sqlite3.Connection) -> list[int]:
    """Every labelled chip (negatives included), in id order."""
    return [int(r[0]) for r in conn.execute("SELECT chip_id FROM labelled_chips ORDER BY chip_id")]


def chip_imports(conn: sqlite3.Connection) -> dict[int, ChipImport]:
    """The import that labelled each labelled chip, keyed by chip id."""
    rows = conn.execute(
        "SELECT l.chip_id, i.id, i.sha256 FROM labelled_chips l "
        "LEFT JOIN imports i ON i.id = l.import_id"
    )
    return {int(r[0]): ChipImport(r[1], r[2]) for r in rows}


def imports(conn: sqlite3.Connection) -> list[ImportRecord]:
    """Every import, oldest first."""
    rows = conn.execute(
        "SELECT id, path, sha256, format, n_chips, n_boxes FROM imports ORDER BY id"
    ).fetchall()
    return [ImportRecord(*r) for r in rows]


def open_round_id(conn: sqlite3.Connection) -> int | None:
    """The latest open round, or None."""
    row = conn.execute(
        "SELECT id FROM rounds WHERE status = ? ORDER BY id DESC LIMIT 1", (RoundState.OPEN,)
    ).fetchone()
    return None if row is None else int(row[0])


def round_model_hash(conn: sqlite3.Connection, round_id: int) -> str | None:
    """The model that scored a round's candidates (None: a cold start)."""
    row = conn.execute("SELECT model_hash FROM rounds WHERE id = ?", (round_id,)).fetchone()
    return None if row is None else row[0]


def round_states(conn: sqlite3.Connection) -> list[RoundState]:
    """The state of every round, in id order."""
    return [RoundState(r[0]) for r in conn.execute("SELECT status FROM rounds ORDER BY id")]


def write_import(
    conn: sqlite3.Connection,
    *,
    origin: str,
    sha256: str,
    fmt: str,
    chips: Mapping[int, LabelWrite],
) -> int:
    """Record one import and give each of its chips these labels, replacing any it had.

    Call inside a transaction. Open rounds whose every chip is now labelled become
    labelled. Returns the new import's id.
    """
    cur = conn.execute(
        "INSERT INTO imports (path, sha256, format, n_chips, n_boxes) VALUES (?, ?, ?, ?, ?)",
        (origin, sha256, fmt, len(chips), sum(len(c.cls) for c in chips.values())),
    )
    import_id = int(cur.lastrowid or 0)
    for chip_id, chip in chips.items():
        conn.execute("DELETE FROM labelled_chips WHERE chip_id = ?", (chip_id,))
        conn.execute(
            "INSERT INTO labelled_chips (chip_id, import_id) VALUES (?, ?)", (chip_id, import_id)
        )
        conn.executemany(
            "INSERT INTO labels (chip_id, class_id, x1, y1, x2, y2) VALUES (?, ?, ?, ?, ?, ?)",
            [(chip_id, int(c), *map(float, b)) for b, c in zip(chip.xyxy, chip.cls, strict=True)],
        )
    conn.execute(
        "UPDATE rounds SET status = ? WHERE status = ? AND NOT EXISTS ("
        "SELECT 1 FROM round_chips rc WHERE rc.round_id = rounds.id AND NOT EXISTS ("
        "SELECT 1 FROM labelled_chips l WHERE l.chip_id = rc.chip_id))",
        (RoundState.LABELLED, RoundState.OPEN),
    )
    return import_id
