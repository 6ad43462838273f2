"""Helpers for the distributed tests: tiny projects (64 px chips, model at 64 px) and store rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result

from geoal.cli import main

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


def db_rows(root: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of a query on the project's store (a connection of its own)."""
    conn = sqlite3.connect(root / "geoal.db")
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def scored_ids(root: Path) -> list[int]:
    """chip_id of every chip_scores row (duplicates kept)."""
    return [r[0] for r in db_rows(root, "SELECT chip_id FROM chip_scores")]


def results(root: Path) -> dict[int, dict[str, Any]]:
    """Per chip: scores, expected count, embedding and detections (in stored order)."""
    out: dict[int, dict[str, Any]] = {}
    for chip_id, views, n_det, expected, scores, emb in db_rows(
        root,
        "SELECT chip_id, views, n_detections, expected_count, scores, embedding FROM chip_scores",
    ):
        out[chip_id] = {
            "views": views,
            "n": n_det,
            "expected": expected,
            "scores": json.loads(scores),
            "embedding": np.frombuffer(emb, dtype="<f4"),
            "detections": [],
        }
    for row in db_rows(
        root,
        "SELECT chip_id, x1, y1, x2, y2, class_id, confidence, probs, uncertainty "
        "FROM detections ORDER BY chip_id, id",
    ):
        out[row[0]]["detections"].append(row[1:])
    return out


def assert_same_results(a: Path, b: Path, tol: float = 1e-4) -> None:
    """The two projects' stores hold the same scores and detections, to float tolerance."""
    ra, rb = results(a), results(b)
    assert ra and set(ra) == set(rb)
    for chip_id, x in ra.items():
        y = rb[chip_id]
        assert x["views"] == y["views"] and x["n"] == y["n"] == len(y["detections"]), chip_id
        assert x["expected"] == pytest.approx(y["expected"], rel=tol, abs=tol)
        assert x["scores"].keys() == y["scores"].keys()
        for key, value in x["scores"].items():
            assert value == pytest.approx(y["scores"][key], rel=tol, abs=tol), (chip_id, key)
        np.testing.assert_allclose(x["embedding"], y["embedding"], rtol=tol, atol=tol)
        for da, db in zip(x["detections"], y["detections"], strict=True):
            np.testing.assert_allclose(da[:4], db[:4], atol=1e-2)
            assert da[4] == db[4]
            assert da[5] == pytest.approx(db[5], rel=tol, abs=tol)
            np.testing.assert_allclose(
                np.frombuffer(da[6], "<f4"), np.frombuffer(db[6], "<f4"), atol=tol
            )
            ua, ub = json.loads(da[7]), json.loads(db[7])
            assert ua.keys() == ub.keys()
            for key in ua:
                assert ua[key] == pytest.approx(ub[key], rel=tol, abs=tol), (chip_id, key)


def assert_complete(root: Path, n_chips: int) -> None:
    """Every chip scored exactly once, each with its detections (no half-written chip)."""
    ids = scored_ids(root)
    assert len(ids) == len(set(ids)) == n_chips
    mismatch = db_rows(
        root,
        "SELECT s.chip_id FROM chip_scores s LEFT JOIN detections d "
        "ON d.chip_id = s.chip_id AND d.model_hash = s.model_hash "
        "GROUP BY s.chip_id HAVING COUNT(d.id) != MAX(s.n_detections)",
    )
    assert mismatch == []
