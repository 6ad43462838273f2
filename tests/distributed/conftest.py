"""Helpers for the distributed tests: tiny projects (64 px chips, model at 64 px), stored scores."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result

from geoal.cli import main
from geoal.store import Store
from geoal.store.scores import StoredDetection, StoredScore, stored_detections, stored_scores

CLASSES = "tree,building"


def run_cli(*args: str, ok: bool = True) -> Result:
    """Run ``geoal ARGS`` in this process; check the exit code when ``ok``."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def make_project(root: Path, scenes: list[Path], size: int = 64, overlap: float = 0.0) -> Path:
    """A project whose model runs at the chip size, with ``scenes`` tiled into ``size`` px chips."""
    run_cli("init", str(root), "--classes", CLASSES)
    cfg_path = root / "geoal.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["model"]["imgsz"] = size
    cfg["score"]["conf"] = 0.001  # an untrained model still detects something
    cfg_path.write_text(yaml.safe_dump(cfg))
    run_cli(
        "-p",
        str(root),
        "tile",
        *map(str, scenes),
        "--size",
        str(size),
        "--overlap",
        str(overlap),
        "-q",
    )
    return root


def stored(root: Path) -> tuple[list[StoredScore], list[StoredDetection]]:
    """Every ``chip_scores`` and ``detections`` row of the project's store, decoded."""
    with Store(root / "geoal.db") as store:
        return stored_scores(store.conn), stored_detections(store.conn)


def count_chips(root: Path) -> int:
    """The number of chips of the project."""
    with Store(root / "geoal.db") as store:
        return store.counts()["chips"]


def scored_ids(root: Path) -> list[int]:
    """chip_id of every chip_scores row (duplicates kept)."""
    return [row.chip_id for row in stored(root)[0]]


def results(root: Path) -> dict[int, dict[str, Any]]:
    """Per chip: its stored scores and its detections (in stored order)."""
    scores, detections = stored(root)
    out: dict[int, dict[str, Any]] = {s.chip_id: {"score": s, "detections": []} for s in scores}
    for det in detections:
        out[det.chip_id]["detections"].append(det)
    return out


def assert_same_results(a: Path, b: Path, tol: float = 1e-4) -> None:
    """The two projects' stores hold the same scores and detections, to float tolerance."""
    ra, rb = results(a), results(b)
    assert ra and set(ra) == set(rb)
    for chip_id, x in ra.items():
        sa, sb = x["score"], rb[chip_id]["score"]
        assert sa.views == sb.views and sa.n_detections == sb.n_detections, chip_id
        assert sb.n_detections == len(rb[chip_id]["detections"]), chip_id
        assert sa.expected_count == pytest.approx(sb.expected_count, rel=tol, abs=tol)
        assert sa.scores.keys() == sb.scores.keys()
        for key, value in sa.scores.items():
            assert value == pytest.approx(sb.scores[key], rel=tol, abs=tol), (chip_id, key)
        np.testing.assert_allclose(sa.embedding, sb.embedding, rtol=tol, atol=tol)
        for da, db in zip(x["detections"], rb[chip_id]["detections"], strict=True):
            np.testing.assert_allclose(da.box, db.box, atol=1e-2)
            assert da.class_id == db.class_id
            assert da.confidence == pytest.approx(db.confidence, rel=tol, abs=tol)
            np.testing.assert_allclose(da.probs, db.probs, atol=tol)
            assert da.uncertainty.keys() == db.uncertainty.keys()
            for key in da.uncertainty:
                assert da.uncertainty[key] == pytest.approx(
                    db.uncertainty[key], rel=tol, abs=tol
                ), (chip_id, key)


def assert_complete(root: Path, n_chips: int) -> None:
    """Every chip scored exactly once, each with its detections (no half-written chip)."""
    scores, detections = stored(root)
    ids = [s.chip_id for s in scores]
    assert len(ids) == len(set(ids)) == n_chips
    per_chip = Counter((d.chip_id, d.model_hash) for d in detections)
    assert [s.chip_id for s in scores if per_chip[s.chip_id, s.model_hash] != s.n_detections] == []
