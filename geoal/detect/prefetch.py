"""Read the next items of an iterator in a background thread while the caller computes.

Reading chips (GDAL/rasterio, numpy) releases the GIL, so one reader thread
overlaps I/O with the model's forward pass.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

THREAD_NAME = "geoal-prefetch"
_POLL_S = 0.05  # how often a blocked reader checks whether the consumer has gone


class _Done:
    """The reader's last message: the source ended, or failed with ``error``."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class _Reader(threading.Thread, Generic[T]):
    """Pulls items from ``source`` into a bounded queue until the source ends or ``stop`` is set."""

    def __init__(self, source: Iterable[T], depth: int) -> None:
        super().__init__(name=THREAD_NAME, daemon=True)
        self.source = source
        self.items: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()

    def run(self) -> None:
        iterator = iter(self.source)
        try:
            for item in iterator:
                if not self._put(item):
                    return
            self._put(_Done())
        except BaseException as error:  # handed to the consumer, raised there
            self._put(_Done(error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:  # let a generator source release its files
                close()

    def _put(self, item: Any) -> bool:
        """Queue ``item``, waiting for room; False once the consumer has stopped."""
        while not self.stop.is_set():
            try:
                self.items.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False


def prefetch(source: Iterable[T], depth: int = 2) -> Generator[T, None, None]:
    """Yield the items of ``source`` in order, reading up to ``depth`` items ahead in a thread.

    An exception raised by ``source`` is re-raised here, after the items read
    before it. Closing the returned generator (or dropping it) stops the thread
    after its current read and closes ``source``'s iterator.
    """
    if depth < 1:
        raise ValueError(f"prefetch depth must be at least 1, got {depth}")
    reader: _Reader[T] = _Reader(source, depth)
    reader.start()
    try:
        while True:
            item = reader.items.get()
            if isinstance(item, _Done):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        reader.stop.set()
        _drain(reader.items)


def _drain(items: queue.Queue[Any]) -> None:
    """Empty the queue so that a reader blocked on a full queue wakes and sees ``stop``."""
    while True:
        try:
            items.get_nowait()
        except queue.Empty:
            return
