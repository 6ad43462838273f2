"""The chip map: footprints by state, and stored detections merged across chips into objects."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
from click.testing import CliRunner

from geoal.cli import main
from geoal.project import open_project
from geoal.store.arrays import encode_scores
from geoal.store.scores import ScoreRecord, insert_records


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_map_merges_an_object_seen_by_two_chips(tmp_path: Path, make_raster) -> None:
    proj = tmp_path / "p"
    run("init", str(proj), "--classes", "ship,tank")
    path, _ = make_raster(
        width=128, height=64, crs="EPSG:32631", origin=(500_000.0, 4_000_000.0), resolution=0.5
    )
    run("-p", str(proj), "tile", str(path), "--size", "64", "--overlap", "0.5", "-q")
    # chips start at x = 0, 32, 64; a ship at scene x 40-60, y 10-20 is seen whole by
    # the first two chips and cut by the third's left edge (x = 64 is past it: not seen)
    with open_project(proj) as p, p.store.transaction() as conn:
        ids, windows = p.store.chip_windows(p.store.scenes()[0].id)
        for k in np.argsort(windows[:, 0], kind="stable"):
            chip_id, col = int(ids[k]), int(windows[k, 0])
            record = ScoreRecord(*encode_scores({"miaod": 0.1}), 0.9, None, None, ())
            insert_records(conn, "m1", 1, [chip_id], [record])
            if col + 64 <= 40 or col >= 60:
                continue
            x1, x2 = max(40, col) - col, min(60, col + 64) - col
            conn.execute(
                "INSERT INTO detections (chip_id, model_hash, x1, y1, x2, y2, class_id, confidence, probs, uncertainty) "
                "VALUES (?, 'm1', ?, 10, ?, 20, 0, ?, ?, '{}')",
                (chip_id, x1, x2, 0.9 - 0.1 * (col > 0), np.array([0.9, 0.1], "<f4").tobytes()),
            )
    out = tmp_path / "map.gpkg"
    text = run("-p", str(proj), "map", "--out", str(out))
    assert "objects_" in text
    layers = dict(pyogrio.list_layers(out))
    obj_layer = next(n for n in layers if n.startswith("objects_"))
    objects = gpd.read_file(out, layer=obj_layer)
    assert len(objects) == 1 and objects.crs.to_epsg() == 32631
    assert objects["class"].tolist() == ["ship"]
    minx, miny, maxx, maxy = objects.geometry.iloc[0].bounds
    assert (minx, maxx) == (500_000.0 + 40 * 0.5, 500_000.0 + 60 * 0.5)
    assert (miny, maxy) == (4_000_000.0 - 20 * 0.5, 4_000_000.0 - 10 * 0.5)
    chips_layer = gpd.read_file(
        out, layer=next(n for n in layers if n.startswith("chips_") and n != "chips_wgs84")
    )
    assert set(chips_layer["state"]) == {"scored"} and chips_layer["score"].tolist() == [0.1] * len(
        chips_layer
    )
