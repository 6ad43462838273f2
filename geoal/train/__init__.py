"""Training data, fine-tuning and COCO evaluation of a detector (plain functions, no store).

``split_train_val`` draws a seeded validation split (held out by scene where it
can), ``materialise_yolo_dataset`` writes labelled images as a YOLO dataset,
``train_detector`` fine-tunes a YOLO model on it with ultralytics' trainer,
offline and seeded, with flips and 90-degree turns (``AugmentConfig``).
``predict_coco`` runs a trained model over image files, ``evaluate_coco`` scores
COCO detections against COCO ground truth with pycocotools.

Besides ``geoal.detect``, this package is the one place that imports ultralytics
(training is ultralytics' trainer); it does so lazily, in ``trainer`` and
``offline`` only. Inference goes through ``geoal.detect``. Importing this
package imports neither torch nor ultralytics.
"""

from geoal.train.augment import AugmentConfig
from geoal.train.dataset import (
    DatasetError,
    materialise_yolo_dataset,
    split_train_val,
    yolo_label_lines,
)
from geoal.train.evaluate import EvalResult, evaluate_coco, load_coco
from geoal.train.predict import PredictConfig, predict_coco
from geoal.train.trainer import OptimConfig, TrainConfig, TrainResult, train_detector

__all__ = [
    "AugmentConfig",
    "DatasetError",
    "EvalResult",
    "OptimConfig",
    "PredictConfig",
    "TrainConfig",
    "TrainResult",
    "evaluate_coco",
    "load_coco",
    "materialise_yolo_dataset",
    "predict_coco",
    "split_train_val",
    "train_detector",
    "yolo_label_lines",
]
