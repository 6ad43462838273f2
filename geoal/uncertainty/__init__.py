"""Uncertainty: pure numpy functions from class scores to instance values to a chip score.

``instance``: one value per detection or anchor from its class scores. ``discrepancy``:
disagreement between views (MI-AOD anchor discrepancy, CALD box instability).
``aggregate``: N instance values of a chip -> one chip score (default ``miaod``).
``chip``: all of a chip's scores from the detector's arrays (``score_chip``).
"""

from geoal.uncertainty.aggregate import (
    AGGREGATIONS,
    DEFAULT_AGGREGATION,
    DEFAULT_K,
    aggregate_all,
    chip_objectness,
    expected_count,
    get_aggregation,
    list_aggregations,
    miaod,
    topk_mean,
)
from geoal.uncertainty.chip import ChipScores, score_chip
from geoal.uncertainty.discrepancy import (
    anchor_discrepancy,
    anchor_uncertainty,
    box_instability,
    multi_view_discrepancy,
    objectness,
)
from geoal.uncertainty.instance import (
    INSTANCE_UNCERTAINTY,
    entropy,
    get_instance_uncertainty,
    least_confidence,
    list_instance_uncertainty,
    margin,
    ratio,
)

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_AGGREGATION",
    "DEFAULT_K",
    "INSTANCE_UNCERTAINTY",
    "ChipScores",
    "aggregate_all",
    "anchor_discrepancy",
    "anchor_uncertainty",
    "box_instability",
    "chip_objectness",
    "entropy",
    "expected_count",
    "get_aggregation",
    "get_instance_uncertainty",
    "least_confidence",
    "list_aggregations",
    "list_instance_uncertainty",
    "margin",
    "miaod",
    "multi_view_discrepancy",
    "objectness",
    "ratio",
    "score_chip",
    "topk_mean",
]
