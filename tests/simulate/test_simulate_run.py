"""geoal simulate end to end on real NWPU VHR-10 images: rows, plot, summary, resume after a kill."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from geoal.errors import ConfigError
from geoal.simulate import SimConfig, initial_set, read_rows, run_simulation

pytestmark = pytest.mark.slow


def _keys(rows: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    return [(r["strategy"], r["seed"], r["round"]) for r in rows]


def _labelled(out: Path) -> dict[str, list[int]]:
    return {p.stem: json.loads(p.read_text())["labelled"] for p in (out / "state").glob("*.json")}


def test_writes_rows_plot_and_summary(reference: Path) -> None:
    rows = read_rows(reference / "results.csv")
    assert sorted(_keys(rows)) == sorted(
        [("random", 0, 0), ("random", 0, 1), ("hybrid", 0, 0), ("hybrid", 0, 1), ("full", 0, 0)]
    )
    sizes = {(r["strategy"], r["round"]): r["n_images"] for r in rows}
    # budgets 0.25, 0.5 of 12 images: exactly 3 then 6, cumulative; the ceiling has all 12
    assert sizes == {
        ("random", 0): 3,
        ("random", 1): 6,
        ("hybrid", 0): 3,
        ("hybrid", 1): 6,
        ("full", 0): 12,
    }
    assert all(0 <= r["mAP50"] <= 1 and r["seconds"] > 0 for r in rows)
    png = (reference / "learning_curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5_000
    summary = json.loads((reference / "summary.json").read_text())
    assert set(summary["strategies"]) == {"random", "hybrid"}
    assert summary["ceiling"]["n_images"] == 12 and summary["pool_images"] == 12


def test_labelled_sets_grow_and_round_zero_is_shared(reference: Path, tiny_sets: Any) -> None:
    sets = _labelled(reference)
    random, hybrid = sets["random_0"], sets["hybrid_0"]
    assert len(random) == len(hybrid) == 6
    assert len(set(random)) == len(set(hybrid)) == 6
    # round 0 is the seed's random draw, the same for both arms; later rounds append to it
    pool = json.loads(tiny_sets["data"].read_text())
    ids = [im["id"] for im in pool["images"]]
    first = [ids[i] for i in initial_set(len(ids), 3, np.zeros(len(ids)), "images", seed=0)]
    assert random[:3] == hybrid[:3] == first
    rows = {(r["strategy"], r["round"]): r for r in read_rows(reference / "results.csv")}
    assert rows["random", 0]["mAP50"] == rows["hybrid", 0]["mAP50"]  # same data, same seed
    weights = sorted(p.relative_to(reference).as_posix() for p in reference.rglob("*.pt"))
    assert "weights/random_0/round1.pt" in weights and "weights/random_0/round0.pt" not in weights


def test_resumes_after_a_kill(reference: Path, tiny_sets: Any, sim: Any, tmp_path: Path) -> None:
    command, env = sim
    out = tmp_path / "sim"
    results = out / "results.csv"
    proc = subprocess.Popen(
        command(tiny_sets, out), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 240
        while not read_rows(results) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = read_rows(results)
    assert 1 <= len(before) < 4, "the run was killed after its first row and before its end"
    done = subprocess.run(command(tiny_sets, out), env=env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    after = read_rows(results)
    assert len(set(_keys(after))) == len(after) == 4  # each (strategy, seed, round) once
    assert after[: len(before)] == before  # rows written before the kill are kept, not redone
    assert _labelled(out) == {k: v for k, v in _labelled(reference).items()}
    expected = {
        k: r
        for k, r in zip(
            _keys(read_rows(reference / "results.csv")),
            read_rows(reference / "results.csv"),
            strict=True,
        )
    }
    for key, row in zip(_keys(after), after, strict=True):
        assert (row["n_images"], row["n_boxes"]) == (
            expected[key]["n_images"],
            expected[key]["n_boxes"],
        )
        assert row["mAP50"] == pytest.approx(expected[key]["mAP50"], abs=1e-6)


def test_other_settings_in_the_same_folder_are_refused(reference: Path, tiny_sets: Any) -> None:
    cfg = SimConfig(
        data=tiny_sets["data"],
        images=tiny_sets["images"],
        test_data=tiny_sets["test"],
        out=reference,
        epochs=2,
    )
    with pytest.raises(ConfigError, match="other settings"):
        run_simulation(cfg, progress=False)


def test_extended_budgets_go_on_from_the_last_round(
    reference: Path, tiny_sets: Any, sim: Any, tmp_path: Path
) -> None:
    """A finished run given one more budget adds that round to every arm, the rest kept."""
    import shutil

    command, env = sim
    out = tmp_path / "sim"
    shutil.copytree(reference, out)
    before = read_rows(out / "results.csv")
    other = subprocess.run(
        command(tiny_sets, out, "--budgets", "0.25,0.6"), env=env(), capture_output=True, text=True
    )
    assert other.returncode != 0 and "budgets differ" in other.stderr
    done = subprocess.run(
        command(tiny_sets, out, "--budgets", "0.25,0.5,0.75"),
        env=env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    after = read_rows(out / "results.csv")
    assert after[: len(before)] == before
    added = {(r["strategy"], r["round"]): r["n_images"] for r in after[len(before) :]}
    assert added == {("random", 2): 9, ("hybrid", 2): 9}
    sets = _labelled(out)
    assert sets["random_0"][:6] == _labelled(reference)["random_0"] and len(sets["random_0"]) == 9
    assert json.loads((out / "config.json").read_text())["budgets"] == [0.25, 0.5, 0.75]


def test_prepare_init_gives_a_new_head_and_keeps_the_rest(tmp_path: Path) -> None:
    from ultralytics.nn.tasks import DetectionModel

    from geoal.detect import load_detector
    from geoal.simulate import prepare_init

    source = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    source.names = {0: "cat", 1: "dog"}
    path = tmp_path / "other.pt"
    torch.save({"model": source, "train_args": {}}, path)
    assert prepare_init(str(path), ("cat", "dog"), tmp_path) == str(path.resolve())
    assert prepare_init("yolov8n.yaml", ("a",), tmp_path) == "yolov8n.yaml"
    classes = ("ship", "tank", "plane")
    init = prepare_init(str(path), classes, tmp_path / "w")
    model = torch.load(init, map_location="cpu", weights_only=False)["model"]
    assert model.names == dict(enumerate(classes)) and model.model[-1].nc == 3
    new, old = model.state_dict(), source.state_dict()
    assert torch.equal(new["model.0.conv.weight"], old["model.0.conv.weight"])
    cls_conv = [k for k in new if k.startswith("model.22.cv3") and k.endswith("2.weight")]
    assert cls_conv and all(new[k].shape[0] == 3 != old[k].shape[0] for k in cls_conv)
    assert load_detector(init, classes).classes == classes


def test_cli_help() -> None:
    from click.testing import CliRunner

    from geoal.cli import main

    result = CliRunner().invoke(main, ["simulate", "--help"])
    assert (
        result.exit_code == 0
        and "--budget-unit" in result.output
        and "--full-pool" in result.output
    )
