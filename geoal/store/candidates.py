"""Typed queries of what selection reads: candidate chips, their stored scores, the labelled set.

A candidate is a chip that is neither labelled nor in an open round. Arrays of a
query given chip ids are aligned with those ids, never with the database's order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geoal.store import Store
from geoal.store.arrays import ScoreValues
from geoal.store.boxes import Boxes, boxes_from_rows, boxes_with_probs
from geoal.store.states import RoundState


@dataclass(frozen=True)
class CandidateChips:
    """Candidate chips: ``ids`` (N,) int64 ascending, ``scene_ids`` (N,) int64 and
    ``windows`` (N, 4) int64 [col_off, row_off, width, height] in scene pixels."""

    ids: np.ndarray
    scene_ids: np.ndarray
    windows: np.ndarray

    def take(self, keep: np.ndarray) -> CandidateChips:
        """The candidates where ``keep`` (N,) bool is true (or at these (M,) indexes)."""
        return CandidateChips(self.ids[keep], self.scene_ids[keep], self.windows[keep])


@dataclass(frozen=True)
class CandidateScores:
    """One model's stored scores of N chips.

    ``scores`` (N,) the chosen aggregation, NaN for chips the model has not scored;
    ``expected`` (N,) expected object count, 0 when not scored; ``embeddings`` (N, D)
    float32, None unless every chip has one; ``lacking``: () when every scored chip
    stores the aggregation, else the aggregations the first chip that lacks it stores;
    ``objectness`` (N,) top-k anchor objectness, NaN where not scored or not stored (chips
    scored before geoal stored it).
    """

    scores: np.ndarray
    expected: np.ndarray
    embeddings: np.ndarray | None
    lacking: tuple[str, ...]
    objectness: np.ndarray


def candidate_chips(store: Store) -> CandidateChips:
    """Every chip that is not labelled and not in an open round, by id."""
    rows = store.conn.execute(
        """
        SELECT c.id, c.scene_id, c.col_off, c.row_off, c.width, c.height FROM chips c
        WHERE NOT EXISTS (SELECT 1 FROM labelled_chips l WHERE l.chip_id = c.id)
          AND NOT EXISTS (SELECT 1 FROM round_chips rc JOIN rounds r ON r.id = rc.round_id
                          WHERE rc.chip_id = c.id AND r.status = ?)
        ORDER BY c.id
        """,
        (RoundState.OPEN.value,),
    ).fetchall()
    arr = np.array([tuple(r) for r in rows], dtype=np.int64).reshape(-1, 6)
    return CandidateChips(arr[:, 0], arr[:, 1], arr[:, 2:6])


def candidate_scores(
    store: Store, model_hash: str | None, aggregation: str, ids: np.ndarray
) -> CandidateScores:
    """The stored scores of ``model_hash`` (None: no model) for the chips ``ids`` (N,)."""
    n = len(ids)
    scores, expected, objectness = np.full(n, np.nan), np.zeros(n), np.full(n, np.nan)
    rows = store.conn.execute(
        "SELECT chip_id, score_names, score_values, embedding, expected_count FROM chip_scores "
        "WHERE model_hash = ? ORDER BY chip_id",
        (model_hash or "",),
    ).fetchall()
    chip, name_ids, values, blobs, counts = list(zip(*rows, strict=True)) or [()] * 5
    stored = ScoreValues.of(store.conn, name_ids, values)
    at = _positions(np.asarray(ids, dtype=np.int64), np.asarray(chip, dtype=np.int64))
    has = stored.has(aggregation)
    lacks = np.flatnonzero((at >= 0) & ~has & (stored.sizes() > 0))  # the first that stores some
    use = np.flatnonzero((at >= 0) & has)
    i = at[use]
    scores[i] = stored.column(aggregation)[use]
    expected[i] = np.asarray(counts, dtype=np.float64)[use]
    objectness[i] = stored.column("objectness")[use]
    return CandidateScores(
        scores=scores,
        expected=expected,
        embeddings=_embeddings(n, i, [blobs[k] for k in use.tolist()]),
        lacking=tuple(sorted(stored.names_of(int(lacks[0])))) if lacks.size else (),
        objectness=objectness,
    )


def _positions(ids: np.ndarray, chip_ids: np.ndarray) -> np.ndarray:
    """(M,) int64 index in ``ids`` (N,) of each of ``chip_ids`` (M,), -1 where absent."""
    order = np.argsort(ids, kind="stable")
    at = np.searchsorted(ids[order], chip_ids).clip(0, max(len(ids) - 1, 0))
    found = ids[order][at] == chip_ids if len(ids) else np.zeros(len(chip_ids), dtype=bool)
    return np.where(found, order[at] if len(ids) else 0, -1).astype(np.int64)


def _embeddings(n: int, at: np.ndarray, blobs: list[bytes | None]) -> np.ndarray | None:
    """(N, D) float32 embeddings ``blobs`` of rows ``at`` (M,), None unless all N have one."""
    covered = np.zeros(n, dtype=bool)
    covered[at] = True
    if n == 0 or not covered.all() or any(b is None for b in blobs):
        return None
    if len({len(b or b"") for b in blobs}) == 1:  # one length: one buffer, no copy per row
        vectors = np.frombuffer(b"".join(b or b"" for b in blobs), dtype="<f4").reshape(n, -1)
    else:
        vectors = np.stack([np.frombuffer(b or b"", dtype="<f4") for b in blobs])  # raises
    out = np.empty_like(vectors)
    out[at] = vectors
    return out


def labelled_embeddings(store: Store, model_hash: str) -> np.ndarray | None:
    """(L, D) float32 embeddings ``model_hash`` stored for labelled chips, None when none."""
    rows = store.conn.execute(
        "SELECT s.embedding FROM chip_scores s JOIN labelled_chips l ON l.chip_id = s.chip_id "
        "WHERE s.model_hash = ? AND s.embedding IS NOT NULL",
        (model_hash,),
    ).fetchall()
    return np.stack([np.frombuffer(r[0], dtype="<f4") for r in rows]) if rows else None


def label_class_counts(store: Store, n_classes: int) -> np.ndarray:
    """(C,) int64 number of labelled boxes of each class (classes past ``n_classes`` left out)."""
    counts = np.zeros(n_classes, dtype=np.int64)
    rows = store.conn.execute("SELECT class_id, COUNT(*) FROM labels GROUP BY class_id")
    for class_id, count in rows:
        if 0 <= int(class_id) < n_classes:
            counts[int(class_id)] = int(count)
    return counts


def model_detections(store: Store, model_hash: str) -> Boxes:
    """Every stored detection of ``model_hash`` (without class-score vectors)."""
    rows = store.conn.execute(
        "SELECT chip_id, class_id, x1, y1, x2, y2, confidence FROM detections WHERE model_hash = ?",
        (model_hash,),
    ).fetchall()
    return boxes_from_rows(rows, with_confidence=True)


def labelled_detections(store: Store, model_hash: str, n_classes: int) -> tuple[Boxes, np.ndarray]:
    """The detections of ``model_hash`` on labelled chips and their (M, C) float32 class scores."""
    rows = store.conn.execute(
        "SELECT d.chip_id, d.class_id, d.x1, d.y1, d.x2, d.y2, d.confidence, d.probs "
        "FROM detections d JOIN labelled_chips l ON l.chip_id = d.chip_id WHERE d.model_hash = ?",
        (model_hash,),
    ).fetchall()
    return boxes_with_probs(rows, n_classes)


def scored_labels(store: Store, model_hash: str, n_classes: int) -> Boxes:
    """The labelled boxes (classes below ``n_classes``) of chips that ``model_hash`` scored."""
    rows = store.conn.execute(
        "SELECT l.chip_id, l.class_id, l.x1, l.y1, l.x2, l.y2 FROM labels l "
        "WHERE l.class_id < ? AND EXISTS (SELECT 1 FROM chip_scores s "
        "WHERE s.chip_id = l.chip_id AND s.model_hash = ?)",
        (n_classes, model_hash),
    ).fetchall()
    return boxes_from_rows(rows, with_confidence=False)


def scored_labelled_count(store: Store, model_hash: str) -> int:
    """How many labelled chips ``model_hash`` scored."""
    return int(
        store.conn.execute(
            "SELECT COUNT(*) FROM labelled_chips l JOIN chip_scores s ON s.chip_id = l.chip_id "
            "WHERE s.model_hash = ?",
            (model_hash,),
        ).fetchone()[0]
    )
