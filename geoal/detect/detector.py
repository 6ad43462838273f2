"""A loaded YOLO detector: chips in, detections with class-score vectors and embeddings out.

The network runs as ``geoal.detect.export.detector_graph`` (the ultralytics
``DetectionModel`` itself, not ``YOLO.predict``, or its ONNX export on OpenVINO / ONNX
Runtime), so that the raw head output, the score vector of every anchor and the head's
input feature maps are at hand; everything after it is numpy, the same for every
backend: NMS is ultralytics' own steps (``geoal.detect.nms``), then the gathering of
score vectors. For a square chip the result matches ``YOLO.predict``
on the same pixels (geoal chips are RGB; ultralytics reads numpy arrays as BGR,
so ``YOLO.predict(chip[..., ::-1])`` is the equivalent call). End-to-end models
(YOLOv10, YOLO26) are the exception: geoal runs their one-to-many branch, with
NMS, because every anchor needs a score vector.

torch and ultralytics are imported inside the methods that need them: an exported
backend whose export and model card are on disk never imports them.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from geoal.detect.nms import non_max_suppression
from geoal.detect.prefetch import prefetch
from geoal.detect.result import ChipResult
from geoal.detect.views import (
    anchor_permutation,
    grid_shapes_for,
    inverse_transform_boxes,
    transform_axes,
    view_names,
)
from geoal.errors import ConfigError

if TYPE_CHECKING:
    from geoal.detect.backends import Runner

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
    ``DetectionModel``, loaded on first use by ``load_model`` where it was not given (an
    exported backend with its export on disk never needs it); ``strides`` the head's
    strides, pixels (default: the model's); ``model_hash`` is the content hash that tags
    stored results (sha256 of the .pt file, or of the yaml content + classes).

    ``split_views``: the B * V view images are stacked into one array; on CUDA
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
    runs ``model`` in ``geoal.detect.export.detector_graph``; ``openvino`` and
    ``onnxruntime`` run that graph's ONNX export, made (or found on disk) and compiled on
    the first batch of each chip and input size, with ``threads`` threads per call and
    ``cpu_streams`` calls at once. Everything after the forward pass is the same numpy
    code. If the export or the runtime fails, the detector warns once and runs torch from
    then on (``backend`` says which ran).
    """

    cpu_chunk = 4

    def __init__(
        self,
        model: Any,
        classes: tuple[str, ...],
        model_path: Path,
        model_hash: str,
        runtime: Runtime,
        *,
        strides: tuple[int, ...] | None = None,
        load_model: Callable[[], Any] | None = None,
    ) -> None:
        if strides is None:
            strides = tuple(int(s) for s in model.stride.tolist())
        self.strides: tuple[int, ...] = strides
        imgsz = runtime.imgsz
        if imgsz is not None and (imgsz <= 0 or imgsz % max(self.strides)):
            raise ConfigError(
                f"imgsz must be a positive multiple of {max(self.strides)} pixels, got {imgsz}"
            )
        self._model = model
        self._load_model = load_model
        self.classes = classes
        self.model_path = model_path
        self.model_hash = model_hash
        self.device = runtime.device
        self.half = runtime.half
        self.imgsz = imgsz
        self.split_views = not self.device.startswith("cuda")
        self._perm_cache: dict[tuple[int, tuple[str, ...]], np.ndarray] = {}
        self.cpu_streams = max(1, runtime.cpu_streams)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self.backend = runtime.backend
        self.threads = max(1, runtime.threads)
        self._runners: dict[tuple[int, int], Runner] = {}
        self._runner_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Detector({str(self.model_path)!r}, classes={list(self.classes)}, "
            f"device={self.device!r}, half={self.half}, backend={self.backend!r}, "
            f"hash={self.model_hash[:12]})"
        )

    @property
    def model(self) -> Any:
        """The ultralytics ``DetectionModel`` (loaded now if it was not at construction)."""
        if self._model is None:
            if self._load_model is None:
                raise RuntimeError("this Detector was built without a model or a way to load it")
            self._model = self._load_model()
        return self._model

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
        names = view_names(views)
        _check_thresholds(conf, iou, max_det)
        images = self._check_images(images)
        if images.shape[0] == 0:
            return []
        return self._finish(self._submit(images, names), conf, iou, max_det, details)

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
        reading of batch n + 1 overlaps the model's work on batch n; on the CPU streams
        the network's calls for batch n + 1 are queued before batch n's detections are
        gathered, so the cores never wait for that step. Errors of the reader are raised
        here; closing this generator stops the reader. ``details``: see ``predict_batch``.
        """
        names = view_names(views)
        _check_thresholds(conf, iou, max_det)
        return self._iter_predict(batches, names, (conf, iou, max_det), prefetch_depth, details)

    def _iter_predict(
        self,
        batches: Iterable[tuple[K, np.ndarray]],
        names: tuple[str, ...],
        nms: tuple[float, float, int],
        prefetch_depth: int,
        details: bool,
    ) -> Iterator[tuple[K, list[ChipResult]]]:
        stream = prefetch(batches, prefetch_depth)
        waiting: tuple[K, _Pending] | None = None
        try:
            while True:
                try:
                    keys, images = next(stream)
                    pending = self._submit(self._check_images(images), names)  # queued
                except StopIteration:
                    break
                except Exception as error:  # the batches before it are still delivered
                    if waiting is not None:
                        done, waiting = waiting, None
                        yield done[0], self._finish(done[1], *nms, details)
                    raise error
                if waiting is not None:
                    yield waiting[0], self._finish(waiting[1], *nms, details)
                waiting = (keys, pending)
            if waiting is not None:
                done, waiting = waiting, None
                yield done[0], self._finish(done[1], *nms, details)
        finally:
            stream.close()
            if waiting is not None:
                waiting[1].cancel()

    def _check_images(self, images: np.ndarray) -> np.ndarray:
        if not isinstance(images, np.ndarray):
            raise TypeError(f"images must be a numpy array, got {type(images).__name__}")
        if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
            raise ValueError(f"images must be (B, S, S, 3) square RGB chips, got {images.shape}")
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (0-255), got {images.dtype}")
        return np.ascontiguousarray(images)  # no copy for a contiguous batch

    def _submit(self, images: np.ndarray, names: tuple[str, ...]) -> _Pending:
        """Start the network on (B, S, S, 3) chips and their views: the calls of a batch.

        The B * V view images are stacked view-major (rows [v * B, (v + 1) * B) hold view
        v) and, on the CPU, cut into calls of at most ``cpu_chunk`` images run by the
        ``cpu_streams`` threads (queued behind earlier batches' calls); on CUDA, one call.
        """
        n_images, size = images.shape[0], images.shape[1]
        input_size = self.imgsz or size
        if input_size % max(self.strides):
            raise ValueError(
                f"chip size {size} is not a multiple of the model's stride {max(self.strides)}; "
                "give square chips of e.g. 640 pixels, or set imgsz"
            )
        if n_images == 0:
            return _Pending(0, size, input_size, names, [], self.backend)
        if len(names) == 1:
            x = images
        else:  # the views are cut while still uint8, where copies are a quarter of the size
            x = np.concatenate([transform_axes(images, name, rows=1, cols=2) for name in names])
        run = self._runner(size, input_size)
        streams = self.cpu_streams if self.split_views else 1
        chunk = min(n_images, self.cpu_chunk, -(-len(x) // streams)) if self.split_views else len(x)
        parts = [x[i : i + chunk] for i in range(0, len(x), chunk)]
        if streams > 1 and len(parts) > 1:
            pool = self._stream_pool(streams)
            calls = [pool.submit(run, np.ascontiguousarray(part)) for part in parts]
        else:
            calls = [_done(run(np.ascontiguousarray(part))) for part in parts]
        return _Pending(n_images, size, input_size, names, calls, self.backend)

    def _finish(
        self, pending: _Pending, conf: float, iou: float, max_det: int, details: bool
    ) -> list[ChipResult]:
        """Wait for a batch's calls, then NMS, gather the score vectors, split per chip."""
        if pending.n_images == 0:
            return []
        outs = [call.result() for call in pending.calls]
        raw = outs[0][0] if len(outs) == 1 else np.concatenate([r for r, _ in outs])
        n_images, names, input_size = pending.n_images, pending.names, pending.input_size
        dets, keep = non_max_suppression(raw, conf, iou, max_det)
        counts = [int(d.shape[0]) for d in dets]
        kept = np.concatenate(dets)  # (sum N, 6) xyxy, conf, cls
        np.clip(kept[:, :4], 0, input_size, out=kept[:, :4])  # as ultralytics clips boxes
        anchor_idx = np.concatenate(keep)
        # each detection's score vector: its anchor's row of its own image
        image_idx = np.repeat(np.arange(len(counts)), counts)
        det_probs = raw[image_idx, 4:, anchor_idx]  # (sum N, C)
        n_views, n_anchors, n_cls = len(names), raw.shape[-1], self.num_classes
        if details:
            perms = self._permutations(input_size, names, n_anchors)  # (V, A)
            scores = raw[:, 4:].reshape(n_views, n_images, n_cls, n_anchors)
            anchor_probs = np.empty((n_images, n_views, n_anchors, n_cls), dtype=np.float32)
            for v in range(n_views):  # (B, V, A, C): view v's scores on the original grid
                anchor_probs[:, v] = scores[v][:, :, perms[v]].transpose(0, 2, 1)
            pooled = np.concatenate([p for _, p in outs])[:n_images]  # view 0's rows
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            embedding = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        else:
            anchor_probs = np.zeros((n_images, n_views, 0, n_cls), dtype=np.float32)
            embedding = np.zeros((n_images, 0), dtype=np.float32)
        arrays = _BatchArrays(anchor_probs, embedding, counts, kept, det_probs, anchor_idx)
        return _results(arrays, names, pending.size, input_size, pending.backend)

    def _runner(self, size: int, input_size: int) -> Runner:
        """The network for chips of ``size`` px at ``input_size`` px, made on first use.

        torch: the module of ``detector_graph``; the exported backends: its cached ONNX
        export, compiled (made from the torch model only when not on disk yet). If the
        export or the runtime fails, warn once and run torch from then on.
        """
        with self._runner_lock:
            key = (size, input_size)
            if key not in self._runners:
                self._runners[key] = self._make_runner(size, input_size)
            return self._runners[key]

    def _make_runner(self, size: int, input_size: int) -> Runner:
        from geoal.detect.backends import TorchRunner, open_runner
        from geoal.detect.export import detector_graph, ensure_export

        if self.backend != "torch":
            try:
                path = ensure_export(
                    lambda: self.model, self.model_path, self.model_hash, size, input_size
                )
                runner: Runner = open_runner(
                    self.backend, path, self.threads, self.cpu_streams, path.parent / "cache"
                )
                return runner
            except Exception as error:  # any failure of an exporter or runtime: run torch
                warnings.warn(
                    f"backend {self.backend} failed for model {self.model_path} at "
                    f"{input_size} px ({type(error).__name__}: {error}); "
                    "running the model with torch instead (slower on a CPU)",
                    stacklevel=4,
                )
                self.backend = "torch"
                self._runners.clear()
        return TorchRunner(detector_graph(self.model, size, input_size), self.device)

    def _stream_pool(self, streams: int) -> ThreadPoolExecutor:
        """The threads of the CPU streams, made on first use (again if ``cpu_streams`` changed)."""
        if self._pool is None or self._pool_size != streams:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self._pool = ThreadPoolExecutor(streams, thread_name_prefix="geoal-forward")
            self._pool_size = streams
        return self._pool

    def _permutations(self, input_size: int, names: tuple[str, ...], n_anchors: int) -> np.ndarray:
        """(V, A) int64 anchor permutations, cached per input size and views."""
        key = (input_size, names)
        if key not in self._perm_cache:
            grids = grid_shapes_for(input_size, self.strides)
            if sum(h * w for h, w in grids) != n_anchors:
                raise RuntimeError(
                    f"{n_anchors} anchors in the head output do not match strides "
                    f"{self.strides} at {input_size} pixels (grids {list(grids)})"
                )
            self._perm_cache[key] = np.stack([anchor_permutation(grids, name) for name in names])
        return self._perm_cache[key]


@dataclass
class _Pending:
    """A batch whose network calls are queued or done: what ``_finish`` needs of it."""

    n_images: int
    size: int  # chip side, pixels
    input_size: int  # the network's input side, pixels
    names: tuple[str, ...]  # the views
    calls: list[Future[tuple[np.ndarray, np.ndarray]]]  # in row order
    backend: str  # the runtime that runs the calls

    def cancel(self) -> None:
        """Drop the calls that have not started (the consumer has gone)."""
        for call in self.calls:
            call.cancel()


def _done(value: tuple[np.ndarray, np.ndarray]) -> Future[tuple[np.ndarray, np.ndarray]]:
    """A finished future holding ``value`` (a call run in the calling thread)."""
    future: Future[tuple[np.ndarray, np.ndarray]] = Future()
    future.set_result(value)
    return future


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


def _check_thresholds(conf: float, iou: float, max_det: int) -> None:
    if not 0.0 <= conf <= 1.0:
        raise ValueError(f"conf must be in [0, 1], got {conf}")
    if not 0.0 <= iou <= 1.0:
        raise ValueError(f"iou must be in [0, 1], got {iou}")
    if max_det < 1:
        raise ValueError(f"max_det must be at least 1, got {max_det}")
