"""What a worker does: load the detector once, then read, detect and score the chips of tasks.

Plain classes with no Ray in them (``WorkerPool`` makes them Ray actors), so the
same code scores a shard on a SLURM node and a task on a Ray actor, and is
tested without Ray. A worker reads its chips' windows itself from the scenes'
paths (local files on shared storage, or GDAL URLs such as ``/vsis3/``): only
window coordinates travel to it, only small records travel back.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from geoal.detect.stream import ScoreParams, read_batches, score_scene_chips
from geoal.distributed.work import Task
from geoal.errors import ModelError
from geoal.store.scores import ScoreRecord, encode_chip

__all__ = ["ChipPredictor", "ChipScorer", "ModelSpec", "PredictParams", "ScoreParams"]

P = TypeVar("P")


@dataclass(frozen=True)
class ModelSpec:
    """How a worker loads the driver's detector, and the hash it must find."""

    model: str  # absolute .pt path (shared storage) or a .yaml architecture
    classes: tuple[str, ...]
    imgsz: int | None
    model_hash: str
    gpu: bool = False  # Ray sets CUDA_VISIBLE_DEVICES: the actor's GPU is cuda:0
    threads: int = 0  # torch CPU threads (the actor's CPUs); 0 = torch's default
    backend: str = "auto"  # resolved on each worker for its device (geoal.detect.backends)


@dataclass(frozen=True)
class PredictParams:
    """The detection options a worker applies (as ``geoal predict``'s)."""

    conf: float
    iou: float
    batch: int
    readers: int


def load_worker_detector(spec: ModelSpec, device: str | None = None) -> Any:
    """The detector of ``spec``; ModelError if this machine's model file differs from the driver's."""
    from geoal.detect import load_detector

    if spec.threads > 0:
        import torch

        # A Ray actor inherits the driver's OMP_NUM_THREADS (ultralytics sets it to 1 on
        # import); a CPU actor should use the CPUs it reserved, no more, no fewer.
        torch.set_num_threads(spec.threads)
    detector = load_detector(
        spec.model,
        spec.classes,
        device=device or ("cuda:0" if spec.gpu else "cpu"),
        imgsz=spec.imgsz,
        backend=spec.backend,
    )
    if detector.model_hash != spec.model_hash:
        raise ModelError(
            f"{socket.gethostname()}: model {spec.model} has hash {detector.model_hash[:12]}, "
            f"the driver's has {spec.model_hash[:12]}: every node must see the same model file"
        )
    return detector


class _Worker(Generic[P]):
    """Applies the driver's environment, then loads the detector once; keeps the options."""

    def __init__(self, spec: ModelSpec, params: P, env: Mapping[str, str]) -> None:
        for name, value in env.items():
            os.environ.setdefault(name, value)
        self.params = params
        self.detector = load_worker_detector(spec)

    def ready(self) -> int:
        """The worker's process id, once the model is loaded."""
        return os.getpid()


class ChipScorer(_Worker[ScoreParams]):
    """Holds a loaded detector; ``score(task)`` returns the task's chip ids and records."""

    def score(self, task: Task) -> tuple[list[int], list[ScoreRecord]]:
        """Read, detect and score the task's chips: (chip_ids, records), in batch order."""
        ids: list[int] = []
        records: list[ScoreRecord] = []
        for chip_ids, chips in score_scene_chips(self.detector, task.chips, self.params):
            ids.extend(chip_ids)
            records.extend(encode_chip(*chip) for chip in chips)
        return ids, records


class ChipPredictor(_Worker[PredictParams]):
    """Holds a loaded detector; ``predict(task)`` returns each chip's objects in scene pixels."""

    def predict(self, task: Task) -> list[tuple[int, np.ndarray]]:
        """[(chip index, (N, 7) [x1, y1, x2, y2, score, class, entropy] in scene pixels)]."""
        from geoal.predict.scene import chip_objects

        chip_of = {chip.id: chip for chip in task.chips}
        out: list[tuple[int, np.ndarray]] = []
        p = self.params
        batches = read_batches(task.chips, p.batch, p.readers)
        stream = self.detector.iter_predict(batches, views=1, conf=p.conf, iou=p.iou, details=False)
        try:
            for chip_ids, results in stream:
                for chip_id, res in zip(chip_ids, results, strict=True):
                    if len(res):
                        out.append((chip_id, chip_objects(res, chip_of[chip_id])))
        finally:
            stream.close()
        return out
