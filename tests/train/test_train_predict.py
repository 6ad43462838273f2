"""predict_coco: letterboxing whole images, and agreement with ultralytics' own predictor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geoal.errors import RasterError
from geoal.train import PredictConfig, predict_coco
from geoal.train.predict import letterbox, read_rgb, unletterbox_boxes

SIZE = 256


def test_letterbox_maps_boxes_back() -> None:
    image = np.zeros((300, 500, 3), dtype=np.uint8)
    image[100:200, 250:400] = 255
    chip, scale, pad = letterbox(image, SIZE)
    assert chip.shape == (SIZE, SIZE, 3) and chip[0, 0, 0] == 114  # grey padding above
    assert scale == (256 / 500, 154 / 300) and pad == (0, 51)
    ys, xs = np.nonzero(chip[..., 0] > 128)
    box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=float)
    back = unletterbox_boxes(box, image.shape[:2], scale, pad)
    np.testing.assert_allclose(back, [[250, 100, 400, 200]], atol=2)
    clipped = unletterbox_boxes(np.array([[-5.0, 0, 300, 300]]), (300, 500), scale, pad)
    np.testing.assert_allclose(clipped, [[0, 0, 500, 300]])


def test_unreadable_images_are_named(tmp_path: Path) -> None:
    with pytest.raises(RasterError, match=r"missing\.png.*not found"):
        read_rgb(tmp_path / "missing.png")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(RasterError, match=r"junk\.jpg"):
        read_rgb(tmp_path / "junk.jpg")


def _calibrated_checkpoint(path: Path, classes: tuple[str, ...], chips: np.ndarray) -> Path:
    """A random yolov8n whose BatchNorm statistics come from ``chips``: varied scores and boxes.

    A fresh YOLO's activations shrink layer by layer so its scores hardly depend
    on the image; BatchNorm statistics from real chips keep unit-scale activations.
    """
    import torch
    from ultralytics.nn.tasks import DetectionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = DetectionModel("yolov8n.yaml", nc=len(classes), verbose=False)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255)
    model.eval()
    head = model.model[-1]
    for branch in head.cv3:  # class logits around 0
        branch[-1].weight.data.mul_(0.3)
        branch[-1].bias.data.zero_()
    bins = torch.arange(head.reg_max, dtype=torch.float32).repeat(4)
    for branch in head.cv2:  # boxes a few strides wide
        branch[-1].weight.data.mul_(0.3)
        branch[-1].bias.data.copy_(-0.7 * bins)
    model.names = dict(enumerate(classes))
    torch.save({"model": model, "train_args": {}}, path)
    return path


@pytest.mark.slow
def test_agrees_with_ultralytics_predict(
    tmp_path: Path, nwpu: Path, nwpu_train: dict[str, Any], classes: tuple[str, ...]
) -> None:
    from ultralytics import YOLO

    images = nwpu_train["images"][10:13]  # non-square, 700-1000 px
    paths = [nwpu / "images" / im["file_name"] for im in images]
    chips = np.stack([letterbox(read_rgb(p), SIZE)[0] for p in paths])
    weights = _calibrated_checkpoint(tmp_path / "calibrated.pt", classes, chips)
    category_ids = {name: 10 * (i + 1) for i, name in enumerate(classes)}
    ours = predict_coco(
        weights,
        paths,
        classes,
        image_ids=[im["id"] for im in images],
        category_ids=category_ids,
        config=PredictConfig(imgsz=SIZE, conf=0.2, batch=2),
    )
    assert ours, "the calibrated model should detect something"
    theirs = YOLO(weights).predict(
        [str(p) for p in paths], imgsz=SIZE, conf=0.2, rect=False, verbose=False
    )
    for image, result in zip(images, theirs, strict=True):
        mine = [d for d in ours if d["image_id"] == image["id"]]
        assert len(mine) == len(result.boxes)
        for det in mine:
            x, y, w, h = det["bbox"]
            box = np.array([x, y, x + w, y + h])
            cls = [classes.index(n) for n, c in category_ids.items() if c == det["category_id"]]
            same = (result.boxes.cls.numpy() == cls[0]) & (
                np.abs(result.boxes.conf.numpy() - det["score"]) < 1e-4
            )
            distance = np.abs(result.boxes.xyxy.numpy()[same] - box).max(axis=1)
            assert distance.min(initial=np.inf) < 0.5, (
                f"no ultralytics box near {box} ({det['score']:.3f})"
            )
