"""AugmentConfig, and the 90-degree turn inside ultralytics' training pipeline."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geoal.errors import ConfigError
from geoal.train import AugmentConfig, materialise_yolo_dataset
from geoal.train.augment import ultralytics_augment_args

STILL = AugmentConfig(
    fliplr=0.0, flipud=0.0, rot90=0.0, scale=0.0, translate=0.0, hsv_h=0, hsv_s=0, hsv_v=0
)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="rot90"):
        AugmentConfig(rot90=1.5)
    with pytest.raises(ConfigError, match="scale"):
        AugmentConfig(scale=1.0)
    with pytest.raises(ConfigError, match="close_mosaic"):
        AugmentConfig(close_mosaic=-1)


def test_args_for_ultralytics() -> None:
    args = ultralytics_augment_args(AugmentConfig())  # first: it keeps albumentations offline
    import albumentations as A

    assert (args["fliplr"], args["flipud"], args["mosaic"]) == (0.5, 0.5, 0.0)
    assert "rot90" not in args
    (turn,) = args["augmentations"]
    assert isinstance(turn, A.RandomRotate90) and turn.p == 1.0
    assert ultralytics_augment_args(STILL)["augmentations"] == []


def _samples(tmp_path: Path, config: AugmentConfig, n: int) -> list[dict[str, Any]]:
    """``n`` training samples of ultralytics' YOLODataset, built as the trainer builds it."""
    import torch
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    from geoal.train.offline import install_font

    image = np.full((128, 128, 3), 90, dtype=np.uint8)
    image[30:50, 20:60] = (250, 20, 20)  # a red 40 x 20 box
    items = [("red", image, np.array([[20, 30, 60, 50]]), np.array([0]))]
    data_yaml = materialise_yolo_dataset(tmp_path, items, set(), ["thing"])
    install_font(["thing"])
    data = check_det_dataset(str(data_yaml))
    cfg = get_cfg(overrides={"imgsz": 128, **ultralytics_augment_args(config)})
    dataset = build_yolo_dataset(cfg, data["train"], 1, data, mode="train")
    random.seed(0)
    torch.manual_seed(0)
    return [dataset[0] for _ in range(n)]


@pytest.mark.parametrize("rot90", [0.0, 1.0])
def test_rot90_turns_image_and_box_together(tmp_path: Path, rot90: float) -> None:
    samples = _samples(tmp_path, replace(STILL, rot90=rot90), 24)
    shapes = set()
    for sample in samples:
        img = sample["img"].numpy().transpose(1, 2, 0)  # RGB
        (cx, cy, w, h) = sample["bboxes"][0].numpy() * 128
        x0, y0, x1, y1 = (round(v) for v in (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        inside = img[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].reshape(-1, 3)
        assert (inside == (250, 20, 20)).all(), "the box no longer covers the red rectangle"
        red = (img == (250, 20, 20)).all(axis=2)
        assert red.sum() == 40 * 20 == round(w) * round(h)
        shapes.add((round(w), round(h)))
    assert shapes == ({(40, 20), (20, 40)} if rot90 else {(40, 20)})
