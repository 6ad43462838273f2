"""``geoal report`` from what the store holds: models, evaluations, rounds and labels."""

from __future__ import annotations

import json
import re
from pathlib import Path

from geoal.project import open_project
from geoal.report.html import build_report
from tests.pipeline.annotation import export_coco, run


def test_an_empty_project_reports_what_to_run_next(tmp_path: Path, make_raster) -> None:
    proj = tmp_path / "p"
    run("init", str(proj), "--classes", "ship")
    run("-p", str(proj), "tile", make_raster()[0].as_posix(), "--size", "100", "-q")
    project = open_project(proj)
    try:
        page = build_report(project, tmp_path / "out" / "r.html").read_text()
    finally:
        project.close()
    assert "<h1>geoal report: p</h1>" in page
    assert "no trained model yet" in page and "not evaluated yet" in page
    assert "no round yet (geoal select)" in page
    assert page.count('alt="score map ') == 1  # one scene
    assert not (tmp_path / "out" / "r.html.tmp").exists()


def test_models_evaluations_and_the_latest_round_are_shown(tmp_path: Path, make_raster) -> None:
    proj = tmp_path / "p"
    run("init", str(proj), "--classes", "ship,tank")
    run("-p", str(proj), "tile", make_raster()[0].as_posix(), "--size", "100", "--overlap", "0")
    run("-p", str(proj), "select", "-k", "3", "-s", "random", "--min-distance", "-1")
    # the annotator draws one ship on the first chip of the round, nothing on the others
    coco = export_coco(proj, tmp_path / "r1")
    first = coco["images"][0]["id"]
    coco["annotations"] = [{"id": 1, "image_id": first, "category_id": 1, "bbox": [5, 5, 20, 20]}]
    (tmp_path / "labelled.json").write_text(json.dumps(coco))
    run("-p", str(proj), "import", str(tmp_path / "labelled.json"))
    project = open_project(proj)
    try:
        evaluation = {"mAP50": 0.5, "mAP50-95": 0.25, "ap50": {"ship": 0.5, "tank": None}}
        metrics = {"train_chips": 2, "val_chip_ids": [first], "eval": evaluation}
        project.store.register_model("ab" * 32, "m.pt", ("ship", "tank"), metrics=metrics)
        simulation = tmp_path / "results.csv"
        simulation.write_text("strategy,seed,n_images,mAP50\nrandom,0,10,0.1\nrandom,0,20,0.2\n")
        out = build_report(project, tmp_path / "r.html", simulation=simulation, gallery=2)
    finally:
        project.close()
    text = re.sub(r"base64,[^\"]+", "", out.read_text())
    assert "<td>abababababab</td><td>-</td><td>3</td><td>0.500</td><td>0.250</td>" in text
    assert "Compared strategies: " + str(simulation) in text
    assert "<td>round None (abababab)</td><td>0.500</td><td>-</td>" in text  # per-class AP
    assert "round 1, strategy random, model none" in text
    assert text.count("<figure>") == 2  # the gallery's first two chips, by rank
    assert f"#1 chip {first} (" in text and "1 labelled object;" in text
    assert "0 detections shown" in text and "#3 chip" not in text
