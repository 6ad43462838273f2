"""Chip scores as arrays: how ``chip_scores`` keeps a chip's {name: value} scores.

A row stores its values as little-endian float64 bytes (``score_values``, one per name)
and the id of their names (``score_names``), a row of the ``score_names`` table that holds
each distinct list of names once (JSON). N rows' values of one name then read back as an
(N,) float64 array with one ``numpy.frombuffer`` per names list, never a JSON parse per row.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ScoreNames = tuple[str, ...]


def encode_scores(scores: Mapping[str, float]) -> tuple[ScoreNames, bytes]:
    """A chip's scores as stored: their names (in the mapping's order) and (K,) float64 bytes."""
    return tuple(scores), np.asarray(list(scores.values()), dtype="<f8").tobytes()


def names_id(conn: sqlite3.Connection, names: ScoreNames) -> int:
    """The ``score_names`` id of ``names``, added when new (inside the caller's transaction)."""
    text = json.dumps(list(names))
    conn.execute("INSERT OR IGNORE INTO score_names (names) VALUES (?)", (text,))
    return int(conn.execute("SELECT id FROM score_names WHERE names = ?", (text,)).fetchone()[0])


def score_names(conn: sqlite3.Connection) -> dict[int, ScoreNames]:
    """Every stored list of score names, by id (one JSON parse per list)."""
    rows = conn.execute("SELECT id, names FROM score_names").fetchall()
    return {int(i): tuple(json.loads(text)) for i, text in rows}


@dataclass(frozen=True, eq=False)
class ScoreValues:
    """N ``chip_scores`` rows' scores: ``name_ids`` (N,) int64 ``score_names`` ids and
    ``values`` N float64 byte strings; ``names`` every names list by id."""

    names: Mapping[int, ScoreNames]
    name_ids: np.ndarray
    values: Sequence[bytes]

    @classmethod
    def of(
        cls, conn: sqlite3.Connection, name_ids: Sequence[int], values: Sequence[bytes]
    ) -> ScoreValues:
        """The rows' values, with the names of the store or shard file ``conn``."""
        return cls(score_names(conn), np.asarray(name_ids, dtype=np.int64), values)

    def column(self, name: str) -> np.ndarray:
        """(N,) float64 every row's value of ``name``, NaN where a row does not store it."""
        out = np.full(len(self.name_ids), np.nan)
        for names_id in np.unique(self.name_ids).tolist():
            names = self.names[names_id]
            if name not in names:
                continue
            rows = self.name_ids == names_id
            blob = b"".join(itertools.compress(self.values, rows.tolist()))
            out[rows] = np.frombuffer(blob, dtype="<f8").reshape(-1, len(names))[
                :, names.index(name)
            ]
        return out

    def has(self, name: str) -> np.ndarray:
        """(N,) bool whether each row stores ``name``."""
        ids = [i for i, names in self.names.items() if name in names]
        return np.isin(self.name_ids, ids)

    def sizes(self) -> np.ndarray:
        """(N,) int64 how many scores each row stores."""
        ids, inverse = np.unique(self.name_ids, return_inverse=True)
        return np.array([len(self.names[i]) for i in ids.tolist()], dtype=np.int64)[inverse]

    def names_of(self, row: int) -> ScoreNames:
        """The score names row ``row`` stores."""
        return self.names[int(self.name_ids[row])]

    def row(self, row: int) -> dict[str, float]:
        """Row ``row``'s scores as {name: value}."""
        values = np.frombuffer(self.values[row], dtype="<f8").tolist()
        return dict(zip(self.names_of(row), values, strict=True))
