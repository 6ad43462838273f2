"""Shards without Ray: N shards + merge-shards == one local run; re-runs and re-merges are harmless."""

from __future__ import annotations

import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from geoal.store.scores import scored_chip_ids
from geoal.store.shards import open_shard_file

from .conftest import (
    assert_complete,
    assert_same_results,
    count_chips,
    make_project,
    run_cli,
    stored,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """A project scored by the local engine, and an unscored copy of it."""
    from geoal.synthetic import SceneSpec, write_scene

    root = tmp_path_factory.mktemp("shards")
    scene = root / "scene.tif"
    write_scene(scene, SceneSpec(width=64 * 6, height=64 * 5, dtype="uint16", objects=12, seed=3))
    local = make_project(root / "local", [scene])
    shutil.copytree(local, root / "sharded")
    run_cli("-p", str(local), "score", "--model", "yolov8n.yaml", "--batch", "4", "-q")
    n_chips = count_chips(local)
    assert n_chips == 30
    return local, root / "sharded", n_chips


def test_shards_then_merge_equal_one_local_run(projects: tuple[Path, Path, int]) -> None:
    local, sharded, n_chips = projects
    p = str(sharded)
    # shard 0 is cut short (as if its job were killed), then run again: it continues
    out = run_cli(
        "-p",
        p,
        "score",
        "--model",
        "yolov8n.yaml",
        "--batch",
        "4",
        "--shard",
        "0/3",
        "--limit",
        "4",
        "-q",
    )
    assert "scored 4 chips" in out.output and "6 left" in out.output
    files = sorted((sharded / "shards").glob("*.sqlite"))
    assert len(files) == 1 and files[0].name.endswith("-0-of-3.sqlite")
    merged = run_cli("-p", p, "merge-shards", str(files[0]))
    assert "merged 4 chips" in merged.output and "has not finished" in merged.output
    out = run_cli(
        "-p", p, "score", "--model", "yolov8n.yaml", "--batch", "4", "--shard", "0/3", "-q"
    )
    assert "scored 6 chips" in out.output and "0 left" in out.output  # the merged 4 are done
    custom = sharded / "elsewhere" / "s1.sqlite"
    run_cli(
        "-p",
        p,
        "score",
        "--model",
        "yolov8n.yaml",
        "--batch",
        "4",
        "--shard",
        "1/3",
        "--shard-out",
        str(custom),
        "-q",
    )
    run_cli(
        "-p",
        p,
        "score",
        "--model",
        "yolov8n.yaml",
        "--batch",
        "4",
        "--shard",
        "2/3",
        "--limit",
        "2",
        "-q",
    )
    out = run_cli(
        "-p", p, "score", "--model", "yolov8n.yaml", "--batch", "4", "--shard", "2/3", "-q"
    )
    assert "scored 8 chips" in out.output and "2 already there, 0 left" in out.output
    # every shard holds its chips only: id % 3
    for path in [*sorted((sharded / "shards").glob("*.sqlite")), custom]:
        with open_shard_file(path) as file:
            index = int(file.meta()["shard"].split("/")[0])
            ids = sorted(scored_chip_ids(file.conn))
        assert ids and all(i % 3 == index for i in ids)
    merged = run_cli("-p", p, "merge-shards")  # shards/*.sqlite: shards 0 and 2
    assert "merged 6 chips, 4 already scored" in merged.output
    assert "merged 10 chips, 0 already scored" in merged.output
    run_cli("-p", p, "merge-shards", str(custom))
    assert_complete(sharded, n_chips)
    assert_same_results(local, sharded)
    # harmless: a shard run again scores nothing, a merge again adds nothing
    again = run_cli(
        "-p", p, "score", "--model", "yolov8n.yaml", "--batch", "4", "--shard", "2/3", "-q"
    )
    assert "scored 0 chips" in again.output
    remerge = run_cli("-p", p, "merge-shards", str(custom), *map(str, files))
    assert "merged 0 chips" in remerge.output and "merged 4" not in remerge.output
    assert_complete(sharded, n_chips)
    status = run_cli("-p", p, "score", "--model", "yolov8n.yaml", "--batch", "4", "-q")
    assert "scored 0 chips" in status.output and f"{n_chips} already scored" in status.output


def test_merge_refuses_a_shard_of_another_project(
    projects: tuple[Path, Path, int], tmp_path: Path
) -> None:
    _, sharded, _ = projects
    shard = next((sharded / "shards").glob("*.sqlite"))
    from geoal.synthetic import SceneSpec, write_scene

    scene = tmp_path / "other.tif"
    write_scene(scene, SceneSpec(width=64 * 6, height=64 * 5, seed=4))
    other = make_project(tmp_path / "other", [scene])
    result = run_cli("-p", str(other), "merge-shards", str(shard), ok=False)
    assert result.exit_code != 0 and str(shard) in result.output
    bad = tmp_path / "not-a-shard.sqlite"
    bad.write_text("hello")
    result = run_cli("-p", str(sharded), "merge-shards", str(bad), ok=False)
    assert result.exit_code == 2 and "not a geoal shard file" in result.output


def test_a_shard_file_of_an_earlier_geoal_resumes_and_merges(tmp_path: Path) -> None:
    """Shard files made before the store recorded the backend have no backend column."""
    from geoal.synthetic import SceneSpec, write_scene

    scene = tmp_path / "scene.tif"
    write_scene(scene, SceneSpec(width=64 * 3, height=64 * 2, objects=4, seed=5))
    proj = make_project(tmp_path / "p", [scene])
    p = str(proj)
    run_cli(
        "-p",
        p,
        "score",
        "--model",
        "yolov8n.yaml",
        "--batch",
        "4",
        "--shard",
        "0/1",
        "--limit",
        "2",
        "-q",
    )
    shard = next((proj / "shards").glob("*.sqlite"))
    conn = sqlite3.connect(shard)
    conn.execute("ALTER TABLE chip_scores DROP COLUMN backend")
    conn.commit()
    conn.close()
    merged = run_cli("-p", p, "merge-shards", str(shard))
    assert "merged 2 chips" in merged.output
    run_cli(
        "-p", p, "score", "--model", "yolov8n.yaml", "--batch", "4", "--shard", "0/1", "-q"
    )  # continues the old file
    run_cli("-p", p, "merge-shards", str(shard))
    assert Counter(row.backend for row in stored(proj)[0]) == {None: 2, "torch": 4}
