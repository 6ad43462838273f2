"""Store migrations: an old store is upgraded in place when its project is opened."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

from geoal.pipeline.scoring import resolve_model
from geoal.project import Project, init_project, open_project
from geoal.store import MIGRATIONS, SCHEMA_VERSION
from geoal.store.models import models


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
