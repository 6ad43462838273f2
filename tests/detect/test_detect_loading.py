"""load_detector: yaml builds, .pt round trips, class checks, refusals, never a download."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from detect_fixtures import CLASSES

from geoal.detect import Detector, load_detector
from geoal.errors import ConfigError, ModelError
from tests.offline import assert_imports_none_of


def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every ultralytics download entry point record the call and fail."""
    from ultralytics.utils import downloads

    calls: list[str] = []
    local_lookup = downloads.attempt_download_asset

    def refuse(*args: Any, **kwargs: Any) -> Any:
        calls.append(repr(args))
        raise AssertionError(f"download attempted: {args}")

    def local_only(file: Any, *args: Any, **kwargs: Any) -> Any:
        if not Path(file).is_file():  # the lookup would go online
            refuse(file)
        return local_lookup(file, *args, **kwargs)

    monkeypatch.setattr(downloads, "safe_download", refuse)
    monkeypatch.setattr(downloads, "get_github_assets", refuse)
    monkeypatch.setattr(downloads, "attempt_download_asset", local_only)
    return calls


def test_importing_geoal_detect_imports_neither_torch_nor_ultralytics() -> None:
    assert_imports_none_of(
        "import geoal.detect, geoal.detect.views", ("torch", "ultralytics", "torchvision")
    )


def test_yaml_builds_offline_with_the_project_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _no_downloads(monkeypatch)
    detector = load_detector("yolov8n.yaml", CLASSES)
    assert isinstance(detector, Detector)
    assert detector.classes == CLASSES
    assert detector.model.names == dict(enumerate(CLASSES))
    assert detector.model.model[-1].nc == len(CLASSES)
    assert detector.strides == (8, 16, 32)
    assert (detector.device, detector.half) == ("cpu", False)
    assert not detector.model.training
    assert detector.model.is_fused()
    assert calls == []


def test_yaml_hash_identifies_architecture_classes_and_weights() -> None:
    a = load_detector("yolov8n.yaml", CLASSES)
    b = load_detector("yolov8n.yaml", CLASSES)
    assert a.model_hash == b.model_hash and len(a.model_hash) == 64
    # Same hash, same weights: the random init is seeded.
    theirs = b.model.state_dict()
    for name, weights in a.model.state_dict().items():
        assert np.array_equal(weights.numpy(), theirs[name].numpy()), name
    assert load_detector("yolov8n.yaml", CLASSES[::-1]).model_hash != a.model_hash


def test_local_yaml_file(tmp_path: Path) -> None:
    from ultralytics.utils import ROOT

    path = tmp_path / "arch.yaml"
    path.write_text((ROOT / "cfg/models/v8/yolov8.yaml").read_text())
    assert load_detector(path, CLASSES).model.model[-1].nc == len(CLASSES)


def test_pt_round_trip(checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint saved the ultralytics way (YOLO.save: fp16 weights) loads with its file hash."""
    from ultralytics import YOLO

    calls = _no_downloads(monkeypatch)
    saved = tmp_path / "saved.pt"
    YOLO(str(checkpoint)).save(saved)
    detector = load_detector(saved, CLASSES)
    assert detector.model_hash == hashlib.sha256(saved.read_bytes()).hexdigest()
    assert detector.model_path == saved
    assert detector.model.names == dict(enumerate(CLASSES))
    assert next(detector.model.parameters()).dtype.is_floating_point
    assert str(next(detector.model.parameters()).dtype) == "torch.float32"
    assert load_detector(checkpoint, CLASSES).model_hash != detector.model_hash
    assert calls == []


@pytest.mark.parametrize(
    "classes", [("car", "ship"), ("ship", "car", "plane"), ("car", "ship", "plane", "tank")]
)
def test_class_mismatch_names_file_and_both_lists(
    checkpoint: Path, classes: tuple[str, ...]
) -> None:
    with pytest.raises(ModelError) as error:
        load_detector(checkpoint, classes)
    message = str(error.value)
    assert str(checkpoint.resolve()) in message
    assert str(list(CLASSES)) in message
    assert str(list(classes)) in message


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "best.pt"
    with pytest.raises(ModelError, match="not found") as error:
        load_detector(missing, CLASSES)
    assert str(missing) in str(error.value)


@pytest.mark.parametrize("name", ["yolov8n.pt", "yolo11n.pt", "yolov5s.pt"])
def test_official_name_is_refused_not_downloaded(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _no_downloads(monkeypatch)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="never downloads"):
        load_detector(name, CLASSES)
    assert calls == []
    assert not (tmp_path / name).exists()


def test_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _no_downloads(monkeypatch)
    for url in ("https://example.com/best.pt", "ul://user/project/model"):
        with pytest.raises(ModelError, match="URL"):
            load_detector(url, CLASSES)
    assert calls == []


def test_yolov5_name_that_ultralytics_would_swap_is_refused(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ultralytics rewrites .../yolov5s.pt to yolov5su.pt and downloads that; geoal refuses."""
    calls = _no_downloads(monkeypatch)
    folder = Path("/tmp") / f"geoal-{tmp_path.name}".replace("u", "x")
    folder.mkdir(exist_ok=True)
    path = folder / "yolov5s.pt"
    path.write_bytes(checkpoint.read_bytes())
    try:
        with pytest.raises(ModelError, match="rename"):
            load_detector(path, CLASSES)
    finally:
        path.unlink()
        folder.rmdir()
    assert calls == []


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="cannot load") as error:
        load_detector(path, CLASSES)
    assert str(path) in str(error.value)


def test_not_a_detection_model(tmp_path: Path) -> None:
    import torch
    from ultralytics.nn.tasks import SegmentationModel

    path = tmp_path / "seg.pt"
    model = SegmentationModel("yolov8n-seg.yaml", nc=len(CLASSES), verbose=False)
    model.names = dict(enumerate(CLASSES))
    torch.save({"model": model, "train_args": {}}, path)
    with pytest.raises(ModelError, match="not a plain YOLO detection model"):
        load_detector(path, CLASSES)


def test_other_refusals(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"neither a \.pt"):
        load_detector(tmp_path / "model.onnx", CLASSES)
    with pytest.raises(ModelError, match="not found"):
        load_detector(tmp_path / "nothing.yaml", CLASSES)
    with pytest.raises(ModelError, match="not found"):
        load_detector("yolov99z.yaml", CLASSES)
    with pytest.raises(ModelError, match="half precision"):
        load_detector("yolov8n.yaml", CLASSES, half=True)
    with pytest.raises(ModelError, match="device"):
        load_detector("yolov8n.yaml", CLASSES, device="gpu0")
    with pytest.raises(ConfigError, match="repeated"):
        load_detector("yolov8n.yaml", ["car", "car"])
    with pytest.raises(ConfigError):
        load_detector("yolov8n.yaml", [])
    with pytest.raises(ConfigError):
        load_detector("yolov8n.yaml", "car")


def test_unavailable_cuda_device_is_refused() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ModelError, match="not available"):
        load_detector("yolov8n.yaml", CLASSES, device="cuda:0")
