"""Label Studio: tasks with pre-annotations out, the JSON export of annotations back in.

Rectangles are ``rectanglelabels`` results with x, y, width, height in percent of the
image (top-left corner, rotation 0), ``from_name="label"``, ``to_name="image"`` as in
:func:`labelstudio_config`. A task's data carries the chip's id, scene fingerprint and
window so an export can be matched back to the right chip.

Import rules: per task, the latest annotation that was not cancelled (by ``updated_at``,
then ``created_at``, then position) is the label; a submitted empty result is a labelled
negative; a task without such an annotation stays unlabelled, even when it carries the
model's predictions (they are not labels; ``accept_predictions`` takes them knowingly).
A box sticking out of the image by more than 0.5 px is a problem, less is clipped; rotated
boxes are problems. Label names match the classes ignoring case. Label Studio's JSON-MIN
export (one flat row per annotation) is read as well as its full JSON export.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import quoteattr

import numpy as np

from geoal.formats._check import as_int, as_number, check_box, check_export, class_lookup
from geoal.formats.records import Boxes, ImportResult, Problem
from geoal.raster.chip import Chip

FROM_NAME = "label"
TO_NAME = "image"


def labelstudio_config(classes: Sequence[str]) -> str:
    """The labelling config (XML) for boxes of ``classes``, matching the exported tasks."""
    labels = "\n".join(f"    <Label value={quoteattr(c)}/>" for c in classes)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
        f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}" canRotate="false">\n'
        f"{labels}\n"
        "  </RectangleLabels>\n"
        "</View>\n"
    )


def to_labelstudio(
    chips: Sequence[Chip],
    boxes: Mapping[int, Boxes],
    classes: Sequence[str],
    image_url: Callable[[Chip], str],
    model_version: str,
) -> list[dict[str, Any]]:
    """One task per chip; chips with an entry in ``boxes`` get one prediction.

    Box coordinates are clipped to the image. The prediction's ``score`` is the mean box
    confidence (0 for no boxes); it is left out when the boxes have no scores.
    """
    by_id = check_export(chips, dict(boxes), classes)
    tasks = []
    for chip in by_id.values():
        task: dict[str, Any] = {
            "data": {
                "image": image_url(chip),
                "chip_id": chip.id,
                "scene": chip.scene.name,
                "scene_id": chip.scene_id,
                "fingerprint": chip.scene.fingerprint,
                "window": list(chip.window),
            }
        }
        b = boxes.get(chip.id)
        if b is not None:
            pred: dict[str, Any] = {
                "model_version": model_version,
                "result": _results(chip, b, classes),
            }
            if b.score is not None:
                pred["score"] = float(b.score.mean()) if len(b) else 0.0
            task["predictions"] = [pred]
        tasks.append(task)
    return tasks


def _results(chip: Chip, b: Boxes, classes: Sequence[str]) -> list[dict[str, Any]]:
    w, h = chip.width, chip.height
    xyxy = b.xyxy.copy()
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0.0, w)
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0.0, h)
    out = []
    for i, (x1, y1, x2, y2) in enumerate(xyxy.tolist()):
        r: dict[str, Any] = {
            "id": f"{chip.id}_{i}",
            "type": "rectanglelabels",
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "original_width": w,
            "original_height": h,
            "image_rotation": 0,
            "value": {
                "x": 100.0 * x1 / w,
                "y": 100.0 * y1 / h,
                "width": 100.0 * (x2 - x1) / w,
                "height": 100.0 * (y2 - y1) / h,
                "rotation": 0,
                "rectanglelabels": [classes[int(b.cls[i])]],
            },
        }
        if b.score is not None:
            r["score"] = float(b.score[i])
        out.append(r)
    return out


def from_labelstudio(
    tasks: Any,
    chips_by_id: Mapping[int, Chip],
    classes: Sequence[str],
    source: str,
    *,
    accept_predictions: bool = False,
) -> ImportResult:
    """Labels from a Label Studio JSON or JSON-MIN export (a list); never raises on content.

    A task with no submitted annotation but with predictions counts in ``unreviewed`` and
    stays unlabelled; with ``accept_predictions`` its latest prediction is taken as its
    labels and listed in ``predictions``.
    """
    problems: list[Problem] = []
    predicted: list[Problem] = []
    unreviewed = 0

    def report(where: str, message: str) -> None:
        problems.append(Problem(source, where, message))

    if not isinstance(tasks, list):
        report("file", "not a Label Studio JSON export: expected a list of tasks")
        return ImportResult({}, problems)
    if is_json_min(tasks):
        tasks = tasks_from_json_min(tasks)
    class_index = class_lookup(classes)
    labels: dict[int, Boxes] = {}
    labelled_by: dict[int, str] = {}
    duplicates: list[int] = []
    for k, task in enumerate(tasks):
        task_id = task.get("id") if isinstance(task, dict) else None
        where = f"task {task_id}" if task_id is not None else f"task #{k}"
        if not isinstance(task, dict):
            report(where, "task is not an object")
            continue
        chip, why = _task_chip(task, chips_by_id)
        if chip is None:
            report(where, why)
            continue
        ann = _latest(task.get("annotations", task.get("completions")))
        if ann is None:
            if not accept_predictions:
                unreviewed += bool(_latest(task.get("predictions")))
                continue  # not (or only cancelled): stays unlabelled
            ann = _latest(task.get("predictions"))
            if ann is None:
                continue
            predicted.append(Problem(source, where, "a model's prediction, taken as labels"))
        result = ann.get("result")
        if not isinstance(result, list):
            report(where, "annotation without a 'result' list")
            continue
        xyxy, cls = [], []
        for j, r in enumerate(result):
            box = _result_box(r, chip, class_index, classes)
            if isinstance(box, str):
                report(f"{where} result {j}", box)
            else:
                xyxy.append(box[0])
                cls.append(box[1])
        if chip.id in labels:
            report(where, f"chip {chip.id} is also {labelled_by[chip.id]}; the last is kept")
            duplicates.append(chip.id)
            del labels[chip.id]
        labels[chip.id] = Boxes(np.array(xyxy), np.array(cls)) if xyxy else Boxes.empty()
        labelled_by[chip.id] = where
    return ImportResult(
        labels,
        problems,
        list(dict.fromkeys(duplicates)),
        predictions=predicted,
        unreviewed=unreviewed,
    )


_MIN_META = ("id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time")


def _min_boxes(value: Any) -> bool:
    """True for a JSON-MIN control value holding rectangles: [{x, y, ..., rectanglelabels}]."""
    return isinstance(value, list) and any(
        isinstance(v, dict) and "rectanglelabels" in v for v in value
    )


def is_json_min(rows: list[Any]) -> bool:
    """True when a list looks like Label Studio's JSON-MIN export rather than its JSON:
    flat rows, each with the ``annotation_id`` key JSON-MIN always writes."""
    return bool(rows) and all(
        isinstance(r, dict) and "data" not in r and "annotation_id" in r for r in rows
    )


def tasks_from_json_min(rows: list[Any]) -> list[dict[str, Any]]:
    """Label Studio JSON-MIN rows (task data, ``id`` and each control's results flattened
    into one row per annotation) as JSON tasks, so one importer reads both.

    A row with an ``annotation_id`` is a submitted annotation (no box key: a labelled
    negative); a row without one is a task with no annotation.
    """
    tasks: dict[Any, dict[str, Any]] = {}
    for k, row in enumerate(rows):
        boxes = [key for key, v in row.items() if _min_boxes(v)]
        data = {key: v for key, v in row.items() if key not in _MIN_META and key not in boxes}
        key = row.get("id", f"#{k}")
        task = tasks.setdefault(key, {"id": row.get("id"), "data": data, "annotations": []})
        if row.get("annotation_id") is None:
            continue
        result = [
            {
                "type": "rectanglelabels",
                "from_name": name,
                "to_name": TO_NAME,
                "original_width": v.get("original_width"),
                "original_height": v.get("original_height"),
                "value": {
                    k2: v[k2]
                    for k2 in ("x", "y", "width", "height", "rotation", "rectanglelabels")
                    if k2 in v
                },
            }
            for name in boxes
            for v in row[name]
            if isinstance(v, dict)
        ]
        for r in result:  # JSON-MIN may leave the image size out: checked only when given
            for size in ("original_width", "original_height"):
                if r[size] is None:
                    del r[size]
        task["annotations"].append(
            {
                "id": row.get("annotation_id"),
                "result": result,
                "created_at": row.get("created_at"),
                "updated_at": row.get("updated_at"),
            }
        )
    return list(tasks.values())


def _task_chip(task: dict[str, Any], chips_by_id: Mapping[int, Chip]) -> tuple[Chip | None, str]:
    data = task.get("data")
    if not isinstance(data, dict):
        return None, "task without a 'data' object"
    image = data.get("image")
    if isinstance(image, str) and (why := _unsafe_image(image)):
        return None, f"data.image {image!r}: {why}"
    cid = as_int(data.get("chip_id"))
    if cid is None:
        return None, f"task data has no integer chip_id (got {data.get('chip_id')!r})"
    chip = chips_by_id.get(cid)
    if chip is None:
        return None, f"chip_id {cid} is not one of the project's chips"
    fp, window = data.get("fingerprint"), data.get("window")
    if (fp is not None and fp != chip.scene.fingerprint) or (
        window is not None
        and (not isinstance(window, list) or [as_int(v) for v in window] != list(chip.window))
    ):
        return None, (
            f"chip_id {cid}: the task's scene fingerprint or window differ from the project's "
            "chip (exported from another project or before the scene changed)"
        )
    return chip, ""


def _unsafe_image(image: str) -> str:
    """Why a task's image reference may not be used ("" when fine), as COCO's file_name.

    Label Studio's own references (``/data/upload/...``, ``http(s)://...``) are fine; a
    ``..`` component reaches outside the export folder, whatever the prefix.
    """
    rest = image.split("://", 1)[1].partition("/")[2] if "://" in image else image
    if "\x00" in rest:
        return "contains a NUL character"
    # path and query (Label Studio's local files are '/data/local-files/?d=images/x.png')
    if ".." in re.split(r"[/\\?&=]", unquote(rest)):
        return "reaches outside the export folder ('..'); refused"
    return ""


def _when(ann: dict[str, Any]) -> float:
    for key in ("updated_at", "created_at"):
        v = ann.get(key)
        if isinstance(v, str):
            try:
                return datetime.fromisoformat(v).timestamp()
            except ValueError:
                continue
    return -math.inf


def _latest(annotations: Any) -> dict[str, Any] | None:
    """The latest annotation not cancelled, or None."""
    if not isinstance(annotations, list):
        return None
    live = [
        (k, a)
        for k, a in enumerate(annotations)
        if isinstance(a, dict) and not a.get("was_cancelled", False)
    ]
    if not live:
        return None
    return max(live, key=lambda ka: (_when(ka[1]), ka[0]))[1]


def _result_box(
    r: Any, chip: Chip, class_index: Callable[[object], int | None], classes: Sequence[str]
) -> tuple[tuple[float, float, float, float], int] | str:
    """(box in chip px, class index) from one result, or what is wrong with it."""
    if not isinstance(r, dict):
        return "result is not an object"
    if r.get("type") != "rectanglelabels":
        return f"result type {r.get('type')!r} is not 'rectanglelabels'; ignored"
    value = r.get("value")
    if not isinstance(value, dict):
        return "result without a 'value' object"
    rotation = as_number(value.get("rotation", r.get("rotation", 0)))
    if rotation is None:
        return f"rotation {value.get('rotation')!r} is not a number"
    if rotation % 360 != 0:
        return f"rotated box ({rotation:g} degrees): only axis-aligned boxes are supported"
    names = value.get("rectanglelabels")
    if not isinstance(names, list) or len(names) != 1:
        return f"expected exactly one label, got {names!r}"
    cls = class_index(names[0])
    if cls is None:
        return f"unknown label {names[0]!r}: not one of {list(classes)}"
    ow = as_number(r.get("original_width", chip.width))
    oh = as_number(r.get("original_height", chip.height))
    if ow != chip.width or oh != chip.height:
        return (
            f"image size {r.get('original_width')} x {r.get('original_height')} differs from "
            f"chip {chip.id} ({chip.width} x {chip.height})"
        )
    nums = [as_number(value.get(key)) for key in ("x", "y", "width", "height")]
    if any(v is None for v in nums):
        return "x, y, width, height must be numbers"
    x, y, w, h = (float(v) for v in nums)  # type: ignore[arg-type]
    x1, y1 = x / 100.0 * chip.width, y / 100.0 * chip.height
    box, why = check_box(
        x1, y1, x1 + w / 100.0 * chip.width, y1 + h / 100.0 * chip.height, chip.width, chip.height
    )
    if box is None:
        return why
    return box, cls
