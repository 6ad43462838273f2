"""Cataloguing scenes: nodata skip, stretch, fingerprints, bad files, real rasters."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine

from geoal.config import StretchConfig, TilingConfig
from geoal.errors import RasterError
from geoal.raster.footprint import crs_to_pixel, pixel_to_crs, scene_footprints, to_wgs84
from geoal.raster.grid import window_bounds
from geoal.raster.scene import Scene, catalogue, expand_inputs
from geoal.store import Store

TILING = TilingConfig(size=64, overlap=0.25)


def record(cat, scene_id: int = 1) -> Scene:
    """The Scene the store would hold for a catalogued scene."""
    return dataclasses.replace(cat.scene, id=scene_id)


@pytest.mark.parametrize("kind", ["nodata", "internal", "alpha"])
def test_nodata_border_chips_are_skipped(make_raster, kind: str) -> None:
    kwargs = {"nodata": 0} if kind == "nodata" else {"mask": kind}
    path, _ = make_raster(width=400, height=300, border=70, **kwargs)
    cat = catalogue(str(path), TILING)
    full = catalogue(str(path), TilingConfig(size=64, overlap=0.25, min_valid=0.0))
    assert cat.skipped > 0
    assert len(cat.windows) + cat.skipped == len(full.windows) + full.skipped
    # every kept chip touches the valid interior [70, 330) x [70, 230)
    w = cat.windows
    assert np.all(w[:, 0] + w[:, 2] > 70) and np.all(w[:, 0] < 330)
    assert np.all(w[:, 1] + w[:, 3] > 70) and np.all(w[:, 1] < 230)
    # a chip wholly inside the border was dropped
    assert not np.any(w[:, 0] + w[:, 2] <= 70)


def test_statistics_come_from_overviews_on_a_large_scene(make_raster) -> None:
    path, _ = make_raster(width=3000, height=2600, nodata=0, border=300, overviews=True)
    tiling = TilingConfig(size=256, overlap=0.0, overview_max=256)
    cat = catalogue(str(path), tiling)
    assert cat.skipped > 0
    w = cat.windows
    assert np.all(w[:, 0] + w[:, 2] > 300) and np.all(w[:, 0] < 2700)


def test_all_nodata_scene_is_refused(make_raster) -> None:
    path, _ = make_raster(width=100, height=100, nodata=0, border=50)
    with pytest.raises(RasterError, match="no valid pixels"):
        catalogue(str(path), TILING)


def test_bad_files_name_the_file(tmp_path: Path, make_raster) -> None:
    with pytest.raises(RasterError, match="not found"):
        catalogue(str(tmp_path / "missing.tif"), TILING)
    text = tmp_path / "notes.tif"
    text.write_text("this is not a raster\n")
    with pytest.raises(RasterError, match=r"notes\.tif: not a readable raster"):
        catalogue(str(text), TILING)
    path, _ = make_raster(width=600, height=600, compress=None, tiled=False)
    cut = tmp_path / "truncated.tif"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(RasterError, match=r"truncated\.tif"):
        catalogue(str(cut), TILING)
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(RasterError, match="empty"):
        catalogue(str(empty), TILING)


def test_bands_out_of_range(make_raster) -> None:
    path, _ = make_raster(bands=3)
    with pytest.raises(RasterError, match="band 5 out of range: the scene has 3"):
        catalogue(str(path), TilingConfig(size=64, bands=(5, 2, 1)))


def test_fingerprint_identifies_content(make_raster, tmp_path: Path) -> None:
    path, _ = make_raster()
    copy = tmp_path / "copy.tif"
    shutil.copy(path, copy)
    other, _ = make_raster(seed=3)
    a, b, c = (catalogue(str(p), TILING).scene.fingerprint for p in (path, copy, other))
    assert a == b != c


def test_expand_inputs_folders_globs(tmp_path: Path, make_raster) -> None:
    p1, _ = make_raster("a.tif")
    p2, _ = make_raster("b.tif")
    (tmp_path / "readme.txt").write_text("x")
    paths, problems = expand_inputs(
        [str(tmp_path), str(tmp_path / "*.tif"), str(tmp_path / "nope*.tif")]
    )
    assert paths == [str(p1), str(p2)]
    assert problems and "matches no files" in problems[0]


def test_footprints_tile_scene_bounds_exactly(make_raster) -> None:
    path, _ = make_raster(width=333, height=211)
    cat = catalogue(str(path), TilingConfig(size=64, overlap=0.25, min_valid=0.0))
    scene = record(cat)
    polys = scene_footprints(scene, cat.windows)
    with rasterio.open(path) as ds:
        bounds = ds.bounds
    union = shapely.union_all(polys)
    assert shapely.equals_exact(
        shapely.normalize(union), shapely.normalize(shapely.box(*bounds)), 1e-9
    ) or union.equals(shapely.box(*bounds))
    assert union.area == pytest.approx((bounds.right - bounds.left) * (bounds.top - bounds.bottom))
    np.testing.assert_allclose(
        shapely.bounds(polys), window_bounds(scene.transform, cat.windows), atol=0
    )


def test_pixel_crs_round_trip_is_exact() -> None:
    t = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0)
    cols = np.array([0, 1, 63.5, 1234, 40000])
    rows = np.array([0, 7, 10.25, 999, 40000])
    x, y = pixel_to_crs(t, cols, rows)
    c2, r2 = crs_to_pixel(t, x, y)
    np.testing.assert_array_equal(c2, cols)
    np.testing.assert_array_equal(r2, rows)


def test_wgs84_footprints(make_raster) -> None:
    path, _ = make_raster(crs="EPSG:32631")
    cat = catalogue(str(path), TILING)
    scene = record(cat)
    wgs = to_wgs84(scene_footprints(scene, cat.windows), scene.crs)
    assert wgs is not None
    lon, lat = shapely.get_coordinates(wgs).T
    assert np.all((lon > 2.9) & (lon < 3.1)) and np.all((lat > 36.0) & (lat < 36.2))
    assert to_wgs84(scene_footprints(scene, cat.windows), None) is None


def test_png_without_crs_lives_in_pixels(tmp_path: Path) -> None:
    from PIL import Image

    arr = np.random.default_rng(0).integers(0, 255, (100, 150, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(arr).save(path)
    cat = catalogue(str(path), TILING)
    assert cat.scene.crs is None
    assert any("no CRS" in w for w in cat.warnings)
    assert cat.scene.stretch is None  # uint8: shown as it is


# -- the real rasters in ../shared/data/geotiff ---------------------------------


def test_real_uint16_scene_stretches_into_a_useful_8bit_range(shared_data: Path) -> None:
    from geoal.raster.reader import read_chip

    path = shared_data / "geotiff" / "atlanta_pan_50cm_uint16.tif"
    cat = catalogue(str(path), TilingConfig(size=256, overlap=0.2))
    scene = record(cat)
    assert scene.dtype == "uint16" and scene.stretch is not None
    (lo, hi), *_ = scene.stretch
    assert 0 < lo < hi < 65535
    chips = np.stack([read_chip(scene, w)[0] for w in cat.windows])
    valid = chips[chips > 0]
    p1, p50, p99 = np.percentile(valid, [1, 50, 99])
    assert p1 < 40 and p99 > 215 and 60 < p50 < 200  # uses most of 0-255
    assert valid.std() > 30


@pytest.mark.parametrize(
    "name, dtype, bands",
    [
        ("osbs029_rgb_10cm.tif", "uint8", 3),
        ("atlanta_pan_50cm_uint16.tif", "uint16", 1),
        ("pan_50cm_uint16.tif", "uint16", 1),
        ("ms_4band_1m_float64.tif", "float64", 4),
    ],
)
def test_real_rasters_tile_in_their_own_crs(
    shared_data: Path, name: str, dtype: str, bands: int
) -> None:
    path = shared_data / "geotiff" / name
    cat = catalogue(str(path), TilingConfig(size=128, overlap=0.2, min_valid=0.0))
    scene = record(cat)
    assert scene.dtype == dtype and scene.band_count == bands
    with rasterio.open(path) as ds:
        assert scene.crs == ds.crs.to_wkt()
        union = shapely.union_all(scene_footprints(scene, cat.windows))
        assert union.equals(shapely.box(*ds.bounds))
    if dtype != "uint8":
        assert scene.stretch is not None and len(scene.stretch) == 3


def test_real_nodata_255_is_honoured(shared_data: Path) -> None:
    path = shared_data / "geotiff" / "osbs029_rgb_10cm.tif"
    cat = catalogue(str(path), TILING)
    assert cat.scene.nodata == 255.0
    assert cat.scene.stretch is None


def test_stretch_mode_never_keeps_uint16_clipped(make_raster) -> None:
    path, _ = make_raster(dtype="uint16")
    cat = catalogue(str(path), TilingConfig(size=64, stretch=StretchConfig(mode="never")))
    assert cat.scene.stretch is None


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"dtype": "uint16"}, {"nodata": 0, "border": 70}, {"mask": "alpha", "border": 70}],
)
def test_without_sample_the_same_catalogue(make_raster, kwargs: dict) -> None:
    """sample=False skips the decimated read only where nothing needs it (8-bit, all valid)."""
    path, _ = make_raster(width=400, height=300, **kwargs)
    full = catalogue(str(path), TILING)
    lazy = catalogue(str(path), TILING, sample=False)
    np.testing.assert_array_equal(full.windows, lazy.windows)
    np.testing.assert_array_equal(full.valid, lazy.valid)
    assert full.scene == lazy.scene and full.skipped == lazy.skipped


def test_without_sample_a_corrupt_block_is_found_by_the_chip_read(
    make_raster, tmp_path: Path
) -> None:
    from geoal.raster.reader import read_chip

    path, _ = make_raster(width=600, height=600)  # 3 x 3 tiles of 256 px, deflate
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_0", "TIFF", bidx=1))
    bad = tmp_path / "bad_block.tif"
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = b"\xff" * 64  # the corners and centre stay readable
    bad.write_bytes(bytes(data))
    with pytest.raises(RasterError, match=r"bad_block\.tif: cannot read pixels"):
        catalogue(str(bad), TILING)
    cat = catalogue(str(bad), TILING, sample=False)
    with pytest.raises(RasterError, match=r"bad_block\.tif: cannot read pixels of window \[256, "):
        read_chip(record(cat), [256, 0, 64, 64])


def test_the_store_keeps_the_catalogued_scene(make_raster, tmp_path: Path) -> None:
    path, _ = make_raster(dtype="uint16", nodata=0)
    cat = catalogue(str(path), TILING)
    scene = cat.scene
    assert scene.id == 0 and scene.stretch is not None and scene.nodata == 0.0
    assert isinstance(scene.transform[0], float) and scene.bands == (1, 2, 3)
    with Store(tmp_path / "geoal.db") as store:
        scene_id = store.insert_scene(scene, cat.windows, cat.valid)
        assert store.scene(scene_id) == dataclasses.replace(scene, id=scene_id)
        assert store.find_scene(scene.path) == store.scenes()[0]
