"""``geoal demo``: one full active-learning round on a built-in synthetic scene, offline.

Builds a georeferenced 16-bit scene with known ships and tanks, creates a project,
tiles it, labels a random seed set (a simulated annotator fills the exported COCO
file from the ground truth), trains a small model, then runs a full round: score,
select, export, simulated annotation, import, retrain, evaluate; and writes the
chip map and the HTML report. A few minutes on a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoal.errors import ProjectError
from geoal.project import init_project
from geoal.synthetic import CLASSES, Box, write_scene

DEMO_MARK = ".geoal-demo"


@dataclass(frozen=True)
class DemoOptions:
    """Sizes of the demo (small enough for a CPU in a few minutes)."""

    width: int = 1600
    height: int = 1280
    objects: int = 70
    chip: int = 320
    seed_chips: int = 8
    round_chips: int = 6
    epochs: int = 5
    device: str = "cpu"


def annotate_from_truth(
    coco: dict[str, Any], truth: Sequence[Box], min_visible: float = 0.5
) -> dict[str, Any]:
    """A simulated annotator: fill an exported COCO file with the true boxes of each chip.

    Boxes cut by the chip edge are clipped, and kept when ``min_visible`` of them is inside.
    Predictions (pre-annotations) are replaced, as an annotator corrects them.
    """
    out = dict(coco)
    annotations: list[dict[str, Any]] = []
    for image in coco["images"]:
        col, row, w, h = image["geoal"]["window"]
        for b in truth:
            x1, y1 = max(b.x1, col), max(b.y1, row)
            x2, y2 = min(b.x2, col + w), min(b.y2, row + h)
            if x2 <= x1 or y2 <= y1:
                continue
            if (x2 - x1) * (y2 - y1) < min_visible * (b.x2 - b.x1) * (b.y2 - b.y1):
                continue
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": b.cls + 1,
                    "bbox": [x1 - col, y1 - row, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    out["annotations"] = annotations
    return out


def run_demo(
    out: Path, *, seed: int = 0, progress: bool = True, options: DemoOptions | None = None
) -> Iterator[str]:
    """Run the demo in ``out`` (replacing an earlier demo there); yields log lines."""
    from geoal.config import with_tiling, write_config
    from geoal.pipeline.annotate import ExportOptions, export_round, import_labels, import_summary
    from geoal.pipeline.catalog import project_status, tile_scenes, write_chip_map
    from geoal.pipeline.rounds import SelectOptions, select_round
    from geoal.pipeline.scoring import ScoreOptions, score_project
    from geoal.pipeline.training import TrainOptions, evaluate_project, train_project
    from geoal.report.html import build_report

    opts = options or DemoOptions()
    out = Path(out)
    if out.exists():
        if not (out / DEMO_MARK).exists():
            raise ProjectError(f"{out}: exists and is not a previous demo; choose another --out")
        shutil.rmtree(out)
    (out / "scenes").mkdir(parents=True)
    (out / DEMO_MARK).write_text("made by geoal demo; safe to delete\n")
    scene = out / "scenes" / "demo_harbour_uint16.tif"
    truth = write_scene(
        scene,
        width=opts.width,
        height=opts.height,
        bands=3,
        dtype="uint16",
        crs="EPSG:32631",
        nodata=0,
        border=48,
        overviews=True,
        objects=opts.objects,
        seed=seed,
    )
    yield f"1/9 wrote a synthetic scene: {scene} ({opts.width} x {opts.height}, uint16, EPSG:32631, {len(truth)} objects)"
    project = init_project(out / "project", list(CLASSES), name="demo")
    with project:
        project.config = with_tiling(project.config, size=opts.chip, overlap=0.1)
        project.config = dataclasses.replace(
            project.config, model=dataclasses.replace(project.config.model, imgsz=opts.chip)
        )
        write_config(project.config, project.root / "geoal.yaml")
        report = tile_scenes(project, [str(scene)], project.config.tiling, progress=False)
        added = report.added[0]
        yield f"2/9 tiled it: {added['chips']} chips of {opts.chip} px ({added['skipped_nodata']} skipped as nodata)"

        def label_round(round_id: int, step: str) -> Iterator[str]:
            folder = out / f"round{round_id}"
            info = export_round(
                project, ExportOptions(format="coco", out=folder, round_id=round_id), progress=False
            )
            coco = json.loads(Path(info["file"]).read_text())
            labelled = folder / f"round{round_id}_labelled.json"
            labelled.write_text(json.dumps(annotate_from_truth(coco, truth)))
            yield f"{step} exported round {round_id} ({info['chips']} chips, {info['predictions']} pre-annotations) to {folder}; a simulated annotator labelled it"
            rep = import_labels(project, labelled)
            if rep.problems:
                raise ProjectError("; ".join(rep.problems))
            yield "    " + import_summary(rep)

        r1 = select_round(
            project,
            SelectOptions(strategy="random", budget=opts.seed_chips, seed=seed, min_distance=None),
        )
        yield from label_round(r1.round_id, "3/9")
        train_opts = TrainOptions(
            init=project.config.model.arch,
            epochs=opts.epochs,
            batch=4,
            device=opts.device,
            seed=seed,
            progress=False,
            val_fraction=0.25,
            split="chip",
        )
        t1 = train_project(project, train_opts)
        ev1 = evaluate_project(project, t1.model_hash, device=opts.device)
        yield f"4/9 trained model {t1.model_hash[:12]} from scratch ({t1.seconds:.0f} s): held-out mAP50 {ev1['mAP50']:.3f}"
        sc = score_project(
            project,
            ScoreOptions(views=2, batch=8, device=opts.device, conf=0.05),
            progress=progress,
        )
        yield f"5/9 scored {sc.scored} unlabelled chips with 2 views (MI-AOD-style discrepancy)"
        r2 = select_round(
            project, SelectOptions(strategy="hybrid", budget=opts.round_chips, seed=seed)
        )
        yield f"6/9 selected round {r2.round_id}: {len(r2.chips)} chips by hybrid (uncertainty, then diversity)"
        yield from label_round(r2.round_id, "7/9")
        t2 = train_project(project, dataclasses.replace(train_opts, init="last"))
        ev2 = evaluate_project(project, t2.model_hash, device=opts.device)
        yield f"8/9 retrained from the last model ({t2.seconds:.0f} s): held-out mAP50 {ev2['mAP50']:.3f}"
        score_project(
            project,
            ScoreOptions(views=2, batch=8, device=opts.device, conf=0.05),
            progress=progress,
        )
        layers = write_chip_map(project, out / "chips.gpkg")
        page = build_report(project, out / "report.html")
        counts = project_status(project)["counts"]
        yield f"9/9 wrote the chip map {out / 'chips.gpkg'} ({len(layers)} layers) and the report {page}"
        yield "status: " + "  ".join(f"{k}: {v}" for k, v in counts.items())
        yield f"next: open {page} in a browser; 'geoal --project {out / 'project'} status'"
