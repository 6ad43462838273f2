"""Pure planning (tasks, shards, actor counts) and the CLI's refusals, without starting Ray."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geoal.distributed.cluster import RayOptions, plan_actors, require_ray
from geoal.distributed.work import Shard, group_by_size, parse_shard, plan_tasks
from geoal.errors import ConfigError, GeoalError
from geoal.raster.chip import Chip
from tests.raster.scenes import fake_scene

from .conftest import run_cli

SCENES = [fake_scene(i, f"s{i}", 1000, 1000) for i in range(4)]
items_strategy = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from([64, 128])), min_size=0, max_size=120
).map(lambda rows: [Chip(i, SCENES[s], (i, 0, size, size)) for i, (s, size) in enumerate(rows)])


@given(items=items_strategy, per_task=st.integers(1, 40), batch=st.integers(1, 16))
def test_tasks_cover_every_chip_once_in_local_batches(items, per_task, batch) -> None:
    tasks = list(plan_tasks(items, per_task, batch))
    flat = [chip for task in tasks for chip in task.chips]
    assert sorted(c.id for c in flat) == sorted(c.id for c in items)
    assert set(flat) == set(items)
    for task in tasks:
        assert {c.window[2:] for c in task.chips} == {task.chips[0].window[2:]}  # one chip size
        assert len(task) <= -(-per_task // batch) * batch
    # concatenating the tasks of each size group gives the group: local batches line up
    for group in group_by_size(items):
        size = group[0].window[2:]
        chunks = [t.chips for t in tasks if t.chips[0].window[2:] == size]
        assert [c for chunk in chunks for c in chunk] == group
        assert all(len(chunk) % batch == 0 for chunk in chunks[:-1])


@given(ids=st.lists(st.integers(1, 10**6), unique=True, max_size=200), n=st.integers(1, 9))
def test_shards_partition_the_chips(ids, n) -> None:
    items = [Chip(i, SCENES[1], (0, 0, 64, 64)) for i in ids]
    parts = [Shard(i, n).select(items) for i in range(n)]
    assert sorted(c.id for part in parts for c in part) == sorted(ids)
    assert sum(len(p) for p in parts) == len(items)
    assert all(Shard(i, n).holds(c.id) for i, part in enumerate(parts) for c in part)


def test_parse_shard() -> None:
    assert parse_shard("3/8") == Shard(3, 8) and str(parse_shard(" 0 / 1 ")) == "0/1"
    for bad in ("8/8", "1", "a/b", "-1/4", "1/0"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_plan_actors() -> None:
    opts = RayOptions()
    assert plan_actors({"CPU": 16.0, "GPU": 4.0}, opts).workers == 4
    assert plan_actors({"CPU": 16.0, "GPU": 4.0}, opts).gpus == 1.0
    cpu = plan_actors({"CPU": 6.0}, opts)
    assert (cpu.workers, cpu.gpus, cpu.cpus) == (6, 0.0, 1.0)
    half = plan_actors({"CPU": 8.0, "GPU": 2.0}, RayOptions(gpus_per_worker=0.5))
    assert half.workers == 4
    assert plan_actors({"CPU": 8.0, "GPU": 2.0}, RayOptions(workers=1)).workers == 1
    assert plan_actors({"CPU": 4.0}, RayOptions(cpus_per_worker=2)).workers == 2
    with pytest.raises(ConfigError, match="has 0 GPU"):
        plan_actors({"CPU": 8.0}, RayOptions(gpus_per_worker=1))
    with pytest.raises(ConfigError, match="--ray-workers"):
        RayOptions(workers=0)


def test_without_ray_the_engine_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(GeoalError, match=r"pip install 'geoal\[ray\]'"):
        require_ray()
    run_cli("init", str(tmp_path / "p"), "--classes", "a,b")
    result = run_cli("-p", str(tmp_path / "p"), "score", "--engine", "ray", "-q", ok=False)
    assert result.exit_code == 1
    assert "pip install 'geoal[ray]'" in result.output and "Traceback" not in result.output
    result = run_cli(
        "predict", str(tmp_path / "x.tif"), "--model", "m.pt", "--engine", "ray", ok=False
    )
    assert result.exit_code == 1 and "pip install 'geoal[ray]'" in result.output


def test_cli_refuses_mixed_options(tmp_path: Path) -> None:
    run_cli("init", str(tmp_path / "p"), "--classes", "a,b")
    p = str(tmp_path / "p")
    result = run_cli("-p", p, "score", "--address", "auto", ok=False)
    assert result.exit_code == 2 and "--address: only with --engine ray" in result.output
    result = run_cli("-p", p, "score", "--engine", "ray", "--shard", "0/2", ok=False)
    assert result.exit_code == 2 and "leave out --engine ray" in result.output
    result = run_cli("-p", p, "score", "--shard", "2/2", ok=False)
    assert result.exit_code == 2 and "--shard" in result.output
    result = run_cli("-p", p, "score", "--shard-out", "x.sqlite", ok=False)
    assert result.exit_code == 2 and "only with --shard" in result.output
