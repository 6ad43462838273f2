"""Fine-tune (or train from scratch) a YOLO detector with ultralytics' trainer, offline.

The run is ultralytics' own ``DetectionTrainer``, given geoal's choices: the
dataset's class names must be the project's, nothing is downloaded (see
``geoal.train.offline``), the seed fixes the run (deterministic algorithms, no
DataLoader workers on the CPU), and the augmentation suits overhead imagery
(``geoal.train.augment``). Its files go to ``out_dir/<name>``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from geoal.errors import ConfigError, ModelError
from geoal.train.augment import AugmentConfig, ultralytics_augment_args
from geoal.train.dataset import DatasetError
from geoal.train.offline import install_font, local_amp_weights

_CUDA_DEVICE = re.compile(r"^cuda(:\d+)?$")
_YAML_SUFFIXES = (".yaml", ".yml")
_METRIC_KEYS = {
    "mAP50": "metrics/mAP50(B)",
    "mAP50-95": "metrics/mAP50-95(B)",
    "precision": "metrics/precision(B)",
    "recall": "metrics/recall(B)",
}


@dataclass(frozen=True)
class OptimConfig:
    """How a training run steps its optimiser (the defaults are ultralytics' own).

    Attributes:
        optimizer: "auto" (ultralytics picks AdamW with a small learning rate for short
            runs, and ignores ``lr0``), or "SGD", "AdamW", "Adam", ... with ``lr0``.
        lr0: initial learning rate; it decays linearly to 1 % of it by the last epoch.
        warmup_epochs: epochs of linear warm-up from a low rate (0: none). A fine-tuning
            round warms up again.
        nbs: nominal batch size: the gradients of ``nbs / batch`` batches are summed into
            one optimiser step. With a few dozen chips and the default 64, a run makes one
            step every few epochs; ``nbs = batch`` steps after every batch.
    """

    optimizer: str = "auto"
    lr0: float = 0.01
    warmup_epochs: float = 3.0
    nbs: int = 64

    def __post_init__(self) -> None:
        if not self.lr0 > 0:
            raise ConfigError(f"optim.lr0 must be > 0, got {self.lr0}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"optim.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.nbs < 1:
            raise ConfigError(f"optim.nbs must be >= 1, got {self.nbs}")


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        weights: the checkpoint to use: ultralytics' best.pt (best validation
            fitness), or last.pt when there is no best.pt.
        metrics: "mAP50", "mAP50-95", "precision", "recall" (0-1) of the final
            validation of ``weights`` on the val split, as ultralytics computes them.
        epochs: epochs run (fewer than asked when early stopping ended the run).
        seconds: wall-clock duration of the run.
        run_dir: ultralytics' run folder (args.yaml, results.csv, weights/).
    """

    weights: Path
    metrics: dict[str, float]
    epochs: int
    seconds: float
    run_dir: Path


@dataclass(frozen=True)
class TrainConfig:
    """How a training run goes; checked on creation (ConfigError).

    Attributes:
        epochs: epochs to run (>= 1).
        imgsz: training input size in pixels, a multiple of 32.
        batch: images per batch; ``device`` "cpu" or "cuda:N"; ``seed`` fixes the run.
        augment: the augmentation (default: ``AugmentConfig()``, flips and 90-degree turns).
        optim: optimiser, learning rate, warm-up and gradient accumulation (default:
            ultralytics').
        patience: stop after that many epochs without improvement (None: never).
        keep: "best" (validate every epoch, keep the best) or "last" (validate once, at the end).
        plots: let ultralytics draw its plots (offline).
    """

    epochs: int
    imgsz: int
    batch: int = 8
    device: str = "cpu"
    seed: int = 0
    augment: AugmentConfig | None = None
    optim: OptimConfig | None = None
    patience: int | None = None
    keep: str = "best"
    plots: bool = False

    def __post_init__(self) -> None:
        _check_numbers(
            epochs=self.epochs, imgsz=self.imgsz, batch=self.batch, patience=self.patience
        )
        if self.keep not in ("best", "last"):
            raise ConfigError(f"keep must be 'best' or 'last', got {self.keep!r}")
        if self.keep == "last" and self.patience is not None:
            raise ConfigError("patience needs validation every epoch: use keep='best' with it")


def train_detector(
    data_yaml: Path,
    *,
    init: str | Path,
    classes: Sequence[str],
    out_dir: Path,
    config: TrainConfig,
    progress: bool = True,
    name: str = "train",
) -> TrainResult:
    """Train a detector for ``classes`` on the YOLO dataset ``data_yaml``; return its checkpoint.

    ``init`` is a local ``.pt`` to fine-tune (its weights are carried over where
    the shapes match, so a model for other classes is a fine start) or a ``.yaml``
    architecture to train from scratch (a local file, or one shipped with
    ultralytics such as "yolov8n.yaml"). The data set's ``names`` must be
    ``classes``, in order; its train split needs at least one labelled image and
    its val split at least one image. ``config``: epochs, size, batch, device,
    seed, augmentation, optimiser, early stopping. ``progress`` shows a progress
    bar (ultralytics' own log is always silenced, its warnings kept).
    The run goes to ``out_dir/name``, replacing an earlier run of that name.

    The same inputs and seed give the same weights on the CPU (ultralytics seeds
    Python's, numpy's and torch's global generators from ``seed``).
    Raises DatasetError, ModelError or ConfigError.
    """
    started = time.perf_counter()
    from geoal.detect.loading import check_classes

    classes = check_classes(classes)
    if not name or Path(name).name != name or name in {".", ".."}:
        raise ConfigError(f"name must be a plain folder name, got {name!r}")
    on_cuda = _check_device(config.device)
    init_path = _check_init(init)
    data_yaml = Path(data_yaml).expanduser().resolve()
    _read_data_yaml(data_yaml, classes)
    install_font(classes)
    _check_splits(data_yaml)
    run_dir = Path(out_dir).expanduser().resolve() / name
    args = {
        "model": str(init_path),
        "data": str(data_yaml),
        "project": str(run_dir.parent),
        "name": name,
        "verbose": progress,
        **_run_args(config, on_cuda),
    }
    trainer = _run(args, init_path, classes, run_dir, quiet=not progress)
    weights = trainer.best if trainer.best.is_file() else trainer.last
    if not weights.is_file():
        raise ModelError(f"training in {run_dir} ended without a checkpoint (no best.pt, last.pt)")
    _check_weights(weights, classes)
    return TrainResult(
        weights=weights,
        metrics=_final_metrics(trainer.metrics),
        epochs=int(trainer.epoch) + 1,
        seconds=time.perf_counter() - started,
        run_dir=Path(trainer.save_dir),
    )


def _run_args(config: TrainConfig, on_cuda: bool) -> dict[str, Any]:
    """ultralytics' training arguments for ``config`` (besides model, data and where to write)."""
    device = config.device
    return {
        "epochs": config.epochs,
        "imgsz": config.imgsz,
        "batch": config.batch,
        "device": (device.partition(":")[2] or "0") if on_cuda else "cpu",
        "workers": min(4, max(1, (os.cpu_count() or 1) - 1)) if on_cuda else 0,
        "seed": config.seed,
        "deterministic": True,
        "amp": on_cuda,
        "patience": config.patience or 0,  # 0: no early stopping
        "exist_ok": True,
        "plots": config.plots,
        "val": config.keep == "best",  # False: only the final epoch is validated
        "save": config.keep == "best",  # False: only the final epoch is saved
        "cache": False,
        "rect": False,
        **ultralytics_augment_args(config.augment or AugmentConfig()),
        **dataclasses.asdict(config.optim or OptimConfig()),
    }


def _run(
    args: dict[str, Any], init: Path, classes: tuple[str, ...], run_dir: Path, quiet: bool
) -> Any:
    """Run ultralytics' DetectionTrainer with ``args``; return it once done."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    # On the CPU ultralytics trains with cpu_count - 1 torch threads, which leaves a
    # core to the rest of the machine (on a busy 2-core machine, 2 threads ran 3x
    # slower than 1); the caller's thread count is restored afterwards.
    with _torch_state(), _quiet_ultralytics(), _amp_check(args, init, classes, run_dir):
        trainer = DetectionTrainer(overrides=args)
        with _progress_bar(trainer, int(args["epochs"]), quiet):
            trainer.train()
    return trainer


@contextmanager
def _progress_bar(trainer: Any, epochs: int, quiet: bool) -> Iterator[None]:
    """geoal's own progress bar over the run's batches (loss, val mAP50), unless ``quiet``.

    Ultralytics' log is silenced (its banner, model summary, per-epoch tables and ANSI
    colours are a wall of text, worse in a log file); this one line says how far it is.
    """
    if quiet:
        yield
        return
    from tqdm import tqdm

    bar = tqdm(total=epochs, desc="training", unit="batch", dynamic_ncols=True)

    def start(t: Any) -> None:
        bar.reset(total=epochs * max(1, len(t.train_loader)))

    def batch_end(t: Any) -> None:
        bar.update(1)

    def epoch_end(t: Any) -> None:
        shown = {"epoch": f"{min(t.epoch + 1, epochs)}/{epochs}"}
        if isinstance(t.tloss, dict) and t.tloss:
            shown["loss"] = f"{sum(float(v) for v in t.tloss.values()):.3g}"
        if isinstance(t.metrics, dict) and _METRIC_KEYS["mAP50"] in t.metrics:
            shown["mAP50"] = f"{float(t.metrics[_METRIC_KEYS['mAP50']]):.3f}"
        bar.set_postfix(shown, refresh=True)

    trainer.add_callback("on_train_start", start)
    trainer.add_callback("on_train_batch_end", batch_end)
    trainer.add_callback("on_fit_epoch_end", epoch_end)
    try:
        yield
    finally:
        bar.close()


@contextmanager
def _amp_check(
    args: dict[str, Any], init: Path, classes: tuple[str, ...], run_dir: Path
) -> Iterator[None]:
    if args["amp"]:
        with local_amp_weights(init, classes, run_dir / "amp_check"):
            yield
    else:
        yield


@contextmanager
def _torch_state() -> Iterator[None]:
    """Restore torch's thread count and determinism switches, which ultralytics changes."""
    import torch

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


@contextmanager
def _quiet_ultralytics() -> Iterator[None]:
    """Silence ultralytics' log and progress bars (which follow its log level); warnings stay."""
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def _check_numbers(*, epochs: int, imgsz: int, batch: int, patience: int | None) -> None:
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    if imgsz < 32 or imgsz % 32:
        raise ConfigError(f"imgsz must be a positive multiple of 32 pixels, got {imgsz}")
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    if patience is not None and patience < 1:
        raise ConfigError(
            f"patience must be >= 1 epochs (or None for no early stop), got {patience}"
        )


def _check_device(device: str) -> bool:
    """Whether ``device`` ("cpu" or "cuda:N") is a CUDA device; ModelError if unusable."""
    if device == "cpu":
        return False
    if not _CUDA_DEVICE.match(device):
        raise ModelError(f"device must be 'cpu' or 'cuda:N', got {device!r}")
    import torch

    index = int(device.partition(":")[2] or 0)
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= available:
        raise ModelError(
            f"device {device!r} is not available ({available} CUDA device(s) found); use 'cpu'"
        )
    return True


def _check_init(init: str | Path) -> Path:
    """The local .pt or .yaml to start from, checked to be a plain YOLO detection model.

    ModelError for what ultralytics would download, or cannot build or load.
    """
    text = str(init)
    if "://" in text:
        raise ModelError(
            f"init model {text!r} is a URL; geoal never downloads models: give a local .pt path"
        )
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix in _YAML_SUFFIXES:
        head = _yaml_head(path)
        if head != "Detect":  # Segment, Pose, OBB, v10Detect...: not a plain box head
            raise ModelError(
                f"init architecture {text!r} ends in a {head} head, "
                "not a plain YOLO detection model"
            )
        return path.resolve() if path.is_file() else path
    if suffix != ".pt":
        raise ModelError(
            f"init model {text!r} is neither a .pt checkpoint nor a .yaml architecture"
        )
    from geoal.detect.loading import read_checkpoint

    _, resolved = read_checkpoint(path, "init model")
    return Path(resolved)


def _yaml_head(path: Path) -> str:
    """The name of the last module (the head) of a model architecture yaml."""
    from ultralytics.nn.tasks import yaml_model_load

    try:
        spec = yaml_model_load(path)  # a local file, or one shipped with ultralytics
    except FileNotFoundError:
        raise ModelError(
            f"init architecture {str(path)!r} not found: not a local file, "
            "nor a .yaml shipped with ultralytics (e.g. 'yolov8n.yaml')"
        ) from None
    except Exception as error:
        raise ModelError(f"cannot read init architecture {str(path)!r}: {error}") from error
    try:
        return str(spec["head"][-1][2])  # [from, repeats, module, args]
    except (KeyError, IndexError, TypeError):
        raise ModelError(f"init architecture {str(path)!r} has no head layers") from None


def _read_data_yaml(path: Path, classes: tuple[str, ...]) -> dict[str, Any]:
    """The data.yaml as a dict, checked: readable, names == classes, nothing to download."""
    if not path.is_file():
        raise DatasetError(
            f"data set file {str(path)!r} not found: materialise the training data first "
            "(geoal.train.materialise_yolo_dataset)"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise DatasetError(f"cannot read data set file {str(path)!r}: {error}") from error
    if not isinstance(data, dict) or "train" not in data or "val" not in data:
        raise DatasetError(
            f"data set file {str(path)!r} is not a YOLO data.yaml (needs train, val and names)"
        )
    if data.get("download"):
        raise DatasetError(
            f"data set file {str(path)!r} has a 'download' entry; geoal never downloads data: "
            "remove it and give local paths"
        )
    names = data.get("names")
    if isinstance(names, dict):
        try:
            names = [names[k] for k in sorted(names, key=int)]
        except (TypeError, ValueError):
            names = None
    if names is None or tuple(str(n) for n in names) != classes:
        raise DatasetError(
            f"data set file {str(path)!r} names classes {names} but the project's classes are "
            f"{list(classes)} (same names, same order needed): materialise it again"
        )
    return data


def _check_splits(data_yaml: Path) -> None:
    """DatasetError unless train has a labelled image and val an image (paths as ultralytics)."""
    from ultralytics.data.utils import check_det_dataset, img2label_paths

    try:
        data = check_det_dataset(str(data_yaml))
    except Exception as error:
        # ultralytics' message goes on about its download folder: keep the first line
        message = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DatasetError(f"data set {str(data_yaml)!r}: {message}") from error
    for split in ("train", "val"):
        images = _image_files(data.get(split))
        if not images:
            raise DatasetError(
                f"data set {str(data_yaml)!r}: its {split} split ({data.get(split)}) has no images"
            )
        if split == "train":
            paths: list[str | Path] = list(images)
            labelled = sum(_has_boxes(Path(p)) for p in img2label_paths(paths))
            if not labelled:
                raise DatasetError(
                    f"data set {str(data_yaml)!r}: none of its {len(images)} training images "
                    "has a labelled box; label some images first"
                )


def _image_files(spec: str | list[str] | None) -> list[str]:
    """The image files a data.yaml split names: folders (recursive), image files, .txt lists."""
    from ultralytics.data.utils import IMG_FORMATS

    files: list[str] = []
    for entry in [spec] if isinstance(spec, str) else spec or []:
        path = Path(entry)
        if path.is_dir():
            files += [str(p) for p in sorted(path.rglob("*.*")) if p.is_file()]
        elif path.is_file() and path.suffix.lower() == ".txt":
            for line in path.read_text(encoding="utf-8-sig").splitlines():
                line = line.strip()
                if line:
                    files.append(str(path.parent / line[2:]) if line.startswith("./") else line)
        elif path.is_file():
            files.append(str(path))
    return [f for f in files if f.rpartition(".")[-1].lower() in IMG_FORMATS]


def _has_boxes(label_file: Path) -> bool:
    try:
        return any(line.strip() for line in label_file.read_text().splitlines())
    except OSError:
        return False


def _check_weights(weights: Path, classes: tuple[str, ...]) -> None:
    """ModelError unless geoal.detect loads ``weights`` for ``classes``."""
    from geoal.detect import load_detector

    load_detector(weights, classes)


def _final_metrics(raw: dict[str, Any] | None) -> dict[str, float]:
    """mAP50, mAP50-95, precision, recall from ultralytics' metrics dict (NaN where missing)."""
    raw = raw or {}
    return {key: float(raw.get(source, math.nan)) for key, source in _METRIC_KEYS.items()}
