"""The model side of a round: the starting checkpoint, training, test-set mAP, pool scores.

Training is ``geoal.train.train_detector``, evaluation ``predict_coco`` +
``evaluate_coco``, and pool scoring the same stream as ``geoal score``
(``geoal.detect.stream.score_stream``) over letterboxed images.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from geoal.detect.result import ChipResult
from geoal.detect.stream import ScoreParams, score_stream
from geoal.errors import ModelError
from geoal.simulate.acquire import Features
from geoal.simulate.config import SimConfig
from geoal.simulate.data import Pool
from geoal.uncertainty.calibrated import calibrated_scores, class_difficulty, model_quality
from geoal.uncertainty.chip import ChipScores


def prepare_init(init: str, classes: tuple[str, ...], folder: Path) -> str:
    """The model to train round 0 from: ``init`` itself, or a copy re-headed for ``classes``.

    A ``.yaml`` is returned as is. A ``.pt`` that detects other classes (a COCO or any
    other checkpoint) becomes ``folder/init-<hash>.pt``: the same architecture with a
    detection head for ``classes``; every weight whose name and shape match is carried over
    (ultralytics' ``DetectionModel.load``), i.e. all but the last class-score convolutions.
    """
    if not init.lower().endswith(".pt"):
        return init
    import torch
    from ultralytics.nn.tasks import DetectionModel, load_checkpoint

    from geoal.detect.loading import sha256_file

    path = Path(init).expanduser()
    if not path.is_file():
        raise ModelError(f"--init {init}: file not found (geoal never downloads models)")
    try:
        source, _ = load_checkpoint(str(path.resolve()), device="cpu")
    except Exception as error:
        raise ModelError(f"--init {init}: cannot load: {type(error).__name__}: {error}") from error
    names = getattr(source, "names", {}) or {}
    if tuple(str(names[i]) for i in sorted(names)) == classes:
        return str(path.resolve())
    digest = sha256_file(path)[:12]
    target = folder / f"init-{digest}-{len(classes)}cls.pt"
    if target.is_file():
        return str(target)
    spec = dict(source.yaml)
    spec["nc"] = len(classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = DetectionModel(spec, nc=len(classes), verbose=False)
    model.load(source, verbose=False)
    model.names = dict(enumerate(classes))
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".pt", delete=False) as tmp:
        torch.save({"model": model, "train_args": {}}, tmp)
    os.replace(tmp.name, target)
    return str(target)


def train_round(
    cfg: SimConfig,
    pool: Pool,
    labelled: np.ndarray,
    init: str,
    work: Path,
    *,
    epochs: int,
    seed: int,
    target: Path,
) -> Path:
    """Train on the ``labelled`` (L,) pool indices from ``init``; save the weights at ``target``.

    Up to ``cfg.val_images`` labelled images, evenly spread over acquisition order, form
    ultralytics' val split and stay in the train split as well: in a label-efficiency
    study no label is set aside, and the fixed test set is the judge.
    """
    import yaml

    from geoal.train import OptimConfig, TrainConfig, materialise_yolo_dataset, train_detector

    idx = [int(i) for i in labelled]
    val = {f"img{int(pool.image_ids[i])}" for i in idx[:: max(1, -(-len(idx) // cfg.val_images))]}
    data_yaml = materialise_yolo_dataset(work / "dataset", pool.items(idx), val, pool.classes)
    data = yaml.safe_load(data_yaml.read_text())
    data["train"] = ["images/train", "images/val"] if len(val) < len(idx) else "images/val"
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    result = train_detector(
        data_yaml,
        init=init,
        classes=pool.classes,
        out_dir=work / "runs",
        config=TrainConfig(
            epochs=epochs,
            imgsz=cfg.imgsz,
            batch=cfg.batch,
            device=cfg.device,
            seed=seed,
            augment=cfg.augment,
            # One optimiser step per batch: with ultralytics' nominal batch of 64, a round of a
            # few dozen images would step once every few epochs and every arm would be
            # under-trained (min_iterations counts steps).
            optim=OptimConfig(nbs=cfg.batch),
        ),
        progress=False,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(result.weights, tmp)
    os.replace(tmp, target)
    shutil.rmtree(work / "runs", ignore_errors=True)
    return target


def evaluate(
    cfg: SimConfig,
    weights: Path,
    test: dict[str, Any],
    category_ids: dict[str, int],
    classes: tuple[str, ...],
) -> tuple[float, float, float]:
    """(mAP50, mAP50-95, recall at conf 0.25) of ``weights`` on the fixed test set (COCO)."""
    from geoal.train import PredictConfig, evaluate_coco, predict_coco

    folder = cfg.test_images or cfg.images
    dets = predict_coco(
        weights,
        [folder / str(im["file_name"]) for im in test["images"]],
        classes,
        image_ids=[int(im["id"]) for im in test["images"]],
        category_ids=category_ids,
        config=PredictConfig(imgsz=cfg.imgsz, device=cfg.device, batch=8),
    )
    result = evaluate_coco(test, dets)
    return result.mAP50, result.mAP50_95, result.recall


def score_pool(cfg: SimConfig, weights: Path, pool: Pool, labelled: np.ndarray) -> Features:
    """Scores, embeddings and expected counts of every pool image under ``weights``.

    Unlabelled images go through the scoring stream with ``cfg.views`` views (as ``geoal
    score``); labelled ones need only their embedding and detections (one view).
    """
    from geoal.detect import load_detector

    detector = load_detector(
        weights, pool.classes, cfg.device, imgsz=cfg.imgsz, backend=cfg.backend
    )
    n = len(pool)
    is_labelled = np.zeros(n, dtype=bool)
    is_labelled[labelled] = True
    found = _PoolScores(n)
    params = ScoreParams(cfg.views, cfg.conf, 0.7, cfg.top_k, cfg.batch, readers=1)
    unlabelled = np.flatnonzero(~is_labelled).tolist()
    for keys, chips in score_stream(detector, pool.chips(unlabelled, cfg.batch), params):
        for i, (result, chip) in zip(keys, chips, strict=True):
            found.add_scored(i, result, chip, cfg.aggregation)
    batches = pool.chips(labelled.tolist(), cfg.batch)
    for keys, results in detector.iter_predict(batches, views=1, conf=cfg.conf):
        for i, result in zip(keys, results, strict=True):
            found.add_labelled(i, result)
    if found.embeddings is None:
        raise ModelError("the pool is empty: nothing to score")
    flat_image, flat_cls, flat_conf = found.detections()
    difficulty = _difficulty(pool, labelled, found.fit)
    calibrated = calibrated_scores(flat_image, flat_cls, flat_conf, difficulty, n)
    calibrated[is_labelled] = np.nan
    return Features(
        scores=found.scores,
        embeddings=found.embeddings,
        expected=found.expected,
        det_image=flat_image,
        det_cls=flat_cls,
        det_conf=flat_conf,
        calibrated=calibrated,
        quality=model_quality(difficulty),
        objectness=found.objectness,
    )


class _PoolScores:
    """What ``score_pool`` gathers, image by image: (n,) scores, counts, objectness,
    embeddings, detections."""

    def __init__(self, n: int) -> None:
        self.scores = np.full(n, np.nan)
        self.expected = np.zeros(n)
        self.objectness = np.zeros(n)  # top-k anchor objectness (``chip_objectness``)
        self.embeddings: np.ndarray | None = None  # (n, D) float32, made at the first image
        self.det: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (image, cls, conf)
        self.fit: list[tuple[int, np.ndarray, np.ndarray]] = []  # labelled: (image, boxes, probs)

    def _embed(self, i: int, result: ChipResult) -> None:
        if self.embeddings is None:
            self.embeddings = np.zeros((len(self.scores), result.embedding.shape[0]), np.float32)
        self.embeddings[i] = result.embedding

    def add_scored(self, i: int, result: ChipResult, chip: ChipScores, aggregation: str) -> None:
        """An unlabelled image: its chip score by ``aggregation``, count, detections."""
        if aggregation not in chip.scores:
            raise ModelError(
                f"aggregation {aggregation!r} is not a chip score; "
                f"valid: {', '.join(sorted(chip.scores))}"
            )
        self._embed(i, result)
        self.scores[i] = chip.scores[aggregation]
        self.expected[i] = chip.expected_count
        self.objectness[i] = chip.scores["objectness"]
        self.det.append(
            (
                np.full(len(result), i, dtype=np.int64),
                np.asarray(result.cls, dtype=np.int64),
                np.asarray(result.conf, dtype=np.float64),
            )
        )

    def add_labelled(self, i: int, result: ChipResult) -> None:
        """A labelled image: its embedding, and its detections for the class difficulty."""
        self._embed(i, result)
        self.fit.append((i, np.asarray(result.boxes), np.asarray(result.probs)))

    def detections(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(M,) image index, (M,) class, (M,) confidence of every unlabelled image's detections."""
        if not self.det:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        image, cls, conf = zip(*self.det, strict=True)
        return np.concatenate(image), np.concatenate(cls), np.concatenate(conf)


def _difficulty(
    pool: Pool, labelled: np.ndarray, fit: list[tuple[int, np.ndarray, np.ndarray]]
) -> np.ndarray:
    """(C,) class difficulty of the model on the labelled images' true boxes (PPAL-style)."""
    n_classes = len(pool.classes)
    gt_image = [np.full(len(pool.cls[i]), i, dtype=np.int64) for i in labelled.tolist()]
    det_image = [np.full(len(boxes), i, dtype=np.int64) for i, boxes, _ in fit]
    return class_difficulty(
        np.concatenate([pool.boxes[i] for i in labelled.tolist()] or [np.zeros((0, 4))]),
        np.concatenate([pool.cls[i] for i in labelled.tolist()] or [np.zeros(0, np.int64)]),
        np.concatenate(gt_image or [np.zeros(0, np.int64)]),
        np.concatenate([b for _, b, _ in fit] or [np.zeros((0, 4))]),
        np.concatenate([p for _, _, p in fit] or [np.zeros((0, n_classes))]),
        np.concatenate(det_image or [np.zeros(0, np.int64)]),
        n_classes,
    )
