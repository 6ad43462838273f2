"""Labels a survey can trust, on the real rasters: a model's guess never becomes a label, an
import touches only what its file covers, and the first hour's label files import cleanly."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest

from geoal.store import labels as label_store
from geoal.store.states import RoundState
from tests.pipeline.annotation import (
    export_coco,
    export_labelstudio,
    labelled_boxes,
    labelled_scene_names,
    make_project,
    read,
    run,
    trees_round,
)

BOXES = [(10.0, 10.0, 40.0, 40.0), (50.0, 50.0, 90.0, 80.0), (100.0, 100.0, 130.0, 140.0)]
CONFS = [0.9, 0.5, 0.1]


def counts(proj: Path) -> dict:
    return json.loads(run("-p", str(proj), "status", "--json").output)["counts"]


def model_round(proj: Path, k: int) -> list[int]:
    """Select k chips and give the round a model whose detections (3 per chip, confidences
    0.9, 0.5 and 0.1, class 0) are stored as scoring stores them."""
    run("-p", str(proj), "select", "-k", str(k), "-s", "random", "--min-distance", "-1")
    conn = sqlite3.connect(proj / "geoal.db")
    try:
        with conn:
            conn.execute("UPDATE rounds SET model_hash = 'm0'")
            ids = [r[0] for r in conn.execute("SELECT chip_id FROM round_chips ORDER BY rank")]
            for cid in ids:
                for box, conf in zip(BOXES, CONFS, strict=True):
                    conn.execute(
                        "INSERT INTO detections (chip_id, model_hash, x1, y1, x2, y2, class_id, "
                        "confidence, probs, uncertainty) VALUES (?, 'm0', ?, ?, ?, ?, 0, ?, ?, '{}')",
                        (cid, *box, conf, np.array([conf], "<f4").tobytes()),
                    )
    finally:
        conn.close()
    return ids


@pytest.fixture
def geotiff(shared_data: Path) -> Path:
    return shared_data / "geotiff"


# -- item 1: predictions are not labels -------------------------------------------------


def test_an_unedited_export_with_predictions_is_refused_in_every_format(
    tmp_path: Path, geotiff: Path
) -> None:
    proj = make_project(tmp_path, geotiff, "tree", "osbs029_rgb_10cm.tif")
    model_round(proj, 3)
    files = {}
    for fmt in ("coco", "geojson", "labelstudio"):
        out = tmp_path / fmt
        run("-p", str(proj), "export", "-f", fmt, "-o", str(out), "--image-root", "http://h:1")
        files[fmt] = next(p for p in out.iterdir() if p.suffix in (".json", ".geojson"))
    before = counts(proj)
    for fmt, path in files.items():
        res = run("-p", str(proj), "import", str(path), ok=False)
        assert res.exit_code == 1, (fmt, res.output)
        assert f"geoal's own {fmt} export of round 1, unedited" in res.output
        assert "6 boxes are the model's pre-annotations" in res.output
        assert "--accept-predictions" in res.output
    assert counts(proj) == before and before["labelled"] == 0
    # reformatted (so not byte-identical), the boxes still carry the model's marker
    for fmt in ("coco", "geojson"):
        copy = tmp_path / f"reformatted_{fmt}{files[fmt].suffix}"
        copy.write_text(json.dumps(json.loads(files[fmt].read_text()), indent=4))
        res = run("-p", str(proj), "import", str(copy), ok=False)
        assert "6 box(es) are a model's pre-annotations" in res.output, res.output
        assert "COCO 'score'" in res.output or "kind 'prediction'" in res.output
    copy = tmp_path / "reformatted_ls.json"
    copy.write_text(json.dumps(json.loads(files["labelstudio"].read_text()), indent=4))
    res = run("-p", str(proj), "import", str(copy), ok=False)
    assert "3 task(s) carry only the model's predictions, which are not labels" in res.output
    assert counts(proj) == before
    # taken knowingly: the two boxes of each chip at or above 0.25 become labels
    out = run("-p", str(proj), "import", str(files["coco"]), "--accept-predictions").output
    assert "3 chips, 6 boxes" in out and "6 model boxes taken as labels" in out
    assert [i.format for i in read(proj, label_store.imports)] == ["coco+predictions"]


def test_an_unedited_cold_start_export_does_not_wipe_labels(tmp_path: Path, geotiff: Path) -> None:
    proj = trees_round(tmp_path, geotiff, 4)
    run("-p", str(proj), "export", "-f", "coco", "-o", str(tmp_path / "r1"))
    exported = tmp_path / "r1" / "round1_coco.json"
    data = json.loads(exported.read_text())
    data["annotations"] = [
        {"id": k + 1, "image_id": im["id"], "category_id": 1, "bbox": [5, 5, 20, 20]}
        for k, im in enumerate(data["images"])
    ]
    labelled = tmp_path / "labelled.json"
    labelled.write_text(json.dumps(data))
    run("-p", str(proj), "import", str(labelled))
    assert counts(proj)["labels"] == 4
    res = run("-p", str(proj), "import", str(exported), ok=False)
    assert res.exit_code == 1 and "it has no box at all" in res.output
    assert counts(proj)["labels"] == 4 and counts(proj)["labelled"] == 4


def test_the_default_never_replaces_human_labels(tmp_path: Path, geotiff: Path) -> None:
    proj = trees_round(tmp_path, geotiff, 4)
    trees = str(geotiff / "osbs029_trees.geojson")
    run("-p", str(proj), "import", trees, "--class", "tree")
    labels = counts(proj)["labels"]
    assert counts(proj)["labelled"] == 4 and labels >= 61
    # an empty COCO file for the same chips (another annotator found nothing)
    chips = read(proj, label_store.chip_rows)
    empty = {
        "images": [
            {
                "id": cid,
                "file_name": f"images/osbs029_rgb_10cm_{cid}.png",
                "width": 200,
                "height": 200,
            }
            for cid in (c.id for c in chips)
        ],
        "annotations": [],
        "categories": [{"id": 1, "name": "tree"}],
    }
    path = tmp_path / "empty.json"
    path.write_text(json.dumps(empty))
    out = run("-p", str(proj), "import", str(path)).output
    assert "nothing changed" in out and "4 chips already labelled kept their labels" in out
    assert counts(proj)["labels"] == labels


# -- items 2, 3, 11: a GeoJSON file labels what it covers, round after round, without a round


def test_a_geojson_import_touches_only_the_chips_it_covers(tmp_path: Path, geotiff: Path) -> None:
    proj = make_project(
        tmp_path,
        geotiff,
        "building",
        "osbs029_rgb_10cm.tif",
        "atlanta_pan_50cm_uint16.tif",
        "pan_50cm_uint16.tif",
    )
    ids = model_round(proj, 38)  # every chip of the three scenes, three UTM zones
    assert len(ids) == 38
    res = run(
        "-p", str(proj), "import", str(geotiff / "atlanta_buildings.geojson"), "--class", "building"
    )
    assert labelled_scene_names(proj) == ["atlanta_pan_50cm_uint16"]
    labelled = counts(proj)["labelled"]
    assert 0 < labelled <= 25
    assert f"{38 - labelled} chips of round 1 the file does not cover left alone" in res.output


def test_a_whole_scene_file_labels_the_chips_new_to_it(tmp_path: Path, geotiff: Path) -> None:
    proj = make_project(tmp_path, geotiff, "tree", "osbs029_rgb_10cm.tif")
    trees = str(geotiff / "osbs029_trees.geojson")
    run("-p", str(proj), "select", "-k", "2", "-s", "random")
    assert "2 chips of round 1" in run("-p", str(proj), "import", trees).output
    run("-p", str(proj), "select", "-k", "2", "-s", "random")
    out = run("-p", str(proj), "import", trees).output
    assert "2 chips of round 2" in out
    assert counts(proj)["labelled"] == 4
    assert read(proj, label_store.round_states) == [RoundState.LABELLED] * 2
    assert "already imported" in run("-p", str(proj), "import", trees).output


def test_labels_an_analyst_has_import_without_a_round(tmp_path: Path, geotiff: Path) -> None:
    proj = make_project(
        tmp_path, geotiff, "tree", "osbs029_rgb_10cm.tif", "atlanta_pan_50cm_uint16.tif"
    )
    out = run("-p", str(proj), "import", str(geotiff / "osbs029_trees.geojson")).output
    assert "4 chips, " in out and "0 labelled negatives" in out
    assert "25 chips the file does not cover left alone" in out
    assert "classes from property 'label'" in out  # "Tree" is the project's "tree"
    assert labelled_scene_names(proj) == ["osbs029_rgb_10cm"]  # the first scene only
    assert counts(proj)["labels"] >= 61


def test_problems_are_summarised_once_per_kind(tmp_path: Path, geotiff: Path) -> None:
    proj = trees_round(tmp_path, geotiff, 4, "pine")
    trees = str(geotiff / "osbs029_trees.geojson")
    for flags in ([], ["--class-field", "label"]):
        res = run("-p", str(proj), "import", trees, *flags, ok=False)
        problems = [ln for ln in res.output.splitlines() if "problem:" in ln]
        assert len(problems) == 1, res.output
        assert (
            "unknown class 'Tree': not one of ['pine'] (61 times: feature 0, feature 1"
            in (problems[0])
        )
    assert counts(proj)["labelled"] == 0


def test_class_names_match_ignoring_case_in_coco_and_label_studio(
    tmp_path: Path, geotiff: Path
) -> None:
    proj = trees_round(tmp_path, geotiff, 2)
    data = export_coco(proj, tmp_path / "c")
    data["categories"] = [{"id": 7, "name": "Tree"}]
    data["annotations"] = [
        {"id": 1, "image_id": data["images"][0]["id"], "category_id": 7, "bbox": [1, 1, 9, 9]}
    ]
    path = tmp_path / "labelled.json"
    path.write_text(json.dumps(data))
    assert "2 chips, 1 boxes" in run("-p", str(proj), "import", str(path)).output


# -- item 7: a confidence threshold for pre-annotations ---------------------------------


def test_export_and_push_take_a_confidence_threshold(tmp_path: Path, geotiff: Path) -> None:
    from geoal.labelstudio.sync import push_round
    from geoal.project import open_project

    proj = make_project(tmp_path, geotiff, "tree", "osbs029_rgb_10cm.tif")
    model_round(proj, 2)

    def scores(folder: str, *extra: str) -> list[float]:
        run("-p", str(proj), "export", "-f", "coco", "-o", str(tmp_path / folder), *extra)
        data = json.loads((tmp_path / folder / "round1_coco.json").read_text())
        return sorted({a["score"] for a in data["annotations"]})

    assert scores("default") == pytest.approx([0.5, 0.9])  # export.conf: 0.25
    assert scores("all", "--conf", "0.05") == pytest.approx([0.1, 0.5, 0.9])
    cfg = proj / "geoal.yaml"
    cfg.write_text(cfg.read_text().replace("conf: 0.25", "conf: 0.6"))
    assert scores("config") == pytest.approx([0.9])
    assert "--conf" in run("labelstudio", "push", "--help").output

    class Server:  # just enough of a Label Studio client for one push
        url = "http://label-studio.test"

        def __init__(self) -> None:
            self.tasks: list[dict] = []

        def project(self, pid: int) -> dict | None:
            return None

        def create_project(self, title: str, description: str, config: str) -> dict:
            return {"id": 1, "label_config": config}

        def export_tasks(self, pid: int) -> list[dict]:
            return self.tasks

        def upload_files(self, pid: int, files: list) -> list[str]:
            return [f"/data/upload/1/{name}" for name, _ in files]

        def import_tasks(self, pid: int, tasks: list[dict]) -> None:
            self.tasks.extend(tasks)

    server = Server()
    with open_project(proj) as p:
        report = push_round(p, server, conf=0.3)  # type: ignore[arg-type]
    assert report.predictions == 4
    scores_pushed = [r["score"] for t in server.tasks for r in t["predictions"][0]["result"]]
    assert sorted(scores_pushed) == pytest.approx([0.5, 0.5, 0.9, 0.9])


# -- item 12: mixed-CRS GeoJSON exports work, and a failed export leaves nothing ----------


def test_geojson_export_of_scenes_in_different_crs(tmp_path: Path, geotiff: Path) -> None:
    proj = make_project(
        tmp_path, geotiff, "tree", "osbs029_rgb_10cm.tif", "atlanta_pan_50cm_uint16.tif"
    )
    model_round(proj, 29)
    res = run("-p", str(proj), "export", "-f", "geojson", "-o", str(tmp_path / "gj"))
    assert "different CRSs" in res.output and "EPSG:4326" in res.output
    frame = gpd.read_file(tmp_path / "gj" / "round1_wgs84.geojson")
    assert frame.crs.to_epsg() == 4326 and (frame["kind"] == "chip").sum() == 29
    assert (frame["kind"] == "prediction").sum() == 2 * 29
    # the scenes' CRS cannot hold both: refused in CLI words, and nothing written
    bad = tmp_path / "bad"
    res = run(
        "-p", str(proj), "export", "-f", "geojson", "-o", str(bad), "--crs", "scene", ok=False
    )
    assert res.exit_code == 1 and "--crs EPSG:4326" in res.output and "crs=" not in res.output
    assert not bad.exists()


def test_a_failed_export_removes_the_images_it_wrote(
    tmp_path: Path, geotiff: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geoal.formats
    from geoal.pipeline.annotate import ExportOptions, export_round
    from geoal.project import open_project

    proj = trees_round(tmp_path, geotiff, 3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the analyst's own file")

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(geoal.formats, "write_json", disk_full)
    with open_project(proj) as p, pytest.raises(OSError, match="No space"):
        export_round(p, ExportOptions(format="coco", out=out), progress=False)
    assert sorted(p.name for p in out.rglob("*")) == ["notes.txt"]


# -- item 13: Label Studio by file ------------------------------------------------------


def test_label_studio_file_export_needs_a_working_image_root(tmp_path: Path, geotiff: Path) -> None:
    proj = trees_round(tmp_path, geotiff, 2)
    res = export_labelstudio(proj, tmp_path / "a")
    assert "warning" in res.output and "--image-root" in res.output
    res = export_labelstudio(proj, tmp_path / "b", "--image-root", "round1", ok=False)
    assert res.exit_code == 2 and "give a URL" in res.output
    res = export_labelstudio(
        proj, tmp_path / "c", "--image-root", "/data/local-files/?d=surveys/round1"
    )
    assert "warning" not in res.output
    tasks = json.loads((tmp_path / "c" / "round1_labelstudio.json").read_text())
    assert tasks[0]["data"]["image"].startswith("/data/local-files/?d=surveys/round1/images/")


def _labelled_tasks(tasks: list[dict]) -> list[dict]:
    """The tasks as Label Studio exports them once annotated: one box on the first task,
    the second submitted empty, the rest untouched."""
    for k, task in enumerate(tasks):
        task["id"] = 100 + k
        task["annotations"] = []
    box = {
        "x": 10.0,
        "y": 20.0,
        "width": 5.0,
        "height": 7.5,
        "rotation": 0,
        "rectanglelabels": ["Tree"],
    }
    tasks[0]["annotations"] = [
        {
            "id": 1,
            "created_at": "2025-01-02T10:00:00Z",
            "updated_at": "2025-01-02T10:00:00Z",
            "was_cancelled": False,
            "completed_by": 1,
            "result": [
                {
                    "id": "a",
                    "type": "rectanglelabels",
                    "from_name": "label",
                    "to_name": "image",
                    "original_width": 200,
                    "original_height": 200,
                    "value": box,
                }
            ],
        }
    ]
    tasks[1]["annotations"] = [
        {
            "id": 2,
            "created_at": "2025-01-02T11:00:00Z",
            "updated_at": "2025-01-02T11:00:00Z",
            "was_cancelled": False,
            "completed_by": 1,
            "result": [],
        }
    ]
    return tasks


def _json_min(tasks: list[dict]) -> list[dict]:
    """Label Studio's JSON-MIN export of these tasks, as its converter writes it: per
    annotation one row of the task's data, its id, each control's values (with the image
    size) under the control's name, and the annotation's id, author and times."""
    rows = []
    for task in tasks:
        if not task["annotations"]:  # exported with all tasks: a row with no annotation
            rows.append(
                {
                    **task["data"],
                    "id": task["id"],
                    "annotator": None,
                    "annotation_id": None,
                    "created_at": None,
                    "updated_at": None,
                    "lead_time": None,
                }
            )
        for ann in task["annotations"]:
            row = dict(task["data"])
            row["id"] = task["id"]
            values = [
                {
                    **r["value"],
                    "original_width": r["original_width"],
                    "original_height": r["original_height"],
                }
                for r in ann["result"]
            ]
            if values:
                row["label"] = values
            row.update(
                annotator=ann["completed_by"],
                annotation_id=ann["id"],
                created_at=ann["created_at"],
                updated_at=ann["updated_at"],
                lead_time=3.5,
            )
            rows.append(row)
    return rows


def _ls_coco(tasks: list[dict], prefix: str) -> dict:
    """Label Studio's COCO export of these (annotated) tasks, as its converter (label-studio-sdk
    2.1) writes it: images named images/<8 hex><prefix><name> ("-" for an uploaded file, "__"
    for one served by URL), 0-based ids, the size only of images it could read, no geoal
    block, and category ids of its own (the config's labels, then names met in the data)."""
    images, annotations = [], []
    for task in tasks:
        if not task["annotations"]:
            continue
        name = task["data"]["image"].rsplit("/", 1)[-1]
        image_id = len(images)
        size = 200 if task["annotations"][0]["result"] else None
        images.append(
            {
                "width": size,
                "height": size,
                "id": image_id,
                "file_name": f"images/00170eae{prefix}{name}",
            }
        )
        for r in task["annotations"][0]["result"]:
            v = r["value"]
            annotations.append(
                {
                    "id": len(annotations),
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": [],
                    "ignore": 0,
                    "iscrowd": 0,
                    "bbox": [v["x"] * 2, v["y"] * 2, v["width"] * 2, v["height"] * 2],
                    "area": v["width"] * v["height"] * 4,
                }
            )
    return {
        "images": images,
        "categories": [{"id": 0, "name": "tree"}, {"id": 1, "name": "Tree"}],
        "annotations": annotations,
        "info": {"year": 2025, "version": "1.0", "contributor": "Label Studio"},
    }


@pytest.mark.parametrize("kind", ["json", "json-min", "coco-upload", "coco-url"])
def test_label_studio_exports_import(tmp_path: Path, geotiff: Path, kind: str) -> None:
    proj = trees_round(tmp_path, geotiff, 3)
    export_labelstudio(proj, tmp_path / "ls", "--image-root", "http://files.test/r1")
    tasks = _labelled_tasks(json.loads((tmp_path / "ls" / "round1_labelstudio.json").read_text()))
    data = {
        "json": tasks,
        "json-min": _json_min(tasks),
        "coco-upload": _ls_coco(tasks, "-"),
        "coco-url": _ls_coco(tasks, "__"),
    }[kind]
    path = tmp_path / f"label_studio_{kind}.json"
    path.write_text(json.dumps(data))
    out = run("-p", str(proj), "import", str(path)).output
    assert "2 chips, 1 boxes, 1 labelled negatives" in out
    first = tasks[0]["data"]["chip_id"]
    boxes = {c: b[:, :4].tolist() for c, b in labelled_boxes(proj).items() if len(b)}
    assert boxes == {first: [[20.0, 40.0, 30.0, 55.0]]}


# -- traps of the same family a new user meets ------------------------------------------


def test_geoal_predict_output_is_not_labels(tmp_path: Path, geotiff: Path) -> None:
    """`geoal predict --out objects.gpkg`, opened in QGIS and imported: the model's objects
    (with their 'confidence') must not become labels unnoticed."""
    import rasterio

    from geoal.predict.scene import PredictReport, SceneDetections, write_detections

    proj = trees_round(tmp_path, geotiff, 4)  # as in the first round
    scene = geotiff / "osbs029_rgb_10cm.tif"
    with rasterio.open(scene) as ds:
        crs, transform = ds.crs.to_wkt(), tuple(ds.transform)[:6]
    objects = np.array([[10, 10, 40, 40, 0.9, 0, 0.1], [250, 250, 290, 300, 0.4, 0, 0.5]], float)
    detections = SceneDetections(str(scene), scene.stem, crs, transform, objects, 4, 2, 0.0)
    out = tmp_path / "objects.gpkg"
    write_detections(PredictReport(("tree",), [detections]), out)
    res = run("-p", str(proj), "import", str(out), ok=False)
    assert res.exit_code == 1 and "2 box(es) are a model's pre-annotations" in res.output
    assert "property 'confidence' = 0.9" in res.output
    assert counts(proj)["labelled"] == 0
    taken = run("-p", str(proj), "import", str(out), "--accept-predictions").output
    assert "2 boxes" in taken and "2 model boxes taken as labels" in taken


def test_a_coco_file_from_another_tool_matches_chips_by_image_name(
    tmp_path: Path, geotiff: Path
) -> None:
    """CVAT and most tools write COCO file names as the bare image name, with ids of their own."""
    proj = trees_round(tmp_path, geotiff, 2)
    ours = export_coco(proj, tmp_path / "r1")
    names = [Path(im["file_name"]).name for im in ours["images"]]
    cvat = {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {"contributor": "", "description": "", "version": ""},
        "categories": [{"id": 1, "name": "tree", "supercategory": ""}],
        "images": [
            {"id": k + 1, "width": 200, "height": 200, "file_name": name}
            for k, name in enumerate(names)
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": [],
                "area": 150.0,
                "bbox": [20.0, 40.0, 10.0, 15.0],
                "iscrowd": 0,
                "attributes": {"occluded": False},
            }
        ],
    }
    path = tmp_path / "instances_default.json"
    path.write_text(json.dumps(cvat))
    out = run("-p", str(proj), "import", str(path)).output
    assert "2 chips, 1 boxes, 1 labelled negatives" in out
    first = ours["images"][0]["id"]
    boxes = {c: b[:, :4].tolist() for c, b in labelled_boxes(proj).items() if len(b)}
    assert boxes == {first: [[20.0, 40.0, 30.0, 55.0]]}


def test_a_geojson_without_its_crs_is_refused_with_the_reason(
    tmp_path: Path, geotiff: Path
) -> None:
    """UTM metres written to GeoJSON without a 'crs' member read as lon/lat (RFC 7946)."""
    proj = trees_round(tmp_path, geotiff, 4)  # as in the first round
    data = json.loads((geotiff / "osbs029_trees.geojson").read_text())
    del data["crs"]
    path = tmp_path / "trees_no_crs.geojson"
    path.write_text(json.dumps(data))
    res = run("-p", str(proj), "import", str(path), ok=False)
    assert res.exit_code == 1 and "(404212.0, 3285102.9) are not longitude/latitude" in res.output
    assert "for this place" not in res.output and counts(proj)["labelled"] == 0


def test_a_geopackage_with_several_layers_needs_the_layer_named(
    tmp_path: Path, geotiff: Path
) -> None:
    """A QGIS project GeoPackage: the labels next to other layers; the first is not the one."""
    proj = trees_round(tmp_path, geotiff, 4)  # as in the first round
    trees = gpd.read_file(geotiff / "osbs029_trees.geojson")
    gpkg = tmp_path / "survey.gpkg"
    area = gpd.GeoDataFrame(
        {"label": ["Tree"]}, geometry=[trees.union_all().envelope], crs=trees.crs
    )
    area.to_file(gpkg, layer="survey_area", driver="GPKG")
    trees.to_file(gpkg, layer="trees", driver="GPKG")
    res = run("-p", str(proj), "import", str(gpkg), ok=False)
    assert res.exit_code == 1 and "has 2 layers (survey_area, trees)" in res.output
    assert "--layer NAME" in res.output and counts(proj)["labelled"] == 0
    out = run("-p", str(proj), "import", str(gpkg), "--layer", "trees").output
    assert "4 chips" in out and counts(proj)["labels"] >= 61


def test_a_reviewed_geojson_export_imports(tmp_path: Path, geotiff: Path) -> None:
    """The analyst's QGIS round: keep a good prediction (kind -> label), delete the rest,
    draw a missed object; the file imports, and chips with nothing left are negatives."""
    proj = make_project(tmp_path, geotiff, "tree", "osbs029_rgb_10cm.tif")
    ids = model_round(proj, 2)
    run("-p", str(proj), "export", "-f", "geojson", "-o", str(tmp_path / "gj"))
    data = json.loads((tmp_path / "gj" / "round1_scene_crs.geojson").read_text())
    features = []
    for f in data["features"]:
        p = f["properties"]
        if p["kind"] == "prediction" and p["score"] > 0.8 and p["chip_id"] == ids[0]:
            p["kind"] = "label"  # checked and kept
        if p["kind"] != "prediction":
            features.append(f)
    kept = next(f for f in features if f["properties"]["kind"] == "label")
    drawn = json.loads(json.dumps(kept))
    drawn["properties"] = {"class": "Tree"}  # a new box: no kind, no chip id, no score
    features.append(drawn)
    data["features"] = features
    path = tmp_path / "reviewed.geojson"
    path.write_text(json.dumps(data))
    out = run("-p", str(proj), "import", str(path)).output
    assert "2 chips, 2 boxes, 1 labelled negatives" in out
    assert {c: len(b) for c, b in labelled_boxes(proj).items() if len(b)} == {ids[0]: 2}
