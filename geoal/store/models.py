"""Typed queries of registered models and of which models scored chips."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from geoal.store import Store

# a model registered from an architecture file has random weights (see geoal.pipeline.scoring)
_UNTRAINED_SQL = "lower(m.path) LIKE '%.yaml' OR lower(m.path) LIKE '%.yml'"


@dataclass(frozen=True)
class ModelRecord:
    """A registered model: its content hash, stored path, origin, classes and metrics."""

    id: int
    hash: str
    path: str  # relative to the project when inside it (see Project.model_file)
    kind: str  # trained (by geoal train) | external (given)
    parent_hash: str | None
    round_id: int | None
    classes: tuple[str, ...]
    metrics: dict[str, Any]  # {} when none were stored
    created_at: str

    @classmethod
    def from_row(cls, row: Any) -> ModelRecord:
        """Build from a ``models`` row."""
        values = dict(row)  # the columns are the fields; classes and metrics are JSON
        classes = tuple(json.loads(values.pop("classes")))
        metrics = json.loads(values.pop("metrics") or "{}")
        return cls(**values, classes=classes, metrics=metrics)


def models(store: Store) -> list[ModelRecord]:
    """Every registered model, in the order registered."""
    rows = store.conn.execute("SELECT * FROM models ORDER BY id").fetchall()
    return [ModelRecord.from_row(r) for r in rows]


def find_models(store: Store, hash_prefix: str, path: str) -> list[ModelRecord]:
    """The models whose hash starts with ``hash_prefix`` or whose stored path is ``path``."""
    rows = store.conn.execute(
        "SELECT * FROM models WHERE hash LIKE ? OR path = ?", (hash_prefix + "%", path)
    ).fetchall()
    return [ModelRecord.from_row(r) for r in rows]


def is_registered(store: Store, model_hash: str) -> bool:
    """Whether a model with this exact hash is registered."""
    row = store.conn.execute("SELECT 1 FROM models WHERE hash = ?", (model_hash,)).fetchone()
    return row is not None


def set_model_metrics(store: Store, model_hash: str, metrics: dict[str, Any]) -> None:
    """Replace a model's stored metrics (JSON-able, finite)."""
    with store.transaction() as conn:
        conn.execute(
            "UPDATE models SET metrics = ? WHERE hash = ?", (json.dumps(metrics), model_hash)
        )


def scored_model_hashes(store: Store, prefix: str = "") -> list[str]:
    """The distinct hashes of the models that scored chips, those starting with ``prefix``."""
    rows = store.conn.execute(
        "SELECT DISTINCT model_hash FROM chip_scores WHERE model_hash LIKE ?", (prefix + "%",)
    )
    return [str(r[0]) for r in rows]


def latest_scoring_model(store: Store) -> str | None:
    """The hash of the model that scored chips most recently, untrained ones passed over."""
    row = store.conn.execute(
        f"""
        SELECT s.model_hash FROM chip_scores s LEFT JOIN models m ON m.hash = s.model_hash
        WHERE m.hash IS NULL OR NOT ({_UNTRAINED_SQL})
        ORDER BY s.scored_at DESC, s.rowid DESC LIMIT 1
        """
    ).fetchone()
    return None if row is None else str(row[0])


def untrained_scoring_model(store: Store) -> tuple[str, str] | None:
    """(hash, path) of the latest untrained model (architecture file) that scored chips."""
    row = store.conn.execute(
        f"""
        SELECT m.hash, m.path FROM models m
        WHERE {_UNTRAINED_SQL} AND EXISTS (SELECT 1 FROM chip_scores s WHERE s.model_hash = m.hash)
        ORDER BY m.id DESC LIMIT 1
        """
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))
