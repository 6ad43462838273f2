"""What a new user's machine does to a command: one line, never a traceback, the batch goes on.

Symlink loops, folders that are not writable, a full disk, absurd sizes, a broken config,
deeply nested JSON, an empty store, a resumed tile, file modes that follow the umask.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from geoal.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, code: int = 0):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    run("init", str(tmp_path / "proj"), "--classes", "tree")
    return tmp_path / "proj"


@pytest.fixture
def geotiff(shared_data: Path) -> Path:
    return shared_data / "geotiff"


def n_scenes(proj: Path) -> int:
    return json.loads(run("-p", str(proj), "status", "--json").output)["counts"]["scenes"]


def one_line_error(output: str) -> None:
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("geoal: error:")]
    assert errors, output


def test_symlink_loop_is_one_line_and_the_batch_goes_on(proj: Path, geotiff: Path) -> None:
    loop_a, loop_b = proj / "loop_a.tif", proj / "loop_b.tif"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    folder = proj / "scenes"
    folder.mkdir()
    (folder / "self.tif").symlink_to(folder / "self.tif")
    out = run(
        "-p",
        str(proj),
        "tile",
        str(loop_a),
        str(geotiff / "osbs029_rgb_10cm.tif"),
        str(folder),
        str(geotiff / "pan_50cm_uint16.tif"),
        "-q",
        code=1,
    ).output
    one_line_error(out)
    assert f"{loop_a}: symlink loop" in out and "self.tif: symlink loop" in out
    assert out.count("added scene") == 2 and n_scenes(proj) == 2


def test_resumed_tile_notes_scenes_already_added(proj: Path, geotiff: Path) -> None:
    scenes = [str(geotiff / "osbs029_rgb_10cm.tif"), str(geotiff / "pan_50cm_uint16.tif")]
    run("-p", str(proj), "tile", scenes[0], "-q")
    out = run("-p", str(proj), "tile", *scenes, "-q").output  # exit 0: nothing went wrong
    assert "note: " in out and "already added as scene 1" in out
    assert "geoal: error" not in out and n_scenes(proj) == 2


def test_disk_full_during_tile_stops_with_one_line(
    proj: Path, geotiff: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geoal.store import Store

    real = Store.insert_scene
    calls = []

    def insert(self, *args, **kwargs):  # SQLite's answer to ENOSPC on the second scene
        calls.append(1)
        if len(calls) == 2:
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Store, "insert_scene", insert)
    names = ["osbs029_rgb_10cm.tif", "pan_50cm_uint16.tif", "ms_4band_1m_float64.tif"]
    out = run("-p", str(proj), "tile", *[str(geotiff / n) for n in names], "-q", code=1).output
    one_line_error(out)
    assert "no space left on the device" in out and "1 file(s) not tried" in out
    assert "added scene 1" in out and len(calls) == 2
    monkeypatch.setattr(Store, "insert_scene", real)
    assert n_scenes(proj) == 1


def test_disk_full_elsewhere_is_one_line(proj: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import geoal.pipeline.catalog as catalog

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "chips.gpkg")

    monkeypatch.setattr(catalog, "write_chip_map", full)
    out = run("-p", str(proj), "map", "--out", "chips.gpkg", code=1).output
    one_line_error(out)
    assert "chips.gpkg: no space left on the device" in out


def unprivileged(*args: str) -> subprocess.CompletedProcess:
    """The CLI in a subprocess that obeys file permissions (root without CAP_DAC_OVERRIDE)."""
    cmd = [sys.executable, "-m", "geoal.cli", *args]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root without setpriv: file permissions cannot be tested")
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *cmd]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_folders_that_are_not_writable(proj: Path, geotiff: Path, tmp_path: Path) -> None:
    run("-p", str(proj), "tile", str(geotiff / "osbs029_rgb_10cm.tif"), "--size", "128", "-q")
    run("-p", str(proj), "select", "-k", "2", "-s", "random")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        for args in (
            ["export", "-f", "coco", "--out", str(locked / "round1")],
            ["export", "-f", "coco", "--out", str(locked)],
            ["map", "--out", str(locked / "chips.gpkg")],
        ):
            done = unprivileged("-p", str(proj), *args)
            assert done.returncode == 1, done.stderr
            one_line_error(done.stderr)
            assert f"{locked}" in done.stderr and "permission denied" in done.stderr
        (proj / "geoal.db").chmod(0o444)
        proj.chmod(0o555)
        done = unprivileged("-p", str(proj), "tile", str(geotiff / "pan_50cm_uint16.tif"))
        assert done.returncode == 1, done.stderr
        one_line_error(done.stderr)
        assert "writable" in done.stderr
    finally:
        locked.chmod(0o755)
        proj.chmod(0o755)
        (proj / "geoal.db").chmod(0o644)
    assert n_scenes(proj) == 1


def test_deeply_nested_json_is_one_line(proj: Path, tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    out = run("-p", str(proj), "import", str(deep), code=1).output
    one_line_error(out)
    assert "nested too deeply" in out


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("classes: 5\n", "classes: expected a list of class names"),
        ("classes: {tree: 1}\n", "classes: expected a list of class names"),
        ("classes: [tree]\nname: [1]\n", "name: expected text"),
        ("classes: [tree]\ntiling: {bands: true}\n", "tiling.bands: expected band numbers"),
        ("classes: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ],
)
def test_broken_config_is_one_line(proj: Path, yaml_text: str, message: str) -> None:
    (proj / "geoal.yaml").write_text(yaml_text)
    out = run("-p", str(proj), "status", code=2).output
    one_line_error(out)
    assert message in out


def test_predict_refuses_absurd_chip_sizes_before_anything(geotiff: Path, tmp_path: Path) -> None:
    scene = str(geotiff / "pan_50cm_uint16.tif")
    for size in ("100000", "8"):
        out = run("predict", scene, "--model", str(tmp_path / "none.pt"), "--size", size, code=2)
        one_line_error(out.output)
        assert f"--size {size}: chip side must be 32-8192 pixels" in out.output


def test_empty_store_file_is_refused(proj: Path) -> None:
    (proj / "geoal.db").write_bytes(b"")
    out = run("-p", str(proj), "status", code=1).output
    one_line_error(out)
    assert "the store is empty (0 bytes)" in out
    assert (proj / "geoal.db").stat().st_size == 0  # not silently made a new store


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_exported_files_follow_the_umask(
    proj: Path, geotiff: Path, tmp_path: Path, umask: int, mode: int
) -> None:
    run("-p", str(proj), "tile", str(geotiff / "osbs029_rgb_10cm.tif"), "--size", "128", "-q")
    run("-p", str(proj), "select", "-k", "2", "-s", "random")
    old = os.umask(umask)
    try:
        for fmt in ("coco", "labelstudio", "geojson"):
            run("-p", str(proj), "export", "-f", fmt, "--out", str(tmp_path / fmt), "-q")
    finally:
        os.umask(old)
    written = [
        p
        for fmt in ("coco", "labelstudio", "geojson")
        for p in (tmp_path / fmt).rglob("*")
        if p.suffix in (".json", ".xml", ".geojson", ".yaml")
    ]
    assert len(written) >= 4
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {
        p.name: oct(mode) for p in written
    }


def test_map_score_is_a_number_before_any_scoring(
    proj: Path, geotiff: Path, tmp_path: Path
) -> None:
    import pyogrio

    run("-p", str(proj), "tile", str(geotiff / "osbs029_rgb_10cm.tif"), "--size", "128", "-q")
    gpkg = tmp_path / "chips.gpkg"
    run("-p", str(proj), "map", "--out", str(gpkg))
    for layer, _ in pyogrio.list_layers(gpkg):
        info = pyogrio.read_info(gpkg, layer=layer)
        dtypes = dict(zip(info["fields"], info["dtypes"], strict=True))
        assert dtypes["score"] == "float64", (layer, dtypes)


def test_tile_star_skips_labels_and_notes_beside_the_scenes(proj: Path, geotiff: Path) -> None:
    files = sorted(str(p) for p in geotiff.iterdir())  # what the shell makes of geotiff/*
    out = run("-p", str(proj), "tile", *files, "-q").output
    assert "geoal: error" not in out and out.count("added scene") == 4
    assert "osbs029_trees.geojson: not a raster (.geojson file); skipped" in out
    assert "README.md: not a raster (.md file); skipped" in out
    only_labels = run("-p", str(proj), "tile", str(geotiff / "osbs029_trees.geojson"), code=1)
    assert "no raster among the files given" in only_labels.output


def test_a_scene_name_two_scenes_share_is_refused(proj: Path, geotiff: Path) -> None:
    for year in ("2021", "2022"):  # the same file name in two folders
        (proj / year).mkdir()
    shutil.copy(geotiff / "pan_50cm_uint16.tif", proj / "2021" / "scene.tif")
    shutil.copy(geotiff / "atlanta_pan_50cm_uint16.tif", proj / "2022" / "scene.tif")
    run("-p", str(proj), "tile", str(proj / "2021"), str(proj / "2022"), "-q")
    out = run("-p", str(proj), "select", "-s", "random", "--scene", "scene", code=2).output
    assert "--scene scene: 2 scenes have this name" in out and "give the id" in out
    run("-p", str(proj), "select", "-s", "random", "--scene", "2")


def test_predict_summary_into_a_new_folder(tmp_path: Path) -> None:
    import numpy as np

    from geoal.predict.scene import PredictReport, SceneDetections, write_summary

    scene = SceneDetections("s.tif", "s", None, (1, 0, 0, 0, -1, 0), np.zeros((0, 7)), 1, 0, 0)
    out = tmp_path / "results" / "2026" / "counts.csv"
    write_summary(PredictReport(classes=("tree",), scenes=[scene]), out)
    assert out.read_text().splitlines() == ["scene,class,count", "s,tree,0"]
