"""The annotation round trip through the store and the CLI: export, label, import."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest

from geoal.store import labels as label_store
from geoal.store.states import RoundState
from tests.pipeline.annotation import (
    export_labelstudio,
    labelled_boxes,
    read,
    run,
    trees_round,
)


@pytest.fixture
def trees(tmp_path: Path, shared_data: Path) -> Path:
    """The real 0.1 m RGB raster tiled in 200 px chips, all in round 1."""
    return trees_round(tmp_path, shared_data / "geotiff", 4, "Tree")


def test_geojson_labels_land_on_the_csv_pixels(
    trees: Path, shared_data: Path, tmp_path: Path
) -> None:
    src = shared_data / "geotiff" / "osbs029_trees.geojson"
    wgs = tmp_path / "trees_wgs84.geojson"
    gpd.read_file(src).to_crs("EPSG:4326").to_file(wgs, driver="GeoJSON")
    out = run(
        "-p", str(trees), "import", str(wgs), "--min-visible", "0.0001", "--class-field", "label"
    ).output
    assert "imported" in out and "4 chips" in out
    # every CSV box, cut by the chip grid, is found in the store within 1e-6 px (via EPSG:4326)
    offsets = {c.id: np.tile(c.window[:2], 2) for c in read(trees, label_store.chip_rows)}
    stored = np.concatenate([b[:, :4] + offsets[cid] for cid, b in labelled_boxes(trees).items()])
    with (shared_data / "geotiff" / "osbs029_trees_pixels.csv").open() as fh:
        truth = np.array(
            [[float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")] for r in csv.DictReader(fh)]
        )
    for x1, y1, x2, y2 in truth:
        for c0 in (0, 200):
            for r0 in (0, 200):
                cx1, cy1, cx2, cy2 = max(x1, c0), max(y1, r0), min(x2, c0 + 200), min(y2, r0 + 200)
                if cx2 > cx1 and cy2 > cy1:
                    d = np.abs(stored - [cx1, cy1, cx2, cy2]).max(axis=1)
                    assert d.min() < 1e-6, (x1, y1, x2, y2, c0, r0)
    assert read(trees, label_store.round_states)[0] == RoundState.LABELLED
    again = run("-p", str(trees), "import", str(wgs), "--class-field", "label").output
    assert "already imported" in again and "nothing changed" in again


def test_coco_round_trip_negative_and_all_or_nothing(trees: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    out = run("-p", str(trees), "export", "-f", "coco", "-o", str(export), "--geotiff").output
    assert "exported 4 chips (round 1, 0 pre-annotations at confidence >= 0.25)" in out
    coco_path = export / "round1_coco.json"
    data = json.loads(coco_path.read_text())
    from pycocotools.coco import COCO

    COCO(str(coco_path))
    assert (
        len(list((export / "images").glob("*.png"))) == 4
        and len(list((export / "geotiff").glob("*.tif"))) == 4
    )
    # an annotator draws two boxes on the first chip and leaves the second empty
    first = data["images"][0]["id"]
    data["annotations"] = [
        {"id": k + 1, "image_id": first, "category_id": 1, "bbox": b, "area": b[2] * b[3]}
        | {"iscrowd": 0}
        for k, b in enumerate([[10, 20, 30, 40], [50.5, 60.25, 10, 12]])
    ]
    labelled = tmp_path / "labelled.json"
    bad = json.loads(json.dumps(data))
    bad["annotations"].append(
        {"id": 3, "image_id": data["images"][1]["id"], "category_id": 9, "bbox": [1, 1, 5, 5]}
    )
    bad["images"][2]["file_name"] = "../../etc/passwd"
    bad_path = tmp_path / "bad.json"
    bad_path.write_text(json.dumps(bad))
    result = run("-p", str(trees), "import", str(bad_path), ok=False)
    assert result.exit_code == 1 and "nothing imported" in result.output
    assert "category" in result.output and "passwd" in result.output
    assert read(trees, label_store.labelled_chip_ids) == []
    labelled.write_text(json.dumps(data))
    out = run("-p", str(trees), "import", str(labelled)).output
    assert "4 chips, 2 boxes, 3 labelled negatives" in out
    boxes = np.concatenate(list(labelled_boxes(trees).values()))[:, :4]
    assert boxes.tolist() == [[10.0, 20.0, 40.0, 60.0], [50.5, 60.25, 60.5, 72.25]]
    status = json.loads(run("-p", str(trees), "status", "--json").output)["counts"]
    assert status["labelled"] == 4 and status["labels"] == 2
    # a second file labelling the same chips: refused with --on-duplicate refuse, kept by
    # default (a human's labels are never replaced silently), replaced on request
    data["annotations"] = data["annotations"][:1]
    second = tmp_path / "second.json"
    second.write_text(json.dumps(data))
    refused = run("-p", str(trees), "import", str(second), "--on-duplicate", "refuse", ok=False)
    assert "already labelled" in refused.output
    kept = run("-p", str(trees), "import", str(second)).output
    assert "nothing changed" in kept and "1 chips already labelled kept their labels" in kept
    assert "3 chips already held these labels" in kept
    assert sum(map(len, labelled_boxes(trees).values())) == 2
    out = run("-p", str(trees), "import", str(second), "--on-duplicate", "replace").output
    assert "1 chips, 1 boxes, 0 labelled negatives, 1 chips relabelled" in out
    assert sum(map(len, labelled_boxes(trees).values())) == 1


def test_yolo_export_of_labelled_chips(trees: Path, tmp_path: Path, shared_data: Path) -> None:
    run(
        "-p",
        str(trees),
        "import",
        str(shared_data / "geotiff" / "osbs029_trees.geojson"),
        "--class",
        "Tree",
    )
    out = run("-p", str(trees), "export", "-f", "yolo", "-o", str(tmp_path / "yolo")).output
    assert "exported 4 chips (labelled chips)" in out
    import yaml

    cfg = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert cfg["names"] in (["Tree"], {0: "Tree"})
    labels = list((tmp_path / "yolo" / "labels").rglob("*.txt"))
    assert len(labels) == 4 and sum(len(p.read_text().splitlines()) for p in labels) >= 61


def test_labelstudio_and_geojson_exports(trees: Path, tmp_path: Path) -> None:
    export_labelstudio(trees, tmp_path / "ls", "--image-root", "http://localhost:8081")
    tasks = json.loads((tmp_path / "ls" / "round1_labelstudio.json").read_text())
    assert len(tasks) == 4 and tasks[0]["data"]["image"].startswith("http://localhost:8081/images/")
    assert "RectangleLabels" in (tmp_path / "ls" / "labelstudio_config.xml").read_text()
    run("-p", str(trees), "export", "-f", "geojson", "-o", str(tmp_path / "gj"))
    frame = gpd.read_file(tmp_path / "gj" / "round1_scene_crs.geojson")
    assert frame.crs.to_epsg() == 32617 and len(frame) == 4
    run(
        "-p",
        str(trees),
        "export",
        "-f",
        "geojson",
        "-o",
        str(tmp_path / "gj"),
        "--crs",
        "EPSG:4326",
    )
    assert gpd.read_file(tmp_path / "gj" / "round1_wgs84.geojson").crs.to_epsg() == 4326
    bad = run("-p", str(trees), "export", "-f", "pascal", "-o", str(tmp_path / "x"), ok=False)
    assert "choose one of coco, geojson, yolo, labelstudio" in bad.output
