"""COCO: pixel-exact round trips, pycocotools compatibility, every import problem reported."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from formats_helpers import CLASSES, assert_same_boxes, boxes_in, random_boxes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoal.errors import FormatError
from geoal.formats import (
    Boxes,
    Chip,
    from_coco,
    read_geojson,
    read_json,
    to_coco,
    write_json,
)

SRC = "labels.json"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), scored=st.booleans())
def test_round_trip_is_pixel_exact(chips: list[Chip], data: st.DataObject, scored: bool) -> None:
    boxes = {c.id: data.draw(boxes_in(c.width, c.height, scored)) for c in chips[:4]}
    coco = json.loads(json.dumps(to_coco(chips, boxes, CLASSES)))  # through JSON text
    result = from_coco(coco, {c.id: c for c in chips}, CLASSES, SRC)
    assert result.problems == [] and result.duplicates == []
    assert set(result.labels) == {c.id for c in chips}
    for c in chips:
        assert_same_boxes(result.labels[c.id], boxes.get(c.id, Boxes.empty()), 1e-6)


def test_export_layout_and_pycocotools_loads_it(chips: list[Chip], tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    rng = np.random.default_rng(0)
    boxes = {c.id: random_boxes(rng, c.width, c.height, 3, scored=True) for c in chips}
    data = to_coco(chips, boxes, CLASSES)
    assert [c["id"] for c in data["categories"]] == [1, 2, 3]
    assert [c["name"] for c in data["categories"]] == list(CLASSES)
    image = data["images"][1]
    chip = chips[1]
    assert image["id"] == chip.id and image["file_name"] == chip.file_name
    assert image["geoal"]["window"] == list(chip.window)
    assert image["geoal"]["transform"] == list(chip.transform)
    assert image["geoal"]["fingerprint"] == chip.scene.fingerprint
    ann = data["annotations"][0]
    x1, y1, x2, y2 = boxes[chips[0].id].xyxy[0]
    assert ann["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
    assert ann["category_id"] == boxes[chips[0].id].cls[0] + 1
    assert ann["iscrowd"] == 0 and ann["area"] == pytest.approx((x2 - x1) * (y2 - y1))
    assert ann["score"] == boxes[chips[0].id].score[0]

    path = write_json(tmp_path / "pred.json", data)
    coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == sorted(c.id for c in chips)
    assert len(coco.getAnnIds()) == 3 * len(chips)
    assert coco.loadCats(2)[0]["name"] == "tank"
    res = coco.loadRes(copy.deepcopy(data["annotations"]))  # as detection results too
    assert len(res.getAnnIds()) == 3 * len(chips)
    assert read_json(path) == data


def test_export_refuses_what_it_cannot_write(chips: list[Chip]) -> None:
    with pytest.raises(FormatError, match="not among the chips"):
        to_coco(chips[:1], {chips[1].id: Boxes.empty()}, CLASSES)
    with pytest.raises(FormatError, match="class index"):
        to_coco(chips, {chips[0].id: Boxes([[0, 0, 1, 1]], [3])}, CLASSES)
    with pytest.raises(FormatError, match="NaN"):
        to_coco(chips, {chips[0].id: Boxes([[0, 0, math.nan, 1]], [0])}, CLASSES)


def test_categories_map_by_name_not_by_id(chips: list[Chip]) -> None:
    boxes = {chips[0].id: Boxes([[1, 1, 5, 5], [2, 2, 9, 9]], [0, 2])}
    data = to_coco(chips[:1], boxes, CLASSES)
    # another tool renumbered and reordered the categories
    data["categories"] = [{"id": 7, "name": "plane"}, {"id": 3, "name": "ship"}]
    data["annotations"][0]["category_id"] = 3
    data["annotations"][1]["category_id"] = 7
    result = from_coco(data, {chips[0].id: chips[0]}, CLASSES, SRC)
    assert result.problems == []
    assert result.labels[chips[0].id].cls.tolist() == [0, 2]


def _base(chips: list[Chip]) -> dict[str, Any]:
    """Chips 1 and 2 exported with one box each, chip 3 with none."""
    boxes = {1: Boxes([[10, 10, 20, 30]], [1]), 2: Boxes([[0, 0, 8, 8]], [0])}
    return to_coco(chips[:3], boxes, CLASSES)


def _one_problem(result: Any, where: str, text: str) -> None:
    assert len(result.problems) == 1, result.problems
    p = result.problems[0]
    assert (p.source, p.where) == (SRC, where) and text in p.message, p


def _edit_ann(data: dict[str, Any], **fields: Any) -> dict[str, Any]:
    data["annotations"][0].update(fields)
    return data


@pytest.mark.parametrize(
    ("edit", "where", "text"),
    [
        (lambda d: _edit_ann(d, category_id=9), "annotation 1 (image 1)", "unknown category id 9"),
        (lambda d: _edit_ann(d, bbox=[10, 10, 0, 5]), "annotation 1 (image 1)", "degenerate"),
        (lambda d: _edit_ann(d, bbox=[10, 10, 5, -1]), "annotation 1 (image 1)", "degenerate"),
        (lambda d: _edit_ann(d, bbox=[10, math.nan, 5, 5]), "annotation 1 (image 1)", "NaN"),
        (lambda d: _edit_ann(d, bbox=[10, 10, math.inf, 5]), "annotation 1 (image 1)", "infinite"),
        (lambda d: _edit_ann(d, bbox=[60, 10, 5, 5]), "annotation 1 (image 1)", "beyond"),
        (lambda d: _edit_ann(d, bbox=[-0.6, 10, 5, 5]), "annotation 1 (image 1)", "beyond"),
        (lambda d: _edit_ann(d, bbox=[1, 2, 3]), "annotation 1 (image 1)", "4 numbers"),
        (lambda d: _edit_ann(d, image_id=42), "annotation 1 (image 42)", "not one of the file"),
    ],
)
def test_bad_annotations_are_reported_and_skipped(chips, edit, where, text) -> None:
    data = edit(_base(chips))
    result = from_coco(data, {c.id: c for c in chips}, CLASSES, SRC)
    _one_problem(result, where, text)
    assert set(result.labels) == {1, 2, 3}
    assert len(result.labels[2]) == 1  # the rest of the file still imports


def test_unknown_category_name_is_reported(chips: list[Chip]) -> None:
    data = _base(chips)
    data["categories"][1]["name"] = "submarine"
    result = from_coco(data, {c.id: c for c in chips}, CLASSES, SRC)
    _one_problem(result, "annotation 1 (image 1)", "unknown category 'submarine'")


def test_boxes_within_half_a_pixel_are_clipped(chips: list[Chip]) -> None:
    data = _edit_ann(_base(chips), bbox=[-0.4, 60.0, 10.0, 4.45])
    result = from_coco(data, {c.id: c for c in chips}, CLASSES, SRC)
    assert result.problems == []
    np.testing.assert_allclose(result.labels[1].xyxy, [[0.0, 60.0, 9.6, 64.0]])


@pytest.mark.parametrize(
    "name",
    [
        "../images/scene_1.png",
        "images/../images/scene_1.png",
        "/abs/scene_1.png",
        "C:\\images\\scene_1.png",
        "\\\\server\\share\\scene_1.png",
        "images\\..\\scene_1.png",
        "",
    ],
)
def test_file_names_outside_the_export_folder_are_refused(chips, name: str) -> None:
    data = _base(chips)
    data["images"][0]["file_name"] = name  # the geoal block still names chip 1
    result = from_coco(data, {c.id: c for c in chips}, CLASSES, SRC)
    _one_problem(result, "image 1", "file_name")
    assert 1 not in result.labels and set(result.labels) == {2, 3}


def test_images_match_by_file_name_without_the_geoal_block(chips: list[Chip]) -> None:
    data = _base(chips)
    for image in data["images"]:
        del image["geoal"]
        image["id"] += 100
    for ann in data["annotations"]:
        ann["image_id"] += 100
    data["images"][1]["file_name"] = "./" + data["images"][1]["file_name"]
    data["images"][2]["file_name"] = "images/not_a_chip.png"
    result = from_coco(data, {c.id: c for c in chips}, CLASSES, SRC)
    _one_problem(result, "image 103", "not one of the project's chips")
    assert set(result.labels) == {1, 2}
    np.testing.assert_allclose(result.labels[1].xyxy, [[10, 10, 20, 30]])


@pytest.mark.parametrize(
    ("field", "value"),
    [("fingerprint", "fp-other"), ("window", [1, 0, 64, 64]), ("chip_id", 99)],
)
def test_a_stale_geoal_block_is_refused(chips, field: str, value: Any) -> None:
    data = _base(chips)
    data["images"][0]["geoal"][field] = value  # file_name still names chip 1
    result = from_coco(data, {c.id: c for c in chips}, CLASSES, SRC)
    _one_problem(result, "image 1", "matches none of the project's chips")
    assert 1 not in result.labels


def test_image_size_must_match_the_chip(chips: list[Chip]) -> None:
    data = _base(chips)
    data["images"][0]["width"] = 128
    result = from_coco(data, {c.id: c for c in chips}, CLASSES, SRC)
    _one_problem(result, "image 1", "differs from chip 1")


def test_image_without_annotations_is_a_labelled_negative(chips: list[Chip]) -> None:
    result = from_coco(_base(chips), {c.id: c for c in chips}, CLASSES, SRC)
    assert result.problems == []
    assert len(result.labels[3]) == 0 and result.labels[3].score is None
    assert 4 not in result.labels  # not in the file: unlabelled


def test_a_chip_in_two_images_is_reported_and_the_last_kept(chips: list[Chip]) -> None:
    data = _base(chips)
    again = copy.deepcopy(data["images"][0])
    again["id"] = 500
    data["images"].append(again)
    data["annotations"].append(
        {"id": 77, "image_id": 500, "category_id": 3, "bbox": [1, 2, 3, 4], "iscrowd": 0}
    )
    result = from_coco(data, {c.id: c for c in chips}, CLASSES, SRC)
    _one_problem(result, "image 1", "chip 1 is also image 500")
    assert result.duplicates == [1]
    np.testing.assert_allclose(result.labels[1].xyxy, [[1, 2, 4, 6]])
    assert result.labels[1].cls.tolist() == [2]


def test_an_image_id_given_twice_is_refused(chips: list[Chip]) -> None:
    data = _base(chips)
    data["images"][1]["id"] = 1
    result = from_coco(data, {c.id: c for c in chips}, CLASSES, SRC)
    wheres = [p.where for p in result.problems]
    assert wheres == ["image 1", "image 1", "annotation 2 (image 2)"]  # image 2 is gone
    assert set(result.labels) == {3}


@pytest.mark.parametrize("data", [[], {"annotations": []}, "x"])
def test_a_file_that_is_not_coco_is_one_problem(chips, data: Any) -> None:
    result = from_coco(data, {c.id: c for c in chips}, CLASSES, SRC)
    _one_problem(result, "file", "not a COCO")
    assert result.labels == {}


@pytest.mark.parametrize(("read", "suffix"), [(read_json, "json"), (read_geojson, "geojson")])
def test_readers_name_the_unreadable_file(tmp_path: Path, read: Any, suffix: str) -> None:
    bad = tmp_path / f"bad.{suffix}"
    bad.write_text("{not json")
    with pytest.raises(FormatError, match=rf"bad\.{suffix}"):
        read(bad)
    with pytest.raises(FormatError, match=rf"missing\.{suffix}"):
        read(tmp_path / f"missing.{suffix}")


def test_write_json_refuses_nan(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="NaN"):
        write_json(tmp_path / "nan.json", {"x": math.nan})
    assert not (tmp_path / "nan.json").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind
