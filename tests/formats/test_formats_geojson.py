"""GeoJSON: round trips in the scene CRS and in EPSG:4326, the real tree and building
labels landing on the right pixels, and every import problem reported."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from affine import Affine
from formats_helpers import (
    CLASSES,
    assert_same_boxes,
    boxes_in,
    fake_scene,
    grid_chips,
    random_boxes,
    real_scene,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import CRS

from geoal.errors import FormatError
from geoal.formats import (
    Boxes,
    Chip,
    from_geojson,
    read_geojson,
    to_geojson,
    write_json,
)
from geoal.raster.footprint import pixel_to_crs

SRC = "labels.geojson"

# Measured: UTM -> EPSG:4326 -> UTM moves box corners by <= 2e-8 px (2e-9 m at 0.1 m/px)
# with PROJ's exact Transverse Mercator; 1e-6 px leaves a 50x margin and is still far
# below anything a label could mean.
REPROJECTED_TOL_PX = 1e-6


def _via_file(fc: dict, tmp_path: Path, name: str = "x.geojson") -> gpd.GeoDataFrame:
    return read_geojson(write_json(tmp_path / name, fc))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), scored=st.booleans())
def test_round_trip_in_the_scene_crs(
    chips: list[Chip], tmp_path: Path, data: st.DataObject, scored: bool
) -> None:
    boxes = {c.id: data.draw(boxes_in(c.width, c.height, scored)) for c in chips}
    gdf = _via_file(to_geojson(chips, boxes, CLASSES), tmp_path)
    assert gdf.crs == CRS.from_epsg(32617)
    result = from_geojson(gdf, chips, CLASSES, source=SRC)
    assert result.problems == []
    assert set(result.labels) == {c.id for c in chips}
    for c in chips:
        got, want = result.labels[c.id], boxes[c.id]
        assert_same_boxes(got, want, 1e-6)
        # and within 1e-6 CRS units (metres) on the ground
        for xs in ((0, 1), (2, 3)):
            g = pixel_to_crs(c.transform, got.xyxy[:, xs[0]], got.xyxy[:, xs[1]])
            w = pixel_to_crs(c.transform, want.xyxy[:, xs[0]], want.xyxy[:, xs[1]])
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-6)


def test_export_layout(chips: list[Chip]) -> None:
    boxes = {
        chips[0].id: Boxes([[1, 2, 11, 22]], [2], [0.75]),
        chips[1].id: Boxes.empty(),
    }
    fc = to_geojson(chips[:2], boxes, CLASSES)
    assert fc["crs"] == {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32617"}}
    kinds = [f["properties"]["kind"] for f in fc["features"]]
    assert kinds == ["chip", "prediction", "chip"]
    chip_f, box_f = fc["features"][:2]
    assert chip_f["properties"] == {
        "kind": "chip",
        "chip_id": 1,
        "scene": "scene",
        "scene_id": 1,
        "window": [0, 0, 64, 64],
    }
    assert box_f["properties"] == {
        "kind": "prediction",
        "chip_id": 1,
        "class": "plane",
        "class_id": 2,
        "score": 0.75,
    }
    ring = box_f["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5
    assert shapely.Polygon(ring).exterior.is_ccw  # RFC 7946 winding
    x0, y0 = chips[0].transform[2], chips[0].transform[5]
    assert sorted({p[0] for p in ring}) == [x0 + 0.5, x0 + 5.5]
    assert sorted({p[1] for p in ring}) == [y0 - 11.0, y0 - 1.0]
    labels = to_geojson(chips[:1], {1: Boxes([[1, 2, 11, 22]], [0])}, CLASSES)
    assert labels["features"][1]["properties"]["kind"] == "label"
    assert labels["features"][1]["properties"]["score"] is None


def test_real_rasters_round_trip_through_epsg_4326(geotiff: Path, tmp_path: Path) -> None:
    names = [
        "osbs029_rgb_10cm.tif",
        "atlanta_pan_50cm_uint16.tif",
        "pan_50cm_uint16.tif",
        "ms_4band_1m_float64.tif",
    ]
    chips: list[Chip] = []
    for k, name in enumerate(names):
        scene = real_scene(geotiff / name, scene_id=k + 1)
        chips += grid_chips(scene, 256, 0.25, first_id=100 * (k + 1))
    assert len({c.crs for c in chips}) == 3  # UTM 17N, 16N, 31N
    rng = np.random.default_rng(7)
    boxes = {c.id: random_boxes(rng, c.width, c.height, 5, scored=False) for c in chips}
    with pytest.raises(FormatError, match="different CRSs"):
        to_geojson(chips, boxes, CLASSES)
    gdf = _via_file(to_geojson(chips, boxes, CLASSES, crs="EPSG:4326"), tmp_path)
    assert gdf.crs == CRS.from_epsg(4326)
    assert -90 < gdf.total_bounds[0] < 10 and 25 < gdf.total_bounds[1] < 60  # lon, lat order
    result = from_geojson(gdf, chips, CLASSES, source=SRC)
    assert result.problems == []
    for c in chips:
        assert_same_boxes(result.labels[c.id], boxes[c.id], REPROJECTED_TOL_PX)


@pytest.mark.parametrize(
    ("name", "epsg"),
    [
        ("osbs029_rgb_10cm.tif", 32617),
        ("atlanta_pan_50cm_uint16.tif", 32616),
        ("pan_50cm_uint16.tif", 32631),
    ],
)
def test_scene_crs_export_reads_back_with_its_crs(geotiff, tmp_path, name, epsg) -> None:
    chips = grid_chips(real_scene(geotiff / name), 256, 0.0)
    rng = np.random.default_rng(1)
    boxes = {c.id: random_boxes(rng, 256, 256, 2, scored=True) for c in chips}
    gdf = _via_file(to_geojson(chips, boxes, CLASSES), tmp_path)
    assert gdf.crs == CRS.from_epsg(epsg)
    assert set(gdf["kind"]) == {"chip", "prediction"}
    chip_rows = gdf[gdf["kind"] == "chip"]
    bounds = np.array([c.transform[2] for c in chips])
    np.testing.assert_allclose(chip_rows.geometry.bounds["minx"].to_numpy(), bounds)


def test_pixel_only_scenes_cannot_be_exported(chips: list[Chip]) -> None:
    plain = grid_chips(fake_scene(crs=None, transform=(1, 0, 0, 0, 1, 0)), 64, 0.0)
    with pytest.raises(FormatError, match=r"no CRS.*COCO or YOLO"):
        to_geojson(plain, {}, CLASSES)
    with pytest.raises(FormatError, match="choose scene, EPSG:4326 or auto"):
        to_geojson(chips, {}, CLASSES, crs="EPSG:3857")


def _trees(geotiff: Path) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    gdf = read_geojson(geotiff / "osbs029_trees.geojson")
    csv = pd.read_csv(geotiff / "osbs029_trees_pixels.csv")
    return gdf, csv[["xmin", "ymin", "xmax", "ymax"]].to_numpy(np.float64)


def _expected_on_chip(pixels: np.ndarray, window, min_visible: float) -> np.ndarray:
    """The scene-pixel boxes as a chip sees them: shifted, clipped, kept when visible enough."""
    col, row, w, h = window
    b = pixels - [col, row, col, row]
    c = np.clip(b, 0, [w, h, w, h])
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    vis = (c[:, 2] - c[:, 0]).clip(0) * (c[:, 3] - c[:, 1]).clip(0)
    return c[vis / area >= min_visible]


@pytest.mark.parametrize("to_4326", [False, True])
def test_real_tree_boxes_land_on_their_pixels(geotiff: Path, osbs, to_4326: bool) -> None:
    gdf, pixels = _trees(geotiff)
    assert gdf.crs == CRS.from_epsg(32617) and len(gdf) == len(pixels) == 61
    if to_4326:
        gdf = gdf.to_crs(4326)
    tol = REPROJECTED_TOL_PX if to_4326 else 1e-6
    whole = grid_chips(osbs, 400, 0.0)
    assert len(whole) == 1 and whole[0].window == (0, 0, 400, 400)
    result = from_geojson(gdf, whole, ["Tree"], class_field="label", source=SRC)
    assert result.problems == []
    assert_same_boxes(result.labels[1], Boxes(pixels, np.zeros(61)), tol)

    tiles = grid_chips(osbs, 256, 0.25)
    assert [c.window[:2] for c in tiles] == [(0, 0), (144, 0), (0, 144), (144, 144)]
    result = from_geojson(gdf, tiles, ["Tree"], class_field="label", source=SRC)
    assert result.problems == []
    clipped = 0
    for c in tiles:
        want = _expected_on_chip(pixels, c.window, 0.5)
        assert_same_boxes(result.labels[c.id], Boxes(want, np.zeros(len(want))), tol)
        on_edge = (want[:, 2] == 256) | (want[:, 3] == 256) | (want[:, :2] == 0).any(axis=1)
        clipped += int(on_edge.sum())
    assert clipped > 5  # the overlap cuts through trees: clipping is exercised


def test_building_polygons_become_their_pixel_bounding_boxes(geotiff: Path) -> None:
    scene = real_scene(geotiff / "atlanta_pan_50cm_uint16.tif")
    gdf = read_geojson(geotiff / "atlanta_buildings.geojson")
    gdf["class"] = "building"
    chips = grid_chips(scene, 900, 0.0)
    inv = ~Affine(*scene.transform)
    want = []
    for poly in gdf.geometry:
        cols, rows = inv * np.asarray(poly.exterior.coords).T
        want.append([cols.min(), rows.min(), cols.max(), rows.max()])
    want_b = Boxes(np.clip(want, 0, 900), np.zeros(len(want)))
    for frame in (gdf, gdf.to_crs(4326)):
        result = from_geojson(frame, chips, ["building"], source=SRC)
        assert result.problems == []
        assert_same_boxes(result.labels[1], want_b, REPROJECTED_TOL_PX)


def _label_fc(chips: list[Chip]) -> dict:
    return to_geojson(chips, {c.id: Boxes([[10, 10, 20, 20]], [0]) for c in chips}, CLASSES)


def test_chip_features_decide_which_chips_are_labelled(chips: list[Chip], tmp_path) -> None:
    fc = to_geojson(chips[:2], {1: Boxes([[10, 10, 20, 20]], [0])}, CLASSES)
    gdf = _via_file(fc, tmp_path)
    result = from_geojson(gdf, chips, CLASSES, source=SRC)
    assert result.problems == []
    assert set(result.labels) == {1, 2}  # listed chips only; chip 2 is a labelled negative
    assert len(result.labels[2]) == 0
    # without chip features, only the chips the features cover: one box covers chip 1 only
    result = from_geojson(gdf[gdf["kind"] != "chip"], chips, CLASSES, source=SRC)
    assert set(result.labels) == {1} and len(result.labels[1]) == 1
    assert sorted(result.uncovered) == [2, 3, 4, 5, 6]


def test_features_without_chip_id_go_to_every_chip_they_overlap(chips: list[Chip]) -> None:
    # a 4 x 4 px box at scene pixels (50..54, 20..24): inside chips 1 (x 0..64) and 2 (x 48..112)
    t = chips[0].transform
    x0, y0 = t[2] + 50 * t[0], t[5] + 20 * t[4]
    gdf = gpd.GeoDataFrame(
        {"class": ["tank"]}, geometry=[shapely.box(x0, y0 - 2.0, x0 + 2.0, y0)], crs="EPSG:32617"
    )
    result = from_geojson(gdf, chips, CLASSES, source=SRC)
    assert result.problems == []
    np.testing.assert_allclose(result.labels[1].xyxy, [[50, 20, 54, 24]], atol=1e-6)
    np.testing.assert_allclose(result.labels[2].xyxy, [[2, 20, 6, 24]], atol=1e-6)
    assert result.labels[2].cls.tolist() == [1]
    assert sum(len(b) for b in result.labels.values()) == 2


@pytest.mark.parametrize(("visible_px", "kept"), [(6.0, True), (5.0, True), (4.0, False)])
def test_partly_visible_boxes_are_clipped_or_dropped(chips, visible_px: float, kept: bool) -> None:
    # a 10 px wide box sticking out of the scene's left edge (chip 1 only)
    t = chips[0].transform
    left = t[2] + (visible_px - 10.0) * t[0]
    geom = shapely.box(left, t[5] - 15.0, left + 5.0, t[5] - 5.0)
    gdf = gpd.GeoDataFrame({"class": ["ship"]}, geometry=[geom], crs="EPSG:32617")
    result = from_geojson(gdf, chips[:1], CLASSES, min_visible=0.5, source=SRC)
    assert result.problems == []  # overlapping but mostly outside is not a problem
    if kept:
        np.testing.assert_allclose(result.labels[1].xyxy, [[0, 10, visible_px, 30]], atol=1e-9)
    else:  # a file whose one feature belongs to a neighbour says nothing about chip 1
        assert result.labels == {} and result.uncovered == [1]


def _one_problem(result, where: str, text: str) -> None:
    assert len(result.problems) == 1, result.problems
    p = result.problems[0]
    assert (p.source, p.where) == (SRC, where) and text in p.message, p


def test_each_bad_feature_is_reported(chips: list[Chip], tmp_path: Path) -> None:
    c1 = chips[0]
    x0, y0 = c1.transform[2], c1.transform[5]
    inside = shapely.box(x0 + 1, y0 - 5, x0 + 5, y0 - 1)
    cases = [
        ("submarine", inside, "unknown class 'submarine'"),
        (None, inside, "no 'class' value: unknown class"),
        ("ship", shapely.Polygon(), "empty geometry"),
        ("ship", None, "empty geometry"),
        (
            "ship",
            shapely.Polygon([(x0, y0 - 4), (x0 + 4, y0), (x0 + 4, y0 - 4), (x0, y0)]),
            "invalid geometry",
        ),
        ("ship", shapely.Point(x0 + 3, y0 - 3), "no area in pixel space"),
    ]
    for name, geom, text in cases:
        gdf = gpd.GeoDataFrame({"class": [name, "ship"]}, geometry=[geom, inside], crs="EPSG:32617")
        result = from_geojson(gdf, chips, CLASSES, source=SRC)
        _one_problem(result, "feature 0", text)
        assert len(result.labels[1]) == 1  # the good feature still imports
    # a feature outside the chips being labelled is a note (a whole-scene label file) ...
    outside = shapely.box(x0 - 500, y0 + 100, x0 - 490, y0 + 110)
    gdf = gpd.GeoDataFrame(
        {"class": ["ship", "ship"]}, geometry=[outside, inside], crs="EPSG:32617"
    )
    result = from_geojson(gdf, chips, CLASSES, source=SRC)
    assert result.problems == [] and len(result.labels[1]) == 1
    assert [(n.where, n.message) for n in result.notes] == [
        ("feature 0", "feature lies outside every labelled chip")
    ]
    # ... unless nothing in the file lands on them: then it is for another place
    gdf = gpd.GeoDataFrame({"class": ["ship"]}, geometry=[outside], crs="EPSG:32617")
    result = from_geojson(gdf, chips, CLASSES, source=SRC)
    assert [p.where for p in result.problems] == ["file"] and "for this place" in result.problems[
        0
    ].message


def test_chip_ids_must_name_labelled_chips(chips: list[Chip], tmp_path: Path) -> None:
    fc = _label_fc(chips[:2])
    fc["features"][0]["properties"]["chip_id"] = 99  # a chip feature for an unknown chip
    fc["features"][3]["properties"]["chip_id"] = 5  # a box naming a chip not listed
    result = from_geojson(_via_file(fc, tmp_path), chips, CLASSES, source=SRC)
    assert [(p.where, p.message.split(",")[0]) for p in result.problems] == [
        ("feature 0", "chip feature names chip 99"),
        ("feature 1", "chip_id 1 is not one of the labelled chips"),  # chip 1 is not listed now
        ("feature 3", "chip_id 5 is not one of the labelled chips"),
    ]
    assert set(result.labels) == {2}  # chip 1's feature was refused: chip 1 stays unlabelled
    # a box moved off the chip its chip_id names
    fc = _label_fc(chips[:1])
    ring = fc["features"][1]["geometry"]["coordinates"][0]
    for p in ring:
        p[0] += 1000.0
    result = from_geojson(_via_file(fc, tmp_path), chips, CLASSES, source=SRC)
    _one_problem(result, "feature 1", "outside its chip 1")


def test_missing_crs_or_class_column_labels_nothing(chips: list[Chip]) -> None:
    gdf = gpd.GeoDataFrame({"class": ["ship"]}, geometry=[shapely.box(0, 0, 1, 1)])
    result = from_geojson(gdf, chips, CLASSES, source=SRC)
    _one_problem(result, "file", "no CRS")
    assert result.labels == {}
    gdf = gpd.GeoDataFrame({"kind": ["x"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=32617)
    result = from_geojson(gdf, chips, CLASSES, source=SRC)
    _one_problem(result, "file", "no 'class' property")
    assert result.labels == {}
    result = from_geojson(gdf, chips, CLASSES, class_field=None, source=SRC)
    _one_problem(result, "file", "no class (class, label, category, name, type) property")
    assert "--class-field NAME, or --class NAME" in result.problems[0].message


def test_read_geojson_needs_a_crs_and_reads_lon_lat_by_default(tmp_path: Path) -> None:
    no_crs = tmp_path / "no_crs.shp"
    with pytest.warns(UserWarning, match="crs"):
        gpd.GeoDataFrame({"class": ["ship"]}, geometry=[shapely.box(0, 0, 1, 1)]).to_file(no_crs)
    with pytest.raises(FormatError, match=r"no_crs\.shp: no CRS"):
        read_geojson(no_crs)
    good = tmp_path / "good.geojson"
    good.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    assert read_geojson(good).crs == CRS.from_epsg(4326)  # RFC 7946: lon/lat by default


def test_a_file_of_chips_only_labels_them_negative(chips: list[Chip], tmp_path) -> None:
    gdf = _via_file(to_geojson(chips[:3], {}, CLASSES), tmp_path)
    assert "class" not in gdf.columns  # no box anywhere: GDAL drops the property
    result = from_geojson(gdf, chips, CLASSES, source=SRC)
    assert result.problems == []
    assert set(result.labels) == {1, 2, 3} and result.n_boxes == 0


def test_pixel_only_chips_cannot_be_labelled(chips: list[Chip]) -> None:
    plain = grid_chips(fake_scene(crs=None, transform=(1, 0, 0, 0, 1, 0)), 64, 0.0, 50)
    gdf = gpd.GeoDataFrame({"class": ["ship"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=32617)
    result = from_geojson(gdf, [*chips[:1], plain[0]], CLASSES, source=SRC)
    assert [p.where for p in result.problems] == ["chip 50", "file"]
    assert [n.where for n in result.notes] == ["feature 0"]
    assert "pixel-only" in result.problems[0].message
    assert result.labels == {} and result.uncovered == [1]  # the feature is far from chip 1
