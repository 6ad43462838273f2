"""A loaded YOLO detector: chips in, detections with class-score vectors and embeddings out.

The forward pass, NMS and the gathering of score vectors are done here on the
ultralytics ``DetectionModel`` directly (not through ``YOLO.predict``), so that
the raw head output, the score vector of every anchor and the head's input
feature maps are at hand; NMS is ultralytics' own steps and kernel
(``geoal.detect.nms``). For a square chip the result matches ``YOLO.predict``
on the same pixels (geoal chips are RGB; ultralytics reads numpy arrays as BGR,
so ``YOLO.predict(chip[..., ::-1])`` is the equivalent call). End-to-end models
(YOLOv10, YOLO26) are the exception: geoal runs their one-to-many branch, with
NMS, because every anchor needs a score vector.

torch and ultralytics are imported inside the methods that need them.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from geoal.detect.prefetch import prefetch
from geoal.detect.result import ChipResult
from geoal.detect.views import (
    anchor_permutation,
    get_view_ops,
    grid_shapes_for,
    inverse_transform_boxes,
    view_names,
)
from geoal.errors import ConfigError

if TYPE_CHECKING:
    import torch

K = TypeVar("K")


@dataclass(frozen=True)
class Runtime:
    """Where and how a Detector runs its network (see :class:`Detector`).

    ``device`` "cpu" or "cuda:N"; ``half`` fp16; ``imgsz`` the input size chips are
    resized to, pixels (None: each chip's own size); ``cpu_streams`` forward calls at once
    on the CPU; ``backend`` the runtime of the forward pass; ``threads`` per call.
    """

    device: str = "cpu"
    half: bool = False
    imgsz: int | None = None
    cpu_streams: int = 1
    backend: str = "torch"
    threads: int = 1


@dataclass(frozen=True)
class _BatchArrays:
    """A batch's outputs, chips and views together, before they are split per chip.

    ``anchor_probs`` (B, V, A, C), ``embedding`` (B, D), ``det_rows`` (sum N, 6)
    xyxy/conf/cls in model-input pixels, ``det_probs`` (sum N, C) and ``anchor_idx``
    (sum N,) hold the detections of each (view, chip) in view-major order, ``counts``
    rows each.
    """

    anchor_probs: np.ndarray
    embedding: np.ndarray
    counts: list[int]
    det_rows: np.ndarray
    det_probs: np.ndarray
    anchor_idx: np.ndarray


class Detector:
    """A YOLO detection model in eval mode, fused, on its device, for the project's classes.

    Build one with ``geoal.detect.load_detector``. ``model`` is the ultralytics
    ``DetectionModel``; ``model_hash`` is the content hash that tags stored
    results (sha256 of the .pt file, or of the yaml content + classes).

    ``split_views``: the B * V view images are stacked into one tensor; on CUDA
    it goes through the network in one call, on the CPU (the default there) in
    calls of at most ``cpu_chunk`` images (4), because CPU convolutions gain nothing
    from a bigger batch and lose cache locality (2 views of 4 chips at 640 px: one
    call of 8 took 2.3-2.5x the time of 4, four calls of 2 2.05x; one thread, per
    chip: 66-69 ms in calls of 1-4, 74 ms in calls of 8, 86 ms in calls of 16).

    ``cpu_streams``: on the CPU, how many of those calls run at once, each in its own
    thread (``load_detector`` sets 2 on a 2-core machine, where torch gets 1 thread):
    the calls release the GIL, so they fill the cores without the oversubscription
    that costs OpenMP threads so much (they wait for each other at every operation).

    ``backend``: the runtime of the forward pass (``geoal.detect.backends``): ``torch``
    runs ``model``; ``openvino`` and ``onnxruntime`` run its ONNX export
    (``geoal.detect.export``), made and compiled on the first batch of each input size
    with ``threads`` threads per call and ``cpu_streams`` calls at once. Everything
    after the forward pass is the same code. If the export or the runtime fails, the
    detector warns once and runs torch from then on (``backend`` says which ran).
    """

    cpu_chunk = 4

    def __init__(
        self,
        model: Any,
        classes: tuple[str, ...],
        model_path: Path,
        model_hash: str,
        runtime: Runtime,
    ) -> None:
        self.strides: tuple[int, ...] = tuple(int(s) for s in model.stride.tolist())
        imgsz = runtime.imgsz
        if imgsz is not None and (imgsz <= 0 or imgsz % max(self.strides)):
            raise ConfigError(
                f"imgsz must be a positive multiple of {max(self.strides)} pixels, got {imgsz}"
            )
        self.model = model
        self.classes = classes
        self.model_path = model_path
        self.model_hash = model_hash
        self.device = runtime.device
        self.half = runtime.half
        self.imgsz = imgsz
        self.split_views = not self.device.startswith("cuda")
        self._perm_cache: dict[tuple[int, tuple[str, ...]], torch.Tensor] = {}
        self.cpu_streams = max(1, runtime.cpu_streams)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self.backend = runtime.backend
        self.threads = max(1, runtime.threads)
        self._runners: dict[int, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = {}
        self._runner_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Detector({str(self.model_path)!r}, classes={list(self.classes)}, "
            f"device={self.device!r}, half={self.half}, backend={self.backend!r}, "
            f"hash={self.model_hash[:12]})"
        )

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return len(self.classes)

    def predict_batch(
        self,
        images: np.ndarray,
        views: int = 1,
        conf: float = 0.001,
        iou: float = 0.7,
        max_det: int = 300,
        details: bool = True,
    ) -> list[ChipResult]:
        """Detect objects in (B, S, S, 3) uint8 RGB chips; one ChipResult per chip.

        S must be a multiple of the model's largest stride (32); with ``imgsz``
        set and different from S, chips are resized (bilinear) to imgsz x imgsz
        and boxes scaled back to chip pixels. ``views`` runs the first ``views``
        transforms of ``VIEW_TRANSFORMS`` as one stacked batch of B * views images
        (see ``split_views``).
        ``conf`` is the minimum best-class score kept, ``iou`` the class-wise NMS
        threshold, ``max_det`` the most detections per chip and view.
        ``details=False`` skips what only scoring uses: the score vectors of every
        anchor and the embedding (``anchor_probs`` is then (V, 0, C), ``embedding``
        (0,)); boxes, scores, classes and each detection's score vector are the same.
        """
        import torch

        from geoal.detect.nms import non_max_suppression

        names = view_names(views)
        _check_thresholds(conf, iou, max_det)
        images = self._check_images(images)
        n_images, size = images.shape[0], images.shape[1]
        if n_images == 0:
            return []
        input_size = self.imgsz or size
        if input_size % max(self.strides):
            raise ValueError(
                f"chip size {size} is not a multiple of the model's stride {max(self.strides)}; "
                "give square chips of e.g. 640 pixels, or set imgsz"
            )
        with torch.inference_mode():
            x = self._to_input(images, input_size, names)  # (V * B, 3, s, s)
            # (V * B, 4 + C, A), and view 0's pooled head inputs (B, D) with details
            raw, pooled = self._forward(x, n_images, keep_feats=details)
            dets, keep = non_max_suppression(raw, conf, iou, max_det)
            counts = [int(d.shape[0]) for d in dets]
            kept = torch.cat(dets).float()  # (sum N, 6) xyxy, conf, cls
            kept[:, :4].clamp_(0, input_size)  # as ultralytics clips boxes to the image
            anchor_idx = torch.cat([k.reshape(-1).long() for k in keep])
            # each detection's score vector: its anchor's row of its own image
            image_idx = torch.repeat_interleave(
                torch.arange(len(counts), device=raw.device),
                torch.tensor(counts, device=raw.device),
            )
            det_probs = raw[image_idx, 4:, anchor_idx].float().cpu().numpy()  # (sum N, C)
            n_views, n_anchors, n_cls = len(names), raw.shape[-1], self.num_classes
            if details and pooled is not None:
                perms = self._permutations(input_size, names, n_anchors, raw.device)  # (V, A)
                scores = raw[:, 4:].reshape(n_views, n_images, n_cls, n_anchors)
                scores = scores.gather(3, perms[:, None, None, :].expand_as(scores))
                # (B, V, A, C), copied once into a C-contiguous block
                anchor_probs = scores.permute(1, 0, 3, 2).contiguous().float().cpu().numpy()
                embedding = torch.nn.functional.normalize(pooled, dim=1).cpu().numpy()
            else:
                anchor_probs = np.zeros((n_images, n_views, 0, n_cls), dtype=np.float32)
                embedding = np.zeros((n_images, 0), dtype=np.float32)
            arrays = _BatchArrays(
                anchor_probs,
                embedding,
                counts,
                kept.cpu().numpy(),
                det_probs,
                anchor_idx.cpu().numpy(),
            )
        return _results(arrays, names, size, input_size, self.backend)

    def iter_predict(
        self,
        batches: Iterable[tuple[K, np.ndarray]],
        views: int = 1,
        conf: float = 0.001,
        iou: float = 0.7,
        max_det: int = 300,
        prefetch_depth: int = 2,
        details: bool = True,
    ) -> Iterator[tuple[K, list[ChipResult]]]:
        """Yield (keys, results) for each (keys, (B, S, S, 3) chips) of ``batches``, in order.

        A background thread reads up to ``prefetch_depth`` batches ahead, so the
        reading of batch n + 1 overlaps the model's work on batch n. Errors of the
        reader are raised here; closing this generator stops the reader. ``details``:
        see ``predict_batch``.
        """
        view_names(views)
        _check_thresholds(conf, iou, max_det)
        return self._iter_predict(batches, views, conf, iou, max_det, prefetch_depth, details)

    def _iter_predict(
        self,
        batches: Iterable[tuple[K, np.ndarray]],
        views: int,
        conf: float,
        iou: float,
        max_det: int,
        prefetch_depth: int,
        details: bool,
    ) -> Iterator[tuple[K, list[ChipResult]]]:
        stream = prefetch(batches, prefetch_depth)
        try:
            for keys, images in stream:
                yield keys, self.predict_batch(images, views, conf, iou, max_det, details)
        finally:
            stream.close()

    def _check_images(self, images: np.ndarray) -> np.ndarray:
        if not isinstance(images, np.ndarray):
            raise TypeError(f"images must be a numpy array, got {type(images).__name__}")
        if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
            raise ValueError(f"images must be (B, S, S, 3) square RGB chips, got {images.shape}")
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (0-255), got {images.dtype}")
        return np.ascontiguousarray(images)  # no copy for a contiguous batch

    def _to_input(
        self, images: np.ndarray, input_size: int, names: tuple[str, ...]
    ) -> torch.Tensor:
        """(B, S, S, 3) uint8 RGB -> (V * B, 3, s, s) float 0-1 on the device, view-major.

        Rows [v * B, (v + 1) * B) hold view v. Normalised as ultralytics does (x / 255,
        fp16 or fp32, contiguous BCHW); the views are cut while still uint8, where
        copies are a quarter of the size.
        """
        import torch

        x = torch.from_numpy(images)
        if self.device.startswith("cuda"):
            x = x.pin_memory().to(self.device, non_blocking=True)  # upload as uint8
        if len(names) > 1:
            x = torch.cat([_view_tensor(x, name) for name in names])
        dtype = torch.float16 if self.half else torch.float32
        x = x.permute(0, 3, 1, 2).to(dtype, memory_format=torch.contiguous_format).div_(255)
        if input_size != x.shape[-1]:
            # Chips are square, so a plain resize is ultralytics' letterbox without padding.
            x = torch.nn.functional.interpolate(
                x, size=(input_size, input_size), mode="bilinear", align_corners=False
            )
        return x

    def _forward(
        self, x: torch.Tensor, n_images: int, keep_feats: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw head output (N, 4 + C, A) (xywh, sigmoid scores) and view 0's pooled head inputs.

        On CUDA ``x`` goes through the network in one call; on the CPU in calls of at
        most ``cpu_chunk`` images (``split_views``), ``cpu_streams`` of them at a time.
        The pooled head inputs ((n_images, D): each level's maps averaged over space,
        levels concatenated) are kept for the first ``n_images`` rows (view 0) when
        ``keep_feats``, else None.
        """
        import torch

        runner = self._runner(x.shape[-1]) if self.backend != "torch" else None
        run: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]] = (
            partial(self._run_model, keep_feats=keep_feats)
            if runner is None
            else partial(_run_exported, runner)
        )
        streams = self.cpu_streams if self.split_views else 1
        chunk = min(n_images, self.cpu_chunk, -(-len(x) // streams)) if self.split_views else len(x)
        parts = x.split(chunk)
        if streams > 1 and len(parts) > 1:
            outs = list(self._stream_pool(streams).map(run, parts))
        else:
            outs = [run(part) for part in parts]
        raws: list[torch.Tensor] = []
        pooled: list[torch.Tensor] = []
        start = 0
        for part, (raw, pool) in zip(parts, outs, strict=True):
            raws.append(raw)
            if keep_feats and start < n_images and pool is not None:
                pooled.append(pool[: n_images - start])
            start += len(part)
        raw_all = raws[0] if len(raws) == 1 else torch.cat(raws)
        if not pooled:
            return raw_all, None
        return raw_all, pooled[0] if len(pooled) == 1 else torch.cat(pooled)

    def _run_model(
        self, part: torch.Tensor, keep_feats: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The torch module on (n, 3, s, s): raw (n, 4 + C, A), pooled head inputs (n, D)."""
        import torch

        with torch.inference_mode():  # thread-local: the stream threads need it too
            out = self.model(part)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
            raise RuntimeError(f"unexpected output of {type(self.model).__name__}: {type(out)}")
        if not keep_feats:
            return out[0], None
        feats = out[1].get("one2many", out[1])["feats"]
        with torch.inference_mode():
            pooled = torch.cat([f.mean(dim=(2, 3), dtype=torch.float32) for f in feats], 1)
        return out[0], pooled

    def _runner(
        self, input_size: int
    ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
        """The compiled export for ``input_size`` pixels; on failure, warn and switch to torch."""
        with self._runner_lock:
            if input_size not in self._runners:
                from geoal.detect.backends import open_runner
                from geoal.detect.export import ensure_export

                try:
                    path = ensure_export(self.model, self.model_path, self.model_hash, input_size)
                    self._runners[input_size] = open_runner(
                        self.backend, path, self.threads, self.cpu_streams, path.parent / "cache"
                    )
                except Exception as error:  # any failure of an exporter or runtime: run torch
                    warnings.warn(
                        f"backend {self.backend} failed for model {self.model_path} at "
                        f"{input_size} px ({type(error).__name__}: {error}); "
                        "running the model with torch instead (slower on a CPU)",
                        stacklevel=2,
                    )
                    self.backend = "torch"
                    return None
            return self._runners[input_size]

    def _stream_pool(self, streams: int) -> ThreadPoolExecutor:
        """The threads of the CPU streams, made on first use (again if ``cpu_streams`` changed)."""
        if self._pool is None or self._pool_size != streams:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self._pool = ThreadPoolExecutor(streams, thread_name_prefix="geoal-forward")
            self._pool_size = streams
        return self._pool

    def _permutations(
        self, input_size: int, names: tuple[str, ...], n_anchors: int, device: torch.device
    ) -> torch.Tensor:
        """(V, A) int64 anchor permutations on the device, cached per input size and views."""
        import torch

        key = (input_size, names)
        if key not in self._perm_cache:
            grids = grid_shapes_for(input_size, self.strides)
            if sum(h * w for h, w in grids) != n_anchors:
                raise RuntimeError(
                    f"{n_anchors} anchors in the head output do not match strides "
                    f"{self.strides} at {input_size} pixels (grids {list(grids)})"
                )
            perms = np.stack([anchor_permutation(grids, name) for name in names])
            self._perm_cache[key] = torch.from_numpy(perms).to(device)
        return self._perm_cache[key]


def _run_exported(
    runner: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], part: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """An exported graph on (n, 3, s, s) CPU float32: raw (n, 4 + C, A), pooled (n, D)."""
    import torch

    raw, pooled = runner(part.contiguous().numpy())
    return torch.from_numpy(raw), torch.from_numpy(pooled)


def _results(
    arrays: _BatchArrays, names: tuple[str, ...], size: int, input_size: int, backend: str
) -> list[ChipResult]:
    """Split a batch's arrays into ChipResults, boxes from input pixels to ``size`` px chips."""
    n_views, n_images = len(names), arrays.anchor_probs.shape[0]
    det_rows = arrays.det_rows
    factor = np.float32(size / input_size)
    starts = np.concatenate([[0], np.cumsum(arrays.counts)]).astype(np.int64)

    def rows(view: int, image: int) -> slice:
        i = view * n_images + image
        return slice(int(starts[i]), int(starts[i + 1]))

    results = []
    for b in range(n_images):
        own = rows(0, b)
        extra = [rows(v, b) for v in range(1, n_views)]
        results.append(
            ChipResult(
                boxes=det_rows[own, :4] * factor,
                conf=det_rows[own, 4].copy(),
                cls=det_rows[own, 5].astype(np.int64),
                probs=arrays.det_probs[own].copy(),
                anchor_idx=arrays.anchor_idx[own].copy(),
                anchor_probs=arrays.anchor_probs[b],
                view_boxes=tuple(
                    inverse_transform_boxes(det_rows[r, :4] * factor, names[v], size)
                    for v, r in enumerate(extra, start=1)
                ),
                view_conf=tuple(det_rows[r, 4].copy() for r in extra),
                view_cls=tuple(det_rows[r, 5].astype(np.int64) for r in extra),
                embedding=arrays.embedding[b],
                views=names,
                backend=backend,
            )
        )
    return results


def _view_tensor(x: torch.Tensor, name: str) -> torch.Tensor:
    """The view ``name`` of a (N, H, W, 3) batch: ``views.transform_image`` on axes 1 and 2."""
    ops = get_view_ops(name)
    if ops.swap:
        x = x.transpose(1, 2)
    dims = [d for d, flip in ((1, ops.flip_rows), (2, ops.flip_cols)) if flip]
    return x.flip(dims) if dims else x


def _check_thresholds(conf: float, iou: float, max_det: int) -> None:
    if not 0.0 <= conf <= 1.0:
        raise ValueError(f"conf must be in [0, 1], got {conf}")
    if not 0.0 <= iou <= 1.0:
        raise ValueError(f"iou must be in [0, 1], got {iou}")
    if max_det < 1:
        raise ValueError(f"max_det must be at least 1, got {max_det}")
