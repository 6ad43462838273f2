"""Typed queries of the chip catalogue: each chip's state, a scene's stored detections."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geoal.store import Store
from geoal.store.arrays import ScoreValues
from geoal.store.boxes import Boxes, boxes_with_probs
from geoal.store.states import RoundState


@dataclass(frozen=True)
class ChipStatus:
    """A chip with where it stands: labelled, in a round that was not cancelled, its scores."""

    chip_id: int
    scene_id: int
    window: tuple[int, int, int, int]  # col_off, row_off, width, height (scene pixels)
    valid_fraction: float  # 0-1
    labelled: bool
    selected: bool
    scores: dict[str, float] | None  # the latest model's {aggregation: value}; None = not scored


def chip_statuses(store: Store) -> list[ChipStatus]:
    """Every chip by id, with its state and the scores of the model that scored it last."""
    rows = store.conn.execute(
        """
        SELECT c.id, c.scene_id, c.col_off, c.row_off, c.width, c.height, c.valid_fraction,
               EXISTS (SELECT 1 FROM labelled_chips l WHERE l.chip_id = c.id) AS labelled,
               EXISTS (SELECT 1 FROM round_chips rc JOIN rounds r ON r.id = rc.round_id
                       WHERE rc.chip_id = c.id AND r.status != ?) AS selected,
               s.score_names, s.score_values
        FROM chips c LEFT JOIN chip_scores s ON s.rowid =
            (SELECT cs.rowid FROM chip_scores cs WHERE cs.chip_id = c.id
             ORDER BY cs.scored_at DESC, cs.rowid DESC LIMIT 1)
        ORDER BY c.id
        """,
        (RoundState.CANCELLED.value,),
    ).fetchall()
    scored = [i for i, r in enumerate(rows) if r[9] is not None]
    stored = ScoreValues.of(store.conn, [rows[i][9] for i in scored], [rows[i][10] for i in scored])
    scores: list[dict[str, float] | None] = [None] * len(rows)
    for k, i in enumerate(scored):
        scores[i] = stored.row(k)
    return [
        ChipStatus(
            chip_id=int(r[0]),
            scene_id=int(r[1]),
            window=(int(r[2]), int(r[3]), int(r[4]), int(r[5])),
            valid_fraction=float(r[6]),
            labelled=bool(r[7]),
            selected=bool(r[8]),
            scores=row_scores,
        )
        for r, row_scores in zip(rows, scores, strict=True)
    ]


def latest_scene_model(store: Store, scene_id: int) -> str | None:
    """The hash of the model that scored one of the scene's chips most recently, or None."""
    row = store.conn.execute(
        "SELECT cs.model_hash FROM chip_scores cs JOIN chips c ON c.id = cs.chip_id "
        "WHERE c.scene_id = ? ORDER BY cs.scored_at DESC, cs.rowid DESC LIMIT 1",
        (scene_id,),
    ).fetchone()
    return None if row is None else str(row[0])


def scene_detections(
    store: Store, scene_id: int, model_hash: str, n_classes: int
) -> tuple[Boxes, np.ndarray]:
    """The stored detections of ``model_hash`` on a scene's chips, lifted to scene pixels
    (not clipped to the scene), and their (M, C) float32 class-score vectors."""
    rows = store.conn.execute(
        "SELECT d.chip_id, d.class_id, c.col_off + d.x1, c.row_off + d.y1, c.col_off + d.x2, "
        "c.row_off + d.y2, d.confidence, d.probs FROM detections d "
        "JOIN chips c ON c.id = d.chip_id WHERE c.scene_id = ? AND d.model_hash = ?",
        (scene_id, model_hash),
    ).fetchall()
    return boxes_with_probs(rows, n_classes)


def chip_count(store: Store, scene_id: int) -> int:
    """How many chips the scene was tiled into."""
    row = store.conn.execute("SELECT COUNT(*) FROM chips WHERE scene_id = ?", (scene_id,))
    return int(row.fetchone()[0])
