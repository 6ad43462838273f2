"""The command line: init, tile (good and bad input), status, map (the demo: test_demo.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest

from tests.cli_run import run


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    run("init", str(tmp_path / "proj"), "--classes", "ship,tank")
    return tmp_path / "proj"


def counts(proj: Path) -> dict:
    return json.loads(run("-p", str(proj), "status", "--json").output)["counts"]


def test_every_command_has_help() -> None:
    for cmd in ["init", "tile", "status", "map", "demo"]:
        assert "Usage" in run(cmd, "--help").output
    assert "active learning" in run("--help").output


def test_tile_status_map(proj: Path, make_raster, tmp_path: Path) -> None:
    a, _ = make_raster(width=400, height=300, nodata=0, border=40)
    b, _ = make_raster(width=300, height=300, crs="EPSG:4326", seed=2)
    out = run("-p", str(proj), "tile", str(a), str(b), "--size", "128", "--overlap", "0.1", "-q")
    assert out.output.count("added scene") == 2
    c = counts(proj)
    assert c["scenes"] == 2 and c["chips"] > 0 and c["scored"] == 0
    text = run("-p", str(proj), "status").output
    assert "EPSG:32631" in text and "EPSG:4326" in text
    gpkg = tmp_path / "chips.gpkg"
    run("-p", str(proj), "map", "--out", str(gpkg))
    layers = dict(pyogrio.list_layers(gpkg))
    assert "chips_wgs84" in layers and len(layers) == 3
    scene_layer = next(n for n in layers if n not in ("chips_wgs84",))
    frame = gpd.read_file(gpkg, layer=scene_layer)
    assert frame.crs.to_epsg() in (32631, 4326)
    assert set(frame["state"]) == {"new"}
    assert len(gpd.read_file(gpkg, layer="chips_wgs84")) == c["chips"]


def test_one_corrupt_scene_of_ten(proj: Path, make_raster, tmp_path: Path) -> None:
    paths = [str(make_raster(seed=i)[0]) for i in range(9)]
    bad = tmp_path / "corrupt.tif"
    bad.write_bytes(b"II*\x00garbage" * 10)
    result = run("-p", str(proj), "tile", *paths[:5], str(bad), *paths[5:], "-q", ok=False)
    assert result.exit_code == 1
    assert "corrupt.tif: not a readable raster" in result.output
    assert counts(proj)["scenes"] == 9


def test_bad_inputs_leave_store_unchanged(proj: Path, make_raster, tmp_path: Path) -> None:
    good, _ = make_raster()
    run("-p", str(proj), "tile", str(good), "-q")
    before = counts(proj)
    copy = tmp_path / "copy_of_good.tif"
    shutil.copy(good, copy)
    text = tmp_path / "notes.dat"
    text.write_text("hello")
    allnodata, _ = make_raster(width=100, height=100, nodata=0, border=50)
    other, _ = make_raster(seed=7)
    cases = [
        ([str(tmp_path / "missing.tif")], "missing.tif: file not found"),
        ([str(text)], "notes.dat: not a readable raster"),
        ([str(tmp_path / "notes.txt")], "no raster among the files given"),
        ([str(copy)], "same content as scene 1"),
        ([str(allnodata)], "no valid pixels"),
        ([str(other), "--bands", "4,2,1"], "band 4 out of range"),
    ]
    for args, message in cases:
        result = run("-p", str(proj), "tile", *args, "-q", ok=False)
        assert result.exit_code != 0, args
        assert message in result.output, result.output
        assert counts(proj) == before
    result = run("-p", str(proj), "tile", str(good), "-q")  # given again: a note, exit 0
    assert "already added as scene 1" in result.output and counts(proj) == before
    result = run("-p", str(tmp_path), "status", ok=False)
    assert result.exit_code == 1 and "not a geoal project" in result.output
    result = run("-p", str(proj), "tile", str(good), "--overlap", "1.2", ok=False)
    assert result.exit_code == 2 and "overlap" in result.output


def test_small_scene_and_png_warnings(proj: Path, make_raster, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    small, _ = make_raster(width=50, height=60)
    png = tmp_path / "photo.png"
    Image.fromarray(np.full((700, 700, 3), 120, np.uint8)).save(png)
    result = run("-p", str(proj), "tile", str(small), str(png), "-q")
    assert "smaller than the chip size" in result.output
    assert "no CRS; using pixel coordinates" in result.output
    assert counts(proj)["scenes"] == 2


def test_tile_folder_and_glob(proj: Path, make_raster, tmp_path: Path) -> None:
    make_raster("x1.tif")
    make_raster("x2.tif", seed=5)
    run("-p", str(proj), "tile", str(tmp_path / "x*.tif"), "-q")
    assert counts(proj)["scenes"] == 2


def test_real_geotiff_folder(proj: Path, shared_data: Path) -> None:
    result = run("-p", str(proj), "tile", str(shared_data / "geotiff"), "--size", "256", "-q")
    assert result.output.count("added scene") == 4
    info = json.loads(run("-p", str(proj), "status", "--json").output)
    assert {s["crs"] for s in info["scenes"]} == {"EPSG:32617", "EPSG:32616", "EPSG:32631"}
