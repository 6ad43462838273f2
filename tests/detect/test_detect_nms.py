"""geoal.detect.nms: ultralytics' NMS, step for step, without importing torchvision."""

from __future__ import annotations

import subprocess
import sys

import pytest

from geoal.detect.nms import non_max_suppression


@pytest.mark.parametrize(("conf", "iou"), [(0.001, 0.7), (0.5, 0.45)])
def test_same_detections_and_anchors_as_ultralytics(conf: float, iou: float) -> None:
    import torch
    import torchvision  # noqa: F401  (ultralytics then uses the same compiled kernel)
    from ultralytics.utils.nms import non_max_suppression as ultralytics_nms

    gen = torch.Generator().manual_seed(0)
    for trial in range(20):
        n_cls = 1 + trial % 4
        raw = torch.rand(3, 4 + n_cls, 1500, generator=gen)
        raw[:, :2] *= 640  # centres
        raw[:, 2:4] *= 100  # sizes
        if trial % 2:  # many exact ties between scores
            raw[:, 4:] = (raw[:, 4:] * 10).round() / 10
        ours, our_idx = non_max_suppression(raw, conf, iou, max_det=100)
        theirs, their_idx = ultralytics_nms(
            raw, conf, iou, max_det=100, nc=n_cls, return_idxs=True, max_time_img=3600.0
        )
        for a, ai, b, bi in zip(ours, our_idx, theirs, their_idx, strict=True):
            assert torch.equal(a, b)
            assert torch.equal(ai.view(-1), bi.view(-1))
            assert len(a) <= 100


def test_empty_and_all_below_conf() -> None:
    import torch

    raw = torch.zeros(2, 6, 50)
    dets, idx = non_max_suppression(raw, 0.25, 0.7, max_det=300)
    assert [d.shape for d in dets] == [(0, 6), (0, 6)]
    assert [i.shape for i in idx] == [(0,), (0,)]


def test_does_not_import_torchvision() -> None:
    """Importing torchvision takes 1.5-2 s; its compiled kernel alone loads in milliseconds."""
    code = (
        "import sys, torch\n"
        "from geoal.detect.nms import non_max_suppression\n"
        "dets, _ = non_max_suppression(torch.rand(1, 6, 100) * 2, 0.5, 0.5, 10)\n"
        "assert 'torchvision' not in sys.modules, 'torchvision was imported'\n"
        "print(len(dets[0]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
