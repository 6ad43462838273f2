"""The scoring tables: rows encoded and read back, new chips only, shard files with the store's tables."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from geoal.errors import ConfigError
from geoal.store import Store
from geoal.store.arrays import ScoreValues, encode_scores
from geoal.store.candidates import candidate_scores
from geoal.store.scores import (
    ScoreRecord,
    encode_chip,
    insert_new_records,
    insert_records,
    read_records,
    scored_chip_ids,
    stored_detections,
    stored_scores,
)
from geoal.store.shards import open_shard_file
from geoal.uncertainty.chip import ChipScores
from tests.raster.scenes import fake_scene


def scored(n: int, seed: int = 0) -> tuple[Any, ChipScores]:
    """A chip result with n detections of 3 classes, and its scores."""
    rng = np.random.default_rng(seed)
    probs = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    result = SimpleNamespace(
        boxes=rng.uniform(0, 64, (n, 4)).astype(np.float32),
        cls=probs.argmax(1),
        conf=probs.max(1),
        probs=probs,
        embedding=rng.normal(size=8).astype(np.float32),
        backend="openvino",
    )
    per_det = {"entropy": rng.uniform(0, 1, n), "anchor_value": rng.uniform(0, 1, n)}
    return result, ChipScores({"miaod": 0.25, "max": 0.5}, float(probs.max(1).sum()), per_det)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    """A store with three chips (ids 1-3) of one scene."""
    with Store(tmp_path / "geoal.db") as s:
        s.insert_scene(
            fake_scene(width=192, height=64, transform=(1, 0, 0, 0, -1, 0), crs=None),
            np.array([[0, 0, 64, 64], [64, 0, 64, 64], [128, 0, 64, 64]]),
            np.ones(3),
        )
        yield s


def test_a_scored_chip_reads_back_as_stored(store: Any) -> None:
    (result, scores), (empty, none) = scored(4), scored(0, seed=1)
    with store.transaction() as conn:
        insert_records(
            conn, "h", 2, [1, 2], [encode_chip(result, scores), encode_chip(empty, none)]
        )
    rows = stored_scores(store.conn, "h")
    assert [(r.chip_id, r.views, r.n_detections, r.backend) for r in rows] == [
        (1, 2, 4, "openvino"),
        (2, 2, 0, "openvino"),
    ]
    assert rows[0].scores == {"miaod": 0.25, "max": 0.5}
    assert rows[0].expected_count == pytest.approx(scores.expected_count)
    np.testing.assert_array_equal(rows[0].embedding, result.embedding)
    dets = stored_detections(store.conn, "h")
    assert [d.chip_id for d in dets] == [1, 1, 1, 1]
    np.testing.assert_array_equal([d.box for d in dets], result.boxes)
    np.testing.assert_array_equal([d.class_id for d in dets], result.cls)
    np.testing.assert_array_equal([d.confidence for d in dets], result.conf)
    np.testing.assert_array_equal(np.stack([d.probs for d in dets]), result.probs)
    for i, d in enumerate(dets):
        assert d.uncertainty == pytest.approx(
            {k: v[i] for k, v in scores.per_detection.items()}, abs=1e-6
        )


def test_only_chips_not_yet_stored_for_the_model_are_inserted(store: Any) -> None:
    records = [encode_chip(*scored(2, seed=i)) for i in range(3)]
    with store.transaction() as conn:
        assert insert_new_records(conn, "h", 1, [1, 2], records[:2]) == 2
        assert insert_new_records(conn, "h", 1, [2, 3], records[1:]) == 1
        assert insert_new_records(conn, "other", 1, [2], records[1:2]) == 1
    assert scored_chip_ids(store.conn, "h") == {1, 2, 3}
    assert scored_chip_ids(store.conn) == {1, 2, 3}
    assert len(stored_detections(store.conn, "h")) == 6


def test_a_shard_file_has_the_stores_tables_and_its_records_move_into_the_store(
    store: Any, tmp_path: Path
) -> None:
    records = [encode_chip(*scored(3, seed=i)) for i in range(2)]
    with open_shard_file(tmp_path / "s.sqlite") as shard:
        shard.create()
        for table in ("chip_scores", "detections"):
            ours = shard.conn.execute(f"PRAGMA table_info({table})").fetchall()
            theirs = [tuple(r) for r in store.conn.execute(f"PRAGMA table_info({table})")]
            assert ours == theirs
        with shard.conn as conn:
            insert_records(conn, "h", 2, [3, 1], records)
        moved = read_records(shard.conn, "h", [1, 3])
    assert list(moved) == [2] and [c for c, _ in moved[2]] == [1, 3]
    assert [r for _, r in moved[2]] == [records[1], records[0]]


def test_a_file_that_is_not_a_shard_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_text("hello, not a database" * 10)
    with open_shard_file(bad, hint="; give another --shard-out") as shard:
        with pytest.raises(ConfigError, match=r"bad.sqlite: not a geoal shard file .*--shard-out"):
            shard.create()
        with pytest.raises(ConfigError, match="not a geoal shard file"):
            shard.meta()


def test_n_chips_scores_read_back_as_arrays_aligned_with_the_ids_asked(tmp_path: Path) -> None:
    n = 40
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 1, (n, 3))
    with Store(tmp_path / "geoal.db") as store:
        store.insert_scene(
            fake_scene(width=64 * (n + 1), height=64, transform=(1, 0, 0, 0, -1, 0), crs=None),
            np.array([[64 * i, 0, 64, 64] for i in range(n + 1)]),
            np.ones(n + 1),
        )
        records = []
        for i in range(n):  # odd chips were scored without objectness
            names = ("miaod", "max", "objectness")[: 3 - i % 2]
            scores = dict(zip(names, values[i].tolist(), strict=False))
            embedding = np.full(4, i, "<f4").tobytes()
            records.append(ScoreRecord(*encode_scores(scores), float(i), embedding, None, ()))
        with store.transaction() as conn:
            insert_records(conn, "h", 1, list(range(1, n + 1)), records)
        assert store.conn.execute("SELECT COUNT(*) FROM score_names").fetchone()[0] == 2
        ids = np.array([n + 1, *range(n, 0, -1)])  # an unscored chip first, then descending
        got = candidate_scores(store, "h", "max", ids)
        want = np.r_[np.nan, values[::-1, 1]]
        np.testing.assert_array_equal(got.scores, want)
        objectness = np.where(np.arange(n) % 2 == 0, values[:, 2], np.nan)[::-1]
        np.testing.assert_array_equal(got.objectness, np.r_[np.nan, objectness])
        np.testing.assert_array_equal(got.expected, np.r_[0.0, np.arange(n)[::-1]])
        assert got.embeddings is None and got.lacking == ()  # chip n + 1 has none
        full = candidate_scores(store, "h", "miaod", ids[1:])
        assert full.embeddings is not None and full.embeddings.dtype == np.float32
        np.testing.assert_array_equal(full.embeddings[:, 0], np.arange(n)[::-1])
        column = ScoreValues.of(
            store.conn,
            *zip(
                *store.conn.execute("SELECT score_names, score_values FROM chip_scores"),
                strict=True,
            ),
        ).column("miaod")
        assert column.dtype == np.float64 and column.shape == (n,)


_V3_SHARD = (
    "CREATE TABLE chip_scores (chip_id INTEGER NOT NULL, model_hash TEXT NOT NULL, "
    "views INTEGER NOT NULL, n_detections INTEGER NOT NULL, expected_count REAL NOT NULL, "
    "scores TEXT NOT NULL, embedding BLOB, scored_at TEXT NOT NULL DEFAULT (datetime('now')), "
    "PRIMARY KEY (chip_id, model_hash))",
    "CREATE TABLE detections (id INTEGER PRIMARY KEY, chip_id INTEGER NOT NULL, "
    "model_hash TEXT NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, "
    "y2 REAL NOT NULL, class_id INTEGER NOT NULL, confidence REAL NOT NULL, "
    "probs BLOB NOT NULL, uncertainty TEXT NOT NULL)",
)


def _old_shard(path: Path, scores: list[str]) -> None:
    """A shard file of a geoal before v4 (JSON chip scores, no backend) with chips 1.. scored."""
    conn = sqlite3.connect(path)
    for statement in _V3_SHARD:
        conn.execute(statement)
    conn.executemany(
        "INSERT INTO chip_scores (chip_id, model_hash, views, n_detections, expected_count, "
        "scores, embedding) VALUES (?, 'h', 1, 0, 2.5, ?, ?)",
        [(i + 1, s, np.ones(2, "<f4").tobytes()) for i, s in enumerate(scores)],
    )
    conn.commit()
    conn.close()


def test_a_shard_file_of_an_earlier_geoal_is_upgraded_and_merges(
    store: Any, tmp_path: Path
) -> None:
    _old_shard(tmp_path / "old.sqlite", ['{"miaod": 0.25, "max": 0.5}', '{"miaod": 0.125}'])
    with open_shard_file(tmp_path / "old.sqlite") as shard:
        shard.upgrade()  # what merge-shards does first
        moved = read_records(shard.conn, "h", [1, 2])
        shard.create()  # a continued shard: its tables are now the store's
        for table in ("chip_scores", "score_names"):
            ours = shard.conn.execute(f"PRAGMA table_info({table})").fetchall()
            assert ours == [tuple(r) for r in store.conn.execute(f"PRAGMA table_info({table})")]
    with store.transaction() as conn:
        insert_records(conn, "h", 1, [c for c, _ in moved[1]], [r for _, r in moved[1]])
    rows = stored_scores(store.conn, "h")
    assert [(r.chip_id, r.scores, r.backend, r.expected_count) for r in rows] == [
        (1, {"miaod": 0.25, "max": 0.5}, None, 2.5),
        (2, {"miaod": 0.125}, None, 2.5),
    ]


def test_a_shard_file_of_an_earlier_geoal_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    _old_shard(tmp_path / "old.sqlite", ["{not json"])
    with open_shard_file(tmp_path / "old.sqlite") as shard:
        with pytest.raises(ConfigError, match=r"old.sqlite: a shard file of an earlier geoal"):
            shard.upgrade()
        columns = {r[1] for r in shard.conn.execute("PRAGMA table_info(chip_scores)")}
        assert "scores" in columns  # rolled back: the file is as it was
