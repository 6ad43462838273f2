"""Reading chips: same pixels as rasterio, stored stretch, padding, nodata, threads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window
from rasterio.windows import transform as rio_window_transform

from geoal.config import TilingConfig
from geoal.raster.chip import Chip
from geoal.raster.reader import SceneReader, iter_batches, iter_chips, read_chip, read_chips
from geoal.raster.scene import catalogue
from tests.raster.test_scene import record


def test_uint8_chip_equals_plain_rasterio(make_raster) -> None:
    path, _ = make_raster(width=300, height=200, objects=5)
    cat = catalogue(str(path), TilingConfig(size=64, overlap=0.25))
    scene = record(cat)
    with rasterio.open(path) as ds:
        for win in cat.windows[:10]:
            arr, transform = read_chip(scene, win)
            ref = ds.read(window=Window(*win)).transpose(1, 2, 0)
            assert arr.shape == (64, 64, 3) and arr.dtype == np.uint8
            np.testing.assert_array_equal(arr, ref)
            assert transform == rio_window_transform(Window(*win), ds.transform)


def test_band_selection_and_single_band(make_raster) -> None:
    path, _ = make_raster(bands=4, dtype="uint8")
    cat = catalogue(str(path), TilingConfig(size=64, bands=(3, 2, 1), stretch=_never()))
    scene = record(cat)
    with rasterio.open(path) as ds:
        arr, _ = read_chip(scene, cat.windows[0])
        ref = ds.read([3, 2, 1], window=Window(*cat.windows[0])).transpose(1, 2, 0)
        np.testing.assert_array_equal(arr, ref)
    cat1 = catalogue(str(path), TilingConfig(size=64, bands=(2,), stretch=_never()))
    arr1, _ = read_chip(record(cat1), cat1.windows[0])
    np.testing.assert_array_equal(arr1[..., 0], arr1[..., 2])


def _never():
    from geoal.config import StretchConfig

    return StretchConfig(mode="never")


def test_small_scene_chip_is_padded(make_raster) -> None:
    path, _ = make_raster(width=50, height=40)
    cat = catalogue(str(path), TilingConfig(size=64))
    assert cat.windows.tolist() == [[0, 0, 64, 64]]
    arr, _ = read_chip(record(cat), cat.windows[0])
    assert arr.shape == (64, 64, 3)
    assert np.all(arr[40:] == 0) and np.all(arr[:, 50:] == 0)
    assert arr[:40, :50].any()


def test_nodata_pixels_read_as_zero_and_stretch_is_stable(make_raster) -> None:
    path, _ = make_raster(width=200, height=200, dtype="uint16", nodata=0, border=20)
    cat = catalogue(str(path), TilingConfig(size=64, overlap=0.0, min_valid=0.0))
    scene = record(cat)
    first, _ = read_chip(scene, cat.windows[0])
    assert np.all(first[:20] == 0) and np.all(first[:, :20] == 0)
    inner = first[20:, 20:]
    assert inner.mean() > 30  # stretched into a visible range
    again, _ = read_chip(scene, cat.windows[0])
    np.testing.assert_array_equal(first, again)


def test_float_scene_with_nan(tmp_path: Path) -> None:
    from rasterio.transform import from_origin

    data = np.random.default_rng(1).random((1, 80, 80)).astype("float32")
    data[0, :10] = np.nan
    path = tmp_path / "f.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=80,
        height=80,
        count=1,
        dtype="float32",
        crs="EPSG:3857",
        transform=from_origin(0, 0, 1, 1),
        nodata=float("nan"),
    ) as ds:
        ds.write(data)
    cat = catalogue(str(path), TilingConfig(size=64, overlap=0.0, min_valid=0.0))
    arr, _ = read_chip(record(cat), cat.windows[0])
    assert np.all(arr[:10] == 0) and arr[10:].std() > 20


def test_iter_chips_keeps_order_and_batches(make_raster) -> None:
    p1, _ = make_raster(width=200, height=150)
    p2, _ = make_raster(width=150, height=200, seed=2)
    scenes, items, expected = {}, [], []
    for sid, p in ((1, p1), (2, p2)):
        cat = catalogue(str(p), TilingConfig(size=64, overlap=0.0))
        scenes[sid] = record(cat, sid)
        for i, w in enumerate(cat.windows):
            cid = sid * 1000 + i
            items.append((cid, sid, w))
            expected.append((cid, read_chip(scenes[sid], w)[0]))
    got = list(iter_chips(scenes, items, workers=3, lookahead=2))
    assert [c for c, _ in got] == [c for c, _ in expected]
    for (_, a), (_, b) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    chips = [Chip.at(scenes[sid], cid, w) for cid, sid, w in items]
    again = list(read_chips(chips, workers=2, lookahead=1))
    assert [c for c, _ in again] == [c for c, _ in expected]
    for (_, a), (_, b) in zip(again, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    batches = list(iter_batches(iter(got), 4))
    assert [len(ids) for ids, _ in batches][:-1] == [4] * (len(batches) - 1)
    assert batches[0][1].shape == (4, 64, 64, 3)


def test_scene_reader_transform(make_raster) -> None:
    path, _ = make_raster()
    cat = catalogue(str(path), TilingConfig(size=64))
    with SceneReader(record(cat)) as reader:
        t = reader.transform([64, 32, 64, 64])
    assert t == Affine(*record(cat).transform) @ Affine.translation(64, 32)
