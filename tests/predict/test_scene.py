"""Whole-scene prediction: an object across a chip corner is reported once, in the scene's CRS."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
from rasterio.transform import from_origin

from geoal.detect import ChipResult
from geoal.predict.scene import (
    PredictOptions,
    PredictReport,
    predict_scene,
    write_detections,
    write_summary,
)


class BrightBoxDetector:
    """A stand-in detector that 'sees' the bounding box of bright pixels in each chip."""

    classes = ("ship",)

    def iter_predict(self, batches, views=1, conf=0.25, iou=0.7, details=True):
        for keys, images in batches:
            results = []
            for img in images:
                rows, cols = np.nonzero(img[..., 0] > 200)
                boxes = np.zeros((0, 4), np.float32)
                if len(rows):
                    boxes = np.array(
                        [[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]], np.float32
                    )
                n = len(boxes)
                results.append(
                    ChipResult(
                        boxes=boxes,
                        conf=np.full(n, 0.9, np.float32),
                        cls=np.zeros(n, np.int64),
                        probs=np.full((n, 1), 0.9, np.float32),
                        anchor_idx=np.zeros(n, np.int64),
                        anchor_probs=np.zeros((1, 1, 1), np.float32),
                        view_boxes=(),
                        view_conf=(),
                        view_cls=(),
                        embedding=np.zeros(1, np.float32),
                        views=("identity",),
                    )
                )
            yield keys, results


def scene_with_object(path: Path, box: tuple[int, int, int, int], crs: str = "EPSG:32633") -> None:
    data = np.full((3, 200, 260), 20, np.uint8)
    x1, y1, x2, y2 = box
    data[:, y1:y2, x1:x2] = 255
    count, height, width = data.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count, "crs": crs}
    transform = from_origin(400_000.0, 5_000_000.0, 0.5, 0.5)
    with rasterio.open(path, "w", dtype="uint8", transform=transform, **profile) as ds:
        ds.write(data)


@pytest.mark.parametrize("merge", ["greedy-nmm", "nmm"])
def test_object_across_a_chip_corner_is_reported_once(tmp_path: Path, merge: str) -> None:
    # 64 px chips with 25 % overlap start every 48 px: the object spans the corner at (96, 96)
    box = (85, 80, 118, 110)
    path = tmp_path / "corner.tif"
    scene_with_object(path, box)
    opts = PredictOptions(
        model="unused.pt", size=64, overlap=0.25, merge=merge, match="ios", threshold=0.5, batch=4
    )
    det = predict_scene(BrightBoxDetector(), str(path), opts, progress=False)
    assert det.raw_detections >= 4, "the object is seen, whole or cut, by several chips"
    assert len(det.objects) == 1
    np.testing.assert_allclose(det.objects[0, :4], box)
    report = PredictReport(classes=("ship",), scenes=[det])
    out = tmp_path / "det.gpkg"
    write_detections(report, out)
    frame = gpd.read_file(out, layer=pyogrio.list_layers(out)[0][0])
    assert frame.crs.to_epsg() == 32633 and len(frame) == 1
    minx, miny, maxx, maxy = frame.geometry.iloc[0].bounds
    assert (minx, maxy) == (400_000.0 + 85 * 0.5, 5_000_000.0 - 80 * 0.5)
    assert (maxx, miny) == (400_000.0 + 118 * 0.5, 5_000_000.0 - 110 * 0.5)
    assert frame["class"].tolist() == ["ship"] and frame["confidence"].iloc[0] == pytest.approx(0.9)
    geojson = tmp_path / "det.geojson"
    write_detections(report, geojson)
    assert gpd.read_file(geojson).crs.to_epsg() == 4326
    csv_path = tmp_path / "counts.csv"
    write_summary(report, csv_path)
    assert csv_path.read_text().splitlines() == ["scene,class,count", "corner,ship,1"]


def test_nms_keeps_the_whole_view(tmp_path: Path) -> None:
    box = (85, 80, 118, 110)
    path = tmp_path / "corner.tif"
    scene_with_object(path, box)
    opts = PredictOptions(model="unused.pt", size=64, overlap=0.25, merge="nms", match="ios")
    det = predict_scene(BrightBoxDetector(), str(path), opts, progress=False)
    assert len(det.objects) == 1  # the cut views lie inside the whole one: suppressed


def test_real_geotiffs_come_out_in_their_own_crs(tmp_path: Path, shared_data: Path) -> None:
    from click.testing import CliRunner

    from geoal.cli import main
    from tests.detect.detect_fixtures import make_checkpoint

    weights = make_checkpoint(tmp_path / "m.pt", ("tree", "building"))
    scenes = [
        shared_data / "geotiff" / n for n in ("osbs029_rgb_10cm.tif", "atlanta_pan_50cm_uint16.tif")
    ]
    out = tmp_path / "det.gpkg"
    result = CliRunner().invoke(
        main,
        [
            "predict",
            *map(str, scenes),
            "--model",
            str(weights),
            "--out",
            str(out),
            "--size",
            "128",
            "--conf",
            "0.3",
            "--summary",
            str(tmp_path / "c.csv"),
            "-q",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    layers = dict(pyogrio.list_layers(out))
    assert set(layers) == {"osbs029_rgb_10cm", "atlanta_pan_50cm_uint16"}
    assert gpd.read_file(out, layer="osbs029_rgb_10cm").crs.to_epsg() == 32617
    assert gpd.read_file(out, layer="atlanta_pan_50cm_uint16").crs.to_epsg() == 32616
    assert "chips/s" in result.output and (tmp_path / "c.csv").exists()
    bad = CliRunner().invoke(
        main, ["predict", str(scenes[0]), "--model", str(weights), "--merge", "avg"]
    )
    assert bad.exit_code == 2 and "nms, greedy-nmm, nmm" in bad.output


def test_a_corrupt_block_is_a_scene_error(tmp_path: Path) -> None:
    """Prediction skips the catalogue's decimated read of an 8-bit scene: the chip reads
    find a block GDAL cannot decode, and say so in one line (RasterError, not a traceback)."""
    from geoal.errors import RasterError
    from geoal.synthetic import SceneSpec, write_scene

    path = tmp_path / "scene.tif"
    write_scene(path, SceneSpec(width=600, height=600))  # 3 x 3 tiles of 256 px, deflate
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_0", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    opts = PredictOptions(model="unused.pt", size=64, overlap=0.25)
    with pytest.raises(RasterError, match=r"scene\.tif: cannot read pixels of window"):
        predict_scene(BrightBoxDetector(), str(path), opts, progress=False)


def test_chips_of_any_size_run_at_a_stride_multiple(shared_data: Path) -> None:
    """--size 100 (not a multiple of 32) runs at 128 px instead of failing with a ValueError."""
    from geoal.predict.scene import predict_scenes, with_model_input

    opts = PredictOptions(model="yolov8n.yaml", size=100, overlap=0.0, conf=0.01, batch=8)
    assert with_model_input(opts).imgsz == 128
    assert with_model_input(PredictOptions(model="yolov8n.yaml", size=128)).imgsz is None
    scene = str(shared_data / "geotiff" / "osbs029_rgb_10cm.tif")
    report = predict_scenes([scene], opts, classes=("tree",), progress=False)
    assert not report.errors and report.scenes[0].chips == 16
