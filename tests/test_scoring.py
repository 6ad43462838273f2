"""Scoring end to end: tile real GeoTIFFs, score with a YOLO from a .yaml, resume, refuse."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from geoal.cli import main
from geoal.store import Store
from geoal.store.scores import StoredDetection, StoredScore, stored_detections, stored_scores

pytestmark = pytest.mark.slow

ARCH = "yolov8n.yaml"  # random weights, asked for explicitly (the default refuses them)


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def small_project(root: Path, size: int = 128) -> Path:
    """A project whose model runs at the chip size (fast on a CPU)."""
    run("init", str(root), "--classes", "tree,building")
    cfg_path = root / "geoal.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["model"]["imgsz"] = size
    cfg["score"]["conf"] = 0.001  # keep some detections from an untrained model
    cfg_path.write_text(yaml.safe_dump(cfg))
    return root


def stored(root: Path) -> tuple[list[StoredScore], list[StoredDetection]]:
    """Every ``chip_scores`` and ``detections`` row of the project's store, decoded."""
    with Store(root / "geoal.db") as store:
        return stored_scores(store.conn), stored_detections(store.conn)


def count(root: Path, what: str) -> int:
    """A count of ``geoal status`` (chips, scored, ...) of the project."""
    with Store(root / "geoal.db") as store:
        return store.counts()[what]


def test_score_real_geotiffs_store_and_skip(tmp_path: Path, shared_data: Path) -> None:
    proj = small_project(tmp_path / "p")
    geotiff = shared_data / "geotiff"
    run(
        "-p",
        str(proj),
        "tile",
        str(geotiff / "osbs029_rgb_10cm.tif"),
        str(geotiff / "atlanta_pan_50cm_uint16.tif"),
        "--size",
        "128",
        "--overlap",
        "0",
        "-q",
    )
    n_chips = count(proj, "chips")
    result = run("-p", str(proj), "score", "--model", ARCH, "--views", "2", "--batch", "8", "-q")
    assert f"scored {n_chips} chips" in result.output
    rows, detections = stored(proj)
    assert len(rows) == n_chips == len({r.chip_id for r in rows})
    for row in rows:
        assert {"max", "mean", "sum", "topk_mean", "miaod", "box_instability", "objectness"} <= set(
            row.scores
        )
        assert all(np.isfinite(v) and v >= 0 for v in row.scores.values())
        assert row.expected_count >= 0
        vec = row.embedding
        assert vec.ndim == 1 and vec.size > 64 and abs(np.linalg.norm(vec) - 1) < 1e-3
    per_chip = Counter(d.chip_id for d in detections)
    assert all(per_chip[r.chip_id] == r.n_detections for r in rows)
    assert detections, "a random model at conf 0.001 still detects something"
    for d in detections[:50]:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 <= x2 <= 128 and 0 <= y1 <= y2 <= 128
        assert d.probs.shape == (2,) and d.probs[d.class_id] == pytest.approx(
            d.confidence, rel=1e-5
        )
        assert {"entropy", "least_confidence", "margin", "ratio", "box_instability"} <= set(
            d.uncertainty
        )
    again = run("-p", str(proj), "score", "--model", ARCH, "--views", "2", "-q")
    assert "scored 0 chips" in again.output and f"{n_chips} already scored" in again.output
    assert len(stored(proj)[0]) == n_chips
    status = json.loads(run("-p", str(proj), "status", "--json").output)
    assert status["counts"]["scored"] == n_chips and status["counts"]["models"] == 1


def test_killed_run_resumes_without_duplicates_or_gaps(tmp_path: Path, shared_data: Path) -> None:
    proj = small_project(tmp_path / "p", size=64)
    run(
        "-p",
        str(proj),
        "tile",
        str(shared_data / "geotiff" / "pan_50cm_uint16.tif"),
        "--size",
        "64",
        "--overlap",
        "0.1",
        "-q",
    )
    n_chips = count(proj, "chips")
    assert n_chips >= 100
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "geoal.cli",
        "-p",
        str(proj),
        "score",
        "--model",
        ARCH,
        "--views",
        "2",
        "--batch",
        "4",
        "-q",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            done = count(proj, "scored")
            if done >= 8:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    partial = len(stored(proj)[0])
    assert 8 <= partial < n_chips, "kill landed mid-run"
    result = run("-p", str(proj), "score", "--model", ARCH, "--views", "2", "--batch", "4", "-q")
    assert f"{partial} already scored" in result.output
    rows, detections = stored(proj)
    ids = [r.chip_id for r in rows]
    assert len(ids) == len(set(ids)) == n_chips
    per_chip = Counter(d.chip_id for d in detections)
    assert [r.chip_id for r in rows if per_chip[r.chip_id] != r.n_detections] == []


def test_model_with_other_classes_is_refused(tmp_path: Path, make_raster) -> None:
    from ultralytics import YOLO

    proj = small_project(tmp_path / "p", size=64)
    path, _ = make_raster(width=100, height=100)
    run("-p", str(proj), "tile", str(path), "--size", "64", "-q")
    model = YOLO("yolov8n.yaml")
    model.model.names = {0: "ship", 1: "whale", 2: "car"}
    model.model.yaml["nc"] = 3
    pt = tmp_path / "other.pt"
    model.save(pt)
    result = run("-p", str(proj), "score", "--model", str(pt), ok=False)
    assert result.exit_code != 0
    assert "other.pt" in result.output and "tree" in result.output and "whale" in result.output
    assert stored(proj) == ([], [])
    missing = run("-p", str(proj), "score", "--model", str(tmp_path / "nope.pt"), ok=False)
    assert "nope.pt" in missing.output and missing.exit_code != 0


def test_score_records_the_backend_with_the_scores(tmp_path: Path, make_raster) -> None:
    proj = small_project(tmp_path / "p", size=64)
    path, _ = make_raster(width=120, height=120)
    run("-p", str(proj), "tile", str(path), "--size", "64", "--overlap", "0", "-q")
    result = run(
        "-p",
        str(proj),
        "score",
        "--model",
        "yolov8n.yaml",
        "--backend",
        "onnxruntime",
        "--limit",
        "2",
        "-q",
    )
    assert "scored 2 chips" in result.output and "on onnxruntime" in result.output
    # the suite's default (GEOAL_BACKEND=torch in conftest.py) scores the rest: a resumed run
    # may use another backend, and each chip says which one scored it
    result = run("-p", str(proj), "score", "--model", "yolov8n.yaml", "-q")
    assert "scored 2 chips" in result.output and "on torch" in result.output
    assert Counter(r.backend for r in stored(proj)[0]) == {"onnxruntime": 2, "torch": 2}
    bad = run(
        "-p", str(proj), "score", "--model", "yolov8n.yaml", "--backend", "tensorrt", ok=False
    )
    assert bad.exit_code == 2 and "tensorrt" in bad.output
