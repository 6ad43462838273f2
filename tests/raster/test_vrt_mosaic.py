"""A VRT mosaic of distant scenes: only chips that a source covers, and a cap on chip counts.

The mosaic is written as ``gdalbuildvrt mosaic.vrt busan.tif honolulu.tif`` writes it (no
-srcnodata): two small Sentinel-2 scenes half the world apart in one 3.2 million pixel wide
raster whose gaps read as zeros.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from geoal.cli import main
from geoal.config import TilingConfig
from geoal.errors import RasterError
from geoal.raster.grid import chip_grid, covered_grid
from geoal.raster.scene import catalogue, vrt_source_rects


def build_vrt(out: Path, paths: list[Path], srcnodata: float | None = None) -> list[tuple]:
    """A mosaic VRT of same-CRS, same-resolution scenes; returns the sources' pixel rects."""
    dss = [rasterio.open(p) for p in paths]
    rx, ry = dss[0].res
    left = min(d.bounds.left for d in dss)
    top = max(d.bounds.top for d in dss)
    width = round((max(d.bounds.right for d in dss) - left) / rx)
    height = round((top - min(d.bounds.bottom for d in dss)) / ry)
    rects = [
        (round((d.bounds.left - left) / rx), round((top - d.bounds.top) / ry), d.width, d.height)
        for d in dss
    ]
    nodata = "" if srcnodata is None else f"<NoDataValue>{srcnodata}</NoDataValue>"
    bands = []
    for b in range(1, dss[0].count + 1):
        sources = "".join(
            f'<ComplexSource><SourceFilename relativeToVRT="0">{d.name}</SourceFilename>'
            f"<SourceBand>{b}</SourceBand>"
            f'<SrcRect xOff="0" yOff="0" xSize="{d.width}" ySize="{d.height}"/>'
            f'<DstRect xOff="{x}" yOff="{y}" xSize="{w}" ySize="{h}"/></ComplexSource>'
            for d, (x, y, w, h) in zip(dss, rects, strict=True)
        )
        bands.append(
            f'<VRTRasterBand dataType="UInt16" band="{b}">{nodata}{sources}</VRTRasterBand>'
        )
    out.write_text(
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
        f"<SRS>{dss[0].crs.to_wkt()}</SRS>"
        f"<GeoTransform>{left}, {rx}, 0, {top}, 0, {-ry}</GeoTransform>{''.join(bands)}"
        "</VRTDataset>"
    )
    for d in dss:
        d.close()
    return rects


@pytest.fixture
def scenes(shared_data: Path) -> list[Path]:
    folder = shared_data / "sen2ships" / "scenes"
    return [folder / "busan.tif", folder / "honolulu.tif"]


def inside_a_source(windows: np.ndarray, rects: list[tuple]) -> np.ndarray:
    hit = np.zeros(len(windows), dtype=bool)
    for x, y, w, h in rects:
        hit |= (
            (windows[:, 0] < x + w)
            & (windows[:, 0] + windows[:, 2] > x)
            & (windows[:, 1] < y + h)
            & (windows[:, 1] + windows[:, 3] > y)
        )
    return hit


@pytest.mark.parametrize("srcnodata", [None, 0])
def test_chips_no_source_covers_are_skipped(
    scenes: list[Path], tmp_path: Path, srcnodata: float | None
) -> None:
    vrt = tmp_path / "mosaic.vrt"
    rects = build_vrt(vrt, scenes, srcnodata)
    with rasterio.open(vrt) as ds:
        assert ds.width > 3_000_000  # half the world at 10 m
        found = vrt_source_rects(str(vrt), ds)
    assert found is not None and sorted(map(tuple, found[:, :2].astype(int))) == sorted(
        (x, y) for x, y, _, _ in rects
    )
    cat = catalogue(str(vrt), TilingConfig(size=640, overlap=0.2))
    assert 0 < len(cat.windows) <= 12  # busan needs 6 chips, honolulu 2
    assert inside_a_source(cat.windows, rects).all()
    assert any("none of the VRT's 2 sources" in w for w in cat.warnings)
    # the stretch comes from the scenes' pixels, not from the zeros between them
    for lo, hi in cat.scene.stretch or ():
        assert hi > 1000 and lo < hi
    # each source gets chips: those of busan alone and of honolulu alone
    assert {int(w[0] > 1_000_000) for w in cat.windows} == {0, 1}


def test_tile_cli_on_the_mosaic(scenes: list[Path], tmp_path: Path) -> None:
    vrt = tmp_path / "mosaic.vrt"
    build_vrt(vrt, scenes)
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(tmp_path / "p"), "--classes", "ship"]).exit_code == 0
    res = runner.invoke(main, ["-p", str(tmp_path / "p"), "tile", str(vrt), "-q"])
    assert res.exit_code == 0, res.output
    assert (
        "added scene 1" in res.output and "lie where none of the VRT's 2 sources is" in res.output
    )


def test_covered_grid_is_the_grid_where_sources_are() -> None:
    rects = np.array([[10.0, 20.0, 150.0, 60.0], [900.0, 700.0, 1000.0, 800.0]])
    full = chip_grid(1000, 800, 128, 0.25)
    expected = full[inside_a_source(full, [(10, 20, 140, 40), (900, 700, 100, 100)])]
    assert np.array_equal(covered_grid(1000, 800, 128, 0.25, rects), expected)


def test_a_scene_of_too_many_chips_is_refused(make_raster, tmp_path: Path) -> None:
    path, _ = make_raster(width=300, height=200)
    with pytest.raises(RasterError, match=r"would make 20 chips .* --max-chips 20"):
        catalogue(str(path), TilingConfig(size=64, overlap=0.0, max_chips=10))
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(tmp_path / "p"), "--classes", "ship"]).exit_code == 0
    tile = ["-p", str(tmp_path / "p"), "tile", str(path), "--size", "64", "--overlap", "0"]
    res = runner.invoke(main, [*tile, "--max-chips", "10", "-q"])
    assert res.exit_code == 1 and "run again with --max-chips 20" in res.output
    res = runner.invoke(main, [*tile, "--max-chips", "20", "-q"])
    assert res.exit_code == 0 and "(20 chips" in res.output
