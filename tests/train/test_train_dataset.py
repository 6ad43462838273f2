"""split_train_val (pure, seeded) and materialise_yolo_dataset (a YOLO folder on disk)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from geoal.errors import ConfigError
from geoal.train import materialise_yolo_dataset, split_train_val, yolo_label_lines


def _split(ids, groups=None, fraction=0.25, seed=0):
    return split_train_val(ids, groups, fraction, np.random.default_rng(seed))


def test_split_holds_out_whole_groups() -> None:
    ids = list(range(100, 120))
    groups = [i // 4 for i in range(20)]  # 5 scenes of 4 items
    train, val = _split(ids, groups, 0.25)
    val_groups = {groups[ids.index(i)] for i in val}
    train_groups = {groups[ids.index(i)] for i in train}
    assert val_groups and train_groups and not val_groups & train_groups
    assert len(val) == 4  # one scene of four: closest to 0.25 * 20
    assert sorted(train + val) == ids


def test_split_by_group_never_takes_every_group() -> None:
    train, val = _split([1, 2, 3], [7, 7, 8], fraction=0.9)
    assert train and val
    assert {1, 2} <= set(train) or {1, 2} <= set(val)


def test_split_falls_back_to_items_with_one_group() -> None:
    ids = list(range(10))
    train, val = _split(ids, [0] * 10, 0.3)
    assert len(val) == 3 and sorted(train + val) == ids
    assert _split(ids, None, 0.3) == (train, val)


@pytest.mark.parametrize("fraction", [0.01, 0.99])
def test_split_keeps_both_sides_when_possible(fraction: float) -> None:
    train, val = _split([5, 6], None, fraction)
    assert len(train) == len(val) == 1


def test_split_of_zero_or_one_item() -> None:
    assert _split([], None) == ([], [])
    assert _split([4], [1]) == ([4], [])


def test_split_is_seeded() -> None:
    ids, groups = list(range(40)), [i % 8 for i in range(40)]
    assert _split(ids, groups, seed=3) == _split(ids, groups, seed=3)
    draws = {tuple(_split(ids, groups, seed=s)[1]) for s in range(10)}
    assert len(draws) > 1


def test_split_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="val_fraction"):
        _split([1, 2], None, 1.0)
    with pytest.raises(ValueError, match="groups"):
        _split([1, 2], [1], 0.5)
    with pytest.raises(ValueError, match="unique"):
        _split([1, 1], None, 0.5)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 30),
    n_groups=st.integers(1, 6),
    fraction=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**32 - 1),
    use_groups=st.booleans(),
)
def test_split_properties(n: int, n_groups: int, fraction: float, seed: int, use_groups: bool):
    ids = list(range(1000, 1000 + n))
    groups = [(i * 7) % n_groups for i in range(n)] if use_groups else None
    train, val = _split(ids, groups, fraction, seed)
    assert not set(train) & set(val)
    assert sorted(train + val) == ids  # covering, and each side keeps the input order
    assert train == sorted(train) and val == sorted(val)
    if n >= 2:
        assert train and val
    if groups is not None and len(set(groups)) >= 2:
        held = {groups[ids.index(i)] for i in val}
        assert not held & {groups[ids.index(i)] for i in train}
    assert (train, val) == _split(ids, groups, fraction, seed)


def _image(h: int, w: int, value: int = 50) -> np.ndarray:
    image = np.full((h, w, 3), value, dtype=np.uint8)
    image[..., 0] = 200  # not grey, so a channel swap would show
    return image


def test_materialise_writes_images_labels_and_yaml(tmp_path: Path) -> None:
    items = [
        ("a", _image(40, 80), np.array([[10, 4, 30, 24], [70, 30, 90, 50]]), np.array([1, 0])),
        ("b", _image(30, 30), np.zeros((0, 4)), np.zeros(0, dtype=int)),
    ]
    data_yaml = materialise_yolo_dataset(tmp_path / "ds", items, {"b"}, ["ship", "tank"])
    data = yaml.safe_load(data_yaml.read_text())
    assert data == {
        "path": str((tmp_path / "ds").resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": {0: "ship", 1: "tank"},
    }
    root = tmp_path / "ds"
    saved = np.asarray(Image.open(root / "images" / "train" / "a.png"))
    assert saved.shape == (40, 80, 3) and np.array_equal(saved, items[0][1])
    lines = (root / "labels" / "train" / "a.txt").read_text().splitlines()
    # box 2 is clipped to x 70..80, y 30..40
    assert lines == [
        "1 0.250000 0.350000 0.250000 0.500000",
        "0 0.937500 0.875000 0.125000 0.250000",
    ]
    assert (root / "labels" / "val" / "b.txt").read_text() == ""
    assert (root / "images" / "val" / "b.png").is_file()


def test_materialise_replaces_an_earlier_dataset(tmp_path: Path) -> None:
    one = ("x", _image(8, 8), np.array([[0, 0, 4, 4]]), np.array([0]))
    two = ("y", _image(8, 8), np.array([[0, 0, 4, 4]]), np.array([0]))
    materialise_yolo_dataset(tmp_path, [one, two], {"y"}, ["c"])
    materialise_yolo_dataset(tmp_path, [two], set(), ["c"])
    assert sorted(p.name for p in (tmp_path / "images").rglob("*.png")) == ["y.png"]
    assert sorted(p.name for p in (tmp_path / "labels").rglob("*.txt")) == ["y.txt"]


def test_materialise_rejects_bad_items(tmp_path: Path) -> None:
    good = ("a", _image(8, 8), np.zeros((0, 4)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="unique"):
        materialise_yolo_dataset(tmp_path, [good, good], set(), ["c"])
    with pytest.raises(ValueError, match="val_stems"):
        materialise_yolo_dataset(tmp_path, [good], {"zz"}, ["c"])
    with pytest.raises(ValueError, match="file names"):
        materialise_yolo_dataset(tmp_path, [("../a", *good[1:])], set(), ["c"])
    with pytest.raises(ValueError, match="uint8"):
        materialise_yolo_dataset(tmp_path, [("a", good[1].astype(float), *good[2:])], set(), ["c"])
    with pytest.raises(ValueError, match="class ids"):
        bad_cls = ("a", good[1], np.array([[0, 0, 2, 2]]), np.array([3]))
        materialise_yolo_dataset(tmp_path, [bad_cls], set(), ["c"])
    with pytest.raises(ConfigError):
        materialise_yolo_dataset(tmp_path, [good], set(), ["c", "c"])


def test_label_lines_drop_boxes_outside_the_image() -> None:
    boxes = np.array([[-10, -10, -1, -1], [5, 5, 5, 9], [0, 0, 10, 20]])
    assert yolo_label_lines(boxes, np.array([0, 0, 1]), 10, 20, 2) == [
        "1 0.500000 0.500000 1.000000 1.000000"
    ]
