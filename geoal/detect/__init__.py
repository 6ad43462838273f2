"""The only code in geoal that imports ultralytics: model -> boxes, class-score vectors, embeddings.

``load_detector`` builds (``.yaml``) or loads (local ``.pt``) a YOLO detector for
the project's classes, offline; ``Detector.predict_batch`` turns (B, S, S, 3)
uint8 RGB chips into ``ChipResult``s, optionally over several label-preserving
views (``VIEW_TRANSFORMS``) in one forward pass; ``Detector.iter_predict`` does
the same over a stream of batches, reading ahead in a thread.

Importing this package imports neither torch nor ultralytics.
"""

from geoal.detect.detector import Detector
from geoal.detect.loading import load_detector
from geoal.detect.result import ChipResult
from geoal.detect.views import VIEW_TRANSFORMS, anchor_permutation

__all__ = ["VIEW_TRANSFORMS", "ChipResult", "Detector", "anchor_permutation", "load_detector"]
