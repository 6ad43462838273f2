"""Inference backends: which runtime runs the network's forward pass.

``torch`` runs the ultralytics ``DetectionModel`` itself. ``openvino`` and
``onnxruntime`` run the same graph exported to ONNX (``geoal.detect.export``),
whose two outputs are exactly what geoal reads from torch: the raw head output
(B, 4 + C, A) and the pooled head inputs (B, D). NMS, the score-vector gathering,
the views, the uncertainties and the store are the same code for every backend.

On a CPU the exported runtimes beat torch, most of all in a fresh process: with the
export and the model card on disk they need neither torch nor ultralytics (3-4 s of
imports). ``geoal score``, 64 chips of 640 px, one view, 2 cores, chips/s against plain
``YOLO.predict``: OpenVINO 2.3x, ONNX Runtime 2.6x, torch 1.7x; with another process on
one core 1.9x, 1.9x, 1.3x (``docs/benchmarks.md``). ``auto`` picks, of those installed,
OpenVINO, then ONNX Runtime, then torch on a CPU (the two runtimes were within run-to-run
noise of each other on that AMD machine, quiet and loaded; OpenVINO was well ahead on the
bare network under load in an earlier measurement); torch on CUDA. ``GEOAL_BACKEND`` in
the environment replaces ``auto``'s choice (e.g. ``GEOAL_BACKEND=torch`` on a whole Ray
cluster).

Runtimes are imported inside the functions that need them.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from geoal.errors import ConfigError, ModelError

AUTO = "auto"
ENV_VAR = "GEOAL_BACKEND"


class Runner(Protocol):
    """The detector's graph on a runtime: (N, S, S, 3) uint8 RGB chips -> (raw, pooled).

    ``raw`` is (N, 4 + C, A) float32 (xywh in input pixels, sigmoid class scores),
    ``pooled`` (N, D) float32, the head inputs averaged over space, levels concatenated
    (``geoal.detect.export.detector_graph``). Safe to call from several threads at once
    (the CPU streams).
    """

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class Backend:
    """A registry entry: how to run the forward pass, and what it needs."""

    name: str
    package: str | None  # the Python package that must be installed (None: torch, always there)
    install: str  # how to install it
    exported: bool  # runs the ONNX export instead of the torch module
    cuda: bool  # can run on a CUDA device
    open: Callable[[Path, int, int, Path], Runner] | None  # (onnx, threads, streams, cache dir)

    def installed(self) -> bool:
        """Whether the runtime's package can be imported here."""
        return self.package is None or importlib.util.find_spec(self.package) is not None


class OpenVinoRunner:
    """An ONNX graph compiled by OpenVINO for the CPU; one infer request per calling thread.

    Compiled for a static batch of one chip, each call running its chips one by one: on
    the 2-core AMD machine of ``docs/benchmarks.md`` the bare network took 71-74 ms per
    chip so, against 80-86 ms with a dynamic batch of 4 (two streams of one thread).
    """

    def __init__(self, onnx_path: Path, threads: int, streams: int, cache_dir: Path) -> None:
        import openvino as ov

        core = ov.Core()
        # Compiled blobs are cached by OpenVINO itself (keyed by graph, device and config),
        # so a fresh process loads in a fraction of the compile time.
        core.set_property({"CACHE_DIR": str(cache_dir)})
        config = {
            "INFERENCE_PRECISION_HINT": "f32",  # never bf16 on CPUs that have it: agreement first
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": str(streams),
            "INFERENCE_NUM_THREADS": str(threads * streams),  # OpenVINO's count: all streams
            # Pinned threads stall when another process holds their core (a shared machine).
            "ENABLE_CPU_PINNING": "NO",
        }
        model = core.read_model(str(onnx_path))
        size = model.inputs[0].partial_shape[1].get_length()
        model.reshape([1, size, size, 3])
        self.compiled = core.compile_model(model, "CPU", config)
        self._local = threading.local()
        _warm_up(self, self.compiled.inputs[0].partial_shape[1].get_length())

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        raws, pooled = [], []
        for i in range(len(x)):
            request.infer([x[i : i + 1]])  # releases the GIL: the CPU streams run at once
            # copies: the request's output buffers are reused by its next call
            raws.append(request.get_output_tensor(0).data.copy())
            pooled.append(request.get_output_tensor(1).data.copy())
        return np.concatenate(raws), np.concatenate(pooled)


class OnnxRuntimeRunner:
    """An ONNX graph in an ONNX Runtime CPU session (``run`` is thread-safe)."""

    def __init__(self, onnx_path: Path, threads: int, streams: int, cache_dir: Path) -> None:
        import onnxruntime as ort

        del streams, cache_dir  # one session serves every stream thread
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning threads burn the cores the chip readers and other processes need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        _warm_up(self, int(self.session.get_inputs()[0].shape[1]))

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raw, pooled = self.session.run(None, {self.input_name: x})
        return raw, pooled


class TorchRunner:
    """The torch module of ``detector_graph`` on its device (CPU, or CUDA with a uint8 upload)."""

    def __init__(self, graph: Any, device: str) -> None:
        self.graph = graph
        self.device = device

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        images = torch.from_numpy(x)
        if self.device.startswith("cuda"):
            images = images.pin_memory().to(self.device, non_blocking=True)
        with torch.inference_mode():  # thread-local: the stream threads need it too
            raw, pooled = self.graph(images)
        return raw.cpu().numpy(), pooled.cpu().numpy()


def _warm_up(runner: Runner, size: int) -> None:
    """One call on a (1, size, size, 3) chip, in the thread that compiled the graph.

    The runtimes' Python bindings set up their numpy glue on the first call
    (pybind11's ``gil_safe_call_once_and_store``); two stream threads making that
    first call at once deadlocked (seen with OpenVINO 2026.4: both wait forever).
    """
    runner(np.zeros((1, size, size, 3), dtype=np.uint8))


BACKENDS: dict[str, Backend] = {
    "torch": Backend("torch", None, "", exported=False, cuda=True, open=None),
    "openvino": Backend(
        "openvino",
        "openvino",
        "pip install openvino",
        exported=True,
        cuda=False,
        open=OpenVinoRunner,
    ),
    "onnxruntime": Backend(
        "onnxruntime",
        "onnxruntime",
        "pip install onnxruntime",
        exported=True,
        cuda=False,
        open=OnnxRuntimeRunner,
    ),
}

CPU_PREFERENCE = ("openvino", "onnxruntime", "torch")
"""``auto`` on a CPU: the first of these that is installed (fastest first, measured)."""


def list_backends() -> tuple[str, ...]:
    """The backend names, ``auto`` not included."""
    return tuple(BACKENDS)


def get_backend(name: str) -> Backend:
    """The registry entry of ``name``; ConfigError lists the valid names."""
    if name not in BACKENDS:
        raise ConfigError(
            f"unknown backend {name!r}; choose {AUTO} or one of {', '.join(BACKENDS)}"
        )
    return BACKENDS[name]


def resolve_backend(name: str | None, device: str) -> str:
    """The backend to run on ``device`` for a requested ``name`` (None or ``auto``: the default).

    ``auto`` takes ``GEOAL_BACKEND`` when set, else the fastest installed runtime for the
    device. An explicit backend that is not installed, or that cannot run on a CUDA
    device, raises ModelError / ConfigError saying what to do.
    """
    requested = name or AUTO
    if requested == AUTO:
        requested = os.environ.get(ENV_VAR, "").strip() or AUTO
    cuda = device.startswith("cuda")
    if requested == AUTO:
        if cuda:
            return "torch"
        return next(n for n in CPU_PREFERENCE if BACKENDS[n].installed())
    backend = get_backend(requested)
    if cuda and not backend.cuda:
        raise ConfigError(
            f"backend {backend.name} runs on the CPU, not on {device}; "
            "use --backend torch on a GPU, or --device cpu"
        )
    if not backend.installed():
        raise ModelError(f"backend {backend.name} is not installed here; run `{backend.install}`")
    return backend.name


def open_runner(name: str, onnx_path: Path, threads: int, streams: int, cache_dir: Path) -> Any:
    """Compile an exported graph for backend ``name`` (an exported one)."""
    backend = get_backend(name)
    if backend.open is None:
        raise ValueError(f"backend {name} runs the torch module, not an export")
    return backend.open(onnx_path, max(1, threads), max(1, streams), cache_dir)
