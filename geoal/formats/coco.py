"""COCO detection JSON: chips as images, boxes as annotations, geoal identity kept per image.

Category ids are 1..C in the order of the project's classes (COCO tools treat 0 as
background). Import maps categories to project classes BY NAME, never by id, so a file
from another tool with its own ids still lands on the right classes.

Each image carries a ``"geoal"`` block (chip id, scene, fingerprint, window, transform,
CRS). On import, an image with that block matches the chip whose id, fingerprint and
window all agree; an image whose block contradicts the project (stale export, other
project) is refused rather than matched by name. An image without the block (a tool
dropped it) is matched by ``file_name`` equal to the chip's ``file_name``. A box sticking
out of its chip by more than 0.5 px is a problem; less is clipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from geoal.formats._check import (
    as_int,
    as_number,
    as_numbers,
    check_box,
    check_export,
    class_lookup,
    image_basenames,
    is_url_or_absolute,
    normalise_rel_path,
    unsafe_path_reason,
)
from geoal.formats.records import Boxes, ImportResult, Problem
from geoal.raster.chip import Chip


def category_id(class_index: int) -> int:
    """COCO category id of project class ``class_index`` (ids start at 1)."""
    return class_index + 1


def geoal_block(chip: Chip) -> dict[str, Any]:
    """The identity of a chip as written into exports, enough to find it again."""
    return {
        "chip_id": chip.id,
        "scene_id": chip.scene_id,
        "scene": chip.scene.name,
        "scene_path": chip.scene.path,
        "fingerprint": chip.scene.fingerprint,
        "window": list(chip.window),
        "transform": list(chip.transform),
        "crs": chip.crs,
    }


def to_coco(
    chips: Sequence[Chip], boxes: Mapping[int, Boxes], classes: Sequence[str]
) -> dict[str, Any]:
    """A COCO detection dict: one image per chip (id = chip_id), one annotation per box.

    ``bbox`` is [x, y, w, h] in chip pixels; predictions (boxes with scores) get ``score``.
    A chip without an entry in ``boxes`` is an image without annotations.
    """
    by_id = check_export(chips, dict(boxes), classes)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for chip in by_id.values():
        images.append(
            {
                "id": chip.id,
                "file_name": chip.file_name,
                "width": chip.width,
                "height": chip.height,
                "geoal": geoal_block(chip),
            }
        )
        b = boxes.get(chip.id)
        if b is None:
            continue
        for i in range(len(b)):
            x1, y1, x2, y2 = (float(v) for v in b.xyxy[i])
            ann: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": chip.id,
                "category_id": category_id(int(b.cls[i])),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
            }
            if b.score is not None:
                ann["score"] = float(b.score[i])
            annotations.append(ann)
    return {
        "info": {"description": "geoal export", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": category_id(i), "name": name, "supercategory": "object"}
            for i, name in enumerate(classes)
        ],
    }


def from_coco(
    data: Any, chips_by_id: Mapping[int, Chip], classes: Sequence[str], source: str
) -> ImportResult:
    """Labels from a parsed COCO dict; every bad entry becomes a Problem, nothing raises.

    An image with no annotations labels its chip negative (empty Boxes). When two images
    map to one chip, the chip is listed in ``duplicates`` and the last image wins. An
    annotation with a ``score`` is a model's pre-annotation (as geoal exports them): it is
    listed in ``predictions``. Category names match the classes ignoring case.
    """
    problems: list[Problem] = []
    predicted: list[Problem] = []

    def report(where: str, message: str) -> None:
        problems.append(Problem(source, where, message))

    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        report("file", "not a COCO detection file: no 'images' list")
        return ImportResult({}, problems)
    categories = _categories(data.get("categories"), class_lookup(classes), report)
    ids = [as_int(im.get("id")) if isinstance(im, dict) else None for im in data["images"]]
    accepted = _accepted_images(data["images"], ids, chips_by_id, report)
    last = {chip_id: image_id for image_id, chip_id in accepted}
    duplicates: list[int] = []
    for accepted_id, chip_id in accepted:
        if last[chip_id] != accepted_id:
            report(
                f"image {accepted_id}",
                f"chip {chip_id} is also image {last[chip_id]}; the last image is kept",
            )
            if chip_id not in duplicates:
                duplicates.append(chip_id)
    chip_of_image = {image_id: chip_id for chip_id, image_id in last.items()}
    found: dict[int, list[tuple[tuple[float, float, float, float], int]]] = {c: [] for c in last}
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        report("file", "'annotations' is not a list")
        anns = []
    known_images = set(ids)
    for k, ann in enumerate(anns):
        if not isinstance(ann, dict):
            report(f"annotation #{k}", "annotation is not an object")
            continue
        ann_id = as_int(ann.get("id"))
        image_id = as_int(ann.get("image_id"))
        where = f"annotation {ann_id if ann_id is not None else '#' + str(k)} (image {image_id})"
        if image_id not in chip_of_image:
            if image_id not in known_images:
                report(where, f"image_id {ann.get('image_id')!r} is not one of the file's images")
            continue  # its image was refused and reported already
        chip = chips_by_id[chip_of_image[image_id]]
        box_cls, why = _annotation_box(ann, chip, categories, classes)
        if box_cls is None:
            report(where, why)
            continue
        found[chip.id].append(box_cls)
        if "score" in ann and ann["score"] is not None:
            predicted.append(Problem(source, where, "a model's pre-annotation (COCO 'score')"))
    labels = {cid: _boxes(found[cid]) for cid in last}
    return ImportResult(labels, problems, duplicates, predictions=predicted)


def _accepted_images(
    images: list[Any],
    ids: list[int | None],
    chips_by_id: Mapping[int, Chip],
    report: Callable[[str, str], None],
) -> list[tuple[int, int]]:
    """(COCO image id, chip id) of the images that stand for a chip, in file order.

    An image id given twice makes its annotations ambiguous: all its entries are refused.
    Every image refused is reported.
    """
    by_name = {
        normalise_rel_path(c.file_name): c
        for c in chips_by_id.values()
        if not unsafe_path_reason(c.file_name)
    }
    by_base: dict[str, Chip | None] = {}
    for c in chips_by_id.values():
        base = image_basenames(c.file_name)[0]
        by_base[base] = None if base in by_base else c  # None: ambiguous
    seen: set[int | None] = set()
    twice: set[int | None] = set()
    for image_id in ids:
        (twice if image_id in seen else seen).add(image_id)
    accepted: list[tuple[int, int]] = []
    for k, (image, image_id) in enumerate(zip(images, ids, strict=True)):
        where = f"image {image_id}" if image_id is not None else f"image #{k}"
        if image_id is None:
            report(where, "image without an integer 'id'")
        elif image_id in twice:
            report(where, f"image id {image_id} appears more than once in 'images'; refused")
        else:
            chip, why = _match_image(image, chips_by_id, by_name, by_base)
            if chip is None:
                report(where, why)
            else:
                accepted.append((image_id, chip.id))
    return accepted


def _annotation_box(
    ann: dict[str, Any],
    chip: Chip,
    categories: Mapping[int, tuple[int | None, str]],
    classes: Sequence[str],
) -> tuple[tuple[tuple[float, float, float, float], int] | None, str]:
    """((x1, y1, x2, y2) in chip pixels, class index) of an annotation, or (None, why not)."""
    cat = as_int(ann.get("category_id"))
    if cat is None or cat not in categories:
        return None, f"unknown category id {ann.get('category_id')!r}: not in 'categories'"
    cls, cat_name = categories[cat]
    if cls is None:
        return None, f"unknown category {cat_name!r}: not one of the classes {list(classes)}"
    bbox = as_numbers(ann.get("bbox"), 4)
    if bbox is None:
        return None, f"bbox {ann.get('bbox')!r} is not 4 numbers [x, y, w, h]"
    x, y, w, h = bbox
    box, why = check_box(x, y, x + w, y + h, chip.width, chip.height)
    if box is None:
        return None, f"bbox [x, y, w, h] = [{x:.6g}, {y:.6g}, {w:.6g}, {h:.6g}]: {why}"
    return (box, cls), ""


def _categories(
    cats: Any, class_index: Callable[[object], int | None], report: Callable[[str, str], None]
) -> dict[int, tuple[int | None, str]]:
    """COCO category id -> (project class index or None when the name is unknown, name)."""
    out: dict[int, tuple[int | None, str]] = {}
    if not isinstance(cats, list):
        report("file", "no 'categories' list")
        return out
    for k, cat in enumerate(cats):
        cid = as_int(cat.get("id")) if isinstance(cat, dict) else None
        if cid is None or not isinstance(cat.get("name"), str):
            report(f"category #{k}", "category without an integer 'id' and a 'name'")
            continue
        if cid in out:
            report(f"category {cid}", "category id appears twice; the first is used")
            continue
        out[cid] = (class_index(cat["name"]), cat["name"])
    return out


def _match_image(
    image: dict[str, Any],
    chips_by_id: Mapping[int, Chip],
    by_name: Mapping[str, Chip],
    by_base: Mapping[str, Chip | None],
) -> tuple[Chip | None, str]:
    """The chip an image entry stands for, or (None, why not).

    With a ``geoal`` block: the chip it names. Without (another tool's file): the chip whose
    file name is the image's relative path, else whose file name ends the image's path or URL
    (Label Studio's COCO export names ``images/8f2c1a3b-scene_3.png`` or the served URL).
    """
    name = image.get("file_name")
    if not isinstance(name, str):
        return None, "image without a 'file_name'"
    block = image.get("geoal")
    foreign = block is None and is_url_or_absolute(name) and ".." not in name.split("/")
    unsafe = "" if foreign else unsafe_path_reason(name)
    if unsafe:
        return None, unsafe
    if foreign:
        chip = next((c for b in image_basenames(name) if (c := by_base.get(b))), None)
        if chip is None:
            return None, f"file_name {name!r} is not one of the project's chips"
    elif block is not None:
        chip = _match_block(block, chips_by_id)
        if chip is None:
            return None, (
                "its 'geoal' block (chip id, scene fingerprint, window) matches none of the "
                "project's chips: exported from another project or before the scene changed"
            )
    else:
        found = by_name.get(normalise_rel_path(name)) or next(
            (c for b in image_basenames(name) if (c := by_base.get(b))), None
        )
        if found is None:
            return None, f"file_name {name!r} is not one of the project's chips"
        chip = found
    w, h = as_number(image.get("width")), as_number(image.get("height"))
    if (w is not None and w != chip.width) or (h is not None and h != chip.height):
        return None, (
            f"image size {image.get('width')} x {image.get('height')} differs from chip "
            f"{chip.id} ({chip.width} x {chip.height})"
        )
    return chip, ""


def _match_block(block: Any, chips_by_id: Mapping[int, Chip]) -> Chip | None:
    if not isinstance(block, dict):
        return None
    chip = chips_by_id.get(as_int(block.get("chip_id")))  # type: ignore[arg-type]
    if chip is None:
        return None
    window = block.get("window")
    if block.get("fingerprint") != chip.scene.fingerprint or not isinstance(window, list):
        return None
    return chip if [as_int(v) for v in window] == list(chip.window) else None


def _boxes(items: list[tuple[tuple[float, float, float, float], int]]) -> Boxes:
    if not items:
        return Boxes.empty()
    return Boxes(np.array([b for b, _ in items]), np.array([c for _, c in items]))
