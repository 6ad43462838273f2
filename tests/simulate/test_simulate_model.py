"""Pool scoring's gathering: each scored image's chip scores land in its row of Features."""

from __future__ import annotations

import numpy as np
import pytest

from geoal.detect.result import ChipResult
from geoal.detect.stream import chip_scores
from geoal.simulate.model import _PoolScores
from geoal.uncertainty import chip_objectness


def _empty_chip(seed: int) -> ChipResult:
    """A chip without detections whose 30 anchors (2 classes) still score something."""
    anchors = np.random.default_rng(seed).uniform(0, 0.3, (1, 30, 2)).astype(np.float32)
    none = np.zeros(0, np.int64)
    return ChipResult(
        np.zeros((0, 4), np.float32),
        np.zeros(0, np.float32),
        none,
        np.zeros((0, 2), np.float32),
        none,
        anchors,
        (),
        (),
        (),
        np.ones(4, np.float32) / 2,
        ("identity",),
    )


def test_objectness_of_every_scored_image_is_kept_and_others_stay_zero() -> None:
    found = _PoolScores(3)
    for i in (0, 2):
        result = _empty_chip(seed=i)
        found.add_scored(i, result, chip_scores(result, 3), "miaod")
        want = chip_objectness(result.anchor_probs[0].max(axis=1), 3)
        assert found.objectness[i] == pytest.approx(want) and want > 0
    assert found.objectness[1] == 0.0 and np.isnan(found.scores[1])
