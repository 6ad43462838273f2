"""``geoal score --limit N`` says how many chips are still left to score."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from geoal.cli import main

pytestmark = pytest.mark.slow


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_limit_reports_what_is_left(tmp_path: Path, shared_data: Path) -> None:
    root = tmp_path / "p"
    run("init", str(root), "--classes", "tree")
    cfg = yaml.safe_load((root / "geoal.yaml").read_text())
    cfg["model"]["imgsz"] = 64  # a random model at 64 px: fast on a CPU
    (root / "geoal.yaml").write_text(yaml.safe_dump(cfg))
    scene = shared_data / "geotiff" / "osbs029_rgb_10cm.tif"
    out = run("-p", str(root), "tile", str(scene), "--size", "64", "--overlap", "0", "-q")
    n = int(re.search(r"\((\d+) chips", out).group(1))  # type: ignore[union-attr]
    score = ["-p", str(root), "score", "--model", "yolov8n.yaml", "--views", "1", "-q"]
    first = run(*score, "--limit", "4")
    assert "scored 4 chips" in first and f"0 already scored, {n - 4} left" in first
    second = run(*score, "--limit", "4")
    assert "scored 4 chips" in second and f"4 already scored, {n - 8} left" in second
