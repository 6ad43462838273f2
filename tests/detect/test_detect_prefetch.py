"""Reading ahead: order, errors, stopping, and overlap of reading with the model's work."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from detect_fixtures import make_chips

from geoal.detect.prefetch import THREAD_NAME, prefetch

WAIT_S = 10.0  # generous: only reached when something is broken


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def _wait_for_readers_to_end() -> None:
    for thread in _reader_threads():
        thread.join(WAIT_S)
    assert not _reader_threads()


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_yields_everything_in_order(depth: int) -> None:
    assert list(prefetch(range(20), depth)) == list(range(20))
    assert list(prefetch([], depth)) == []
    _wait_for_readers_to_end()


def test_reader_errors_reach_the_caller_after_the_items_before_them() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("scene.tif: truncated")

    got = []
    with pytest.raises(OSError, match=r"scene\.tif: truncated"):
        for item in prefetch(source()):
            got.append(item)
    assert got == [1, 2]
    _wait_for_readers_to_end()


def test_closing_stops_the_reader_and_closes_the_source() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    stream = prefetch(endless(), depth=2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    assert closed.wait(WAIT_S)
    _wait_for_readers_to_end()


def test_bad_depth() -> None:
    with pytest.raises(ValueError, match="depth"):
        next(prefetch([1], depth=0))


def test_iter_predict_matches_predict_batch(detector: Any) -> None:
    chips = make_chips(6, seed=5)
    batches = [(["a", "b"], chips[:2]), (["c", "d"], chips[2:4]), (["e", "f"], chips[4:])]
    out = list(detector.iter_predict(iter(batches), views=2, conf=0.5))
    assert [keys for keys, _ in out] == [keys for keys, _ in batches]
    for (_, results), (_, images) in zip(out, batches, strict=True):
        expected = detector.predict_batch(images, views=2, conf=0.5)
        for r, e in zip(results, expected, strict=True):
            assert np.array_equal(r.anchor_probs, e.anchor_probs)
            assert np.array_equal(r.boxes, e.boxes)
    _wait_for_readers_to_end()


def test_iter_predict_raises_reader_errors(detector: Any) -> None:
    chips = make_chips(2)

    def source() -> Iterator[tuple[int, np.ndarray]]:
        yield 0, chips
        raise RuntimeError("read failed at batch 1")

    stream = detector.iter_predict(source())
    keys, results = next(stream)
    assert keys == 0 and len(results) == 2
    with pytest.raises(RuntimeError, match="read failed at batch 1"):
        next(stream)
    _wait_for_readers_to_end()


def test_reading_the_next_batch_overlaps_the_model(
    detector: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model's work on batch n waits until the reader has started on batch n + 1.

    Without a reader thread ahead of the model this could never happen: the
    model would time out waiting and the test fail. No wall-clock assertions.
    """
    chips = make_chips(2)
    n_batches = 4
    reading = [threading.Event() for _ in range(n_batches + 1)]
    overlapped: list[bool] = []
    real_submit = detector._submit

    def source() -> Iterator[tuple[int, np.ndarray]]:
        for n in range(n_batches):
            reading[n].set()  # the reader is at batch n
            yield n, chips
        reading[n_batches].set()  # ... and at the end of the source

    def slow_model(images: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        n = len(overlapped)
        overlapped.append(reading[n + 1].wait(WAIT_S))  # batch n + 1 read before we finish n
        return real_submit(images, *args, **kwargs)

    monkeypatch.setattr(detector, "_submit", slow_model)
    keys = [k for k, _ in detector.iter_predict(source(), prefetch_depth=1)]
    assert keys == list(range(n_batches))
    assert overlapped == [True] * n_batches


def test_closing_iter_predict_stops_the_reader(detector: Any) -> None:
    chips = make_chips(2)
    closed = threading.Event()

    def endless() -> Iterator[tuple[int, np.ndarray]]:
        try:
            n = 0
            while True:
                yield n, chips
                n += 1
        finally:
            closed.set()

    stream = detector.iter_predict(endless())
    assert next(stream)[0] == 0
    stream.close()
    assert closed.wait(WAIT_S)
    _wait_for_readers_to_end()
