"""Label Studio: tasks with predictions out, the JSON export back in, by its rules."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import pytest
from formats_helpers import CLASSES, assert_same_boxes, boxes_in
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoal.formats import (
    Boxes,
    Chip,
    from_labelstudio,
    labelstudio_config,
    to_labelstudio,
)

SRC = "export.json"


def _url(chip: Chip) -> str:
    return f"/data/local-files/?d=round1/{chip.file_name}"


def _accept(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Label Studio exports after an annotator submits each prediction unchanged."""
    out = []
    for k, task in enumerate(json.loads(json.dumps(tasks))):
        task["id"] = 1000 + k
        preds = task.get("predictions", [])
        if preds:
            result = [{kk: v for kk, v in r.items() if kk != "score"} for r in preds[0]["result"]]
            task["annotations"] = [
                {
                    "id": k,
                    "result": result,
                    "was_cancelled": False,
                    "ground_truth": False,
                    "created_at": "2024-05-01T10:00:00.000000Z",
                    "updated_at": "2024-05-01T10:00:00.000000Z",
                    "completed_by": 1,
                }
            ]
        else:
            task["annotations"] = []
        out.append(task)
    return out


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_accepted_predictions_round_trip(chips: list[Chip], data: st.DataObject) -> None:
    boxes = {c.id: data.draw(boxes_in(c.width, c.height, scored=True)) for c in chips[:4]}
    tasks = _accept(to_labelstudio(chips, boxes, CLASSES, _url, "m1"))
    result = from_labelstudio(tasks, {c.id: c for c in chips}, CLASSES, SRC)
    assert result.problems == []
    assert set(result.labels) == set(boxes)  # chips without a prediction stay unlabelled
    for cid, want in boxes.items():
        assert_same_boxes(result.labels[cid], want, 1e-6)


def test_task_layout(chips: list[Chip]) -> None:
    boxes = {1: Boxes([[16, 8, 48, 40], [-2, 0, 8, 70]], [2, 0], [0.9, 0.5])}
    tasks = to_labelstudio(chips[:2], boxes, CLASSES, _url, "model-abc")
    assert tasks[0]["data"] == {
        "image": "/data/local-files/?d=round1/images/scene_1.png",
        "chip_id": 1,
        "scene": "scene",
        "scene_id": 1,
        "fingerprint": "fp-scene",
        "window": [0, 0, 64, 64],
    }
    assert "predictions" not in tasks[1]
    pred = tasks[0]["predictions"][0]
    assert pred["model_version"] == "model-abc" and pred["score"] == pytest.approx(0.7)
    r = pred["result"][0]
    assert r["type"] == "rectanglelabels"
    assert (r["from_name"], r["to_name"]) == ("label", "image")
    assert (r["original_width"], r["original_height"]) == (64, 64)
    assert r["value"] == {
        "x": 25.0,
        "y": 12.5,
        "width": 50.0,
        "height": 50.0,
        "rotation": 0,
        "rectanglelabels": ["plane"],
    }
    assert r["score"] == 0.9
    clipped = pred["result"][1]["value"]  # clipped to the image
    assert (clipped["x"], clipped["y"], clipped["width"], clipped["height"]) == (0, 0, 12.5, 100)
    assert json.loads(json.dumps(tasks)) == tasks


def test_config_names_match_the_tasks() -> None:
    xml = labelstudio_config(["ship", 'a "quoted" & <odd> name'])
    root = ET.fromstring(xml)
    image = root.find("Image")
    rect = root.find("RectangleLabels")
    assert image is not None and rect is not None
    assert image.get("name") == "image" and image.get("value") == "$image"
    assert rect.get("name") == "label" and rect.get("toName") == "image"
    assert [lab.get("value") for lab in rect.findall("Label")] == [
        "ship",
        'a "quoted" & <odd> name',
    ]


def _task(chip_id: int, annotations: list[dict[str, Any]] | None, **data: Any) -> dict[str, Any]:
    task: dict[str, Any] = {"id": 50 + chip_id, "data": {"image": "x", "chip_id": chip_id, **data}}
    if annotations is not None:
        task["annotations"] = annotations
    return task


def _rect(x: float, y: float, w: float, h: float, label: str = "ship", **extra: Any) -> dict:
    value = {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}
    r = {
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": 64,
        "original_height": 64,
        "value": value,
    }
    for key, v in extra.items():
        (value if key in value else r)[key] = v
    return r


def _ann(result: list[dict], cancelled: bool = False, at: str = "2024-05-01T10:00:00Z") -> dict:
    return {"result": result, "was_cancelled": cancelled, "created_at": at, "updated_at": at}


def test_which_annotation_counts(chips: list[Chip]) -> None:
    tasks = [
        _task(
            1,
            [
                _ann([_rect(0, 0, 25, 25)], at="2024-05-02T00:00:00Z"),  # latest
                _ann([_rect(50, 50, 25, 25)], at="2024-05-01T00:00:00Z"),
                _ann([], cancelled=True, at="2024-05-03T00:00:00Z"),
            ],
        ),  # cancelled: ignored
        _task(2, [_ann([])]),  # submitted empty
        _task(3, []),  # not annotated
        _task(4, None),
        _task(5, [_ann([_rect(0, 0, 25, 25)], cancelled=True)]),  # only cancelled
    ]
    result = from_labelstudio(tasks, {c.id: c for c in chips}, CLASSES, SRC)
    assert result.problems == []
    assert set(result.labels) == {1, 2}
    np.testing.assert_allclose(result.labels[1].xyxy, [[0, 0, 16, 16]])
    assert len(result.labels[2]) == 0  # a labelled negative


def _one_problem(result: Any, where: str, text: str) -> None:
    assert len(result.problems) == 1, result.problems
    p = result.problems[0]
    assert (p.source, p.where) == (SRC, where) and text in p.message, p


@pytest.mark.parametrize(
    ("rect", "text"),
    [
        (_rect(0, 0, 10, 10, label="submarine"), "unknown label 'submarine'"),
        (_rect(0, 0, 10, 10, rotation=30), "rotated box (30 degrees)"),
        (_rect(0, 0, 10, 10, original_width=128), "image size 128 x 64 differs"),
        (_rect(95, 0, 10, 10), "extends beyond"),
        (_rect(10, 10, 0, 10), "degenerate"),
        (_rect(10, 10, "a", 10), "must be numbers"),
        ({**_rect(0, 0, 10, 10), "type": "choices"}, "is not 'rectanglelabels'"),
        (_rect(0, 0, 10, 10, rectanglelabels=["ship", "tank"]), "exactly one label"),
    ],
)
def test_bad_results_are_reported(chips: list[Chip], rect: dict, text: str) -> None:
    tasks = [_task(1, [_ann([rect, _rect(50, 50, 25, 25, "tank")])])]
    result = from_labelstudio(tasks, {c.id: c for c in chips}, CLASSES, SRC)
    _one_problem(result, "task 51 result 0", text)
    assert result.labels[1].cls.tolist() == [1]  # the good box still imports


def test_boxes_within_half_a_pixel_are_clipped(chips: list[Chip]) -> None:
    tasks = [_task(1, [_ann([_rect(-0.5, 50, 25, 50.5)])])]  # -0.32 px .. 64.32 px
    result = from_labelstudio(tasks, {c.id: c for c in chips}, CLASSES, SRC)
    assert result.problems == []
    np.testing.assert_allclose(result.labels[1].xyxy, [[0, 32, 15.68, 64]])


@pytest.mark.parametrize(
    ("task", "where", "text"),
    [
        ({"id": 7, "data": {"image": "x"}}, "task 7", "no integer chip_id"),
        (_task(99, [_ann([])]), "task 149", "chip_id 99 is not one of the project's chips"),
        (_task(1, [_ann([])], fingerprint="fp-old"), "task 51", "fingerprint or window differ"),
        (_task(1, [_ann([])], window=[0, 0, 32, 32]), "task 51", "fingerprint or window differ"),
        ({"id": 8}, "task 8", "without a 'data' object"),
        ("oops", "task #0", "not an object"),
    ],
)
def test_bad_tasks_are_reported(chips, task: Any, where: str, text: str) -> None:
    result = from_labelstudio([task], {c.id: c for c in chips}, CLASSES, SRC)
    _one_problem(result, where, text)
    assert result.labels == {}


def test_a_chip_in_two_tasks_is_reported_and_the_last_kept(chips: list[Chip]) -> None:
    first = _task(1, [_ann([_rect(0, 0, 25, 25)])])
    second = copy.deepcopy(first)
    second["id"] = 99
    second["annotations"] = [_ann([])]
    result = from_labelstudio([first, second], {c.id: c for c in chips}, CLASSES, SRC)
    _one_problem(result, "task 99", "chip 1 is also task 51")
    assert result.duplicates == [1] and len(result.labels[1]) == 0


def test_a_file_that_is_not_an_export_is_one_problem(chips: list[Chip]) -> None:
    result = from_labelstudio({"tasks": []}, {c.id: c for c in chips}, CLASSES, SRC)
    _one_problem(result, "file", "expected a list of tasks")
