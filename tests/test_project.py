"""Projects: init, config validation, schema, locking, concurrent writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from geoal.config import config_from_dict, load_config
from geoal.errors import ConfigError, ProjectError, ProjectLockedError
from geoal.project import CONFIG_NAME, STORE_NAME, init_project, open_project
from geoal.store import SCHEMA_VERSION, Store
from tests.raster.scenes import fake_scene


def test_init_creates_config_and_store(tmp_path: Path) -> None:
    proj = init_project(tmp_path / "p", "ship, whale", profile="pan16-sea-survey")
    proj.close()
    cfg = load_config(tmp_path / "p" / CONFIG_NAME)
    assert cfg.classes == ("ship", "whale")
    assert cfg.tiling.size == 512 and cfg.tiling.stretch.mode == "always"
    with Store(tmp_path / "p" / STORE_NAME) as store:
        assert store.version == SCHEMA_VERSION
        mode = store.conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        tables = {
            r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    assert {"scenes", "chips", "detections", "chip_scores", "rounds", "labels", "models"} <= tables


def test_init_refuses_existing_project_and_bad_classes(tmp_path: Path) -> None:
    init_project(tmp_path / "p", "ship").close()
    with pytest.raises(ProjectError, match="already a geoal project"):
        init_project(tmp_path / "p", "ship")
    with pytest.raises(ConfigError, match="listed twice"):
        init_project(tmp_path / "q", "ship,ship")
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        init_project(tmp_path / "r", "ship", profile="nope")
    assert not (tmp_path / "q").exists()


def test_open_non_project(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="not a geoal project"):
        open_project(tmp_path)


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"tiling": {"overlap": 1.5}}, "tiling.overlap must be in"),
        ({"tiling": {"size": "big"}}, "tiling.size: expected an integer"),
        ({"tiling": {"sizes": 3}}, "unknown key 'sizes'"),
        ({"tiling": {"bands": [0, 1, 2]}}, "band numbers counted from 1"),
        ({"tiling": {"stretch": {"low": 99, "high": 1}}}, "low < high"),
        ({"score": {"views": 0}}, "score.views"),
        ({"colour": "red"}, "unknown key 'colour'"),
    ],
)
def test_config_errors_name_the_key(patch: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"classes": ["a"], **patch}, "geoal.yaml")


def test_broken_yaml_and_changed_classes(tmp_path: Path) -> None:
    init_project(tmp_path / "p", "ship,whale").close()
    cfg_path = tmp_path / "p" / CONFIG_NAME
    original = cfg_path.read_text()
    cfg_path.write_text("classes: [ship\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        open_project(tmp_path / "p")
    data = yaml.safe_load(original)
    data["classes"] = ["whale", "ship"]
    cfg_path.write_text(yaml.safe_dump(data))
    with pytest.raises(ProjectError, match="differ from the store"):
        open_project(tmp_path / "p")


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    init_project(tmp_path / "p", "ship").close()
    conn = sqlite3.connect(tmp_path / "p" / STORE_NAME)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ProjectError, match="newer than this geoal"):
        open_project(tmp_path / "p")


def test_migration_from_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()  # version 0
    with Store(path) as store:
        assert store.version == SCHEMA_VERSION


def test_migration_to_v2_adds_the_scoring_backend(tmp_path: Path) -> None:
    from geoal.store import MIGRATIONS

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute(
        "INSERT INTO scenes VALUES (1, 'a.tif', 'a', 'f', 'GTiff', 9, 9, 3, 'uint8', "
        "NULL, '[1,0,0,0,1,0]', NULL, '[1,2,3]', NULL, 9, 0, '2026-01-01')"
    )
    conn.execute("INSERT INTO chips VALUES (1, 1, 0, 0, 9, 9, 1.0)")
    conn.execute(
        "INSERT INTO chip_scores (chip_id, model_hash, views, n_detections, "
        "expected_count, scores) VALUES (1, 'm', 1, 0, 0.0, '{}')"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Store(path) as store:
        assert store.version == SCHEMA_VERSION >= 2
        rows = store.conn.execute("SELECT chip_id, backend FROM chip_scores").fetchall()
        assert [tuple(r) for r in rows] == [(1, None)]  # scored before v2: torch


def test_write_lock_refuses_second_writer(tmp_path: Path) -> None:
    init_project(tmp_path / "p", "ship").close()
    a = open_project(tmp_path / "p")
    b = open_project(tmp_path / "p")
    with (
        a.write_lock("tile"),
        pytest.raises(ProjectLockedError, match=r"locked by 'geoal tile' \(pid \d+"),
        b.write_lock("score"),
    ):
        pass
    with b.write_lock("score"):  # released
        pass
    a.close()
    b.close()


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    init_project(tmp_path / "p", "ship").close()
    code = (
        "import sys, time\n"
        "from geoal.project import open_project\n"
        f"p = open_project({str(tmp_path / 'p')!r})\n"
        "with p.write_lock('tile'):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with (
            open_project(tmp_path / "p") as p,
            pytest.raises(ProjectLockedError, match="geoal tile"),
            p.write_lock("tile"),
        ):
            pass
    finally:
        proc.kill()
        proc.wait()
    with open_project(tmp_path / "p") as p, p.write_lock("tile"):  # a killed holder frees the lock
        pass


def test_failed_transaction_leaves_store_unchanged(tmp_path: Path) -> None:
    import numpy as np

    proj = init_project(tmp_path / "p", "ship")
    before = proj.store.counts()
    scene = fake_scene(0, "x", 10, 10, crs=None)
    chips = np.array([[0, 0, 5, 5], [0, 0, 5, 5]])  # duplicate chip violates UNIQUE
    with pytest.raises(sqlite3.IntegrityError):
        proj.store.insert_scene(scene, chips, np.ones(2))
    assert proj.store.counts() == before
    proj.close()
