"""The scoring stream: batches of chips -> detector (views) -> chip scores.

The one loop that every scoring path runs: ``geoal score`` (local engine, shards, Ray
workers) and ``geoal simulate``'s pool scoring. The detector brings its backend (torch,
OpenVINO, ONNX Runtime: ``geoal.detect.backends``); the scores are
``geoal.uncertainty.chip.score_chip`` (:func:`chip_scores`); callers store them (``geoal.store.scores``).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import numpy as np

from geoal.detect.result import ChipResult
from geoal.raster.chip import Chip, group_by_size
from geoal.uncertainty.chip import ChipScores, score_chip

K = TypeVar("K")


@dataclass(frozen=True)
class ScoreParams:
    """How chips are scored (as ``geoal score``'s options) and read.

    ``views``: label-preserving views per chip; ``conf``: the lowest confidence kept;
    ``iou``: the NMS threshold; ``top_k``: k of the top-k aggregations; ``batch``:
    chips per forward pass; ``readers``: threads reading chips from the scenes.
    """

    views: int
    conf: float
    iou: float
    top_k: int
    batch: int
    readers: int  # chip reader threads


def chip_scores(result: ChipResult, top_k: int) -> ChipScores:
    """The scores of one chip (``geoal.uncertainty.chip.score_chip``) from its ChipResult."""
    return score_chip(
        result.anchor_probs,
        result.probs,
        result.anchor_idx,
        result.conf,
        result.boxes,
        result.cls,
        tuple(zip(result.view_boxes, result.view_cls, strict=True)),
        top_k,
    )


class ScoredChip(NamedTuple):
    """One chip through the stream: the detector's result and its scores."""

    result: ChipResult
    scores: ChipScores


def score_stream(
    detector: Any, batches: Iterable[tuple[K, np.ndarray]], params: ScoreParams
) -> Generator[tuple[K, list[ScoredChip]], None, None]:
    """(keys, scored chips) for each (keys, (B, S, S, 3) uint8 chips) of ``batches``, in order.

    The detector reads ahead (``Detector.iter_predict``); closing this generator stops it.
    """
    stream = detector.iter_predict(batches, views=params.views, conf=params.conf, iou=params.iou)
    try:
        for keys, results in stream:
            yield keys, [ScoredChip(r, chip_scores(r, params.top_k)) for r in results]
    finally:
        stream.close()


def read_batches(
    chips: Sequence[Chip], batch: int, readers: int
) -> Iterator[tuple[list[int], np.ndarray]]:
    """(chip_ids, (B, H, W, 3) uint8) batches of same-size chips, read ahead by threads.

    Chips are grouped by size (groups in order of first appearance), order kept within a
    group; each is read from its own scene (``geoal.raster.reader.read_chips``).
    """
    from geoal.raster.reader import iter_batches, read_chips

    for group in group_by_size(chips):
        yield from iter_batches(read_chips(group, workers=readers), batch)


def score_scene_chips(
    detector: Any, chips: Sequence[Chip], params: ScoreParams
) -> Generator[tuple[list[int], list[ScoredChip]], None, None]:
    """The stream over chips of stored scenes: read -> detect -> score, per batch."""
    return score_stream(detector, read_batches(chips, params.batch, params.readers), params)
