"""The scoring stream: detector results in batch order, each with its chip scores; closing stops it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from geoal.detect.stream import ScoreParams, chip_scores, score_stream


class FakeDetector:
    """``iter_predict`` over precomputed results; records its arguments and whether it closed."""

    def __init__(self, results: list[Any]) -> None:
        self.results = results
        self.calls: list[dict[str, Any]] = []
        self.closed = False

    def iter_predict(self, batches: Iterable[tuple[Any, np.ndarray]], **kw: Any) -> Iterator[Any]:
        self.calls.append(kw)
        try:
            for keys, _images in batches:
                yield keys, [self.results[k] for k in keys]
        finally:
            self.closed = True


def test_stream_scores_every_chip_in_order(detector: Any, chips: np.ndarray) -> None:
    results = detector.predict_batch(chips, views=2, conf=0.05)
    fake = FakeDetector(results)
    params = ScoreParams(views=2, conf=0.05, iou=0.6, top_k=2, batch=1, readers=1)
    out = list(score_stream(fake, [([1], chips[1:]), ([0], chips[:1])], params))
    assert fake.calls == [{"views": 2, "conf": 0.05, "iou": 0.6}]
    assert [keys for keys, _ in out] == [[1], [0]]
    for keys, scored in out:
        (chip,) = scored
        assert chip.result is results[keys[0]]
        assert chip.scores.scores == chip_scores(results[keys[0]], 2).scores


def test_closing_the_stream_stops_the_detector(detector: Any, chips: np.ndarray) -> None:
    fake = FakeDetector(detector.predict_batch(chips, views=1))
    params = ScoreParams(views=1, conf=0.05, iou=0.7, top_k=3, batch=1, readers=1)
    stream = score_stream(fake, ((k, chips[k[0] : k[0] + 1]) for k in ([0], [1])), params)
    next(stream)
    stream.close()
    assert fake.closed
