"""Store migrations: an old store is upgraded in place when its project is opened."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np

from geoal.pipeline.scoring import resolve_model
from geoal.project import Project, init_project, open_project
from geoal.store import MIGRATIONS, SCHEMA_VERSION, Store
from geoal.store.candidates import candidate_scores
from geoal.store.catalog import chip_statuses
from geoal.store.models import models
from geoal.store.scores import stored_scores


def _v1_project(root: Path) -> None:
    """A project whose store is schema v1, as geoal wrote it before model paths were relative."""
    init_project(root, "ship").close()
    (root / "geoal.db").unlink()
    conn = sqlite3.connect(root / "geoal.db")
    assert isinstance(MIGRATIONS[0], str)
    conn.executescript(MIGRATIONS[0])
    conn.execute("INSERT INTO meta VALUES ('classes', ?)", (json.dumps(["ship"]),))
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()


def _add_model(root: Path, path: str, content: bytes | None, kind: str = "trained") -> str:
    """Register a model row (and write its file when ``content`` is given); returns its hash."""
    digest = hashlib.sha256(content or path.encode()).hexdigest()
    if content is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(content)
    conn = sqlite3.connect(root / "geoal.db")
    conn.execute(
        "INSERT INTO models (hash, path, kind, classes, metrics) VALUES (?, ?, ?, ?, ?)",
        (digest, path, kind, json.dumps(["ship"]), json.dumps({"imgsz": 96})),
    )
    conn.commit()
    conn.close()
    return digest


def _paths(project: Project) -> dict[str, str]:
    """Stored path of each registered model, by hash."""
    return {m.hash: m.path for m in models(project.store)}


def test_v1_store_model_paths_become_relative_in_a_moved_copy(tmp_path: Path) -> None:
    old = tmp_path / "old"
    _v1_project(old)
    inside = _add_model(old, str(old / "models" / "model_a.pt"), b"weights a")
    external = _add_model(tmp_path / "old", str(tmp_path / "mine.pt"), b"my weights", "external")
    arch = _add_model(old, "yolov8n.yaml", None, "external")
    # the project is copied elsewhere; the original stays (its store still says v1)
    new = tmp_path / "new"
    shutil.copytree(old, new)
    (new / "models" / "model_a.pt").write_bytes(b"weights a")  # the copy's own file
    with open_project(new) as project:
        assert project.store.version == SCHEMA_VERSION >= 2
        paths = _paths(project)
        assert paths[inside] == "models/model_a.pt"  # was /.../old/models/model_a.pt
        assert paths[external] == str(tmp_path / "mine.pt")  # outside: kept as given
        assert paths[arch] == "yolov8n.yaml"
        chosen = resolve_model(project, None)
        assert chosen.path == str((new / "models" / "model_a.pt").resolve())
        assert chosen.kind == "trained" and chosen.imgsz == 96
    # moved: the old folder is gone, the models found where the project now is
    shutil.rmtree(old)
    moved = tmp_path / "moved"
    new.rename(moved)
    with open_project(moved) as project:
        assert resolve_model(project, None).path == str((moved / "models/model_a.pt").resolve())


def test_a_path_elsewhere_with_other_content_is_not_taken_for_the_copy(tmp_path: Path) -> None:
    old = tmp_path / "old"
    _v1_project(old)
    theirs = _add_model(old, str(tmp_path / "other" / "models" / "model_b.pt"), b"their weights")
    (old / "models").mkdir()
    (old / "models" / "model_b.pt").write_bytes(b"different weights")
    with open_project(old) as project:
        assert _paths(project)[theirs] == str(tmp_path / "other" / "models" / "model_b.pt")


def _v3_store(path: Path, rows: list[tuple[int, str, str, bytes | None, str | None]]) -> None:
    """A schema v3 store (chip scores as JSON text) with chips 1-4 and ``rows`` of
    (chip_id, model_hash, scores JSON, embedding, backend), written in this order."""
    conn = sqlite3.connect(path)
    assert isinstance(MIGRATIONS[0], str) and isinstance(MIGRATIONS[2], str)
    conn.executescript(MIGRATIONS[0])
    conn.executescript(MIGRATIONS[2])
    conn.execute(
        "INSERT INTO scenes VALUES (1, 'a.tif', 'a', 'f', 'GTiff', 9, 9, 3, 'uint8', "
        "NULL, '[1,0,0,0,1,0]', NULL, '[1,2,3]', NULL, 9, 0, '2026-01-01')"
    )
    conn.executemany(
        "INSERT INTO chips VALUES (?, 1, ?, 0, 9, 9, 1.0)", [(i, i) for i in range(1, 5)]
    )
    conn.executemany(
        "INSERT INTO chip_scores (chip_id, model_hash, views, n_detections, expected_count, "
        "scores, embedding, scored_at, backend) VALUES (?, ?, 2, 1, 1.5, ?, ?, '2026-01-01', ?)",
        rows,
    )
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()


def test_v3_chip_scores_migrate_to_arrays_with_their_values(tmp_path: Path) -> None:
    emb = np.arange(4, dtype="<f4")
    first = {"miaod": 0.123456789012345, "max": 1e-300, "objectness": 0.5, "sum": float("nan")}
    _v3_store(
        tmp_path / "geoal.db",
        [
            (3, "m", json.dumps(first), emb.tobytes(), "openvino"),
            (1, "m", json.dumps({"miaod": 0.75, "max": 2.0}), emb.tobytes(), None),  # no objectness
            (2, "m", "{}", None, None),
            (1, "other", json.dumps({"miaod": 0.5}), None, "torch"),
        ],
    )
    with Store(tmp_path / "geoal.db") as store:
        assert store.version == SCHEMA_VERSION >= 4
        columns = {r[1] for r in store.conn.execute("PRAGMA table_info(chip_scores)")}
        assert "scores" not in columns and {"score_names", "score_values"} <= columns
        rows = {(r.chip_id, r.model_hash): r for r in stored_scores(store.conn)}
        got = rows[3, "m"].scores
        assert list(got) == list(first) and np.isnan(got.pop("sum"))
        assert got == {"miaod": 0.123456789012345, "max": 1e-300, "objectness": 0.5}  # exact
        assert rows[1, "m"].scores == {"miaod": 0.75, "max": 2.0} and rows[2, "m"].scores == {}
        assert (rows[3, "m"].backend, rows[1, "m"].backend, rows[1, "other"].backend) == (
            "openvino",
            None,
            "torch",
        )
        np.testing.assert_array_equal(rows[1, "m"].embedding, emb)
        assert rows[1, "m"].expected_count == 1.5 and rows[1, "m"].views == 2
        # chips 1 and 3 store miaod; chip 2 stores nothing; chip 4 was never scored
        found = candidate_scores(store, "m", "miaod", np.array([4, 3, 2, 1]))
        np.testing.assert_array_equal(found.scores, [np.nan, 0.123456789012345, np.nan, 0.75])
        np.testing.assert_array_equal(found.objectness, [np.nan, 0.5, np.nan, np.nan])
        assert found.lacking == ()  # chip 2 lacks it but stores no scores at all
        lacking = candidate_scores(store, "m", "entropy", np.array([2, 3])).lacking
        assert lacking == ("max", "miaod", "objectness", "sum")  # chip 3's: chip 2 stores none
        assert candidate_scores(store, "m", "entropy", np.array([1, 3])).lacking == ("max", "miaod")
        # the latest row of a chip (rowids kept): chip 1's is model other's
        statuses = {c.chip_id: c.scores for c in chip_statuses(store)}
        assert statuses[1] == {"miaod": 0.5} and statuses[4] is None
