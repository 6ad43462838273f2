"""geoal.detect.nms: ultralytics' NMS, step for step, in numpy, with or without torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from geoal.detect.nms import greedy_nms, non_max_suppression


def _raw(rng: np.random.Generator, n_cls: int, ties: bool, anchors: int = 1500) -> np.ndarray:
    """(3, 4 + C, A) float32 head output: centres over 640 px, sizes up to 100 px."""
    raw = rng.random((3, 4 + n_cls, anchors), dtype=np.float32)
    raw[:, :2] *= 640
    raw[:, 2:4] *= 100
    if ties:  # many exact ties between scores
        raw[:, 4:] = np.round(raw[:, 4:] * 10) / 10
    return raw


@pytest.mark.parametrize(("conf", "iou"), [(0.001, 0.7), (0.5, 0.45)])
def test_same_detections_and_anchors_as_ultralytics(conf: float, iou: float) -> None:
    import torch
    import torchvision  # noqa: F401  (ultralytics then uses the same compiled kernel)
    from ultralytics.utils.nms import non_max_suppression as ultralytics_nms

    rng = np.random.default_rng(0)
    for trial in range(20):
        n_cls = 1 + trial % 4
        raw = _raw(rng, n_cls, ties=bool(trial % 2))
        ours, our_idx = non_max_suppression(raw, conf, iou, max_det=100)
        theirs, their_idx = ultralytics_nms(
            torch.from_numpy(raw),
            conf,
            iou,
            max_det=100,
            nc=n_cls,
            return_idxs=True,
            max_time_img=3600.0,
        )
        for a, ai, b, bi in zip(ours, our_idx, theirs, their_idx, strict=True):
            assert a.dtype == np.float32 and ai.dtype == np.int64
            np.testing.assert_array_equal(a, b.numpy())
            np.testing.assert_array_equal(ai, bi.view(-1).numpy())
            assert len(a) <= 100


@pytest.mark.parametrize(("conf", "iou", "max_det"), [(0.001, 0.7, 300), (0.3, 0.45, 20)])
def test_numpy_kernel_keeps_what_torchvision_keeps(conf: float, iou: float, max_det: int) -> None:
    """Without exact ties, the numpy kernel (no torch) keeps the same boxes, in the same order."""
    rng = np.random.default_rng(1)
    for trial in range(12):
        raw = _raw(rng, 1 + trial % 3, ties=False, anchors=3000)
        ours, our_idx = non_max_suppression(raw, conf, iou, max_det, kernel=greedy_nms)
        ref, ref_idx = non_max_suppression(raw, conf, iou, max_det)  # torch imported: torchvision
        for a, ai, b, bi in zip(ours, our_idx, ref, ref_idx, strict=True):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(ai, bi)


def test_greedy_nms_rule() -> None:
    boxes = np.array(
        [[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.5]], dtype=np.float32
    )
    scores = np.array([0.9, 0.8, 0.7, 0.95], dtype=np.float32)
    # box 3 (0.95) first; 0 overlaps it at 0.95 > 0.5: dropped; 1 overlaps 3 at 0.78: dropped
    np.testing.assert_array_equal(greedy_nms(boxes, scores, 0.5, 300), [3, 2])
    np.testing.assert_array_equal(greedy_nms(boxes, scores, 0.99, 300), [3, 0, 1, 2])
    np.testing.assert_array_equal(greedy_nms(boxes, scores, 0.99, 2), [3, 0])  # max_det
    assert greedy_nms(boxes[:0], scores[:0], 0.5, 300).shape == (0,)


def test_empty_and_all_below_conf() -> None:
    raw = np.zeros((2, 6, 50), dtype=np.float32)
    dets, idx = non_max_suppression(raw, 0.25, 0.7, max_det=300)
    assert [d.shape for d in dets] == [(0, 6), (0, 6)]
    assert [i.shape for i in idx] == [(0,), (0,)]


def test_imports_neither_torch_nor_torchvision() -> None:
    """The exported backends' processes never import torch (3-4 s); with torch imported, NMS
    loads torchvision's compiled kernel without ``import torchvision`` (1.5-2 s)."""
    code = (
        "import sys, numpy as np\n"
        "from geoal.detect.nms import non_max_suppression\n"
        "raw = np.random.default_rng(0).random((1, 6, 100), dtype=np.float32) * 2\n"
        "dets, _ = non_max_suppression(raw, 0.5, 0.5, 10)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "import torch\n"
        "dets_t, _ = non_max_suppression(raw, 0.5, 0.5, 10)\n"
        "assert 'torchvision' not in sys.modules, 'torchvision was imported'\n"
        "assert torch.ops.torchvision.nms is not None\n"
        "assert (dets[0] == dets_t[0]).all()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
