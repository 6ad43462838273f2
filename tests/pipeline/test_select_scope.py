"""``geoal select --scene`` and ``--aoi``: a round limited to a scene or to an area of interest."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from click.testing import CliRunner

from geoal.cli import main
from geoal.project import open_project
from geoal.store.rounds import chips_of_round, round_record


def run(*args: str, code: int = 0):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def proj(tmp_path: Path, shared_data: Path) -> Path:
    """Two real scenes in two UTM zones (17N trees, 16N buildings), 128 px chips."""
    root = tmp_path / "p"
    run("init", str(root), "--classes", "tree,building")
    geotiff = shared_data / "geotiff"
    run(
        "-p",
        str(root),
        "tile",
        str(geotiff / "osbs029_rgb_10cm.tif"),
        str(geotiff / "atlanta_pan_50cm_uint16.tif"),
        "--size",
        "128",
        "-q",
    )
    return root


def round_chips(root: Path, round_id: int) -> list[tuple[int, int, int, int, int]]:
    """(scene id, col_off, row_off, width, height) of each chip of the round."""
    with open_project(root) as p:
        chips = [p.store.chip(c) for c in chips_of_round(p.store, round_id)]
    return [(c["scene_id"], c["col_off"], c["row_off"], c["width"], c["height"]) for c in chips]


def test_select_one_scene_by_name_or_id(proj: Path) -> None:
    run("-p", str(proj), "select", "-k", "5", "-s", "random", "--scene", "osbs029_rgb_10cm")
    assert {r[0] for r in round_chips(proj, 1)} == {1}
    run("-p", str(proj), "select", "-k", "40", "-s", "random", "--scene", "2", "--scene", "1")
    assert {r[0] for r in round_chips(proj, 2)} == {1, 2}
    out = run("-p", str(proj), "select", "-k", "5", "--scene", "nowhere", code=2).output
    assert "--scene nowhere: no such scene" in out


def test_select_in_an_area_drawn_in_another_crs(
    proj: Path, shared_data: Path, tmp_path: Path
) -> None:
    buildings = gpd.read_file(shared_data / "geotiff" / "atlanta_buildings.geojson")
    # a small area around the first building, saved in EPSG:4326 as QGIS users draw it
    area = buildings.geometry.iloc[:1].buffer(5).to_crs("EPSG:4326")
    aoi = tmp_path / "aoi.gpkg"
    gpd.GeoDataFrame({"name": ["here"]}, geometry=area.values, crs="EPSG:4326").to_file(aoi)
    res = run("-p", str(proj), "select", "-k", "50", "-s", "random", "--aoi", str(aoi))
    chips = round_chips(proj, 1)
    assert chips and {r[0] for r in chips} == {2}  # only the Atlanta scene
    with __import__("rasterio").open(shared_data / "geotiff" / "atlanta_pan_50cm_uint16.tif") as ds:
        t = ds.transform
    local = buildings.geometry.iloc[0].buffer(5)
    for _, col, row, w, h in chips:
        x0, y0 = t * (col, row)
        x1, y1 = t * (col + w, row + h)
        assert shapely.box(x0, y1, x1, y0).intersects(local)
    assert len(chips) < 81 and "round 1" in res.output
    with open_project(proj) as p:
        record = round_record(p.store, 1)
    assert record is not None and record.params["aoi"] == str(aoi)
    # an area in one scene and --scene of the other: nothing to select, said so
    out = run(
        "-p", str(proj), "select", "-s", "random", "--aoi", str(aoi), "--scene", "1", code=1
    ).output
    assert "no candidate chips there" in out


def test_bad_aoi_files(proj: Path, tmp_path: Path) -> None:
    points = tmp_path / "points.geojson"
    gpd.GeoDataFrame(geometry=[shapely.Point(0, 0)], crs="EPSG:4326").to_file(points)
    out = run("-p", str(proj), "select", "-s", "random", "--aoi", str(points), code=2).output
    assert "holds no polygon" in out
    junk = tmp_path / "junk.geojson"
    junk.write_text("not json")
    out = run("-p", str(proj), "select", "-s", "random", "--aoi", str(junk), code=2).output
    assert "not a readable vector file" in out and "Traceback" not in out
