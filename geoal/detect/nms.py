"""Class-wise NMS of the raw YOLO head output, as ultralytics' ``non_max_suppression`` does it.

Numpy in, numpy out, so that every backend (torch, OpenVINO, ONNX Runtime) shares the
steps after the forward pass and the exported ones never need torch. The steps are
ultralytics' single-label, class-aware path; the suppression itself runs on one of two
kernels with the same rule (keep by descending score, drop a box whose IoU with a kept
box of its class is above the threshold):

- torchvision's compiled ``nms``, when torch is already imported (the torch backend):
  the same kernel as ``YOLO.predict``, loaded without ``import torchvision`` (which takes
  1.5-2 s through ``torch._dynamo``; the compiled extension alone loads in milliseconds);
- :func:`greedy_nms`, a numpy loop in float32, when it is not (the exported backends in a
  process that never imports torch, 3-4 s of start-up saved). It stops once ``max_det``
  boxes are kept. The two differ only in the order of exactly tied scores.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

NmsKernel = Callable[[np.ndarray, np.ndarray, float, int], np.ndarray]
"""(boxes (N, 4) float32 xyxy, scores (N,) float32, iou, max_det) -> kept (K <= max_det,) int64."""

MAX_NMS = 30_000  # candidates per image kept for NMS, by score (ultralytics' max_nms)
MAX_WH = 7680  # class offset in pixels that keeps the classes' boxes apart (ultralytics' max_wh)
_EXTENSION_NAMES = ("_C_stable", "_C")  # torchvision's compiled ops, by version


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, by descending score (ties: lower index first).

    ``boxes`` (N, 4) xyxy float32, ``scores`` (N,); a box is dropped when its IoU with a
    kept box is above ``iou``, as torchvision's kernel computes it (float32 areas).
    """
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[order, k]) for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    alive = np.ones(len(order), dtype=bool)
    kept: list[int] = []
    i = 0
    n = len(order)
    while i < n and len(kept) < max_det:
        kept.append(i)
        rest = slice(i + 1, n)
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):
            overlap = inter / (areas[i] + areas[rest] - inter)
        alive[rest] &= ~(overlap > iou)
        following = np.flatnonzero(alive[rest])
        i = i + 1 + int(following[0]) if len(following) else n
    return order[np.asarray(kept, dtype=np.int64)]


@lru_cache(maxsize=1)
def _torchvision_kernel() -> Callable[..., Any]:
    """torchvision's compiled NMS, loaded without importing torchvision where possible."""
    import torch

    if "torchvision" not in sys.modules and not hasattr(torch.ops.torchvision, "nms"):
        path = _extension_path()
        if path is not None:
            with contextlib.suppress(OSError, RuntimeError):  # then the usual import below
                torch.ops.load_library(path)
    if not hasattr(torch.ops.torchvision, "nms"):
        import torchvision  # noqa: F401  (loads the extension the usual way)
    return torch.ops.torchvision.nms


def _torchvision_nms(boxes: np.ndarray, scores: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    import torch

    kept = _torchvision_kernel()(torch.from_numpy(boxes), torch.from_numpy(scores), iou)
    return np.asarray(kept[:max_det].numpy(), dtype=np.int64)


def nms_kernel() -> NmsKernel:
    """The suppression kernel for this process: torchvision's when torch is imported, else numpy."""
    if "torch" in sys.modules:
        return _torchvision_nms
    return greedy_nms


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


def xywh2xyxy(xywh: np.ndarray) -> np.ndarray:
    """(N, 4) centre-size boxes -> (N, 4) corner boxes, in the input's dtype (ultralytics' op)."""
    half = xywh[:, 2:] / 2
    return np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1)


def non_max_suppression(
    raw: np.ndarray, conf: float, iou: float, max_det: int, kernel: NmsKernel | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per image, the kept detections (N, 6) [x1, y1, x2, y2, conf, cls] and their anchors (N,).

    ``raw``: (B, 4 + C, A) float32 head output, xywh boxes in input pixels and sigmoid class
    scores. Each anchor competes with its best class only (score > ``conf``), NMS runs
    per class at ``iou``, at most ``max_det`` detections per image, by descending score.
    Detections are float32, anchors int64. ``kernel``: default :func:`nms_kernel`.
    """
    kernel = kernel or nms_kernel()
    dets, keep = [], []
    for image in raw:  # (4 + C, A)
        best = image[4:].max(axis=0)  # (A,) each anchor's best class score
        idx = np.flatnonzero(best > conf)
        rows = image[:, idx].T  # (n, 4 + C)
        cls = rows[:, 4:].argmax(axis=1).astype(np.float32)
        x = np.concatenate([xywh2xyxy(rows[:, :4]), best[idx, None], cls[:, None]], axis=1)
        if x.shape[0] > MAX_NMS:
            top = np.argsort(-x[:, 4], kind="stable")[:MAX_NMS]
            x, idx = x[top], idx[top]
        offset = x[:, :4] + x[:, 5:6] * np.float32(MAX_WH)
        kept = kernel(np.ascontiguousarray(offset), np.ascontiguousarray(x[:, 4]), iou, max_det)
        dets.append(np.ascontiguousarray(x[kept], dtype=np.float32))
        keep.append(idx[kept].astype(np.int64))
    return dets, keep
