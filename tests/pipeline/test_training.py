"""geoal train / evaluate through the store: registered models, parents, stored metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from geoal.cli import main
from geoal.detect.loading import ModelInput, checkpoint_input
from geoal.predict.scene import PredictOptions, with_model_input
from geoal.project import open_project
from geoal.store.models import ModelRecord
from geoal.store.models import models as stored_models

pytestmark = pytest.mark.slow


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def models(proj: Path) -> list[ModelRecord]:
    """The project's registered models, in the order registered."""
    with open_project(proj) as p:
        return stored_models(p.store)


def test_train_twice_then_evaluate(tmp_path: Path, shared_data: Path) -> None:
    proj = tmp_path / "p"
    run("init", str(proj), "--classes", "Tree")
    run(
        "-p",
        str(proj),
        "tile",
        str(shared_data / "geotiff" / "osbs029_rgb_10cm.tif"),
        "--size",
        "128",
        "--overlap",
        "0",
        "-q",
    )
    refused = run("-p", str(proj), "train", "--epochs", "1", ok=False)
    assert refused.exit_code == 1 and "no labelled chips" in refused.output
    run("-p", str(proj), "select", "-k", "6", "-s", "random")
    run(
        "-p",
        str(proj),
        "import",
        str(shared_data / "geotiff" / "osbs029_trees.geojson"),
        "--class",
        "Tree",
    )
    # 128 px chips trained at 64 px: the input size travels with the model
    out = run(
        "-p",
        str(proj),
        "train",
        "--epochs",
        "1",
        "--imgsz",
        "64",
        "--batch",
        "4",
        "-q",
        "--from",
        "yolov8n.yaml",
    ).output
    assert "trained model" in out
    (first,) = models(proj)
    assert first.kind == "trained" and first.parent_hash is None and first.round_id == 1
    assert first.path == f"models/model_{first.hash[:12]}.pt" and (proj / first.path).is_file()
    metrics = first.metrics
    assert metrics["train_chips"] >= 1 and len(metrics["val_chip_ids"]) >= 1
    assert (metrics["imgsz"], metrics["chip_size"]) == (64, 128)
    assert checkpoint_input(proj / first.path) == ModelInput(64, 128)
    assert "input 64 px" in run("-p", str(proj), "score", "--limit", "2", "-q").output
    ev = json.loads(run("-p", str(proj), "evaluate", "--json").output)
    assert ev["imgsz"] == 64
    assert (
        json.loads(run("-p", str(proj), "evaluate", "--imgsz", "128", "--json").output)["imgsz"]
        == 128
    )
    # whole scenes: 256 px chips keep the trained scale (half size)
    opts = with_model_input(PredictOptions(model=str(proj / first.path), size=256))
    assert opts.imgsz == 128
    run("-p", str(proj), "train", "--epochs", "1", "--batch", "4", "-q")  # --from last
    second = models(proj)[1]
    assert second.parent_hash == first.hash, "fine-tuned from the previous round's model"
    assert second.metrics["imgsz"] == 128, "the default follows the chips, not 640"
    ev = json.loads(run("-p", str(proj), "evaluate", "--json").output)
    assert ev["imgsz"] == 128
    assert ev["source"].startswith("held-out chips") and 0.0 <= ev["mAP50"] <= 1.0
    assert "Tree" in ev["ap50"]
    assert models(proj)[1].metrics["eval"]["n_gt"] == ev["n_gt"]
    # the same metrics on a COCO file + images: the round exported and labelled
    export = tmp_path / "export"
    run("-p", str(proj), "export", "-f", "coco", "-o", str(export), "--round", "1")
    coco = json.loads((export / "round1_coco.json").read_text())
    assert {img["file_name"] for img in coco["images"]} == {
        str(p.relative_to(export)) for p in (export / "images").glob("*.png")
    }
    ev2 = json.loads(
        run(
            "-p", str(proj), "evaluate", "--data", str(export / "round1_coco.json"), "--json"
        ).output
    )
    assert ev2["n_images"] == 6
    missing = run("-p", str(proj), "evaluate", "--model", "nope", ok=False)
    assert "not a registered model" in missing.output
    # a moved project finds its models
    moved = tmp_path / "moved"
    proj.rename(moved)
    assert json.loads(run("-p", str(moved), "evaluate", "--json").output)["imgsz"] == 128


def test_evaluate_refuses_a_file_of_predictions_as_ground_truth(tmp_path: Path) -> None:
    proj = tmp_path / "p"
    run("init", str(proj), "--classes", "Tree")
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9], "area": 81,
             "iscrowd": 0, "score": 0.31},
        ],
        "categories": [{"id": 1, "name": "Tree"}],
    }  # fmt: skip
    (tmp_path / "round1_coco.json").write_text(json.dumps(coco))
    (tmp_path / "m.pt").write_bytes(b"not loaded before the check")
    result = run(
        "-p", str(proj), "evaluate", "--model", str(tmp_path / "m.pt"),
        "--data", str(tmp_path / "round1_coco.json"), ok=False,
    )  # fmt: skip
    assert result.exit_code == 1 and "carry a 'score'" in result.output
    assert "not ground truth" in result.output and "Traceback" not in result.output
