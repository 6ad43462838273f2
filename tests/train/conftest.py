"""Fixtures for geoal.train: no network, a tiny real NWPU VHR-10 subset, one shared training run."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

_NETWORK_ATTEMPTS: list[str] = []
TINY = 128  # pixels: the long side of the tiny subset's images and the training size


def _refuse(*args: Any, **kwargs: Any) -> Any:
    _NETWORK_ATTEMPTS.append(repr(args)[:200])
    raise OSError("network access attempted in geoal.train tests")


@pytest.fixture(scope="session", autouse=True)
def _no_network() -> Iterator[None]:
    """Refuse every outgoing connection or name look-up for the whole session."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _refuse)
        patch.setattr(socket.socket, "connect_ex", _refuse)
        patch.setattr(socket, "create_connection", _refuse)
        patch.setattr(socket, "getaddrinfo", _refuse)
        yield


@pytest.fixture(autouse=True)
def _assert_offline(_no_network: None) -> Iterator[None]:
    """Fail the test in which (or before which) anything tried to reach the network."""
    yield
    attempts, _NETWORK_ATTEMPTS[:] = list(_NETWORK_ATTEMPTS), []
    assert not attempts, f"network access attempted: {attempts}"


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    """YOLO.predict on CPU calls torch.set_num_threads(cpu_count - 1); undo it after each test."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


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
    from geoal.train import train_detector

    return train_detector(
        tiny_dataset,
        init="yolov8n.yaml",
        classes=classes,
        out_dir=tmp_path_factory.mktemp("runs"),
        epochs=1,
        imgsz=TINY,
        batch=4,
        seed=0,
        progress=False,
    )
