"""``geoal predict --out x.geojson`` writes RFC 7946 GeoJSON: no crs member, CCW exterior rings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
import shapely

from geoal.predict.scene import PredictReport, SceneDetections, write_detections


def test_geojson_output_is_rfc7946(shared_data: Path, tmp_path: Path) -> None:
    with rasterio.open(shared_data / "geotiff" / "osbs029_rgb_10cm.tif") as ds:
        crs, transform = ds.crs.to_wkt(), tuple(ds.transform)[:6]
    objects = np.array([[10, 10, 50, 40, 0.9, 0, 0.1], [100, 120, 130, 180, 0.6, 0, 0.3]])
    scene = SceneDetections("osbs.tif", "osbs", crs, transform, objects, 1, 2, 0.0)
    out = tmp_path / "trees.geojson"
    write_detections(PredictReport(classes=("tree",), scenes=[scene]), out)
    data = json.loads(out.read_text())
    assert "crs" not in data and data.get("name", "trees") == "trees"
    assert [p.name for p in tmp_path.iterdir()] == ["trees.geojson"]
    assert len(data["features"]) == 2
    for feature in data["features"]:
        ring = shapely.LinearRing(feature["geometry"]["coordinates"][0])
        assert ring.is_ccw  # RFC 7946 section 3.1.6
        lon, lat = np.array(ring.coords).mean(axis=0)
        assert -82.1 < lon < -81.9 and 29.6 < lat < 29.8  # lon, lat order in EPSG:4326
