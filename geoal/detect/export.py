"""The detector's graph exported to ONNX for the CPU runtimes, cached next to the model.

The graph (:func:`detector_graph`, also what the torch backend runs) has one input,
``images`` (N, S, S, 3) uint8 RGB chips (N dynamic, S fixed), and two outputs that are
exactly what geoal reads from the network: ``raw`` (N, 4 + C, A), the head output at
every anchor (xywh in input pixels and the sigmoid class scores), and ``pooled`` (N, D),
the head's input maps averaged over space, levels concatenated (the embedding before its
L2 normalisation). Chips are normalised (x / 255) and, when the model's input size s
differs from S, resized (bilinear) inside the graph.

An export is written once per model content, chip and input size and exporter, as
``.geoal-export/STEM-HASH-SIZEpx-KEY.onnx`` beside the model file (``SIZE`` is s, or
``StoS`` when chips are resized; or, for a model that is not a writable local file such
as ``yolov8n.yaml``, under ``$GEOAL_CACHE_DIR``, default ``~/.cache/geoal``). ``KEY``
hashes everything that changes the graph: the model's hash, the sizes, the torch and
ultralytics versions, the opset and this module's format version; an export whose key
no longer matches is rebuilt and the stale file removed. Files are written to a
temporary name and renamed, so concurrent processes (Ray workers, shards) never read
half a file.

Beside the exports, a model card (``STEM-HASH.json``, :class:`ModelCard`) records what
loading the checkpoint tells (class names, strides, recorded input size): with the card
and the export on disk, a later process runs an exported backend without importing torch
or ultralytics at all (3-4 s of start-up on a CPU).

torch and ultralytics are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

EXPORT_FORMAT = 2  # bump when the exported graph's inputs or outputs change (2: uint8 NHWC in)
CARD_FORMAT = 2
OPSET = 17
CACHE_ENV = "GEOAL_CACHE_DIR"
EXPORT_DIR = ".geoal-export"


def package_version(name: str) -> str:
    """An installed package's version, read from its metadata (without importing it)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def export_key(model_hash: str, chip_size: int, input_size: int) -> str:
    """A hex key of everything that changes the exported graph."""
    content = json.dumps(
        {
            "format": EXPORT_FORMAT,
            "model": model_hash,
            "chip": chip_size,
            "imgsz": input_size,
            "opset": OPSET,
            "torch": package_version("torch"),
            "ultralytics": package_version("ultralytics"),
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


def _size_tag(chip_size: int, input_size: int) -> str:
    return f"{input_size}px" if chip_size == input_size else f"{chip_size}to{input_size}px"


def export_path(model_path: Path, model_hash: str, chip_size: int, input_size: int) -> Path:
    """The cached ONNX file of a model for chips of ``chip_size`` px run at ``input_size`` px."""
    key = export_key(model_hash, chip_size, input_size)[:16]
    tag = _size_tag(chip_size, input_size)
    return export_folder(model_path) / f"{model_path.stem}-{model_hash[:12]}-{tag}-{key}.onnx"


def ensure_export(
    load_model: Callable[[], Any],
    model_path: Path,
    model_hash: str,
    chip_size: int,
    input_size: int,
) -> Path:
    """The cached ONNX export of a model, written if missing or stale.

    ``load_model()`` gives the prepared ultralytics ``DetectionModel`` (eval, fused, CPU,
    fp32); it is called only when the file has to be written.
    """
    path = export_path(model_path, model_hash, chip_size, input_size)
    if path.is_file():
        return path
    fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        export_onnx(load_model(), Path(tmp), chip_size, input_size)
        _publish(Path(tmp), path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _remove_stale(path, model_path.stem, model_hash, _size_tag(chip_size, input_size))
    return path


def _publish(tmp: Path, path: Path) -> None:
    """Rename a finished temporary file into place, readable as an ordinary file."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as an ordinary file: other users' workers read it
    os.replace(tmp, path)


def _remove_stale(path: Path, stem: str, model_hash: str, tag: str) -> None:
    """Delete older exports of the same model and sizes (another key), and beside the model,
    those of an earlier content of the same file."""
    patterns = [f"{stem}-{model_hash[:12]}-{tag}-*.onnx"]
    if path.parent.name == EXPORT_DIR:
        patterns.append(f"{stem}-*-{tag}-*.onnx")
    for pattern in patterns:
        for old in path.parent.glob(pattern):
            if old != path:
                with contextlib.suppress(OSError):
                    old.unlink()


@dataclass(frozen=True)
class ModelCard:
    """What loading a checkpoint tells about it, kept beside its exports (see the module doc).

    ``classes`` the class names in order; ``strides`` the head's strides, pixels;
    ``imgsz`` and ``chip_size`` the recorded input (``geoal.detect.loading.ModelInput``),
    pixels; ``imgsz`` None: the checkpoint records none.
    """

    model_hash: str
    classes: tuple[str, ...]
    strides: tuple[int, ...]
    imgsz: int | None
    chip_size: int | None


def card_path(model_path: Path, model_hash: str) -> Path:
    """Where the card of this content of a local model file lives (it may not exist): with
    the model's exports (:func:`export_folder`)."""
    return export_folder(model_path) / f"{model_path.stem}-{model_hash[:12]}.json"


def read_card(model_path: Path, model_hash: str) -> ModelCard | None:
    """The card of this content of ``model_path``, or None when absent, unreadable or another's."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        data = json.loads(card_path(model_path, model_hash).read_text())
        if data.get("format") != CARD_FORMAT or data.get("model_hash") != model_hash:
            return None
        return ModelCard(
            model_hash,
            tuple(str(c) for c in data["classes"]),
            tuple(int(s) for s in data["strides"]),
            _optional_int(data["imgsz"]),
            _optional_int(data["chip_size"]),
        )
    return None


def _optional_int(value: Any) -> int | None:
    """A JSON value as an int, None kept (ValueError / TypeError for anything else)."""
    return None if value is None else int(value)


def write_card(model_path: Path, card: ModelCard) -> None:
    """Write the card with the model's exports (nothing where that fails: a read-only cache).

    Beside the model, the cards of earlier contents of the same file are removed (not in the
    shared user cache, where another folder's model may have the same name).
    """
    with contextlib.suppress(OSError):
        path = card_path(model_path, card.model_hash)
        fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as file:
                json.dump({"format": CARD_FORMAT, **asdict(card)}, file)
            _publish(Path(tmp), path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if path.parent.name != EXPORT_DIR:
            return
        for old in path.parent.glob(f"{model_path.stem}-*.json"):  # earlier contents' cards
            if old != path and re.fullmatch(
                rf"{re.escape(model_path.stem)}-[0-9a-f]{{12}}\.json", old.name
            ):
                with contextlib.suppress(OSError):
                    old.unlink()


def detector_graph(model: Any, chip_size: int, input_size: int) -> Any:
    """A torch module over a ``DetectionModel``: (N, S, S, 3) uint8 RGB chips -> (raw, pooled).

    ``raw`` (N, 4 + C, A) float32, ``pooled`` (N, D) float32. Chips are normalised as
    ultralytics does (x / 255, the model's dtype, contiguous BCHW) and, when ``input_size``
    differs from ``chip_size``, resized bilinearly (square chips: ultralytics' letterbox
    without padding). The torch backend runs this module; the exports are traced from it.
    """
    import torch

    dtype = next(model.parameters()).dtype

    class _Graph(torch.nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = x.permute(0, 3, 1, 2).to(dtype, memory_format=torch.contiguous_format) / 255
            if input_size != chip_size:
                x = torch.nn.functional.interpolate(
                    x, size=(input_size, input_size), mode="bilinear", align_corners=False
                )
            raw, preds = self.net(x)
            feats = preds.get("one2many", preds)["feats"]
            pooled = torch.cat([f.mean(dim=(2, 3), dtype=torch.float32) for f in feats], 1)
            return raw.float(), pooled

    return _Graph(model).eval()


def export_onnx(model: Any, path: Path, chip_size: int, input_size: int) -> None:
    """Trace ``model``'s graph on (2, S, S, 3) uint8 chips into ONNX at ``path`` (batch dynamic)."""
    import torch

    graph = detector_graph(model, chip_size, input_size)
    example = torch.zeros(2, chip_size, chip_size, 3, dtype=torch.uint8)
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
