"""Typed queries of selection rounds: record a round, read it back, change its state.

A round is a row of ``rounds`` (strategy, model, seed, budget, parameters, state) and
its chips in ``round_chips`` (rank, score, reason). States are :class:`RoundState`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geoal.store import Store
from geoal.store.states import RoundState

_OPEN = RoundState.OPEN.value
_CANCELLED = RoundState.CANCELLED.value


@dataclass(frozen=True)
class NewRound:
    """A round to record: what was picked, how, and why.

    ``chip_ids``: (K,) int chips in selection order; ``scores``: (K,) float their scores
    (NaN = none); ``reasons``: K JSON-able dicts (strategy value, expected objects).
    """

    strategy: str
    model_hash: str | None
    seed: int
    budget: dict[str, Any]  # {"chips": k} or {"objects": n}
    params: dict[str, Any]
    chip_ids: np.ndarray
    scores: np.ndarray
    reasons: list[dict[str, Any]]


@dataclass(frozen=True)
class RoundRecord:
    """A stored round, with how many chips it holds and how many of them are labelled."""

    id: int
    state: RoundState
    strategy: str
    model_hash: str | None
    seed: int | None
    budget: dict[str, Any]
    params: dict[str, Any]
    created_at: str
    chips: int
    labelled: int


@dataclass(frozen=True)
class RoundChips:
    """The chips of a round in selection order.

    ``chip_ids``: (K,) int64; ``scores``: (K,) float64 score at selection (NaN = none);
    ``reasons``: K dicts (strategy value, expected objects).
    """

    chip_ids: np.ndarray
    scores: np.ndarray
    reasons: list[dict[str, Any]]


def insert_round(store: Store, new: NewRound) -> int:
    """Record ``new`` as an open round with its chips, in one transaction; returns its id."""
    with store.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO rounds (status, strategy, model_hash, seed, budget, params) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                _OPEN,
                new.strategy,
                new.model_hash,
                new.seed,
                json.dumps(new.budget),
                json.dumps(new.params),
            ),
        )
        round_id = int(cur.lastrowid or 0)
        conn.executemany(
            "INSERT INTO round_chips (round_id, chip_id, rank, score, reason) VALUES (?, ?, ?, ?, ?)",
            [
                (
                    round_id,
                    int(chip),
                    rank,
                    None if np.isnan(score) else float(score),
                    json.dumps(reason),
                )
                for rank, (chip, score, reason) in enumerate(
                    zip(new.chip_ids, new.scores, new.reasons, strict=True)
                )
            ],
        )
    return round_id


_ROUND_SELECT = """
    SELECT r.id, r.status, r.strategy, r.model_hash, r.seed, r.budget, r.params, r.created_at,
           COUNT(rc.chip_id) AS chips,
           SUM(EXISTS (SELECT 1 FROM labelled_chips l WHERE l.chip_id = rc.chip_id)) AS labelled
    FROM rounds r LEFT JOIN round_chips rc ON rc.round_id = r.id
"""


def _round_record(row: Any) -> RoundRecord:
    return RoundRecord(
        id=int(row["id"]),
        state=RoundState(row["status"]),
        strategy=row["strategy"],
        model_hash=row["model_hash"],
        seed=row["seed"],
        budget=json.loads(row["budget"]),
        params=json.loads(row["params"]),
        created_at=row["created_at"],
        chips=int(row["chips"]),
        labelled=int(row["labelled"] or 0),
    )


def rounds(store: Store) -> list[RoundRecord]:
    """Every round, oldest first."""
    rows = store.conn.execute(_ROUND_SELECT + " GROUP BY r.id ORDER BY r.id").fetchall()
    return [_round_record(r) for r in rows]


def round_record(store: Store, round_id: int) -> RoundRecord | None:
    """One round by id, or None."""
    row = store.conn.execute(
        _ROUND_SELECT + " WHERE r.id = ? GROUP BY r.id", (round_id,)
    ).fetchone()
    return None if row is None else _round_record(row)


def round_state(store: Store, round_id: int) -> RoundState | None:
    """The state of round ``round_id``, or None when there is no such round."""
    row = store.conn.execute("SELECT status FROM rounds WHERE id = ?", (round_id,)).fetchone()
    return None if row is None else RoundState(row[0])


def latest_open_round(store: Store) -> int | None:
    """The id of the most recent open round, or None."""
    row = store.conn.execute(
        "SELECT id FROM rounds WHERE status = ? ORDER BY id DESC LIMIT 1", (_OPEN,)
    ).fetchone()
    return None if row is None else int(row[0])


def latest_round(store: Store) -> int | None:
    """The id of the most recent round that was not cancelled (open or labelled), or None."""
    row = store.conn.execute(
        "SELECT MAX(id) FROM rounds WHERE status != ?", (_CANCELLED,)
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def chips_of_round(store: Store, round_id: int) -> list[int]:
    """The chip ids of a round, in selection order (empty for an unknown round)."""
    rows = store.conn.execute(
        "SELECT chip_id FROM round_chips WHERE round_id = ? ORDER BY rank", (round_id,)
    )
    return [int(r[0]) for r in rows]


def round_chips(store: Store, round_id: int) -> RoundChips:
    """The chips of a round with their scores and reasons, in selection order."""
    rows = store.conn.execute(
        "SELECT chip_id, score, reason FROM round_chips WHERE round_id = ? ORDER BY rank",
        (round_id,),
    ).fetchall()
    return RoundChips(
        chip_ids=np.array([r[0] for r in rows], dtype=np.int64),
        scores=np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=np.float64),
        reasons=[json.loads(r[2]) for r in rows],
    )


def mark_cancelled(store: Store, round_id: int) -> int:
    """Mark round ``round_id`` cancelled (its chips are candidates again); returns its size."""
    with store.transaction() as conn:
        conn.execute("UPDATE rounds SET status = ? WHERE id = ?", (_CANCELLED, round_id))
    return len(chips_of_round(store, round_id))


def unlabelled_round_chips(store: Store, round_ids: Sequence[int]) -> list[int]:
    """Sorted ids of the unlabelled chips in those of ``round_ids`` that are not cancelled."""
    if not round_ids:
        return []
    marks = ",".join("?" * len(round_ids))
    rows = store.conn.execute(
        "SELECT DISTINCT rc.chip_id FROM round_chips rc JOIN rounds r ON r.id = rc.round_id "
        f"WHERE rc.round_id IN ({marks}) AND r.status != ? AND NOT EXISTS "
        "(SELECT 1 FROM labelled_chips l WHERE l.chip_id = rc.chip_id) ORDER BY rc.chip_id",
        (*round_ids, _CANCELLED),
    ).fetchall()
    return [int(r[0]) for r in rows]
