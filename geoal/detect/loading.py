"""Build or load a YOLO detection model, offline, and check it against the project's classes.

ultralytics would download a missing ``yolo*.pt`` by name, or anything given as
a URL; geoal never does: a model is a local ``.pt`` file or a ``.yaml``
architecture (a local file, or one that ships inside the ultralytics package,
such as ``yolov8n.yaml``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoal.detect.detector import Detector, Runtime
from geoal.errors import ConfigError, ModelError
from geoal.hashing import sha256_file

if TYPE_CHECKING:
    import torch

YAML_SEED = 0
"""A ``.yaml`` model is initialised from this seed, so yaml + classes determine its weights."""

_YAML_SUFFIXES = (".yaml", ".yml")
_CUDA_DEVICE = re.compile(r"^cuda(:\d+)?$")


def load_detector(
    model: str | Path,
    classes: Sequence[str] | None,
    device: str = "cpu",
    half: bool | None = None,
    imgsz: int | None = None,
    backend: str | None = None,
) -> Detector:
    """Load a local ``.pt`` or build a ``.yaml`` detector for ``classes``, ready for inference.

    A ``.yaml`` gives a model with nc = len(classes) and these class names,
    randomly initialised from ``YAML_SEED``. A ``.pt`` must name exactly
    ``classes``, in order; ``classes=None`` takes a ``.pt``'s own class names
    (``Detector.classes``; whole-scene prediction outside a project). ``device`` is
    "cpu" or "cuda:N"; ``half`` defaults to fp16 on CUDA and fp32 on CPU. ``imgsz``
    (pixels, a multiple of the model's largest stride) resizes chips to the model's
    input size; None runs chips at their own size. Raises ModelError for a missing,
    unreadable, remote or mismatching model. ``backend`` (``geoal.detect.backends``):
    torch, openvino, onnxruntime, or None / "auto" for the default on the device (or
    ``$GEOAL_BACKEND``); the exported ones get the threads per call that torch would.
    With an exported backend, a ``.pt`` whose model card is on disk
    (``geoal.detect.export.ModelCard``) is not loaded at all (nor torch imported) until
    an export is missing; loading a ``.pt`` for one writes its card.
    """
    from geoal.detect.backends import get_backend, resolve_backend

    class_names = None if classes is None else check_classes(classes)
    runtime = resolve_backend(backend, device)
    exported = get_backend(runtime).exported
    device, use_half, streams, threads = _check_device(device, half, torch_threads=not exported)
    text = str(model)
    if "://" in text:
        raise ModelError(
            f"model {text!r} is a URL; geoal never downloads models: "
            "download it yourself and give the local .pt path"
        )
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    settings = Runtime(device, use_half, imgsz, streams, runtime, threads)
    if suffix == ".pt" and exported and path.is_file():
        card_detector = _from_card(path, class_names, settings)
        if card_detector is not None:  # torch and ultralytics are not imported
            return card_detector
    if suffix in _YAML_SUFFIXES:
        if class_names is None:
            raise ConfigError(f"model {text!r}: a .yaml architecture needs the class names")
        net, model_hash = _build_yaml(path, class_names)
    elif suffix == ".pt":
        net, model_hash, recorded = _load_pt(path, class_names)
        class_names = _model_class_names(net)
        if exported:
            _write_card(path, model_hash, net, class_names, recorded)
    else:
        raise ModelError(
            f"model {text!r} is neither a .pt checkpoint nor a .yaml architecture; give either"
        )
    return Detector(_prepare(net, device, use_half), class_names, path, model_hash, settings)


def _from_card(path: Path, classes: tuple[str, ...] | None, runtime: Runtime) -> Detector | None:
    """A Detector for an exported backend from the model's card, its model loaded only if needed.

    None when the checkpoint has no card yet (it is loaded with torch, and the card written).
    """
    from geoal.detect.export import read_card

    model_hash = sha256_file(path)
    card = read_card(path, model_hash)
    if card is None:
        return None
    if classes is not None and card.classes != classes:
        raise _class_mismatch(str(path.resolve()), card.classes, classes)

    def load() -> Any:  # only when an export for a new input size has to be made
        net, _, _ = _load_pt(path, card.classes)
        return _prepare(net, runtime.device, runtime.half)

    return Detector(
        None, card.classes, path, model_hash, runtime, strides=card.strides, load_model=load
    )


def _write_card(
    path: Path, model_hash: str, net: Any, classes: tuple[str, ...], recorded: ModelInput | None
) -> None:
    from geoal.detect.export import ModelCard, write_card

    strides = tuple(int(s) for s in net.stride.tolist())
    imgsz, chip = (None, None) if recorded is None else (recorded.imgsz, recorded.chip_size)
    write_card(path, ModelCard(model_hash, classes, strides, imgsz, chip))


CHECKPOINT_KEY = "geoal"
"""Key of the record geoal adds to the checkpoints it trains: {"imgsz": I, "chip_size": C}."""


@dataclass(frozen=True)
class ModelInput:
    """The input a model was trained at: chips of ``chip_size`` px resized to ``imgsz`` px.

    ``chip_size`` is None where unknown (a checkpoint not trained by geoal).
    """

    imgsz: int
    chip_size: int | None = None

    def for_chip(self, side: int) -> int:
        """The input size (pixels, a multiple of 32) for chips of ``side`` px at the trained scale."""
        if self.chip_size is None or side == self.chip_size:
            return self.imgsz
        return max(32, round(side * self.imgsz / self.chip_size / 32) * 32)


def stride_size(side: int) -> int:
    """The input size for chips of ``side`` px at their own scale: up to a multiple of 32."""
    return max(32, -(-int(side) // 32) * 32)


def checkpoint_input(path: str | Path) -> ModelInput | None:
    """The input size recorded in a local ``.pt`` (geoal's record, else ultralytics' train_args).

    Read from the model's card when it has one (``geoal.detect.export.ModelCard``). None
    for a ``.yaml``, a missing or unreadable file (loading it reports why), or a
    checkpoint that records no size.
    """
    from geoal.detect.export import read_card

    path = Path(path)
    if path.suffix.lower() != ".pt" or not path.is_file():
        return None
    card = read_card(path, sha256_file(path))
    if card is not None:  # known without loading the checkpoint (or importing torch)
        return None if card.imgsz is None else ModelInput(card.imgsz, card.chip_size)
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:
        return None
    return _recorded_input(ckpt)


def _recorded_input(ckpt: Any) -> ModelInput | None:
    if not isinstance(ckpt, dict):
        return None
    mine = ckpt.get(CHECKPOINT_KEY)
    if isinstance(mine, dict) and isinstance(mine.get("imgsz"), int):
        chip = mine.get("chip_size")
        return ModelInput(int(mine["imgsz"]), int(chip) if isinstance(chip, int) else None)
    args = ckpt.get("train_args")
    imgsz = args.get("imgsz") if isinstance(args, dict) else None
    if isinstance(imgsz, (list, tuple)) and imgsz and all(isinstance(v, int) for v in imgsz):
        imgsz = max(imgsz)
    if isinstance(imgsz, int) and not isinstance(imgsz, bool) and imgsz >= 32:
        return ModelInput(stride_size(imgsz))
    return None


def record_input(weights: Path, target: Path, model_input: ModelInput) -> None:
    """Copy checkpoint ``weights`` to ``target`` with geoal's record of its input size."""
    import torch

    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    ckpt[CHECKPOINT_KEY] = {"imgsz": model_input.imgsz, "chip_size": model_input.chip_size}
    tmp = target.with_name(target.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(target)


def check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    """A model's class names: a non-empty list of unique, non-empty names (ConfigError)."""
    if isinstance(classes, str):
        raise ConfigError(f"classes must be a list of names, got the string {classes!r}")
    names = tuple(classes)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ConfigError(f"classes must be a non-empty list of non-empty names, got {names!r}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"class names must be unique; repeated: {duplicates}")
    return names


def _check_device(
    device: str, half: bool | None, *, torch_threads: bool = True
) -> tuple[str, bool, int, int]:
    """The device, whether to run fp16, the model calls to run at once on the CPU, threads each.

    On the CPU, unless ``OMP_NUM_THREADS`` is set, a call gets all cores but one, as
    ultralytics does (the chip readers keep one: GDAL decoding, stretching; a network
    on every core competes with them and runs several times slower), and the cores those
    threads leave (on 2 cores: 1 thread, half the machine) run calls of their own;
    never under the user's OMP_NUM_THREADS (a Ray actor). ``torch_threads``: also set
    torch's thread count (the torch backend); the exported ones get ``threads`` per call.
    """
    if device == "cpu":
        if half:
            raise ModelError("half precision needs a CUDA device; use half=False on device 'cpu'")
        if "OMP_NUM_THREADS" in os.environ:
            threads, streams = _omp_threads() or 1, 1
        else:
            cores = os.cpu_count() or 2
            threads = max(1, cores - 1)
            streams = max(1, cores // threads)
        if torch_threads:
            import torch

            if "OMP_NUM_THREADS" not in os.environ:
                torch.set_num_threads(threads)
            threads = int(torch.get_num_threads())
        return "cpu", False, streams, threads
    if not _CUDA_DEVICE.match(device):
        raise ModelError(f"device must be 'cpu' or 'cuda:N', got {device!r}")
    import torch

    index = int(device.partition(":")[2] or 0)
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise ModelError(
            f"device {device!r} is not available ({available} CUDA device(s) found); use 'cpu'"
        )
    return f"cuda:{index}", True if half is None else bool(half), 1, int(torch.get_num_threads())


def _omp_threads() -> int | None:
    """``OMP_NUM_THREADS`` as a positive int, None when unset or not a number."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def _build_yaml(path: Path, classes: tuple[str, ...]) -> tuple[Any, str]:
    """A randomly initialised DetectionModel from a yaml, and its hash (yaml content + classes)."""
    import torch
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    try:
        # Resolves a local file, or a name shipped with ultralytics ("yolov8n.yaml" reads
        # yolov8.yaml at scale n); a plain name never reaches the network.
        spec = yaml_model_load(path)
    except FileNotFoundError:
        raise ModelError(
            f"model architecture {str(path)!r} not found: not a local file, "
            "nor a .yaml shipped with ultralytics (e.g. 'yolov8n.yaml')"
        ) from None
    except Exception as error:
        raise ModelError(f"cannot read model architecture {str(path)!r}: {error}") from error
    spec.pop("yaml_file", None)
    spec["nc"] = len(classes)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(YAML_SEED)
            net = DetectionModel(dict(spec), nc=len(classes), verbose=False)
    except Exception as error:
        raise ModelError(f"cannot build a model from {str(path)!r}: {error}") from error
    net.names = dict(enumerate(classes))
    content = json.dumps(
        {"yaml": spec, "classes": list(classes), "seed": YAML_SEED}, sort_keys=True, default=str
    )
    return net, hashlib.sha256(content.encode()).hexdigest()


def read_checkpoint(path: Path, what: str = "model file") -> tuple[Any, str]:
    """A local checkpoint's DetectionModel (plain Detect head, on the CPU) and its resolved path.

    Never downloads: a missing file, a name ultralytics would swap for its 'u' variant and
    download, an unreadable file or a non-detection model raise ModelError (``what`` names
    the file's role in the message). Training's init checks use it too.
    """
    net, resolved, _ = _read_checkpoint(path, what)
    return net, resolved


def _read_checkpoint(path: Path, what: str = "model file") -> tuple[Any, str, ModelInput | None]:
    """:func:`read_checkpoint`, and the input size the checkpoint records (or None)."""
    from ultralytics.nn.tasks import load_checkpoint
    from ultralytics.utils.checks import check_yolov5u_filename

    if not path.is_file():
        hint = (
            " (ultralytics would download a model of that name; geoal never downloads: "
            "put the file on disk and give its path)"
            if path.parent == Path(".")
            else " (geoal never downloads models: put the file on disk and give its path)"
        )
        raise ModelError(f"{what} {str(path)!r} not found{hint}")
    resolved = str(path.resolve())
    if check_yolov5u_filename(resolved, verbose=False) != resolved:
        # ultralytics silently swaps yolov5x.pt for yolov5xu.pt and downloads it.
        raise ModelError(
            f"{what} {resolved!r}: ultralytics would replace this name by its 'u' variant "
            "and download that; rename the file (e.g. add a suffix) and load it again"
        )
    try:
        net, ckpt = load_checkpoint(resolved, device="cpu")
    except Exception as error:
        raise ModelError(
            f"cannot load {what} {resolved!r}: {type(error).__name__}: {error}"
        ) from error
    _check_detection_model(net, resolved, what)
    return net, resolved, _recorded_input(ckpt)


def _load_pt(path: Path, classes: tuple[str, ...] | None) -> tuple[Any, str, ModelInput | None]:
    """A DetectionModel from a local checkpoint, the sha256 of the file, its recorded input."""
    net, resolved, recorded = _read_checkpoint(path)
    model_hash = sha256_file(path)
    names = _model_class_names(net)
    if classes is not None and names != classes:
        raise _class_mismatch(resolved, names, classes)
    return net, model_hash, recorded


def _class_mismatch(resolved: str, names: tuple[str, ...], classes: tuple[str, ...]) -> ModelError:
    return ModelError(
        f"model file {resolved!r} detects classes {list(names)} but the project's classes "
        f"are {list(classes)} (same names, same order needed); "
        "use a model trained for this project"
    )


def _check_detection_model(net: Any, source: str, what: str = "model file") -> None:
    from ultralytics.nn.modules.head import Detect
    from ultralytics.nn.tasks import DetectionModel

    head = net.model[-1] if isinstance(net, DetectionModel) else None  # type: ignore[index]
    if type(head) is not Detect:  # Segment, Pose, OBB, v10Detect... are not plain box heads
        raise ModelError(
            f"{what} {source!r} is a {type(net).__name__} with a {type(head).__name__} head, "
            "not a plain YOLO detection model"
        )


def _model_class_names(net: Any) -> tuple[str, ...]:
    names = getattr(net, "names", None) or {}
    if isinstance(names, dict):
        return tuple(str(names[i]) for i in sorted(names))
    return tuple(str(name) for name in names)


def _prepare(net: Any, device: str, half: bool) -> Any:
    """Eval, one-to-many head, fused, on ``device`` ("cpu", "cuda:N"), fp16/fp32, no gradients."""
    import torch

    head = net.model[-1]
    if getattr(head, "one2one_cv2", None) is not None:
        # End-to-end heads (YOLOv10, YOLO26) score only their top-k boxes; the
        # one-to-many branch scores every anchor, which the views and NMS need.
        head.end2end = False
    net = net.eval()
    net.fuse(verbose=False)
    net = net.to(device)
    net = net.half() if half else net.float()
    if _channels_last(torch.device(device)):
        # As ultralytics' predictor does: faster convolutions, and the same numbers as YOLO.predict.
        net = net.to(memory_format=torch.channels_last)
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net


def _channels_last(device: torch.device) -> bool:
    """Whether ultralytics' predictor runs this device channels-last (CUDA; x86 CPU + oneDNN)."""
    import platform

    import torch

    if device.type == "cuda":
        return True
    return (
        device.type == "cpu"
        and platform.system() in {"Linux", "Windows"}
        and platform.machine() in {"AMD64", "x86_64"}
        and torch.backends.mkldnn.is_available()
        and bool(torch.backends.mkldnn.enabled)
    )
