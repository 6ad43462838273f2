"""A short training run on the tiny subset, as most geoal.train tests start one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geoal.train import TrainConfig, TrainResult, train_detector

TINY = 128  # pixels: the long side of the tiny subset's images and the training size


def train_tiny(
    data_yaml: Path,
    classes: Any,
    out_dir: Path,
    *,
    init: str | Path = "yolov8n.yaml",
    progress: bool = False,
    name: str = "train",
    **config: Any,
) -> TrainResult:
    """``train_detector`` from ``init``: 1 epoch at TINY px, batch 4, seed 0 unless ``config`` says."""
    settings = {"epochs": 1, "imgsz": TINY, "batch": 4, "seed": 0, **config}
    return train_detector(
        data_yaml,
        init=init,
        classes=classes,
        out_dir=out_dir,
        config=TrainConfig(**settings),
        progress=progress,
        name=name,
    )
