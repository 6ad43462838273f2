"""Plain records: Boxes is a validated read-only value, chips derive their transform."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from affine import Affine

from geoal.formats import Boxes, Chip, Problem, chip_file_name
from geoal.raster.grid import window_transform
from tests.raster.scenes import fake_scene


def test_boxes_coerce_and_freeze() -> None:
    b = Boxes([[1, 2, 3, 4]], [2], [0.5])
    assert b.xyxy.dtype == np.float64 and b.cls.dtype == np.int64
    assert b.score is not None and b.score.dtype == np.float64
    assert len(b) == 1 and b.is_prediction
    with pytest.raises(ValueError):
        b.xyxy[0, 0] = 9.0
    empty = Boxes.empty()
    assert len(empty) == 0 and empty.xyxy.shape == (0, 4) and not empty.is_prediction


@pytest.mark.parametrize(
    ("xyxy", "cls", "score"),
    [
        (np.zeros((2, 6)), [0, 0], None),
        (np.zeros((2, 4)), [0], None),
        (np.zeros((2, 4)), [0, 1], [0.1]),
    ],
)
def test_boxes_refuse_mismatched_shapes(xyxy, cls, score) -> None:
    with pytest.raises(ValueError, match="shape"):
        Boxes(xyxy, cls, score)


def test_chip_file_name_is_one_safe_component() -> None:
    assert chip_file_name("tile 1/../x", 7) == "images/tile_1_.._x_7.png"
    assert chip_file_name("..", 3) == "images/scene_3.png"


def test_a_chip_derives_its_transform_footprint_and_file_name() -> None:
    scene = fake_scene(transform=(0.5, 0.0, 100.0, 0.0, -0.5, 200.0))
    chip = Chip.at(scene, 4, np.array([48, 16, 64, 64]))
    assert chip.window == (48, 16, 64, 64)
    assert chip.width == chip.height == 64
    assert chip.transform == tuple(window_transform(Affine(*scene.transform), chip.window))[:6]
    assert chip.transform[2] == 124.0 and chip.transform[5] == 192.0
    assert chip.file_name == "images/scene_4.png"
    assert chip.scene_id == scene.id and chip.crs == scene.crs
    assert dataclasses.replace(chip, image_ext="jpg").file_name == "images/scene_4.jpg"
    # the footprint is cut to the scene (200 x 150 px): 64 x 64 px at 0.5 m -> 32 x 32 m
    assert chip.footprint.bounds == (124.0, 160.0, 156.0, 192.0)
    edge = Chip.at(scene, 5, (160, 120, 64, 64))  # 40 x 30 px of it lie in the scene
    assert edge.footprint.area == 40 * 30 * 0.25
    assert edge.corners[2].tolist() == [212.0, 108.0]  # the padded chip's far corner


def test_problem_reads_as_one_line() -> None:
    assert str(Problem("a.json", "image 3", "bad")) == "a.json: image 3: bad"
