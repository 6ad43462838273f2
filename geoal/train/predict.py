"""COCO results of a trained detector over whole image files (for ``evaluate_coco``).

Images of any size go through ``geoal.detect``, which takes square chips: each
image is letterboxed as ultralytics' predictor does (long side scaled to imgsz,
bilinear, centred on grey 114 padding) and its boxes mapped back to image pixels.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoal.errors import RasterError

_PAD_VALUE = 114  # ultralytics' letterbox grey


@dataclass(frozen=True)
class PredictConfig:
    """How :func:`predict_coco` runs the model.

    Attributes:
        imgsz: the model's input size in pixels, a multiple of 32.
        device: "cpu" or "cuda:N".
        conf: the lowest score kept (0.001 for mAP); ``iou`` the NMS threshold;
            ``max_det`` the most detections per image; ``batch`` images per forward pass.
    """

    imgsz: int
    device: str = "cpu"
    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 300
    batch: int = 8


def predict_coco(
    weights: Path,
    images: Sequence[Path],
    classes: Sequence[str],
    *,
    image_ids: Sequence[int],
    category_ids: Mapping[str, int],
    config: PredictConfig,
) -> list[dict[str, Any]]:
    """COCO results (image_id, category_id, bbox [x, y, w, h] px, score) of ``weights`` on ``images``.

    ``image_ids[i]`` is the COCO id of ``images[i]``; ``category_ids`` maps each
    of the model's ``classes`` to a COCO category id (by name, so the model's
    class order need not be the file's).
    """
    from geoal.detect import load_detector

    if len(image_ids) != len(images):
        raise ValueError(f"{len(images)} images but {len(image_ids)} image_ids")
    missing = [name for name in classes if name not in category_ids]
    if missing:
        raise ValueError(f"category_ids has no id for the classes {missing}")
    imgsz, batch = config.imgsz, config.batch
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    class_to_cat = np.array([int(category_ids[name]) for name in classes], dtype=np.int64)
    detector = load_detector(weights, classes, config.device, imgsz=imgsz)
    results: list[dict[str, Any]] = []
    batches = _letterboxed_batches(list(images), list(image_ids), imgsz, batch)
    stream = detector.iter_predict(
        batches, conf=config.conf, iou=config.iou, max_det=config.max_det, details=False
    )
    for keys, chip_results in stream:
        for (image_id, shape, scale, pad), result in zip(keys, chip_results, strict=True):
            boxes = unletterbox_boxes(result.boxes, shape, scale, pad)
            for box, score, cls in zip(boxes, result.conf, result.cls, strict=True):
                x1, y1, x2, y2 = (float(v) for v in box)
                results.append(
                    {
                        "image_id": int(image_id),
                        "category_id": int(class_to_cat[cls]),
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": float(score),
                    }
                )
    return results


def letterbox(
    image: np.ndarray, size: int
) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]]:
    """An (H, W, 3) uint8 image as a (size, size, 3) chip: long side scaled to ``size``, centred.

    Returns (chip, (scale_x, scale_y), (pad_left, pad_top)): a chip pixel x is
    image pixel (x - pad_left) / scale_x, likewise y.
    """
    import cv2

    height, width = image.shape[:2]
    ratio = size / max(height, width)
    new_w, new_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    left = round((size - new_w) / 2 - 0.1)
    top = round((size - new_h) / 2 - 0.1)
    chip = np.full((size, size, 3), _PAD_VALUE, dtype=np.uint8)
    chip[top : top + new_h, left : left + new_w] = image
    return chip, (new_w / width, new_h / height), (left, top)


def unletterbox_boxes(
    boxes: np.ndarray,
    shape: tuple[int, int],
    scale: tuple[float, float],
    pad: tuple[int, int],
) -> np.ndarray:
    """(N, 4) xyxy chip-pixel boxes -> image pixels, clipped to the (H, W) ``shape``."""
    out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    out[:, [0, 2]] = (out[:, [0, 2]] - pad[0]) / scale[0]
    out[:, [1, 3]] = (out[:, [1, 3]] - pad[1]) / scale[1]
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, shape[1])
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, shape[0])
    return out


def _letterboxed_batches(
    images: list[Path], image_ids: list[int], size: int, batch: int
) -> Iterator[tuple[list[Any], np.ndarray]]:
    """(keys, (B, size, size, 3) chips) batches; a key is (image_id, (H, W), scale, pad)."""
    for start in range(0, len(images), batch):
        keys: list[Any] = []
        chips = []
        for path, image_id in zip(
            images[start : start + batch], image_ids[start : start + batch], strict=True
        ):
            image = read_rgb(Path(path))
            chip, scale, pad = letterbox(image, size)
            keys.append((image_id, image.shape[:2], scale, pad))
            chips.append(chip)
        yield keys, np.stack(chips)


def read_rgb(path: Path) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 RGB array; RasterError naming the file if unreadable."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        reason = "not found" if not path.exists() else "not a readable image"
        raise RasterError(f"image {str(path)!r}: {reason}")
    return np.ascontiguousarray(image[..., ::-1])
