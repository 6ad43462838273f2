"""Fixtures for geoal.train: no network, a tiny real NWPU VHR-10 subset, one shared training run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from train_helpers import TINY, train_tiny

from tests.offline import _assert_offline, _keep_torch_threads, _no_network  # noqa: F401


@pytest.fixture(scope="session")
def nwpu(shared_data: Path) -> Path:
    return shared_data / "nwpu-vhr10"


@pytest.fixture(scope="session")
def nwpu_train(nwpu: Path) -> dict[str, Any]:
    """The NWPU VHR-10 train split's COCO dict."""
    return json.loads((nwpu / "annotations" / "train.json").read_text())


@pytest.fixture(scope="session")
def classes(nwpu_train: dict[str, Any]) -> tuple[str, ...]:
    return tuple(c["name"] for c in sorted(nwpu_train["categories"], key=lambda c: c["id"]))


@pytest.fixture(scope="session")
def tiny_items(nwpu: Path, nwpu_train: dict[str, Any]) -> list[tuple[str, Any, Any, Any]]:
    """8 NWPU train images, long side resized to TINY pixels, with their boxes scaled alike."""
    from PIL import Image

    boxes: dict[int, list[dict[str, Any]]] = {}
    for ann in nwpu_train["annotations"]:
        boxes.setdefault(ann["image_id"], []).append(ann)
    items = []
    for image in nwpu_train["images"][:8]:
        pil = Image.open(nwpu / "images" / image["file_name"]).convert("RGB")
        ratio = TINY / max(pil.size)
        size = (round(pil.width * ratio), round(pil.height * ratio))
        pixels = np.asarray(pil.resize(size, Image.Resampling.BILINEAR))
        anns = boxes.get(image["id"], [])
        xywh = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1) * ratio
        cls = np.array([a["category_id"] - 1 for a in anns], dtype=np.int64)
        items.append((Path(image["file_name"]).stem, pixels, xyxy, cls))
    return items


@pytest.fixture(scope="session")
def tiny_dataset(
    tmp_path_factory: pytest.TempPathFactory, tiny_items: list[Any], classes: tuple[str, ...]
) -> Path:
    """data.yaml of the tiny subset: 6 train, 2 val images."""
    from geoal.train import materialise_yolo_dataset

    val = {tiny_items[-1][0], tiny_items[-2][0]}
    return materialise_yolo_dataset(tmp_path_factory.mktemp("tiny"), tiny_items, val, classes)


@pytest.fixture(scope="session")
def trained(
    tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path, classes: tuple[str, ...]
) -> Any:
    """One epoch from yolov8n.yaml on the tiny subset (the TrainResult)."""
    return train_tiny(tiny_dataset, classes, tmp_path_factory.mktemp("runs"))
