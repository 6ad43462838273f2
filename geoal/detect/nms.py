"""Class-wise NMS of the raw YOLO head output, as ultralytics' ``non_max_suppression`` does it.

The same steps and the same compiled kernel (torchvision's ``nms``) as ultralytics'
single-label, class-aware path, so the kept boxes and their anchors are the same; what
differs is how the kernel is reached. ``import torchvision`` takes 1.5-2 s (it imports
``torch._dynamo`` through ``torchvision.ops``), longer than a small scene's whole
prediction on a CPU; the kernel itself lives in torchvision's compiled extension, which
loads in milliseconds. ultralytics uses the kernel only when torchvision is already
imported and otherwise a Python-loop NMS.

torch and torchvision are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

NmsKernel = Callable[["torch.Tensor", "torch.Tensor", float], "torch.Tensor"]

MAX_NMS = 30_000  # candidates per image kept for NMS, by score (ultralytics' max_nms)
MAX_WH = 7680  # class offset in pixels that keeps the classes' boxes apart (ultralytics' max_wh)
_EXTENSION_NAMES = ("_C_stable", "_C")  # torchvision's compiled ops, by version


@lru_cache(maxsize=1)
def nms_kernel() -> NmsKernel:
    """torchvision's compiled NMS ``(boxes (N, 4) xyxy, scores (N,), iou) -> kept (K,) int64``.

    Loads the compiled extension alone when torchvision is not imported yet; falls back on
    importing torchvision.
    """
    import torch

    if "torchvision" not in sys.modules and not hasattr(torch.ops.torchvision, "nms"):
        path = _extension_path()
        if path is not None:
            with contextlib.suppress(OSError, RuntimeError):  # then the usual import below
                torch.ops.load_library(path)
    if not hasattr(torch.ops.torchvision, "nms"):
        import torchvision  # noqa: F401  (loads the extension the usual way)
    return torch.ops.torchvision.nms


def _extension_path() -> str | None:
    """The file of torchvision's compiled extension, found without importing torchvision."""
    import importlib.machinery
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    finder = importlib.machinery.FileFinder(
        next(iter(spec.submodule_search_locations)),
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
    )
    for name in _EXTENSION_NAMES:
        found = finder.find_spec(name)
        if found is not None and found.origin:
            return found.origin
    return None


def non_max_suppression(
    raw: torch.Tensor, conf: float, iou: float, max_det: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per image, the kept detections (N, 6) [x1, y1, x2, y2, conf, cls] and their anchors (N,).

    ``raw``: (B, 4 + C, A) head output, xywh boxes in input pixels and sigmoid class
    scores. Each anchor competes with its best class only (score > ``conf``), NMS runs
    per class at ``iou``, at most ``max_det`` detections per image, by descending score.
    """
    import torch
    from ultralytics.utils.ops import xywh2xyxy

    kernel = nms_kernel()
    n_cls = raw.shape[1] - 4
    candidates = raw[:, 4:].amax(1) > conf  # (B, A)
    anchors = torch.arange(raw.shape[-1], device=raw.device)
    rows = raw.transpose(-1, -2)  # (B, A, 4 + C)
    dets, keep = [], []
    for image, mask in zip(rows, candidates, strict=True):
        x, idx = image[mask], anchors[mask]
        box = xywh2xyxy(x[:, :4])
        score, cls = x[:, 4 : 4 + n_cls].max(1, keepdim=True)
        x = torch.cat((box, score, cls.float()), 1)
        if x.shape[0] > MAX_NMS:
            top = x[:, 4].argsort(descending=True)[:MAX_NMS]
            x, idx = x[top], idx[top]
        kept = kernel(x[:, :4] + x[:, 5:6] * MAX_WH, x[:, 4], iou)[:max_det]
        dets.append(x[kept])
        keep.append(idx[kept])
    return dets, keep
