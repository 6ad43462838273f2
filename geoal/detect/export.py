"""The detector's graph exported to ONNX for the CPU runtimes, cached next to the model.

The exported graph has one input, ``images`` (N, 3, s, s) float32 0-1 (N dynamic,
s fixed), and two outputs that are exactly what geoal reads from the torch module:
``raw`` (N, 4 + C, A), the head output at every anchor (xywh in input pixels and
the sigmoid class scores), and ``pooled`` (N, D), the head's input maps averaged
over space, levels concatenated (the embedding before its L2 normalisation).

An export is written once per model content, input size and exporter, as
``.geoal-export/STEM-HASH-SIZEpx-KEY.onnx`` beside the model file (or, for a model
that is not a writable local file such as ``yolov8n.yaml``, under
``$GEOAL_CACHE_DIR``, default ``~/.cache/geoal``). ``KEY`` hashes everything that
changes the graph: the model's hash, the input size, the torch and ultralytics
versions, the opset and this module's format version; an export whose key no
longer matches is rebuilt and the stale file removed. Files are written to a
temporary name and renamed, so concurrent processes (Ray workers, shards) never
read half a file.

torch and ultralytics are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

EXPORT_FORMAT = 1  # bump when the exported graph's inputs or outputs change
OPSET = 17
CACHE_ENV = "GEOAL_CACHE_DIR"
EXPORT_DIR = ".geoal-export"


def export_key(model_hash: str, input_size: int) -> str:
    """A hex key of everything that changes the exported graph."""
    import torch
    import ultralytics

    content = json.dumps(
        {
            "format": EXPORT_FORMAT,
            "model": model_hash,
            "imgsz": input_size,
            "opset": OPSET,
            "torch": torch.__version__,
            "ultralytics": ultralytics.__version__,
        },
        sort_keys=True,
    )
    return hashlib.sha256(content.encode()).hexdigest()


def cache_dir() -> Path:
    """The user cache for exports of models that have no writable folder of their own."""
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "geoal"
    )
    return Path(base) / "exports"


def export_folder(model_path: Path) -> Path:
    """Where a model's exports live: beside the model file when possible, else the user cache."""
    if model_path.is_file():
        folder = model_path.resolve().parent / EXPORT_DIR
        with contextlib.suppress(OSError):
            folder.mkdir(exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def export_path(model_path: Path, model_hash: str, input_size: int) -> Path:
    """The cached ONNX file of a model at an input size (it may not exist yet)."""
    key = export_key(model_hash, input_size)[:16]
    name = f"{model_path.stem}-{model_hash[:12]}-{input_size}px-{key}.onnx"
    return export_folder(model_path) / name


def ensure_export(model: Any, model_path: Path, model_hash: str, input_size: int) -> Path:
    """The cached ONNX export of ``model`` at ``input_size`` pixels, written if missing or stale.

    ``model`` is the prepared ultralytics ``DetectionModel`` (eval, fused, CPU, fp32).
    """
    path = export_path(model_path, model_hash, input_size)
    if path.is_file():
        return path
    fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        export_onnx(model, Path(tmp), input_size)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary file: other users' workers read it
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _remove_stale(path, model_path.stem, model_hash, input_size)
    return path


def _remove_stale(path: Path, stem: str, model_hash: str, input_size: int) -> None:
    """Delete older exports of the same model and size (another key), and beside the model,
    those of an earlier content of the same file."""
    patterns = [f"{stem}-{model_hash[:12]}-{input_size}px-*.onnx"]
    if path.parent.name == EXPORT_DIR:
        patterns.append(f"{stem}-*-{input_size}px-*.onnx")
    for pattern in patterns:
        for old in path.parent.glob(pattern):
            if old != path:
                with contextlib.suppress(OSError):
                    old.unlink()


def export_graph(model: Any) -> Any:
    """A torch module over a ``DetectionModel``: images -> (raw (N, 4 + C, A), pooled (N, D))."""
    import torch

    class _Graph(torch.nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            raw, preds = self.net(x)
            feats = preds.get("one2many", preds)["feats"]
            pooled = torch.cat([f.mean(dim=(2, 3), dtype=torch.float32) for f in feats], 1)
            return raw, pooled

    return _Graph(model).eval()


def export_onnx(model: Any, path: Path, input_size: int) -> None:
    """Trace ``model`` at (2, 3, input_size, input_size) into ONNX at ``path`` (batch dynamic)."""
    import torch

    graph = export_graph(model)
    example = torch.zeros(2, 3, input_size, input_size)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow in the head
        # The TorchScript exporter (dynamo=False) needs no onnxscript and traces the head's
        # anchors for this input size as constants, which is why each size has its own file.
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["images"],
            output_names=["raw", "pooled"],
            dynamic_axes={"images": {0: "batch"}, "raw": {0: "batch"}, "pooled": {0: "batch"}},
        )
