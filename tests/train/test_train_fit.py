"""train_detector on a tiny real subset: a .pt for the project's classes, offline, seeded."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from train_helpers import TINY, train_tiny

from geoal.errors import ConfigError, ModelError
from geoal.train import DatasetError, OptimConfig, TrainResult, materialise_yolo_dataset

pytestmark = pytest.mark.slow


def _state(weights: Path) -> dict[str, torch.Tensor]:
    return torch.load(weights, map_location="cpu", weights_only=False)["model"].state_dict()


def test_one_epoch_gives_a_checkpoint_for_the_classes(
    trained: TrainResult, classes: tuple[str, ...]
) -> None:
    from geoal.detect import load_detector

    assert trained.weights.is_file() and trained.weights.parent.name == "weights"
    assert set(trained.metrics) == {"mAP50", "mAP50-95", "precision", "recall"}
    assert all(math.isfinite(v) and 0 <= v <= 1 for v in trained.metrics.values())
    assert trained.epochs == 1 and trained.seconds > 0
    checkpoint = torch.load(trained.weights, map_location="cpu", weights_only=False)
    assert checkpoint["model"].names == dict(enumerate(classes))
    detector = load_detector(trained.weights, classes, imgsz=TINY)
    assert detector.classes == classes
    args = yaml.safe_load((trained.run_dir / "args.yaml").read_text())
    assert (args["workers"], args["amp"], args["plots"], args["mosaic"]) == (0, False, False, 0.0)
    assert (args["fliplr"], args["flipud"]) == (0.5, 0.5)
    assert [t["transform"]["__class_fullname__"] for t in args["augmentations"]] == [
        "RandomRotate90"
    ]


def test_no_font_download_the_settings_folder_has_one(trained: TrainResult) -> None:
    import matplotlib
    from ultralytics.utils import USER_CONFIG_DIR

    font = Path(USER_CONFIG_DIR) / "Arial.ttf"
    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    assert font.read_bytes() == dejavu.read_bytes()


def test_same_seed_same_weights(
    trained: TrainResult, tiny_dataset: Path, classes: tuple[str, ...], tmp_path: Path
) -> None:
    again = train_tiny(tiny_dataset, classes, tmp_path)
    first, second = _state(trained.weights), _state(again.weights)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert again.metrics == trained.metrics


def test_fine_tunes_a_local_checkpoint(
    trained: TrainResult, tiny_dataset: Path, classes: tuple[str, ...], tmp_path: Path
) -> None:
    tuned = train_tiny(tiny_dataset, classes, tmp_path, init=trained.weights, name="round-2")
    assert tuned.run_dir == tmp_path / "round-2"
    assert torch.load(tuned.weights, weights_only=False)["model"].names == dict(enumerate(classes))


def test_optimiser_settings_and_keeping_the_last_epoch(
    trained: TrainResult, tiny_dataset: Path, classes: tuple[str, ...], tmp_path: Path
) -> None:
    optim = OptimConfig(optimizer="SGD", lr0=0.02, warmup_epochs=0.0, nbs=4)
    result = train_tiny(tiny_dataset, classes, tmp_path, epochs=2, optim=optim, keep="last")
    args = yaml.safe_load((result.run_dir / "args.yaml").read_text())
    assert (args["optimizer"], args["lr0"], args["warmup_epochs"], args["nbs"]) == (
        "SGD",
        0.02,
        0.0,
        4,
    )
    assert (args["val"], args["save"]) == (False, False)  # validated and saved once, at the end
    assert result.weights.is_file() and result.epochs == 2
    assert set(result.metrics) == {"mAP50", "mAP50-95", "precision", "recall"}
    defaults = yaml.safe_load((trained.run_dir / "args.yaml").read_text())  # unchanged defaults
    assert (defaults["optimizer"], defaults["nbs"], defaults["val"], defaults["save"]) == (
        "auto",
        64,
        True,
        True,
    )
    with pytest.raises(ConfigError, match="keep must be"):
        train_tiny(tiny_dataset, classes, tmp_path, keep="first")
    with pytest.raises(ConfigError, match="patience needs validation"):
        train_tiny(tiny_dataset, classes, tmp_path, keep="last", patience=3)
    with pytest.raises(ConfigError, match="lr0"):
        OptimConfig(lr0=0.0)


def test_predict_and_evaluate_on_real_images(
    trained: TrainResult, nwpu: Path, nwpu_train: dict[str, Any], classes: tuple[str, ...]
) -> None:
    from geoal.train import PredictConfig, evaluate_coco, predict_coco

    images = nwpu_train["images"][:3]
    keep = {im["id"] for im in images}
    gt = {
        **nwpu_train,
        "images": images,
        "annotations": [a for a in nwpu_train["annotations"] if a["image_id"] in keep],
    }
    names = {c["name"]: c["id"] for c in nwpu_train["categories"]}
    dets = predict_coco(
        trained.weights,
        [nwpu / "images" / im["file_name"] for im in images],
        classes,
        image_ids=[im["id"] for im in images],
        category_ids=names,
        config=PredictConfig(imgsz=TINY, conf=0.0001),
    )
    for det in dets:
        image = next(im for im in images if im["id"] == det["image_id"])
        x, y, w, h = det["bbox"]
        assert 0 <= x <= x + w <= image["width"] and 0 <= y <= y + h <= image["height"]
    result = evaluate_coco(gt, dets)
    assert 0.0 <= result.mAP50 <= 1.0 and result.n_gt == len(gt["annotations"])


def _write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_refusals(tmp_path: Path, tiny_dataset: Path, classes: tuple[str, ...]) -> None:
    def train(data_yaml: Path, init: str | Path = "yolov8n.yaml", names: Any = classes) -> Any:
        return train_tiny(data_yaml, names, tmp_path, init=init)

    with pytest.raises(DatasetError, match=r"missing.yaml.*not found"):
        train(tmp_path / "missing.yaml")
    with pytest.raises(DatasetError, match="same names, same order"):
        train(tiny_dataset, names=classes[::-1])
    data = yaml.safe_load(tiny_dataset.read_text())
    with pytest.raises(DatasetError, match="download"):
        train(_write_yaml(tmp_path / "dl.yaml", {**data, "download": "https://x.org/d.zip"}))
    with pytest.raises(DatasetError, match="missing path"):
        train(_write_yaml(tmp_path / "noval.yaml", {**data, "val": str(tmp_path / "absent")}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"val split .* has no images"):
        train(_write_yaml(tmp_path / "noval.yaml", {**data, "val": str(tmp_path / "empty")}))
    with pytest.raises(ModelError, match="not found"):
        train(tiny_dataset, init=tmp_path / "nothing.pt")
    with pytest.raises(ModelError, match="URL"):
        train(tiny_dataset, init="https://example.com/yolov8n.pt")
    with pytest.raises(ModelError, match="not found"):
        train(tiny_dataset, init="no-such-arch.yaml")
    with pytest.raises(ModelError, match="cannot load"):
        (tmp_path / "empty.pt").write_bytes(b"")
        train(tiny_dataset, init=tmp_path / "empty.pt")
    with pytest.raises(ModelError, match="Segment head"):
        train(tiny_dataset, init="yolov8n-seg.yaml")


def test_a_yolov5_name_is_refused(tiny_dataset: Path, classes: tuple[str, ...]) -> None:
    # ultralytics renames yolov5n.pt to yolov5nu.pt and downloads that, unless a "u" is
    # anywhere in the path: use a folder whose path has none.
    folder = Path(tempfile.gettempdir()) / f"geoal-v5-{os.getpid()}"
    if "u" in str(folder):
        pytest.skip(f"the temporary folder {folder} has a 'u' in its path")
    folder.mkdir(exist_ok=True)
    try:
        (folder / "yolov5n.pt").write_bytes(b"")
        with pytest.raises(ModelError, match="'u' variant"):
            train_tiny(tiny_dataset, classes, folder, init=folder / "yolov5n.pt")
    finally:
        shutil.rmtree(folder)


def test_a_dataset_without_labels_is_refused(tmp_path: Path) -> None:
    blank = np.zeros((64, 64, 3), dtype=np.uint8)
    items = [(f"b{i}", blank, np.zeros((0, 4)), np.zeros(0, dtype=int)) for i in range(3)]
    data_yaml = materialise_yolo_dataset(tmp_path / "ds", items, {"b0"}, ["ship"])
    with pytest.raises(DatasetError, match="none of its 2 training images has a labelled box"):
        train_tiny(data_yaml, ["ship"], tmp_path, imgsz=64)
    assert not (tmp_path / "train").exists()  # refused before ultralytics started a run


def test_results_json_serialisable(trained: TrainResult) -> None:
    json.dumps(trained.metrics)
