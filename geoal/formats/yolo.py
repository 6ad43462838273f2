"""YOLO (ultralytics) detection datasets: one ``cls cx cy w h`` line per box, normalised.

Values are written with 12 significant digits: at most 5e-13 relative error, far below
1e-6 px on any chip, so labels round-trip pixel-exact. Boxes are clipped to the chip first
(YOLO wants values in [0, 1]); boxes with no area left are dropped. A chip with no boxes
gets an empty label file: ultralytics reads that as a background (negative) image.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import numpy as np

from geoal.errors import FormatError
from geoal.formats._check import as_int, as_numbers, check_box, check_export
from geoal.formats.io import write_bytes, write_text
from geoal.formats.records import Boxes, Problem
from geoal.raster.chip import Chip

SPLITS = ("train", "val")


def to_yolo_labels(boxes: Boxes, width: int, height: int) -> str:
    """YOLO label text for a ``width`` x ``height`` px chip: ``cls cx cy w h`` per line in [0, 1]."""
    if len(boxes) == 0:
        return ""
    xyxy = boxes.xyxy.copy()
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0.0, width)
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0.0, height)
    w = xyxy[:, 2] - xyxy[:, 0]
    h = xyxy[:, 3] - xyxy[:, 1]
    cx = (xyxy[:, 0] + xyxy[:, 2]) / 2.0
    cy = (xyxy[:, 1] + xyxy[:, 3]) / 2.0
    lines = [
        f"{int(c)} {x / width:.12g} {y / height:.12g} {bw / width:.12g} {bh / height:.12g}"
        for c, x, y, bw, bh in zip(boxes.cls, cx, cy, w, h, strict=True)
        if bw > 0 and bh > 0
    ]
    return "".join(line + "\n" for line in lines)


def from_yolo_labels(
    text: str, width: int, height: int, n_classes: int, source: str = "yolo"
) -> tuple[Boxes, list[Problem]]:
    """Boxes (chip pixels) from YOLO label text, with a Problem per bad line (never raises)."""
    problems: list[Problem] = []
    xyxy: list[tuple[float, float, float, float]] = []
    cls: list[int] = []
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"line {n}"
        try:
            values: list[float | int] = [float(p) for p in parts]
        except ValueError:
            problems.append(Problem(source, where, f"not numbers: {line!r}"))
            continue
        nums = as_numbers(values[1:], 4)
        c = as_int(values[0])
        if nums is None or c is None:
            problems.append(Problem(source, where, f"expected 'cls cx cy w h', got {line!r}"))
            continue
        if not 0 <= c < n_classes:
            problems.append(Problem(source, where, f"class {c} outside 0..{n_classes - 1}"))
            continue
        cx, cy, bw, bh = nums[0] * width, nums[1] * height, nums[2] * width, nums[3] * height
        box, why = check_box(cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, width, height)
        if box is None:
            problems.append(Problem(source, where, why))
            continue
        xyxy.append(box)
        cls.append(c)
    if not xyxy:
        return Boxes.empty(), problems
    return Boxes(np.array(xyxy), np.array(cls)), problems


def write_yolo_dataset(
    out_dir: str | Path,
    items: Sequence[tuple[Chip, Boxes]],
    classes: Sequence[str],
    images: Callable[[Chip], np.ndarray],
    val_ids: Collection[int] = frozenset(),
) -> Path:
    """Write an ultralytics dataset and return its ``data.yaml``.

    Layout: ``images/{train,val}/<stem>.png``, ``labels/{train,val}/<stem>.txt`` (stem from
    the chip's ``file_name``) and ``data.yaml`` (absolute ``path``, ``train``, ``val``,
    ``names``). ``images(chip)`` returns the chip's pixels, (H, W, 3) uint8 with H, W the
    chip's size. Chips in ``val_ids`` go to ``val``; with no val chips, ``val`` points at the
    train images so ultralytics can still validate.
    """
    import yaml
    from PIL import Image

    out = Path(out_dir).resolve()
    check_export([chip for chip, _ in items], {chip.id: b for chip, b in items}, classes)
    for split in SPLITS:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    n_val = 0
    for chip, boxes in items:
        split = "val" if chip.id in val_ids else "train"
        n_val += split == "val"
        pixels = np.asarray(images(chip))
        if pixels.dtype != np.uint8 or pixels.shape != (chip.height, chip.width, 3):
            raise FormatError(
                f"chip {chip.id}: image must be ({chip.height}, {chip.width}, 3) uint8, "
                f"got {pixels.shape} {pixels.dtype}"
            )
        stem = Path(chip.file_name).stem
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        write_bytes(out / "images" / split / f"{stem}.png", buf.getvalue())
        write_text(
            out / "labels" / split / f"{stem}.txt",
            to_yolo_labels(boxes, chip.width, chip.height),
        )
    data = {
        "path": str(out),
        "train": "images/train",
        "val": "images/val" if n_val else "images/train",
        "names": dict(enumerate(classes)),
    }
    return write_text(out / "data.yaml", yaml.safe_dump(data, sort_keys=False))
