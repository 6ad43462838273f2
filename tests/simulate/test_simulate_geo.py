"""GeoTIFF + GeoJSON as a simulation's data set (geoal.simulate.geo), on the real rasters."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoal.errors import ConfigError, FormatError
from geoal.simulate import read_rows
from geoal.simulate.geo import GeoSource, prepare_geo_dataset, split_chips


@pytest.fixture(scope="module")
def geotiff(shared_data: Path) -> Path:
    return shared_data / "geotiff"


def _source(geotiff: Path, **kw: Any) -> GeoSource:
    base: dict[str, Any] = {
        "scenes": (
            str(geotiff / "osbs029_rgb_10cm.tif"),
            str(geotiff / "atlanta_pan_50cm_uint16.tif"),
        ),
        "labels": (geotiff / "osbs029_trees.geojson", geotiff / "atlanta_buildings.geojson"),
        "size": 128,
        "class_field": "label",
        "default_class": "building",
        "split": "chip",
    }
    return GeoSource(**{**base, **kw})


def _windows(coco: dict[str, Any]) -> dict[int, tuple[str, list[int]]]:
    return {im["id"]: (im["scene"], im["window"]) for im in coco["images"]}


def test_chips_labels_and_split_on_real_scenes(geotiff: Path, tmp_path: Path) -> None:
    ds = prepare_geo_dataset(_source(geotiff), tmp_path / "dataset")
    pool = json.loads(ds.pool_json.read_text())
    test = json.loads(ds.test_json.read_text())
    assert [c["name"] for c in pool["categories"]] == ["Tree", "building"]
    assert ds.summary["pool_chips"] == len(pool["images"]) >= 2
    assert ds.summary["test_chips"] == len(test["images"]) >= 1
    # disjoint, and no pool chip shares a pixel with a test chip of its scene
    pw, tw = _windows(pool), _windows(test)
    assert not set(pw) & set(tw)
    for scene, (c, r, w, h) in pw.values():
        for tscene, (tc, tr, tw_, th) in tw.values():
            if scene == tscene:
                assert min(c + w, tc + tw_) <= max(c, tc) or min(r + h, tr + th) <= max(r, tr)
    # every chip image is written, the stretched RGB the model sees
    from PIL import Image

    for im in pool["images"] + test["images"]:
        with Image.open(ds.images / im["file_name"]) as png:
            assert png.mode == "RGB" and png.size == (im["width"], im["height"])
    # tree boxes land on the pixels of the original (pixel-space) labels
    truth = []
    with (geotiff / "osbs029_trees_pixels.csv").open() as fh:
        for row in csv.DictReader(fh):
            truth.append([float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")])
    truth_arr = np.array(truth)
    windows = {**pw, **tw}
    matched = 0
    for ann in pool["annotations"] + test["annotations"]:
        scene, (c, r, w, h) = windows[ann["image_id"]]
        if scene != "osbs029_rgb_10cm":
            assert ann["category_id"] == 2
            continue
        assert ann["category_id"] == 1
        x, y, bw, bh = ann["bbox"]
        if x > 0 and y > 0 and x + bw < w and y + bh < h:  # not cut by the chip edge
            scene_box = np.array([x + c, y + r, x + bw + c, y + bh + r])
            assert np.abs(truth_arr - scene_box).max(axis=1).min() < 1e-3
            matched += 1
    assert matched >= 20


def test_prepared_folder_is_reused_and_other_inputs_refused(geotiff: Path, tmp_path: Path) -> None:
    folder = tmp_path / "dataset"
    first = prepare_geo_dataset(_source(geotiff), folder)
    stamp = first.pool_json.stat().st_mtime_ns
    again = prepare_geo_dataset(_source(geotiff), folder)
    assert again.summary == first.summary and again.pool_json.stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="other scenes, labels or settings"):
        prepare_geo_dataset(_source(geotiff, size=256), folder)
    assert first.pool_json.stat().st_mtime_ns == stamp  # nothing stored was touched


def test_scene_split_holds_out_whole_scenes(geotiff: Path, tmp_path: Path) -> None:
    ds = prepare_geo_dataset(_source(geotiff, split="scene"), tmp_path / "d")
    pool_scenes = {s for s, _ in _windows(json.loads(ds.pool_json.read_text())).values()}
    test_scenes = {s for s, _ in _windows(json.loads(ds.test_json.read_text())).values()}
    assert len(pool_scenes) == len(test_scenes) == 1 and not pool_scenes & test_scenes
    one = _source(
        geotiff,
        split="scene",
        scenes=(str(geotiff / "osbs029_rgb_10cm.tif"),),
        labels=(geotiff / "osbs029_trees.geojson",),
    )
    with pytest.raises(ConfigError, match="at least two scenes"):
        prepare_geo_dataset(one, tmp_path / "e")


def test_bad_labels_are_named(geotiff: Path, tmp_path: Path) -> None:
    no_class = _source(geotiff, default_class=None)
    with pytest.raises(FormatError, match=r"atlanta_buildings\.geojson: no 'label' property"):
        prepare_geo_dataset(no_class, tmp_path / "a")
    elsewhere = _source(
        geotiff,
        scenes=(str(geotiff / "osbs029_rgb_10cm.tif"),),
        labels=(geotiff / "atlanta_buildings.geojson",),
    )
    with pytest.raises(FormatError, match="no feature lies on any"):
        prepare_geo_dataset(elsewhere, tmp_path / "b")
    unknown = _source(geotiff, classes=("Tree",))
    with pytest.raises(FormatError, match="unknown class 'building'"):
        prepare_geo_dataset(unknown, tmp_path / "c")
    missing = _source(geotiff, scenes=(str(tmp_path / "nope.tif"),))
    with pytest.raises(ConfigError, match=r"nope\.tif"):
        prepare_geo_dataset(missing, tmp_path / "d")
    one_scene_labelled = _source(
        geotiff, split="scene", labels=(geotiff / "atlanta_buildings.geojson",)
    )
    with pytest.raises(ConfigError, match="holds no labelled object"):
        prepare_geo_dataset(one_scene_labelled, tmp_path / "e")
    for folder in "abcde":
        assert not (tmp_path / folder).exists()  # nothing half-written


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 40),
    fraction=st.floats(0.05, 0.9),
    seed=st.integers(0, 1000),
    step=st.sampled_from([64, 100, 128]),
)
def test_chip_split_never_shares_pixels(n: int, fraction: float, seed: int, step: int) -> None:
    cols = (np.arange(n) % 6) * step
    rows = (np.arange(n) // 6) * step
    windows = np.column_stack([cols, rows, np.full(n, 128), np.full(n, 128)])
    scene_of = np.arange(n) % 2
    test, dropped = split_chips(scene_of, windows, "chip", fraction, seed)
    assert 1 <= len(test) < n and len(set(test.tolist())) == len(test)
    pool = [i for i in range(n) if i not in set(test.tolist()) | dropped]
    for p in pool:
        for t in test.tolist():
            if scene_of[p] != scene_of[t]:
                continue
            a, b = windows[p], windows[t]
            overlap_x = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
            overlap_y = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
            assert overlap_x <= 0 or overlap_y <= 0
    again, _ = split_chips(scene_of, windows, "chip", fraction, seed)
    np.testing.assert_array_equal(test, again)


@pytest.mark.slow
def test_simulate_command_on_geotiffs(geotiff: Path, tmp_path: Path, sim: Any) -> None:
    _, env = sim
    out = tmp_path / "sim"
    command = [
        sys.executable, "-m", "geoal.cli", "simulate", "--quiet",
        "--scenes", str(geotiff / "osbs029_rgb_10cm.tif"),
        "--scenes", str(geotiff / "atlanta_pan_50cm_uint16.tif"),
        "--labels", str(geotiff / "osbs029_trees.geojson"),
        "--labels", str(geotiff / "atlanta_buildings.geojson"),
        "--class-field", "label", "--default-class", "building",
        "--split", "chip", "--chip-size", "128", "--out", str(out),
        "--strategies", "random,hybrid", "--seeds", "0", "--budgets", "0.25,0.5",
        "--epochs", "1", "--imgsz", "128", "--batch", "4", "--init", "yolov8n.yaml",
    ]  # fmt: skip
    done = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pool chips" in done.stdout and "classes Tree, building" in done.stdout
    rows = read_rows(out / "results.csv")
    assert sorted((r["strategy"], r["round"]) for r in rows) == [
        ("hybrid", 0),
        ("hybrid", 1),
        ("random", 0),
        ("random", 1),
    ]
    pool = json.loads((out / "dataset" / "pool.json").read_text())
    n = len(pool["images"])
    assert [r["n_images"] for r in rows if r["strategy"] == "random"] == [
        round(0.25 * n),
        round(0.5 * n),
    ]
    # the same command again resumes: nothing is recomputed
    again = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_rows(out / "results.csv") == rows
    mixed = subprocess.run(
        [*command, "--data", str(out / "dataset" / "pool.json")],
        env=env(),
        capture_output=True,
        text=True,
    )
    assert mixed.returncode != 0 and "either --scenes and --labels" in mixed.stderr
