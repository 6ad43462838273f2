"""Retrain and evaluate: labelled chips -> YOLO dataset -> fine-tuned model -> COCO metrics.

A trained model is copied into the project (``models/``), registered with its
content hash, its parent, the round it closes, its metrics and the chips held
out to validate it, so ``geoal evaluate`` can score it on the same chips later.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoal.detect.loading import ModelInput, record_input, sha256_file, stride_size
from geoal.errors import ConfigError, FormatError, GeoalError, ModelError
from geoal.project import Project
from geoal.store.models import ModelRecord, find_models, is_registered, set_model_metrics
from geoal.store.rounds import latest_round
from geoal.train.trainer import OptimConfig

DEFAULT_IMGSZ = 640
"""Input size of a model that records none, on images that are not chips (ultralytics' default)."""


@dataclass(frozen=True)
class TrainOptions:
    """Options of ``geoal train``."""

    init: str = "last"  # last | a .pt | a .yaml
    epochs: int = 30
    imgsz: int | None = None  # default: the config's model.imgsz, else the chip size
    batch: int = 8
    device: str = "cpu"
    val_fraction: float = 0.2
    split: str = "scene"  # scene | chip
    seed: int = 0
    progress: bool = True
    optim: OptimConfig | None = None  # default: ultralytics' optimiser settings
    keep: str = "best"  # best (by validation, every epoch) | last (the final epoch)


@dataclass(frozen=True)
class TrainReport:
    """What ``geoal train`` produced."""

    model_hash: str
    path: Path
    parent: str | None
    metrics: dict[str, Any]
    train_chips: int
    val_chips: int
    seconds: float


def resolve_init(project: Project, init: str) -> tuple[str, str | None]:
    """The weights or yaml to start from, and the parent model's hash (if a registered model)."""
    if init == "last":
        latest = project.store.latest_model("trained")
        if latest is None:
            return project.config.model.arch, None
        return project.model_file(str(latest["path"])), str(latest["hash"])
    path = Path(init)
    if path.suffix.lower() == ".pt":
        if not path.is_file():
            raise ModelError(f"--from {init}: file not found")
        digest = sha256_file(path)
        return str(path.resolve()), (digest if is_registered(project.store, digest) else None)
    return init, None


def train_project(project: Project, opts: TrainOptions) -> TrainReport:
    """Fine-tune on every labelled chip and register the new model."""
    from geoal import formats
    from geoal.pipeline.annotate import chip_images, chip_infos, labelled_chip_ids, labels
    from geoal.pipeline.catalog import check_scenes_unchanged
    from geoal.train import TrainConfig, split_train_val, train_detector

    if opts.split not in ("scene", "chip"):
        raise ConfigError(f"--split {opts.split}: choose scene or chip")
    ids = labelled_chip_ids(project)
    if not ids:
        raise GeoalError(f"{project.root}: no labelled chips; import labels first ('geoal import')")
    infos = chip_infos(project, ids)
    groups = [infos[i].scene_id for i in ids] if opts.split == "scene" else None
    train_ids, val_ids = split_train_val(
        ids, groups, opts.val_fraction, np.random.default_rng(opts.seed)
    )
    work = project.root / "training"
    dataset = work / "dataset"
    if dataset.exists():
        shutil.rmtree(dataset)
    lab = labels(project, ids)
    check_scenes_unchanged(project, [infos[i].scene_id for i in ids])
    with chip_images(project) as read:
        data_yaml = formats.write_yolo_dataset(
            dataset,
            [(infos[i], lab[i]) for i in ids],
            project.config.classes,
            read,
            val_ids=set(val_ids),
        )
    init, parent = resolve_init(project, opts.init)
    chip_size = max(max(infos[i].window[2], infos[i].window[3]) for i in ids)
    imgsz = opts.imgsz or project.config.model.imgsz or stride_size(chip_size)
    result = train_detector(
        data_yaml,
        init=init,
        classes=project.config.classes,
        out_dir=work / "runs",
        config=TrainConfig(
            opts.epochs, imgsz, opts.batch, opts.device, opts.seed, optim=opts.optim, keep=opts.keep
        ),
        progress=opts.progress,
    )
    # the input size travels with the file (geoal predict) and with the store's record
    project.models_dir.mkdir(parents=True, exist_ok=True)
    staged = project.models_dir / "model.pt.new"
    record_input(result.weights, staged, ModelInput(imgsz, chip_size))
    digest = sha256_file(staged)
    target = project.models_dir / f"model_{digest[:12]}.pt"
    staged.replace(target)
    metrics = {
        "train": {k: float(v) for k, v in result.metrics.items()},
        "train_chips": len(train_ids),
        "val_chip_ids": [int(i) for i in val_ids],
        "epochs": result.epochs,
        "imgsz": imgsz,
        "chip_size": chip_size,
        "seconds": result.seconds,
    }
    project.store.register_model(
        digest,
        project.stored_model_path(target),
        project.config.classes,
        kind="trained",
        parent_hash=parent,
        round_id=latest_round(project.store),
        metrics=_finite(metrics),
    )
    return TrainReport(
        digest, target, parent, metrics, len(train_ids), len(val_ids), result.seconds
    )


def model_record(project: Project, model: str | None) -> ModelRecord:
    """A registered model by hash prefix or path (default: the latest trained)."""
    if model is None:
        row = project.store.latest_model("trained")
        if row is None:
            raise ModelError(
                f"{project.root}: no trained model yet; run 'geoal train' or pass --model"
            )
        return ModelRecord.from_row(row)
    found = find_models(project.store, model, project.stored_model_path(model))
    if len(found) != 1:
        raise ModelError(
            f"--model {model}: {'ambiguous' if found else 'not a registered model of this project'}"
        )
    return found[0]


@dataclass(frozen=True)
class _Evaluation:
    """A model's detections on ground truth, both as COCO, before they are compared."""

    record: ModelRecord | None  # None: a .pt file that is not registered
    gt: dict[str, Any]
    dets: list[dict[str, Any]]
    size: int | None  # the model's input size, pixels
    source: str


def evaluate_project(
    project: Project,
    model: str | None,
    *,
    data: Path | None = None,
    images: Path | None = None,
    device: str = "cpu",
    conf: float = 0.25,
    imgsz: int | None = None,
) -> dict[str, Any]:
    """COCO metrics of a model on a COCO file + images, or on its held-out chips; stored with it.

    ``imgsz``: the model's input size in pixels; None = the size it was trained at.
    """
    from geoal.train import evaluate_coco

    if data is not None:
        run = _on_coco_file(project, model, data, images, device, imgsz)
    else:
        run = _on_held_out(project, model_record(project, model), device, imgsz)
    result = evaluate_coco(run.gt, run.dets, conf_threshold=conf)
    metrics = {
        "source": run.source,
        "mAP50": result.mAP50,
        "mAP50-95": result.mAP50_95,
        "recall": result.recall,
        "conf": conf,
        "imgsz": run.size,
        "ap50": result.ap50,
        "ap50_95": result.ap50_95,
        "n_images": result.n_images,
        "n_gt": result.n_gt,
    }
    if run.record is not None:
        stored = _finite({**run.record.metrics, "eval": metrics})
        set_model_metrics(project.store, run.record.hash, stored)
    return metrics


def _on_coco_file(
    project: Project,
    model: str | None,
    data: Path,
    images: Path | None,
    device: str,
    imgsz: int | None,
) -> _Evaluation:
    """The model's detections on the images of a COCO file (in ``images`` or beside it)."""
    from geoal.pipeline.scoring import model_imgsz
    from geoal.train import PredictConfig, predict_coco

    record: ModelRecord | None
    if model is not None and Path(model).suffix == ".pt" and Path(model).is_file():
        weights, record = Path(model), None
    else:
        record = model_record(project, model)
        weights = Path(project.model_file(record.path))
    size = imgsz or model_imgsz(project, str(weights)) or DEFAULT_IMGSZ
    gt, paths, category_ids = _coco_ground_truth(data, images, project.config.classes)
    dets = predict_coco(
        weights,
        paths,
        project.config.classes,
        image_ids=[img["id"] for img in gt["images"]],
        category_ids=category_ids,
        config=PredictConfig(imgsz=size or DEFAULT_IMGSZ, device=device),
    )
    return _Evaluation(record, gt, dets, size, str(data))


def _coco_ground_truth(
    data: Path, images: Path | None, classes: Sequence[str]
) -> tuple[dict[str, Any], list[Path], dict[str, int]]:
    """A COCO file of labels, its image paths and category ids by name.

    ConfigError or FormatError when it cannot be evaluated on.
    """
    from geoal.train import load_coco

    gt = load_coco(data)
    scored = sum("score" in ann for ann in gt["annotations"])
    if scored and scored == len(gt["annotations"]):
        raise FormatError(
            f"{data}: all {scored} annotations carry a 'score': they are a model's "
            "predictions (an unedited 'geoal export'?), not ground truth; "
            "evaluate on the labelled file the annotators returned"
        )
    folder = Path(images) if images else Path(data).parent
    names = {c["id"]: c["name"] for c in gt["categories"]}
    missing = [n for n in names.values() if n not in classes]
    if missing:
        raise ConfigError(
            f"{data}: categories {missing} are not project classes ({', '.join(classes)})"
        )
    paths = [folder / img["file_name"] for img in gt["images"]]
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise ConfigError(f"{absent[0]}: image of {data} not found (give --images DIR)")
    return gt, paths, {n: i for i, n in names.items()}


def _on_held_out(
    project: Project, record: ModelRecord, device: str, imgsz: int | None
) -> _Evaluation:
    """The model's detections on the chips held out when it was trained, with their labels."""
    from geoal.pipeline.scoring import model_imgsz

    weights = Path(project.model_file(record.path))
    val_ids = record.metrics.get("val_chip_ids") or []
    if not val_ids:
        raise ConfigError(
            f"model {record.hash[:12]} has no held-out chips; give --data COCO_JSON --images DIR"
        )
    size = imgsz or model_imgsz(project, str(weights))
    gt, dets = _chip_coco(project, weights, val_ids, device, size)
    return _Evaluation(record, gt, dets, size, f"held-out chips ({len(val_ids)})")


def _finite(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become None (COCO gives NaN for absent classes)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _chip_coco(
    project: Project, weights: Path, chip_ids: list[int], device: str, imgsz: int | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ground truth (stored labels) and detections of the model on the given chips, as COCO.

    ``imgsz``: the model's input size in pixels (None: each chip's own size).
    """
    from geoal.detect import load_detector
    from geoal.pipeline.annotate import chip_infos, labels
    from geoal.raster.reader import iter_batches, iter_chips

    classes = project.config.classes
    infos = chip_infos(project, chip_ids)
    lab = labels(project, chip_ids)
    images, annotations = [], []
    for cid in chip_ids:
        w, h = infos[cid].window[2], infos[cid].window[3]
        images.append({"id": cid, "file_name": infos[cid].file_name, "width": w, "height": h})
        for k, (box, cls) in enumerate(zip(lab[cid].xyxy, lab[cid].cls, strict=True)):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append(
                {
                    "id": cid * 10_000 + k,
                    "image_id": cid,
                    "category_id": int(cls) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    gt = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(classes)],
    }
    detector = load_detector(weights, classes, device=device, imgsz=imgsz)
    scenes = {s.id: s for s in project.store.scenes()}
    items = [(cid, infos[cid].scene_id, infos[cid].window) for cid in chip_ids]
    dets: list[dict[str, Any]] = []
    for ids, results in detector.iter_predict(
        iter_batches(iter_chips(scenes, items), 8), views=1, conf=0.001
    ):
        for cid, res in zip(ids, results, strict=True):
            for box, score, cls in zip(res.boxes, res.conf, res.cls, strict=True):
                x1, y1, x2, y2 = (float(v) for v in box)
                dets.append(
                    {
                        "image_id": cid,
                        "category_id": int(cls) + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": float(score),
                    }
                )
    return gt, dets
