"""A scene file changed after tiling is noticed before any chip of it is read."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

import geoal.raster.scene as scene_module
from tests.cli_run import run


@pytest.fixture
def tiled(tmp_path: Path, shared_data: Path) -> tuple[Path, Path]:
    """A project with a copy of the real 0.1 m RGB raster in 100 px chips, 4 of them in round 1."""
    scene = tmp_path / "scenes" / "osbs.tif"
    scene.parent.mkdir()
    shutil.copyfile(shared_data / "geotiff" / "osbs029_rgb_10cm.tif", scene)
    proj = tmp_path / "p"
    run("init", str(proj), "--classes", "Tree")
    run("-p", str(proj), "tile", str(scene), "--size", "100", "--overlap", "0", "-q")
    run("-p", str(proj), "select", "-k", "4", "-s", "random")
    return proj, scene


def test_a_one_band_replacement_is_refused_before_anything_is_written(
    tiled: tuple[Path, Path], shared_data: Path, tmp_path: Path
) -> None:
    proj, scene = tiled
    trees = shared_data / "geotiff" / "osbs029_trees.geojson"
    run("-p", str(proj), "import", str(trees), "--class", "Tree")
    shutil.copyfile(shared_data / "geotiff" / "pan_50cm_uint16.tif", scene)  # 1 band, uint16
    out = tmp_path / "round1"
    result = run("-p", str(proj), "export", "-f", "coco", "-o", str(out), "--round", "1", ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(scene.resolve()) in lines[0], result.output
    assert "changed since it was tiled" in lines[0] and "1 band(s)" in lines[0]
    assert "put the tiled file back" in lines[0]
    assert not list(out.rglob("*.png")) and not list(out.rglob("*.json"))
    for command in (["train", "--epochs", "1"], ["report", "--out", str(tmp_path / "r.html")]):
        refused = run("-p", str(proj), *command, ok=False)
        assert refused.exit_code == 1 and "changed since it was tiled" in refused.output, command
    score = run("-p", str(proj), "score", "--model", "yolov8n.yaml", "-q", ok=False)
    assert score.exit_code == 1 and "changed since it was tiled" in score.output
    assert "IndexError" not in score.output


def test_same_grid_other_pixels_is_refused_and_the_original_back_is_accepted(
    tiled: tuple[Path, Path], tmp_path: Path
) -> None:
    proj, scene = tiled
    original = tmp_path / "original.tif"
    shutil.copyfile(scene, original)
    with rasterio.open(scene, "r+") as ds:  # same grid, bands and size; other pixels
        ds.write(255 - ds.read())
    result = run("-p", str(proj), "export", "-f", "coco", "-o", str(tmp_path / "x"), ok=False)
    assert "same size, other content" in result.output, result.output
    shutil.copyfile(original, scene)
    out = run("-p", str(proj), "export", "-f", "coco", "-o", str(tmp_path / "ok")).output
    assert "exported 4 chips" in out


def test_a_scene_is_hashed_once_per_command_not_per_chip(
    tiled: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj, _ = tiled
    calls: list[str] = []
    real = scene_module.fingerprint

    def counting(path: str, ds: object) -> str:
        calls.append(path)
        return real(path, ds)

    monkeypatch.setattr(scene_module, "fingerprint", counting)
    monkeypatch.setattr(scene_module, "_UNCHANGED", {})
    run("-p", str(proj), "export", "-f", "coco", "-o", str(tmp_path / "r1"))
    assert len(calls) == 1  # 4 chips, read by an upfront check and a reader: one hash


def test_a_changed_scene_is_noticed_by_the_reader_itself(
    tiled: tuple[Path, Path], shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every chip read of a project scene checks it, not only the commands that check upfront."""
    from geoal.errors import RasterError
    from geoal.project import open_project
    from geoal.raster.reader import iter_chips

    proj, scene = tiled
    monkeypatch.setattr(scene_module, "_UNCHANGED", {})
    with open_project(proj) as project:
        record = project.store.scenes()[0]
        ids, windows = project.store.chip_windows(record.id)
        items = [(int(i), record.id, tuple(w)) for i, w in zip(ids, windows, strict=True)]
        first = next(iter_chips({record.id: record}, items[:1]))[1]
        assert first.shape == (100, 100, 3) and first.any()
        shutil.copyfile(shared_data / "geotiff" / "pan_50cm_uint16.tif", scene)
        with pytest.raises(RasterError, match="changed since it was tiled"):
            list(iter_chips({record.id: record}, items))
    assert np.asarray(first).dtype == np.uint8


def test_a_moved_scene_is_found_again_by_tiling_it_where_it_is(
    tiled: tuple[Path, Path], tmp_path: Path
) -> None:
    proj, scene = tiled
    moved = tmp_path / "archive" / "osbs_2024.tif"
    moved.parent.mkdir()
    scene.rename(moved)
    lost = run("-p", str(proj), "export", "-f", "coco", "-o", str(tmp_path / "x"), ok=False)
    assert lost.exit_code == 1 and "file not found; it was tiled as scene 1" in lost.output
    assert "geoal tile NEW_PATH" in lost.output
    out = run("-p", str(proj), "tile", str(moved), "-q").output
    assert f"scene 1 (osbs) moved from {scene.resolve()} to {moved.resolve()}" in out
    status = run("-p", str(proj), "status", "--json").output
    assert '"scenes": 1' in status and '"chips": 16' in status
    assert (
        "exported 4 chips"
        in run("-p", str(proj), "export", "-f", "coco", "-o", str(tmp_path / "y")).output
    )
    # the same content at a second path while the first is still there is still refused
    copy = tmp_path / "copy.tif"
    shutil.copyfile(moved, copy)
    again = run("-p", str(proj), "tile", str(copy), "-q", ok=False)
    assert again.exit_code == 1 and "same content as scene 1" in again.output
