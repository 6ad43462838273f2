"""Typed queries of ``geoal report``: the trained models and the latest round's ranking."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from geoal.store.states import RoundState


@dataclass(frozen=True)
class TrainedModel:
    """A model ``geoal train`` made: its hash, the round it was trained after, its metrics
    (the stored JSON: ``train_chips``, ``val_chip_ids``, ``train``, ``eval``, ...)."""

    hash: str
    round_id: int | None
    metrics: dict[str, Any]
    created_at: str


@dataclass(frozen=True)
class RoundSummary:
    """A selection round: its id, strategy and the model that scored its candidates."""

    id: int
    strategy: str
    model_hash: str | None


@dataclass(frozen=True)
class RoundRanking:
    """A round's chips in selection order: ``chip_ids`` (K,) int64, ``scores`` (K,) float64
    (the score they were selected with; NaN where none was recorded)."""

    chip_ids: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]


def trained_models(conn: sqlite3.Connection) -> list[TrainedModel]:
    """Every model ``geoal train`` registered, oldest first."""
    rows = conn.execute(
        "SELECT hash, round_id, metrics, created_at FROM models WHERE kind = 'trained' ORDER BY id"
    ).fetchall()
    return [TrainedModel(r[0], r[1], json.loads(r[2] or "{}"), r[3]) for r in rows]


def latest_round(conn: sqlite3.Connection) -> RoundSummary | None:
    """The latest round that was not cancelled, or None."""
    row = conn.execute(
        "SELECT id, strategy, model_hash FROM rounds WHERE status != ? ORDER BY id DESC LIMIT 1",
        (RoundState.CANCELLED,),
    ).fetchone()
    return None if row is None else RoundSummary(int(row[0]), row[1], row[2])


def round_ranking(conn: sqlite3.Connection, round_id: int, limit: int) -> RoundRanking:
    """The first ``limit`` chips of a round, by rank, with their selection scores."""
    rows = conn.execute(
        "SELECT chip_id, score FROM round_chips WHERE round_id = ? ORDER BY rank LIMIT ?",
        (round_id, limit),
    ).fetchall()
    return RoundRanking(
        chip_ids=np.array([int(r[0]) for r in rows], dtype=np.int64),
        scores=np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=np.float64),
    )
