"""Training data on disk: a seeded train/val split and a YOLO dataset folder from labelled images.

``split_train_val`` is pure. ``materialise_yolo_dataset`` writes

    out_dir/images/{train,val}/<stem>.png     RGB images
    out_dir/labels/{train,val}/<stem>.txt     one "cls cx cy w h" line a box, 0-1 of the image
    out_dir/data.yaml                         absolute ``path``, ``train``, ``val``, ``names``

which is what ultralytics' trainer reads.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from geoal.errors import ConfigError, GeoalError

LabelledImage = tuple[str, np.ndarray, np.ndarray, np.ndarray]
"""(stem, (H, W, 3) uint8 RGB image, (N, 4) float xyxy boxes in pixels, (N,) int class indices)."""

_SAFE_STEM = re.compile(r"^[A-Za-z0-9._-]+$")


class DatasetError(GeoalError):
    """A training data set is missing, malformed, or has nothing to learn from."""


def split_train_val(
    ids: Sequence[int],
    groups: Sequence[int] | None,
    val_fraction: float,
    rng: np.random.Generator,
) -> tuple[list[int], list[int]]:
    """Split ``ids`` into (train_ids, val_ids), each in the input order.

    With ``groups`` (one group, e.g. a scene, per id) naming at least two groups,
    whole groups are held out: the val side takes shuffled groups while that
    brings its size closer to ``val_fraction * len(ids)``, at least one group and
    never all of them. Otherwise items are held out one by one. Either way, two
    or more ids give at least one val and one train id; one id goes to train.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    ids = list(ids)
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique")
    if groups is not None and len(groups) != len(ids):
        raise ValueError(f"groups has {len(groups)} entries for {len(ids)} ids")
    if len(ids) < 2:
        return ids, []
    target = val_fraction * len(ids)
    if groups is not None and len(set(groups)) >= 2:
        in_val = _held_out_groups(np.asarray(groups), target, rng)
    else:
        n_val = min(max(round(target), 1), len(ids) - 1)
        in_val = np.zeros(len(ids), dtype=bool)
        in_val[rng.permutation(len(ids))[:n_val]] = True
    train = [i for i, v in zip(ids, in_val, strict=True) if not v]
    val = [i for i, v in zip(ids, in_val, strict=True) if v]
    return train, val


def _held_out_groups(groups: np.ndarray, target: float, rng: np.random.Generator) -> np.ndarray:
    """(N,) bool: members of the groups drawn for validation (see ``split_train_val``)."""
    names, sizes = np.unique(groups, return_counts=True)
    chosen: list[int] = []
    count = 0
    for g in rng.permutation(len(names)):
        if count >= target:
            break
        if not chosen or abs(count + sizes[g] - target) < abs(count - target):
            chosen.append(int(g))
            count += int(sizes[g])
    if len(chosen) == len(names):  # keep at least one group for training
        chosen.pop()
    return np.isin(groups, names[chosen])


def materialise_yolo_dataset(
    out_dir: Path,
    items: Sequence[LabelledImage],
    val_stems: set[str],
    classes: Sequence[str],
) -> Path:
    """Write ``items`` as a YOLO dataset under ``out_dir`` and return its data.yaml.

    Each item is (stem, (H, W, 3) uint8 RGB image, (N, 4) xyxy boxes in pixels,
    (N,) class indices into ``classes``); stems in ``val_stems`` go to the val
    split, the others to train. Boxes are clipped to the image; boxes with no
    area left are dropped. An image without boxes is written with an empty
    label file (a background image). ``out_dir/images`` and ``out_dir/labels``
    are replaced: what an earlier call wrote there is removed.
    """
    import yaml

    classes = list(classes)
    stems = [item[0] for item in items]
    _check_stems(stems, val_stems)
    if not classes or len(set(classes)) != len(classes):
        raise ConfigError(f"classes must be a non-empty list of unique names, got {classes}")
    out_dir = Path(out_dir).resolve()
    for sub in ("images", "labels"):
        shutil.rmtree(out_dir / sub, ignore_errors=True)
    for split in ("train", "val"):
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        (out_dir / "labels" / split).mkdir(parents=True, exist_ok=True)
    for stem, image, boxes, cls in items:
        split = "val" if stem in val_stems else "train"
        _check_image(stem, image)
        height, width = image.shape[:2]
        lines = yolo_label_lines(boxes, cls, width, height, len(classes), stem)
        _write_png(out_dir / "images" / split / f"{stem}.png", image)
        text = "".join(f"{line}\n" for line in lines)
        (out_dir / "labels" / split / f"{stem}.txt").write_text(text)
    data = {
        "path": str(out_dir),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(classes)),
    }
    data_yaml = out_dir / "data.yaml"
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return data_yaml


def yolo_label_lines(
    boxes: np.ndarray,
    cls: np.ndarray,
    width: int,
    height: int,
    num_classes: int,
    source: str = "",
) -> list[str]:
    """YOLO label lines "cls cx cy w h" (0-1 of the image) for (N, 4) xyxy pixel boxes, (N,) cls.

    Boxes are clipped to the (width, height) image; those with no area left are dropped.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cls = np.asarray(cls).reshape(-1)
    if len(cls) != len(boxes):
        raise ValueError(f"{source}: {len(boxes)} boxes but {len(cls)} class ids")
    if not np.isfinite(boxes).all():
        raise ValueError(f"{source}: boxes must be finite")
    if len(cls) and (
        not np.issubdtype(cls.dtype, np.integer) or cls.min() < 0 or cls.max() >= num_classes
    ):
        raise ValueError(f"{source}: class ids must be integers in [0, {num_classes}), got {cls}")
    clipped = np.clip(boxes, 0, [width, height, width, height])
    w, h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    keep = (w > 0) & (h > 0)
    cx = (clipped[:, 0] + clipped[:, 2]) / 2 / width
    cy = (clipped[:, 1] + clipped[:, 3]) / 2 / height
    rows = np.stack([cx, cy, w / width, h / height], axis=1)[keep]
    return [
        f"{int(c)} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}"
        for c, (x, y, bw, bh) in zip(cls[keep], rows, strict=True)
    ]


def _check_stems(stems: list[str], val_stems: set[str]) -> None:
    bad = [s for s in stems if not isinstance(s, str) or not _SAFE_STEM.match(s)]
    if bad:
        raise ValueError(f"stems must be plain file names (letters, digits, ._-), got {bad[:5]}")
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise ValueError(f"stems must be unique; repeated: {repeated[:5]}")
    unknown = sorted(set(val_stems) - set(stems))
    if unknown:
        raise ValueError(f"val_stems names stems that are not among the items: {unknown[:5]}")


def _check_image(stem: str, image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"{stem}: image must be an (H, W, 3) array, got shape {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{stem}: image must be uint8 (0-255), got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{stem}: image is empty, shape {image.shape}")


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(image)).save(path, compress_level=1)
