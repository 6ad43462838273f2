"""The exported CPU backends (OpenVINO, ONNX Runtime): agreement with torch, cache, fallback."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from detect_fixtures import CLASSES, make_chips

from geoal.detect import backends, export
from geoal.detect.backends import resolve_backend
from geoal.errors import ConfigError, ModelError
from geoal.hashing import sha256_file

EXPORTED = ("openvino", "onnxruntime")


@pytest.fixture(scope="module")
def agreement_chips() -> np.ndarray:
    """24 chips: enough for a rank correlation of chip scores to mean something."""
    return make_chips(24, seed=7)


@pytest.fixture(scope="module")
def torch_results(checkpoint: Path, agreement_chips: np.ndarray) -> list[Any]:
    from geoal.detect import load_detector

    detector = load_detector(checkpoint, CLASSES, backend="torch")
    return _predict(detector, agreement_chips)


def _predict(detector: Any, chips: np.ndarray) -> list[Any]:
    out: list[Any] = []
    for start in range(0, len(chips), 8):
        out.extend(detector.predict_batch(chips[start : start + 8], views=2, conf=0.05))
    return out


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) xyxy box with (N, 4) boxes."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _unmatched(a: Any, b: Any) -> int:
    """Detections of ``a`` without a same-class one in ``b`` at IoU >= 0.99, score within 1e-3."""
    missing = 0
    for box, cls, conf in zip(a.boxes, a.cls, a.conf, strict=True):
        ok = (b.cls == cls) & (np.abs(b.conf - conf) <= 1e-3)
        if not ok.any() or _iou(box, b.boxes[ok]).max() < 0.99:
            missing += 1
    return missing


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPORTED)
def test_exported_backend_agrees_with_torch(
    name: str,
    checkpoint: Path,
    agreement_chips: np.ndarray,
    torch_results: list[Any],
) -> None:
    from scipy.stats import spearmanr

    from geoal.detect import load_detector
    from geoal.detect.stream import chip_scores

    detector = load_detector(checkpoint, CLASSES, backend=name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to torch
        results = _predict(detector, agreement_chips)
    assert detector.backend == name
    assert {r.backend for r in results} == {name}
    n_dets = sum(len(r) for r in torch_results)
    assert n_dets > 100  # a model whose detections depend on the image, not an empty test
    for ref, got in zip(torch_results, results, strict=True):
        assert _unmatched(ref, got) == 0
        assert _unmatched(got, ref) == 0
        assert float(ref.embedding @ got.embedding) >= 0.999
        np.testing.assert_allclose(got.anchor_probs, ref.anchor_probs, atol=1e-3)
        for rb, gb in zip(ref.view_boxes, got.view_boxes, strict=True):
            assert len(rb) == len(gb)
    ref_scores = [chip_scores(r, 3).scores for r in torch_results]
    got_scores = [chip_scores(r, 3).scores for r in results]
    for key in ref_scores[0]:
        rho = spearmanr([s[key] for s in ref_scores], [s[key] for s in got_scores]).statistic
        assert rho >= 0.999, (key, rho)


def test_auto_picks_the_fastest_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    assert resolve_backend(None, "cuda:0") == "torch"
    assert resolve_backend("auto", "cpu") == "openvino"  # installed by scripts/setup.sh
    monkeypatch.setattr(backends.Backend, "installed", lambda self: self.name != "openvino")
    assert resolve_backend(None, "cpu") == "onnxruntime"
    monkeypatch.setattr(backends.Backend, "installed", lambda self: self.package is None)
    assert resolve_backend(None, "cpu") == "torch"
    with pytest.raises(ModelError, match="pip install openvino"):
        resolve_backend("openvino", "cpu")


def test_backend_choice_errors_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backends.ENV_VAR, "onnxruntime")
    assert resolve_backend(None, "cpu") == "onnxruntime"
    assert resolve_backend("torch", "cpu") == "torch"  # an explicit choice wins
    with pytest.raises(ConfigError, match="runs on the CPU"):
        resolve_backend("openvino", "cuda:0")
    with pytest.raises(ConfigError, match="auto or one of torch, openvino, onnxruntime"):
        resolve_backend("tensorrt", "cpu")


def test_export_is_cached_beside_the_model_and_rebuilt_when_stale(
    tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geoal.detect import load_detector

    model = tmp_path / "model.pt"
    model.write_bytes(checkpoint.read_bytes())
    calls: list[int] = []
    real_export = export.export_onnx

    def counting(net: Any, path: Path, chip: int, size: int) -> None:
        calls.append(size)
        real_export(net, path, chip, size)

    monkeypatch.setattr(export, "export_onnx", counting)
    chips = make_chips(2)
    first = load_detector(model, CLASSES, backend="onnxruntime").predict_batch(chips)
    folder = tmp_path / export.EXPORT_DIR
    files = sorted(folder.glob("*.onnx"))
    assert calls == [128] and len(files) == 1 and first[0].backend == "onnxruntime"
    assert files[0].name.startswith("model-") and "-128px-" in files[0].name
    # another detector (another process) reuses the file, whatever the runtime
    load_detector(model, CLASSES, backend="openvino").predict_batch(chips)
    assert calls == [128]
    # a new exporter version changes the key: rebuilt; the stale file goes, and so do the
    # exports of an earlier content of the same model file (another hash in the name)
    earlier = folder / "model-0123456789ab-128px-0000000000000000.onnx"
    earlier.write_bytes(b"old")
    other_size = folder / "model-0123456789ab-96px-0000000000000000.onnx"
    other_size.write_bytes(b"old")
    monkeypatch.setattr(export, "EXPORT_FORMAT", export.EXPORT_FORMAT + 1)
    load_detector(model, CLASSES, backend="onnxruntime").predict_batch(chips)
    assert calls == [128, 128]
    now = sorted(folder.glob("*-128px-*.onnx"))
    assert len(now) == 1 and now != files
    assert other_size.exists()  # another input size is another graph, still valid


def test_export_key_covers_what_changes_the_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    key = export.export_key("a" * 64, 640, 640)
    assert export.export_key("a" * 64, 640, 640) == key
    assert export.export_key("b" * 64, 640, 640) != key
    assert export.export_key("a" * 64, 640, 512) != key
    assert export.export_key("a" * 64, 512, 640) != key  # chips resized in the graph
    real = export.package_version
    monkeypatch.setattr(
        export, "package_version", lambda name: "0.0.1" if name == "torch" else real(name)
    )
    assert export.export_key("a" * 64, 640, 640) != key


def test_failed_export_falls_back_to_torch_with_one_warning(
    tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geoal.detect import load_detector

    model = tmp_path / "model.pt"
    model.write_bytes(checkpoint.read_bytes())

    def broken(net: Any, path: Path, chip: int, size: int) -> None:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(export, "export_onnx", broken)
    detector = load_detector(model, CLASSES, backend="openvino")
    chips = make_chips(2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = detector.predict_batch(chips, views=2)
        detector.predict_batch(chips, views=2)
    messages = [str(w.message) for w in caught if "backend" in str(w.message)]
    assert len(messages) == 1
    assert "openvino failed" in messages[0] and "exporter exploded" in messages[0]
    assert "running the model with torch" in messages[0]
    assert detector.backend == "torch" and got[0].backend == "torch"
    ref = load_detector(model, CLASSES, backend="torch").predict_batch(chips, views=2)
    np.testing.assert_array_equal(got[0].anchor_probs, ref[0].anchor_probs)
    assert not list((tmp_path / export.EXPORT_DIR).glob("*.onnx"))  # nothing half written
    assert not list((tmp_path / export.EXPORT_DIR).glob("*.tmp"))


def test_shipped_yaml_exports_to_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geoal.detect import load_detector

    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path / "cache"))
    detector = load_detector("yolov8n.yaml", CLASSES, backend="onnxruntime")
    detector.predict_batch(make_chips(1, size=64), details=False)
    files = list((tmp_path / "cache" / "exports").glob("yolov8n-*-64px-*.onnx"))
    assert len(files) == 1 and detector.backend == "onnxruntime"
    assert os.stat(files[0]).st_mode & 0o044  # readable by the other users of a cluster


def test_openvino_gets_the_threads_and_streams_asked_for(checkpoint: Path) -> None:
    from geoal.detect import load_detector

    detector = load_detector(checkpoint, CLASSES, backend="openvino")  # export shared above
    detector.threads, detector.cpu_streams = 1, 2
    detector.predict_batch(make_chips(2))
    compiled = detector._runners[(128, 128)].compiled
    assert int(compiled.get_property("NUM_STREAMS")) == 2
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 2
    assert "float32" in str(compiled.get_property("INFERENCE_PRECISION_HINT"))


@pytest.mark.parametrize("name", EXPORTED)
def test_the_first_call_is_made_by_the_thread_that_compiles(
    name: str, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stream threads making the runtime's first call at once hung OpenVINO's bindings
    (pybind11's one-time numpy set-up; 1 run in 5 of a two-thread script): the runner
    makes its first call while it is built, before any stream thread exists."""
    import threading

    from geoal.detect import load_detector

    load_detector(checkpoint, CLASSES, backend=name).predict_batch(make_chips(1))  # the export
    onnx = next(iter((checkpoint.parent / export.EXPORT_DIR).glob("*-128px-*.onnx")))
    runner_class = backends.get_backend(name).open
    calls: list[tuple[str, tuple[int, ...]]] = []
    real_call = runner_class.__call__  # type: ignore[operator]

    def recording(self: Any, x: np.ndarray) -> Any:
        calls.append((threading.current_thread().name, x.shape))
        return real_call(self, x)

    monkeypatch.setattr(runner_class, "__call__", recording)
    backends.open_runner(name, onnx, 1, 2, onnx.parent / "cache")
    assert calls == [(threading.current_thread().name, (1, 128, 128, 3))]


_FRESH_PROCESS = """
import json, sys
import numpy as np
sys.path.insert(0, {fixtures!r})
from detect_fixtures import CLASSES, make_chips
from geoal.detect import load_detector
from geoal.detect.loading import checkpoint_input
model = {model!r}
found = checkpoint_input(model)
detector = load_detector(model, CLASSES, backend={backend!r})
results = detector.predict_batch(make_chips(3, size={size}), views=2, conf=0.05)
np.savez({out!r}, *[r.anchor_probs for r in results], *[r.boxes for r in results])
print(json.dumps({{
    "torch": "torch" in sys.modules, "ultralytics": "ultralytics" in sys.modules,
    "backend": detector.backend, "input": None if found is None else found.imgsz,
}}))
"""


def _fresh(model: Path, backend: str, size: int, out: Path) -> dict[str, Any]:
    """Load and predict in a fresh Python process; what it imported and ran."""
    import json
    import subprocess
    import sys

    code = _FRESH_PROCESS.format(
        fixtures=str(Path(__file__).parent),
        model=str(model),
        backend=backend,
        size=size,
        out=str(out),
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("name", EXPORTED)
def test_with_its_export_on_disk_a_model_runs_without_torch(
    name: str, tmp_path: Path, checkpoint: Path
) -> None:
    """The first process exports the model and writes its card; the next imports neither
    torch nor ultralytics (3-4 s of start-up) and returns the same arrays. A chip size
    without an export loads the model then, and still runs the exported backend."""
    from geoal.detect import load_detector

    model = tmp_path / "model.pt"
    model.write_bytes(checkpoint.read_bytes())
    first = _fresh(model, name, 128, tmp_path / "first.npz")
    assert first == {"torch": True, "ultralytics": True, "backend": name, "input": first["input"]}
    cards = list((tmp_path / export.EXPORT_DIR).glob("model-*.json"))
    assert len(cards) == 1
    second = _fresh(model, name, 128, tmp_path / "second.npz")
    assert second == {
        "torch": False,
        "ultralytics": False,
        "backend": name,
        "input": first["input"],
    }
    a, b = np.load(tmp_path / "first.npz"), np.load(tmp_path / "second.npz")
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    # the torch backend on the same chips agrees (the card's classes and strides are right)
    ref = load_detector(model, CLASSES, backend="torch").predict_batch(
        make_chips(3, size=128), views=2, conf=0.05
    )
    for got, want in zip(range(3), ref, strict=True):
        np.testing.assert_allclose(a[f"arr_{got}"], want.anchor_probs, atol=1e-4)
    other = _fresh(model, name, 96, tmp_path / "other.npz")  # no export for 96 px chips yet
    assert other["torch"] and other["backend"] == name
    assert len(list((tmp_path / export.EXPORT_DIR).glob("*-96px-*.onnx"))) == 1


def test_a_card_refuses_other_classes_and_follows_the_file(
    tmp_path: Path, checkpoint: Path
) -> None:
    from geoal.detect import load_detector
    from geoal.detect.loading import ModelInput, checkpoint_input, record_input

    model = tmp_path / "model.pt"
    record_input(checkpoint, model, ModelInput(128, 256))  # as geoal train records it
    load_detector(model, CLASSES, backend="onnxruntime")  # loads with torch, writes the card
    with pytest.raises(ModelError, match=r"detects classes \['car', 'ship', 'plane'\]"):
        load_detector(model, ("car", "boat", "plane"), backend="onnxruntime")
    card = export.read_card(model, sha256_file(model))
    assert card is not None and card.classes == CLASSES and card.strides == (8, 16, 32)
    assert (card.imgsz, card.chip_size) == (128, 256)
    assert checkpoint_input(model) == ModelInput(128, 256)  # read from the card
    # new content in the same file: another hash, no card; loading writes the new one
    other = tmp_path / "other.pt"
    from detect_fixtures import make_checkpoint

    make_checkpoint(other, CLASSES, seed=1)
    model.write_bytes(other.read_bytes())
    assert export.read_card(model, sha256_file(model)) is None
    load_detector(model, CLASSES, backend="onnxruntime")
    assert len(list((tmp_path / export.EXPORT_DIR).glob("model-*.json"))) == 1
    assert export.read_card(model, sha256_file(model)) is not None


@pytest.mark.parametrize("name", EXPORTED)
def test_chips_resized_inside_the_exported_graph_agree_with_torch(
    name: str, checkpoint: Path
) -> None:
    """128 px chips run at 96 px: the bilinear resize is part of the exported graph."""
    from geoal.detect import load_detector

    chips = make_chips(4, seed=3)
    ref = load_detector(checkpoint, CLASSES, backend="torch", imgsz=96).predict_batch(
        chips, views=2, conf=0.05
    )
    detector = load_detector(checkpoint, CLASSES, backend=name, imgsz=96)
    got = detector.predict_batch(chips, views=2, conf=0.05)
    assert detector.backend == name
    assert list((checkpoint.parent / export.EXPORT_DIR).glob("*-128to96px-*.onnx"))
    for a, b in zip(got, ref, strict=True):
        assert a.anchor_probs.shape == b.anchor_probs.shape == (2, 12 * 12 + 6 * 6 + 3 * 3, 3)
        np.testing.assert_allclose(a.anchor_probs, b.anchor_probs, atol=1e-3)
        assert len(b) > 0 and _unmatched(a, b) == 0 and _unmatched(b, a) == 0
