"""The labelled data set behind a simulation: pool images held in memory, their hidden labels.

Every pool image is decoded once and kept resized so that its long side is
``imgsz`` pixels: the same array is written for training (ultralytics would
resize it to this anyway) and letterboxed for scoring (padding only). Boxes are
kept in the resized image's pixels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoal.errors import FormatError


@dataclass(frozen=True, eq=False)
class Pool:
    """N pool images with the oracle's labels, resized to a long side of ``imgsz`` pixels.

    Attributes:
        image_ids: (N,) int64 COCO image ids, in the COCO file's order.
        images: N (h, w, 3) uint8 RGB arrays, max(h, w) == imgsz.
        boxes: N (n_i, 4) float64 xyxy boxes in the resized images' pixels.
        cls: N (n_i,) int64 class indices into ``classes``.
        classes: class names, in COCO category id order.
        imgsz: the long side in pixels.
    """

    image_ids: np.ndarray
    images: list[np.ndarray]
    boxes: list[np.ndarray]
    cls: list[np.ndarray]
    classes: tuple[str, ...]
    imgsz: int

    def __len__(self) -> int:
        return len(self.images)

    @property
    def box_counts(self) -> np.ndarray:
        """(N,) int64 true boxes per image (what the oracle charges)."""
        return np.array([len(c) for c in self.cls], dtype=np.int64)

    def items(self, indices: Sequence[int]) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
        """Labelled images for ``materialise_yolo_dataset``: (stem, image, xyxy boxes, cls)."""
        return [
            (f"img{int(self.image_ids[i])}", self.images[i], self.boxes[i], self.cls[i])
            for i in indices
        ]

    def chips(self, indices: Sequence[int], batch: int) -> Iterator[tuple[list[int], np.ndarray]]:
        """(indices, (B, imgsz, imgsz, 3) uint8 letterboxed chips) batches, for the detector."""
        from geoal.train.predict import letterbox

        for start in range(0, len(indices), batch):
            part = [int(i) for i in indices[start : start + batch]]
            yield part, np.stack([letterbox(self.images[i], self.imgsz)[0] for i in part])


def class_names(coco: dict[str, Any]) -> tuple[str, ...]:
    """Category names in category id order (the model's class order)."""
    return tuple(str(c["name"]) for c in sorted(coco["categories"], key=lambda c: int(c["id"])))


def load_pool(
    coco: dict[str, Any], images_dir: Path, imgsz: int, *, progress: bool = False
) -> Pool:
    """Read every image of ``coco`` from ``images_dir``, resized to a long side of ``imgsz``."""
    import cv2
    from tqdm import tqdm

    from geoal.train.predict import read_rgb

    classes = class_names(coco)
    cat_to_cls = {int(c["id"]): i for i, c in enumerate(sorted(coco["categories"], key=_cat_id))}
    anns: dict[int, list[dict[str, Any]]] = {}
    for ann in coco["annotations"]:
        if not ann.get("iscrowd", 0):
            anns.setdefault(int(ann["image_id"]), []).append(ann)
    ids, images, boxes, cls = [], [], [], []
    for info in tqdm(coco["images"], desc="reading pool", unit="img", disable=not progress):
        path = Path(images_dir) / str(info["file_name"])
        image = read_rgb(path)
        height, width = image.shape[:2]
        ratio = imgsz / max(height, width)
        size = (max(round(width * ratio), 1), max(round(height * ratio), 1))
        image = cv2.resize(
            image, size, interpolation=cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR
        )
        own = anns.get(int(info["id"]), [])
        try:
            xywh = np.array([a["bbox"] for a in own], dtype=np.float64).reshape(-1, 4)
            labels = np.array([cat_to_cls[int(a["category_id"])] for a in own], dtype=np.int64)
        except (KeyError, ValueError) as error:
            raise FormatError(f"image {info['id']} ({path}): bad annotation: {error}") from error
        ids.append(int(info["id"]))
        images.append(np.ascontiguousarray(image))
        boxes.append(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1) * ratio)
        cls.append(labels)
    return Pool(np.array(ids, dtype=np.int64), images, boxes, cls, classes, imgsz)


def check_test_set(test: dict[str, Any], classes: tuple[str, ...], source: str) -> dict[str, int]:
    """Category id of each class in the test file (matched by name); FormatError if one lacks."""
    by_name = {str(c["name"]): int(c["id"]) for c in test["categories"]}
    missing = [name for name in classes if name not in by_name]
    if missing:
        raise FormatError(
            f"{source}: the test set has no categories {missing} of the pool's {list(classes)}"
        )
    if not test["images"]:
        raise FormatError(f"{source}: the test set has no images")
    return by_name


def _cat_id(category: dict[str, Any]) -> int:
    return int(category["id"])
