"""data/: the real sample, and the README's step-by-step commands run on it as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import rasterio

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sen2ships"


def step_by_step() -> list[str]:
    """The README's "A project, step by step" commands up to the first training, comments cut."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## A project, step by step", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "README: no bash block in 'A project, step by step'"
    commands = [line.split(" #", 1)[0].strip() for line in block.group(1).splitlines()]
    commands = [c for c in commands if c and not c.startswith("#")]
    first_train = next(i for i, c in enumerate(commands) if c.startswith("geoal train"))
    return commands[:first_train]


def test_data_holds_a_small_licensed_sample() -> None:
    files = sorted(p.name for p in SAMPLE.iterdir())
    assert files == ["LICENSE", "casablanca.tif", "honolulu.tif", "ships.geojson"]
    assert "MIT License" in (SAMPLE / "LICENSE").read_text()
    readme = (ROOT / "data" / "README.md").read_text()
    assert "ShipDetectionExperts/sen2ships" in readme and "Your own scenes" in readme
    total = sum(p.stat().st_size for p in (ROOT / "data").rglob("*") if p.is_file())
    assert total <= 10 * 2**20
    ships = json.loads((SAMPLE / "ships.geojson").read_text())
    assert "3857" in ships["crs"]["properties"]["name"]
    by_scene: dict[str, int] = {}
    for feature in ships["features"]:
        scene = feature["properties"]["scene"]
        by_scene[scene] = by_scene.get(scene, 0) + 1
        with rasterio.open(SAMPLE / f"{scene}.tif") as ds:  # every ship lies on its scene
            left, bottom, right, top = ds.bounds
        xs, ys = zip(*feature["geometry"]["coordinates"][0], strict=True)
        assert left <= min(xs) and max(xs) <= right and bottom <= min(ys) and max(ys) <= top
    assert by_scene == {"casablanca": 15, "honolulu": 12}


def test_readme_step_by_step_runs_on_the_sample(tmp_path: Path) -> None:
    commands = step_by_step()
    assert commands[0].startswith("geoal init") and commands[1].startswith("cd ")
    for verb in ("tile", "status", "map", "select", "export", "import"):
        assert any(c.startswith(f"geoal {verb} ") or c == f"geoal {verb}" for c in commands), verb
    assert all("../data/" in c for c in commands if c.startswith(("geoal tile", "geoal import")))
    # a fresh clone's layout: the project beside data/
    (tmp_path / "data").symlink_to(ROOT / "data")
    script = "\n".join(
        ["set -euo pipefail", 'geoal() { "$GEOAL_PYTHON" -m geoal.cli "$@"; }', *commands]
    )
    env = {
        **os.environ,
        "GEOAL_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "YOLO_OFFLINE": "1",
        "MPLBACKEND": "Agg",
    }
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "added scene 1" in done.stdout and "added scene 2" in done.stdout
    project = tmp_path / commands[1].split()[1]
    assert (project / "chips.gpkg").is_file()
    assert list((project / "round1").glob("*.json")) and list((project / "round1").rglob("*.png"))
    status = subprocess.run(
        [sys.executable, "-m", "geoal.cli", "-p", str(project), "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    counts = json.loads(status.stdout)["counts"]
    assert counts["scenes"] == 2 and counts["rounds"] == 1
    # the ships file labels the round's chips it covers (near its ships); the others are
    # left alone, never marked empty on a guess
    assert 0 < counts["labelled"] <= counts["selected"] and counts["labels"] > 0
