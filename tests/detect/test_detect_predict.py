"""Detector.predict_batch: agreement with YOLO.predict, raw head rows, NMS indices, embeddings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from detect_fixtures import CHIP, CLASSES

from geoal.detect import ChipResult, load_detector
from geoal.errors import ConfigError

N_ANCHORS = (CHIP // 8) ** 2 + (CHIP // 16) ** 2 + (CHIP // 32) ** 2  # 336
CONF = 0.5


@contextmanager
def network_batches(detector: Any) -> Iterator[list[int]]:
    """The number of images of each network call made inside the block."""
    batches: list[int] = []
    hook = detector.model.register_forward_hook(
        lambda module, args, out: batches.append(args[0].shape[0])
    )
    try:
        yield batches
    finally:
        hook.remove()


def _raw(detector: Any, chips: np.ndarray) -> tuple[Any, list[Any]]:
    """The model's raw head output (B, 4 + C, A) and the head's input maps, computed here."""
    import torch

    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float().div(255).contiguous()
    captured: list[Any] = []
    head = detector.model.model[-1]
    hook = head.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        with torch.inference_mode():
            raw = detector.model(x)[0]
    finally:
        hook.remove()
    return raw, captured[0]


def _match(
    ours: ChipResult, boxes: np.ndarray, conf: np.ndarray, cls: np.ndarray, top: int
) -> None:
    """Each of our ``top`` best detections has a twin in (boxes, conf, cls)."""
    assert len(ours) > 0
    for i in range(min(top, len(ours))):
        same = (
            (cls == ours.cls[i])
            & (np.abs(conf - ours.conf[i]) < 1e-4)
            & (np.abs(boxes - ours.boxes[i]).max(axis=1) < 1e-2)
        )
        assert same.any(), f"detection {i} {ours.boxes[i]} {ours.conf[i]} {ours.cls[i]} unmatched"


def test_detections_match_yolo_predict(detector: Any, checkpoint: Path, chips: np.ndarray) -> None:
    """geoal chips are RGB; YOLO.predict reads numpy arrays as BGR, so it gets chip[..., ::-1]."""
    from ultralytics import YOLO

    results = detector.predict_batch(chips, conf=CONF, iou=0.7, max_det=300)
    yolo = YOLO(str(checkpoint))
    bgr = yolo.predict(
        [c[..., ::-1] for c in chips], imgsz=CHIP, conf=CONF, iou=0.7, max_det=300, verbose=False
    )
    for ours, theirs in zip(results, bgr, strict=True):
        b = theirs.boxes
        boxes, conf, cls = b.xyxy.numpy(), b.conf.numpy(), b.cls.numpy().astype(np.int64)
        assert abs(len(ours) - len(conf)) <= max(2, len(conf) // 50)
        _match(ours, boxes, conf, cls, top=25)
    # The channel order matters: the same pixels given as RGB give other detections.
    rgb = yolo.predict(list(chips), imgsz=CHIP, conf=CONF, verbose=False)
    with pytest.raises(AssertionError, match="unmatched"):
        b = rgb[0].boxes
        _match(results[0], b.xyxy.numpy(), b.conf.numpy(), b.cls.numpy().astype(np.int64), 25)


def test_probs_are_the_raw_head_rows_of_the_kept_anchors(detector: Any, chips: np.ndarray) -> None:
    import torch
    from torchvision.ops import batched_nms
    from ultralytics.utils.ops import xywh2xyxy

    results = detector.predict_batch(chips, conf=CONF)
    raw, _ = _raw(detector, chips)
    for b, r in enumerate(results):
        assert len(r) > 0
        assert np.array_equal(r.probs[np.arange(len(r)), r.cls], r.conf)
        assert np.array_equal(r.probs.argmax(axis=1), r.cls)
        assert np.array_equal(r.probs, r.anchor_probs[0][r.anchor_idx])
        rows = raw[b, 4:, torch.tensor(r.anchor_idx)].T.numpy()
        np.testing.assert_allclose(r.probs, rows, atol=1e-6)
        boxes = xywh2xyxy(raw[b, :4, torch.tensor(r.anchor_idx)].T).clamp(0, CHIP).numpy()
        np.testing.assert_allclose(r.boxes, boxes, atol=1e-3)
        assert (r.conf > CONF).all() and (np.diff(r.conf) <= 0).all()
        # NMS, independently: class-wise torchvision NMS over the same candidates.
        best, label = raw[b, 4:].max(0)
        cand = torch.nonzero(best > CONF).squeeze(1)
        xyxy = xywh2xyxy(raw[b, :4, cand].T)
        keep = cand[batched_nms(xyxy, best[cand], label[cand], 0.7)][:300]
        assert set(keep.tolist()) == set(r.anchor_idx.tolist())


def test_result_fields(detector: Any, chips: np.ndarray) -> None:
    results = detector.predict_batch(chips, views=3, conf=CONF)
    assert len(results) == len(chips)
    for r in results:
        n, c = len(r), len(CLASSES)
        assert r.boxes.shape == (n, 4) and r.boxes.dtype == np.float32
        assert r.conf.shape == (n,) and r.conf.dtype == np.float32
        assert r.cls.shape == (n,) and r.cls.dtype == np.int64
        assert r.probs.shape == (n, c) and r.probs.dtype == np.float32
        assert r.anchor_idx.shape == (n,) and r.anchor_idx.dtype == np.int64
        assert r.anchor_probs.shape == (3, N_ANCHORS, c) and r.anchor_probs.dtype == np.float32
        assert r.anchor_probs.flags.c_contiguous
        assert ((r.anchor_probs >= 0) & (r.anchor_probs <= 1)).all()
        assert r.views == ("identity", "hflip", "vflip")
        assert len(r.view_boxes) == len(r.view_conf) == len(r.view_cls) == 2
        for boxes, conf, cls in zip(r.view_boxes, r.view_conf, r.view_cls, strict=True):
            assert boxes.shape == (len(conf), 4) and boxes.dtype == np.float32
            assert cls.shape == conf.shape and cls.dtype == np.int64
            assert ((boxes >= 0) & (boxes <= CHIP)).all()
        assert ((r.boxes >= 0) & (r.boxes <= CHIP)).all()
        assert r.embedding.shape == (64 + 128 + 256,) and r.embedding.dtype == np.float32
        assert np.linalg.norm(r.embedding) == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(ValueError, match="read-only"):
            r.anchor_probs[0, 0, 0] = 1.0


def test_embedding_pools_the_head_inputs_of_view_zero(detector: Any, chips: np.ndarray) -> None:
    results = detector.predict_batch(chips, views=2)
    _, feats = _raw(detector, chips)
    pooled = np.concatenate([f.float().mean(dim=(2, 3)).numpy() for f in feats], axis=1)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(np.stack([r.embedding for r in results]), pooled, atol=1e-5)
    assert not np.allclose(results[0].embedding, results[1].embedding, atol=1e-3)


def test_views_are_one_stacked_batch(
    detector: Any, chips: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B * V images through the network: in one call (CUDA), or V calls of B (CPU default)."""
    b = len(chips)
    monkeypatch.setattr(detector, "cpu_streams", 1)  # one model call at a time
    with network_batches(detector) as batches:
        assert detector.split_views  # the CPU default
        one = detector.predict_batch(chips, views=1, conf=CONF)
        four = detector.predict_batch(chips, views=4, conf=CONF)
        assert batches == [b, b, b, b, b]
        batches.clear()
        monkeypatch.setattr(detector, "split_views", False)
        joint = detector.predict_batch(chips, views=4, conf=CONF)
        assert batches == [4 * b]
    for x, y, z in zip(one, four, joint, strict=True):
        # View 0 does not depend on how many other views ride along, nor on the split.
        np.testing.assert_allclose(x.anchor_probs[0], y.anchor_probs[0], atol=1e-5)
        np.testing.assert_allclose(x.embedding, y.embedding, atol=1e-5)
        np.testing.assert_allclose(y.anchor_probs, z.anchor_probs, atol=1e-5)
        np.testing.assert_allclose(y.embedding, z.embedding, atol=1e-5)


def test_light_path_gives_the_same_detections(detector: Any, chips: np.ndarray) -> None:
    """details=False (whole-scene prediction) skips the anchor arrays and the embedding only."""
    for views in (1, 2):
        full = detector.predict_batch(chips, views=views, conf=CONF)
        light = detector.predict_batch(chips, views=views, conf=CONF, details=False)
        for f, g in zip(full, light, strict=True):
            assert len(f) > 0
            for name in ("boxes", "conf", "cls", "probs", "anchor_idx"):
                assert np.array_equal(getattr(f, name), getattr(g, name)), name
            for a, b in zip(f.view_boxes + f.view_conf, g.view_boxes + g.view_conf, strict=True):
                assert np.array_equal(a, b)
            assert g.anchor_probs.shape == (views, 0, len(CLASSES))
            assert g.embedding.shape == (0,)
            assert g.probs.dtype == np.float32
    stream = detector.iter_predict([("k", chips)], conf=CONF, details=False)
    [(key, results)] = list(stream)
    assert key == "k" and results[0].anchor_probs.shape[1] == 0


def test_cpu_forward_in_chunks(
    detector: Any, chips: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the CPU a batch goes through the network in calls of at most cpu_chunk images."""
    five = np.concatenate([chips, chips[::-1], chips[:1]])  # 5 chips
    monkeypatch.setattr(detector, "cpu_streams", 1)  # one model call at a time
    with network_batches(detector) as batches:
        whole = detector.predict_batch(five, views=2, conf=CONF)
    assert detector.cpu_chunk == 4 and batches == [4, 4, 2]  # 2 views of 5 chips
    monkeypatch.setattr(detector, "cpu_chunk", 1)
    single = detector.predict_batch(five, views=2, conf=CONF)
    for x, y in zip(whole, single, strict=True):
        np.testing.assert_allclose(x.anchor_probs, y.anchor_probs, atol=1e-5)
        np.testing.assert_allclose(x.embedding, y.embedding, atol=1e-5)
        np.testing.assert_allclose(x.boxes, y.boxes, atol=1e-3)


def test_cpu_streams_run_chunks_at_once(
    detector: Any, chips: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 2 streams the calls run at once in 2 threads; a batch of 4 is cut in 2 calls."""
    import threading

    calls: list[tuple[int, str]] = []
    hook = detector.model.register_forward_hook(
        lambda module, args, out: calls.append((args[0].shape[0], threading.current_thread().name))
    )
    four = np.concatenate([chips, chips[::-1]])
    try:
        monkeypatch.setattr(detector, "cpu_streams", 1)
        one = detector.predict_batch(four, views=2, conf=CONF)
        assert [n for n, _ in calls] == [4, 4]
        calls.clear()
        monkeypatch.setattr(detector, "cpu_streams", 2)
        two = detector.predict_batch(four, views=2, conf=CONF)
        assert [n for n, _ in calls] == [4, 4]  # a call per view, both at once
        assert all(name.startswith("geoal-forward") for _, name in calls)
        calls.clear()
        light = detector.predict_batch(four, views=1, conf=CONF, details=False)
        assert [n for n, _ in calls] == [2, 2]
    finally:
        hook.remove()
    for x, y, z in zip(one, two, light, strict=True):
        np.testing.assert_allclose(x.anchor_probs, y.anchor_probs, atol=1e-5)
        np.testing.assert_allclose(x.embedding, y.embedding, atol=1e-5)
        np.testing.assert_allclose(x.boxes, y.boxes, atol=1e-3)
        np.testing.assert_allclose(x.boxes, z.boxes, atol=1e-3)


def test_streams_only_where_geoal_chose_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from geoal.detect import loading

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for cores, streams in ((2, 2), (4, 1), (16, 1)):
        monkeypatch.setattr(loading.os, "cpu_count", lambda cores=cores: cores)
        assert loading._check_device("cpu", None)[2] == streams
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's, or a Ray actor's, choice
    assert loading._check_device("cpu", None)[2] == 1


def test_resizes_to_imgsz(checkpoint: Path, chips: np.ndarray) -> None:
    import torch
    from ultralytics.utils.ops import xywh2xyxy

    small = load_detector(checkpoint, CLASSES, imgsz=64)
    results = small.predict_batch(chips, views=2, conf=CONF)
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float().div(255)
    x = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
    with torch.inference_mode():
        raw = small.model(x)[0]
    for b, r in enumerate(results):
        assert r.anchor_probs.shape == (2, 84, len(CLASSES))  # 8*8 + 4*4 + 2*2 anchors
        np.testing.assert_allclose(r.anchor_probs[0], raw[b, 4:].T.numpy(), atol=1e-5)
        assert ((r.boxes >= 0) & (r.boxes <= CHIP)).all()
        xywh = raw[b, :4, torch.tensor(r.anchor_idx)].T
        expected = xywh2xyxy(xywh).clamp(0, 64).numpy() * CHIP / 64
        np.testing.assert_allclose(r.boxes, expected, atol=1e-3)
    with pytest.raises(ConfigError, match="multiple"):
        load_detector(checkpoint, CLASSES, imgsz=100)


def test_bad_input_is_refused(detector: Any, chips: np.ndarray) -> None:
    assert detector.predict_batch(chips[:0]) == []
    with pytest.raises(ValueError, match="square"):
        detector.predict_batch(chips[:, :, :96])
    with pytest.raises(ValueError, match="uint8"):
        detector.predict_batch(chips.astype(np.float32))
    with pytest.raises(ValueError, match="multiple"):
        detector.predict_batch(np.zeros((1, 100, 100, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="views"):
        detector.predict_batch(chips, views=9)
    with pytest.raises(ValueError, match="conf"):
        detector.predict_batch(chips, conf=1.5)
    with pytest.raises(TypeError):
        detector.predict_batch(list(chips))


def test_non_contiguous_chips(detector: Any, chips: np.ndarray) -> None:
    flipped = chips[:, ::-1]
    a = detector.predict_batch(flipped, conf=CONF)
    b = detector.predict_batch(np.ascontiguousarray(flipped), conf=CONF)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.anchor_probs, y.anchor_probs)
