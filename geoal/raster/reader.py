"""Read chips as (H, W, 3) uint8 arrays: windows + stored stretch, fast.

:class:`SceneReader` is a thin class that holds one open dataset and delegates
to :func:`read_window`, a plain function over an open dataset. :func:`read_chips`
reads many chips with a small thread pool (GDAL releases the GIL while it
decodes), each thread with its own dataset handles, in a bounded look-ahead so
memory does not grow with the number of chips.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from affine import Affine

from geoal.closing import Closing
from geoal.errors import RasterError
from geoal.raster.chip import Chip
from geoal.raster.grid import window_transform
from geoal.raster.scene import Scene, open_scene
from geoal.raster.stretch import apply_stretch


def read_window(ds: Any, scene: Scene, window: Iterable[int], mask_kind: str) -> np.ndarray:
    """One chip of an open dataset: (height, width, 3) uint8, stored bands and stretch applied.

    ``window``: [col_off, row_off, width, height] in scene pixels; the part beyond
    the scene (a scene smaller than a chip) and nodata / masked pixels read as 0.
    ``mask_kind``: 'none', 'nodata' or 'mask' (from :func:`mask_kind`).
    """
    from rasterio.windows import Window

    col, row, width, height = (int(v) for v in window)
    w = min(width, scene.width - col)
    h = min(height, scene.height - row)
    win = Window(col, row, w, h)
    padded = (w, h) != (width, height)
    out = (np.zeros if padded else np.empty)((height, width, 3), dtype=np.uint8)
    target = out[:h, :w]  # (h, w, 3) view; GDAL writes pixel-interleaved into it directly
    bands = list(scene.bands)
    if scene.stretch is None and scene.dtype == "uint8":
        ds.read(bands, window=win, out=target.transpose(2, 0, 1))
        data = target.transpose(2, 0, 1)
    else:
        data = ds.read(bands, window=win)
        apply_stretch(
            data,
            scene.stretch,
            zero=scene.nodata if mask_kind == "nodata" else None,
            out=target.transpose(2, 0, 1),
        )
    invalid = _invalid_pixels(data, scene, mask_kind, ds, win)
    if invalid is not None and invalid.any():
        target[invalid] = 0
    return out


def _invalid_pixels(
    data: np.ndarray, scene: Scene, mask_kind: str, ds: Any, win: Any
) -> np.ndarray | None:
    """(h, w) bool of pixels to show as 0, or None when the stretch already zeroes them.

    A nodata value is folded into the stretch lookup table (uint8 / uint16), or
    is already 0 in unstretched uint8; only other cases need a per-pixel mask.
    """
    if mask_kind == "mask":
        return np.asarray(ds.dataset_mask(window=win) == 0)
    if mask_kind != "nodata" or scene.nodata is None:
        return None
    nodata = scene.nodata
    if data.dtype.kind == "f" and np.isnan(nodata):
        return np.all(np.isnan(data), axis=0)
    lut_path = scene.stretch is not None and data.dtype in (np.uint8, np.uint16)
    if lut_path or (scene.stretch is None and data.dtype == np.uint8 and nodata == 0):
        return None
    invalid = data[0] == np.asarray(nodata, dtype=data.dtype)
    for band in data[1:]:
        invalid &= band == np.asarray(nodata, dtype=data.dtype)
    return invalid


def mask_kind(ds: Any) -> str:
    """How a dataset marks invalid pixels: 'none', 'nodata' (a value) or 'mask' (mask / alpha)."""
    from rasterio.enums import MaskFlags

    flags = ds.mask_flag_enums
    if all(f == [MaskFlags.all_valid] for f in flags):
        return "none"
    if ds.nodata is not None and all(MaskFlags.nodata in f for f in flags):
        return "nodata"
    return "mask"


class SceneReader(Closing):
    """Holds one open scene and reads its chips."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.ds = open_scene(scene)  # the file the chips, labels and scores refer to
        self.mask_kind = mask_kind(self.ds)

    def read(self, window: Iterable[int]) -> np.ndarray:
        """A chip as (height, width, 3) uint8; a block GDAL cannot decode raises RasterError."""
        from rasterio.errors import RasterioError

        window = tuple(int(v) for v in window)
        try:
            return read_window(self.ds, self.scene, window, self.mask_kind)
        except RasterioError as exc:
            msg = str(exc).split("\n")[0]
            raise RasterError(
                f"{self.scene.path}: cannot read pixels of window {list(window)} "
                f"(truncated or corrupt file: {msg})"
            ) from None

    def transform(self, window: Iterable[int]) -> Affine:
        """The chip's affine transform (chip pixels -> scene CRS)."""
        return window_transform(Affine(*self.scene.transform), list(window))

    def close(self) -> None:
        """Close the dataset."""
        self.ds.close()


class ChipImages(Closing):
    """Reads chips (:class:`Chip`) of many scenes as (H, W, 3) uint8, one open reader per scene.

    Use it as a context manager so the datasets are closed.
    """

    def __init__(self) -> None:
        self._readers: dict[int, SceneReader] = {}

    def __call__(self, chip: Chip) -> np.ndarray:
        reader = self._readers.get(chip.scene_id)
        if reader is None:
            reader = self._readers[chip.scene_id] = SceneReader(chip.scene)
        return reader.read(chip.window)

    def close(self) -> None:
        """Close every open dataset."""
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()


def read_chip(scene: Scene, window: Iterable[int]) -> tuple[np.ndarray, Affine]:
    """Read one chip: (H, W, 3) uint8 and its affine transform. Opens and closes the scene."""
    with SceneReader(scene) as reader:
        return reader.read(window), reader.transform(window)


def read_chips(
    chips: Iterable[Chip], *, workers: int = 2, lookahead: int = 8
) -> Iterator[tuple[int, np.ndarray]]:
    """Read chips in order with a thread pool: yields (chip id, (H, W, 3) uint8).

    At most ``workers * lookahead`` chips are in flight, so memory stays bounded for any
    number of chips.
    """
    items = ((c.id, c.scene, c.window) for c in chips)
    return _read_ahead(items, workers=workers, lookahead=lookahead)


def iter_chips(
    scenes: Mapping[int, Scene],
    items: Iterable[tuple[int, int, Iterable[int]]],
    *,
    workers: int = 2,
    lookahead: int = 8,
) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`read_chips` of (chip_id, scene_id, window) rows of the scenes ``scenes``."""
    triples = ((cid, scenes[sid], window) for cid, sid, window in items)
    return _read_ahead(triples, workers=workers, lookahead=lookahead)


def _read_ahead(
    items: Iterable[tuple[int, Scene, Iterable[int]]], *, workers: int, lookahead: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (chip_id, (H, W, 3) uint8) of (chip_id, scene, window) items, read by threads.

    Each thread keeps its own open dataset per scene; all are closed at the end.
    """
    local = threading.local()
    readers: list[SceneReader] = []
    lock = threading.Lock()

    def read(scene: Scene, window: Iterable[int]) -> np.ndarray:
        cache: dict[int, SceneReader] | None = getattr(local, "readers", None)
        if cache is None:
            cache = local.readers = {}
        reader = cache.get(scene.id)
        if reader is None:
            reader = cache[scene.id] = SceneReader(scene)
            with lock:
                readers.append(reader)
        return reader.read(window)

    pending: deque[tuple[int, Future[np.ndarray]]] = deque()
    limit = max(1, workers * lookahead)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="geoal-read") as pool:
        try:
            for chip_id, scene, window in items:
                pending.append((chip_id, pool.submit(read, scene, tuple(window))))
                if len(pending) >= limit:
                    cid, fut = pending.popleft()
                    yield cid, fut.result()
            while pending:
                cid, fut = pending.popleft()
                yield cid, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True)
            for reader in readers:
                reader.close()


def iter_batches(
    chips: Iterator[tuple[int, np.ndarray]], batch: int
) -> Iterator[tuple[list[int], np.ndarray]]:
    """Group chips into batches: (chip_ids, (B, H, W, 3) uint8); chips must share a size."""
    ids: list[int] = []
    arrays: list[np.ndarray] = []
    for cid, arr in chips:
        ids.append(cid)
        arrays.append(arr)
        if len(ids) == batch:
            yield ids, np.stack(arrays)
            ids, arrays = [], []
    if ids:
        yield ids, np.stack(arrays)
