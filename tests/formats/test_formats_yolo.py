"""YOLO: label text round-trips pixel-exact; a written dataset trains in ultralytics offline."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from formats_helpers import CLASSES, assert_same_boxes, boxes_in, grid_chips
from hypothesis import given, settings
from hypothesis import strategies as st

from geoal.errors import FormatError
from geoal.formats import Boxes, Chip, from_yolo_labels, to_yolo_labels, write_yolo_dataset
from tests.raster.scenes import fake_scene


@settings(max_examples=150, deadline=None)
@given(data=st.data(), width=st.integers(8, 4096), height=st.integers(8, 4096))
def test_labels_round_trip_pixel_exact(data: st.DataObject, width: int, height: int) -> None:
    boxes = data.draw(boxes_in(width, height, scored=data.draw(st.booleans())))
    text = to_yolo_labels(boxes, width, height)
    assert text.count("\n") == len(boxes)
    got, problems = from_yolo_labels(text, width, height, len(CLASSES))
    assert problems == []
    assert_same_boxes(got, boxes, 1e-6)


def test_label_lines_are_normalised_and_clipped() -> None:
    boxes = Boxes([[16, 8, 48, 24], [-5, 60, 10, 70], [70, 0, 80, 4]], [2, 0, 1])
    lines = to_yolo_labels(boxes, 64, 64).splitlines()
    assert lines == ["2 0.5 0.25 0.5 0.25", "0 0.078125 0.96875 0.15625 0.0625"]  # 3rd: no area


def test_bad_label_lines_are_reported() -> None:
    text = "0 0.5 0.5 0.2 0.2\nx 1 2 3 4\n1 0.5 0.5\n7 0.5 0.5 0.1 0.1\n0 0.5 0.5 0 0.1\n"
    boxes, problems = from_yolo_labels(text, 100, 100, len(CLASSES), source="a.txt")
    assert len(boxes) == 1
    assert [(p.source, p.where) for p in problems] == [
        ("a.txt", "line 2"),
        ("a.txt", "line 3"),
        ("a.txt", "line 4"),
        ("a.txt", "line 5"),
    ]
    assert "class 7" in problems[2].message and "degenerate" in problems[3].message


def _pixels(chip: Chip) -> np.ndarray:
    rng = np.random.default_rng(chip.id)
    return rng.integers(0, 255, (chip.height, chip.width, 3), dtype=np.uint8)


def _items(chips: list[Chip]) -> list[tuple[Chip, Boxes]]:
    out = []
    for c in chips:
        k = c.id % 3  # 0, 1 or 2 objects: some chips are labelled negatives
        xyxy = [[8 + 20 * i, 10, 24 + 20 * i, 30] for i in range(k)]
        out.append(
            (c, Boxes(np.array(xyxy, dtype=float).reshape(-1, 4), [i % 3 for i in range(k)]))
        )
    return out


def test_dataset_layout(chips: list[Chip], tmp_path: Path) -> None:
    from PIL import Image

    items = _items(chips)
    data_yaml = write_yolo_dataset(tmp_path / "ds", items, CLASSES, _pixels, val_ids={2, 5})
    data = yaml.safe_load(data_yaml.read_text())
    assert data == {
        "path": str((tmp_path / "ds").resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": {0: "ship", 1: "tank", 2: "plane"},
    }
    root = tmp_path / "ds"
    assert sorted(p.name for p in (root / "images/val").iterdir()) == ["scene_2.png", "scene_5.png"]
    assert len(list((root / "images/train").iterdir())) == 4
    for chip, boxes in items:
        split = "val" if chip.id in (2, 5) else "train"
        label = (root / "labels" / split / f"scene_{chip.id}.txt").read_text()
        assert label == to_yolo_labels(boxes, 64, 64)
        if len(boxes) == 0:
            assert label == ""  # a negative has an (empty) label file
        img = np.asarray(Image.open(root / "images" / split / f"scene_{chip.id}.png"))
        np.testing.assert_array_equal(img, _pixels(chip))
    assert not list(root.rglob("*.tmp"))
    # without val chips, ultralytics validates on the train images
    data_yaml = write_yolo_dataset(tmp_path / "ds2", items[:2], CLASSES, _pixels)
    assert yaml.safe_load(data_yaml.read_text())["val"] == "images/train"


def test_dataset_refuses_bad_images(chips: list[Chip], tmp_path) -> None:
    items = _items(chips)
    with pytest.raises(FormatError, match=r"chip 1: image must be \(64, 64, 3\) uint8"):
        write_yolo_dataset(tmp_path, items, CLASSES, lambda c: _pixels(c)[:, :, 0])
    with pytest.raises(FormatError, match="uint8"):
        write_yolo_dataset(tmp_path, items, CLASSES, lambda c: _pixels(c).astype(np.float32))


def _install_font() -> None:
    """Put matplotlib's DejaVu Sans where ultralytics looks for Arial.ttf.

    Every ultralytics dataset check calls ``check_font``, which asks github.com for the
    font unless it finds it in the settings folder, whatever ``plots`` and YOLO_OFFLINE say.
    """
    import matplotlib
    from ultralytics.utils import USER_CONFIG_DIR

    target = Path(USER_CONFIG_DIR) / "Arial.ttf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf", target)


@pytest.mark.slow
def test_ultralytics_trains_one_epoch_offline(tmp_path: Path, monkeypatch) -> None:
    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args)[:120])
        raise OSError("network access attempted")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    settings_dir = Path(os.environ["YOLO_CONFIG_DIR"])
    _install_font()
    before = {p for p in settings_dir.rglob("*") if p.is_file()}

    chips = grid_chips(fake_scene(width=128, height=128), 64, 0.0)  # 4 chips
    items = _items(chips)
    data_yaml = write_yolo_dataset(tmp_path / "ds", items, CLASSES, _pixels, val_ids={3})

    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")
    model.train(
        data=str(data_yaml),
        epochs=1,
        imgsz=64,
        batch=2,
        workers=0,
        device="cpu",
        plots=False,
        val=True,
        project=str(tmp_path / "runs"),
        name="t",
        exist_ok=True,
        amp=False,
        verbose=False,
    )
    assert (tmp_path / "runs" / "t" / "weights" / "last.pt").is_file()
    assert attempts == []
    new = {p for p in settings_dir.rglob("*") if p.is_file()} - before
    assert not [p for p in new if p.suffix in (".ttf", ".pt")]  # no font, no weights fetched
    assert not list(Path.cwd().glob("*.pt"))
