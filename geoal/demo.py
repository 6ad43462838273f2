"""``geoal demo``: active learning against random labelling on a synthetic survey, offline.

A survey-like scene: a large, mostly empty 16-bit sea with a few clusters of ships and
tanks (the regime of ship and wildlife surveys, where most chips hold nothing). Two
projects, the *arms*, tile it identically and start from the same randomly chosen and
labelled seed chips and the same first model. Then, round after round, each arm scores
its unlabelled chips with its latest model, selects a batch (the project's default
strategy in the geoal arm, uniformly random chips in the other), exports it, lets a
simulated annotator fill the exported COCO file from the ground truth, imports it,
fine-tunes its model and evaluates it on a held-out test scene (never seen in
training). The demo prints one line per arm per round, writes ``summary.json``, the
chip map and the HTML report of the geoal arm (with both arms' learning curves), and
ends with the comparison in one sentence. A few minutes on a 2-core CPU.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoal.errors import ProjectError
from geoal.project import Project, init_project
from geoal.synthetic import CLASSES, Box, write_scene

DEMO_MARK = ".geoal-demo"
GEOAL_ARM = "geoal"
RANDOM_ARM = "random"


@dataclass(frozen=True)
class DemoOptions:
    """Sizes of the demo (small enough for a 2-core CPU in a few minutes).

    Attributes:
        width, height: the survey scene in pixels (0.5 m); ``objects`` in ``clusters``
            (``spread``: their standard deviation in pixels).
        test_side: side in pixels of the held-out test scene (same kind of survey).
        chip: chip side in pixels, also the model's input size.
        seed_chips: the random seed set both arms start from.
        round_chips: chips each arm selects per round, for ``rounds`` rounds.
        start_epochs: epochs of the first model (from random weights, on the seed set);
        epochs: epochs of each round's fine-tuning from the arm's last model.
        batch: chips per optimiser step (SGD, no warm-up, no gradient accumulation:
            a few dozen chips need every step they can get).
        workers: processes running the two arms' rounds side by side (1 or 2; each
            computes with one thread).
    """

    width: int = 1792
    height: int = 1792
    objects: int = 120
    clusters: int = 6
    spread: float = 70.0
    test_side: int = 1024
    chip: int = 128
    seed_chips: int = 16
    round_chips: int = 8
    rounds: int = 3
    start_epochs: int = 30
    epochs: int = 12
    batch: int = 4
    device: str = "cpu"
    workers: int = 2


def visible_truth(
    window: Sequence[int], truth: Sequence[Box], min_visible: float = 0.5
) -> list[tuple[int, tuple[int, int, int, int], int]]:
    """The objects an annotator labels in a chip: (index in ``truth``, xyxy chip px, class).

    ``window``: [col, row, w, h] in scene pixels. Boxes cut by the chip edge are clipped,
    and kept when ``min_visible`` of their area is inside.
    """
    col, row, w, h = (int(v) for v in window)
    out = []
    for k, b in enumerate(truth):
        x1, y1 = max(b.x1, col), max(b.y1, row)
        x2, y2 = min(b.x2, col + w), min(b.y2, row + h)
        if x2 <= x1 or y2 <= y1:
            continue
        if (x2 - x1) * (y2 - y1) < min_visible * (b.x2 - b.x1) * (b.y2 - b.y1):
            continue
        out.append((k, (x1 - col, y1 - row, x2 - col, y2 - row), b.cls))
    return out


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
        for _, (x1, y1, x2, y2), cls in visible_truth(image["geoal"]["window"], truth, min_visible):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": cls + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    out["annotations"] = annotations
    return out


def write_test_set(scene: Path, truth: Sequence[Box], tiling: Any, folder: Path) -> Path:
    """Cut a labelled scene into chips (PNG, the project's tiling and stretch) and a COCO file.

    Returns the COCO file (``folder/test.json``; images beside it), for ``geoal evaluate
    --data``. Every chip is kept, with or without objects: empty sea is where a survey
    model makes its false alarms.
    """
    from PIL import Image

    from geoal.raster.chip import Chip
    from geoal.raster.reader import read_chips
    from geoal.raster.scene import catalogue

    folder.mkdir(parents=True, exist_ok=True)
    cat = catalogue(str(scene), tiling)
    chips = [Chip.at(cat.scene, i, w) for i, w in enumerate(cat.windows)]
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i, pixels in read_chips(chips):
        name = f"test_{i:04d}.png"
        Image.fromarray(pixels).save(folder / name)
        images.append(
            {"id": i + 1, "file_name": name, "width": pixels.shape[1], "height": pixels.shape[0]}
        )
        for _, (x1, y1, x2, y2), cls in visible_truth(chips[i].window, truth):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": cls + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)],
    }
    path = folder / "test.json"
    path.write_text(json.dumps(coco))
    return path


def _make_project(folder: Path, scene: Path, opts: DemoOptions) -> Project:
    from geoal.config import with_tiling, write_config
    from geoal.pipeline.catalog import tile_scenes

    project = init_project(folder, list(CLASSES), name=folder.name)
    # a survey: chips side by side without overlap, so no object is labelled twice
    project.config = with_tiling(project.config, size=opts.chip, overlap=0.0)
    project.config = dataclasses.replace(
        project.config, model=dataclasses.replace(project.config.model, imgsz=opts.chip)
    )
    write_config(project.config, project.root / "geoal.yaml")
    tile_scenes(project, [str(scene)], project.config.tiling, progress=False)
    return project


def _objects_found(project: Project, truth: Sequence[Box]) -> int:
    """How many distinct true objects the labelled chips of ``project`` show."""
    from geoal.pipeline.annotate import chip_infos, labelled_chip_ids

    found: set[int] = set()
    for info in chip_infos(project, labelled_chip_ids(project)).values():
        found.update(k for k, _, _ in visible_truth(info.window, truth))
    return len(found)


def _label_round(project: Project, round_id: int, folder: Path, truth: Sequence[Box]) -> None:
    """Export a round as COCO, let the simulated annotator fill it, import it."""
    from geoal.pipeline.annotate import ExportOptions, export_round, import_labels

    info = export_round(
        project, ExportOptions(format="coco", out=folder, round_id=round_id), progress=False
    )
    coco = json.loads(Path(info["file"]).read_text())
    labelled = folder / f"round{round_id}_labelled.json"
    labelled.write_text(json.dumps(annotate_from_truth(coco, truth)))
    rep = import_labels(project, labelled)
    if rep.problems:
        raise ProjectError("; ".join(rep.problems))


def _copy_model(source: Project, target: Project, model_hash: str) -> None:
    """Register ``source``'s model in ``target`` too (same weights, hash and metrics)."""
    row = source.store.latest_model("trained")
    if row is None or row["hash"] != model_hash:
        raise ProjectError(f"{source.root}: model {model_hash[:12]} is not its latest")
    target.models_dir.mkdir(parents=True, exist_ok=True)
    path = target.models_dir / Path(row["path"]).name
    shutil.copyfile(source.model_file(row["path"]), path)
    target.store.register_model(
        model_hash,
        target.stored_model_path(path),
        target.config.classes,
        kind="trained",
        round_id=1,
        metrics=json.loads(row["metrics"] or "{}"),
    )


def comparison(summary: dict[str, Any]) -> str:
    """One sentence comparing the arms' last rounds (from ``summary.json``'s ``arms``)."""
    arms = summary["arms"]
    g, r = arms[GEOAL_ARM]["rounds"][-1], arms[RANDOM_ARM]["rounds"][-1]
    strategy = arms[GEOAL_ARM]["strategy"]
    diff = g["mAP50"] - r["mAP50"]
    if abs(diff) < 0.02:
        verdict = "about the same held-out mAP50 as"
    elif diff > 0:
        verdict = f"a higher held-out mAP50 ({diff:+.3f}) than"
    else:
        verdict = f"a lower held-out mAP50 ({diff:+.3f}) than"
    return (
        f"With {g['labelled_chips']} labelled chips each, geoal's {strategy} selection found "
        f"{g['objects_found']} of {summary['scene']['objects']} objects and reached mAP50 "
        f"{g['mAP50']:.3f}, {verdict} random chips ({r['objects_found']} objects found, "
        f"mAP50 {r['mAP50']:.3f})."
    )


def _round_line(name: str, strategy: str, row: dict[str, Any]) -> str:
    label = f"{name} ({strategy})" if name != strategy else name
    return (
        f"round {row['round']}  {label:<16} {row['labelled_chips']:>3} labelled chips, "
        f"{row['objects_found']:>3} objects found, held-out mAP50 {row['mAP50']:.3f}"
    )


@dataclass(frozen=True)
class RoundJob:
    """One arm's round, as a worker process runs it (plain values: it is pickled)."""

    folder: Path
    strategy: str
    round: int
    seed: int
    options: DemoOptions
    truth: tuple[Box, ...]
    test_json: Path


def _train_options(project: Project, opts: DemoOptions, seed: int, *, start: bool) -> Any:
    from geoal.pipeline.training import TrainOptions
    from geoal.train import OptimConfig

    return TrainOptions(
        init=project.config.model.arch if start else "last",
        epochs=opts.start_epochs if start else opts.epochs,
        batch=opts.batch,
        device=opts.device,
        seed=seed,
        progress=False,
        val_fraction=0.05,  # with keep="last" the val chips only give a number
        split="chip",
        optim=OptimConfig(optimizer="SGD", lr0=0.01, warmup_epochs=0.0, nbs=opts.batch),
        keep="last",  # a val split of a few chips cannot pick a "best" epoch
    )


def run_round(job: RoundJob) -> dict[str, Any]:
    """Score (unless random), select, label, fine-tune and evaluate one arm; its round's row."""
    from geoal.pipeline.rounds import SelectOptions, select_round
    from geoal.pipeline.scoring import ScoreOptions, score_project
    from geoal.pipeline.training import evaluate_project, train_project
    from geoal.project import open_project

    opts = job.options
    with open_project(job.folder) as project:
        if job.strategy != "random":  # random needs no scores
            cfg = project.config.score  # the project's scoring defaults
            score = ScoreOptions(
                views=cfg.views, batch=16, device=opts.device, conf=cfg.conf, top_k=cfg.top_k
            )
            score_project(project, score, progress=False)
        sel = select_round(
            project,
            SelectOptions(
                strategy=job.strategy, budget=opts.round_chips, seed=job.seed + job.round
            ),
        )
        _label_round(project, sel.round_id, job.folder / f"round{sel.round_id}", job.truth)
        trained = train_project(project, _train_options(project, opts, job.seed, start=False))
        ev = evaluate_project(project, trained.model_hash, data=job.test_json, device=opts.device)
        return {
            "round": job.round,
            "labelled_chips": len(_labelled(project)),
            "objects_found": _objects_found(project, job.truth),
            "mAP50": float(ev["mAP50"]),
            "model": trained.model_hash,
        }


class _EmptyValFilter(logging.Filter):
    """Drop ultralytics' warnings about a val split without objects.

    The demo's val split is one or two chips of a mostly empty sea (held-out metrics come
    from the test scene), so they would only alarm a newcomer.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return "Labels are missing or empty" not in text and "no labels found" not in text


def _quiet_empty_val() -> None:
    from ultralytics.utils import LOGGER

    if not any(isinstance(f, _EmptyValFilter) for f in LOGGER.filters):
        LOGGER.addFilter(_EmptyValFilter())


def _worker_init() -> None:
    """A worker computes with one thread (the two arms share the CPU's cores), quietly."""
    import torch

    torch.set_num_threads(1)
    _quiet_empty_val()


def run_demo(
    out: Path, *, seed: int = 0, progress: bool = True, options: DemoOptions | None = None
) -> Iterator[str]:
    """Run the demo in ``out`` (replacing an earlier demo there); yields log lines.

    The arms' rounds run side by side in two worker processes (``options.workers``); the
    results do not depend on it.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from geoal.pipeline.catalog import write_chip_map
    from geoal.pipeline.rounds import SelectOptions, select_round
    from geoal.pipeline.training import evaluate_project, train_project
    from geoal.project import open_project
    from geoal.report.html import build_report

    started = time.perf_counter()
    opts = options or DemoOptions()
    out = Path(out)
    if out.exists():
        if not (out / DEMO_MARK).exists():
            raise ProjectError(f"{out}: exists and is not a previous demo; choose another --out")
        shutil.rmtree(out)
    (out / "scenes").mkdir(parents=True)
    (out / DEMO_MARK).write_text("made by geoal demo; safe to delete\n")
    survey = dict(
        bands=3,
        dtype="uint16",
        crs="EPSG:32631",
        nodata=0,
        border=32,
        overviews=True,
        size=(20, 44),
    )
    scene = out / "scenes" / "survey_uint16.tif"
    truth = write_scene(
        scene,
        width=opts.width,
        height=opts.height,
        objects=opts.objects,
        clusters=opts.clusters,
        spread=opts.spread,
        seed=seed,
        **survey,  # type: ignore[arg-type]
    )
    test_scene = out / "scenes" / "test_survey_uint16.tif"
    side = opts.test_side
    n_test = max(1, round(opts.objects * side * side / (opts.width * opts.height)))
    test_truth = write_scene(
        test_scene,
        width=side,
        height=side,
        objects=n_test,
        clusters=max(1, round(opts.clusters * side * side / (opts.width * opts.height))),
        spread=opts.spread,
        seed=seed + 1,
        origin=(520_000.0, 4_000_000.0),
        **survey,  # type: ignore[arg-type]
    )
    yield (
        f"wrote a synthetic survey: {scene.name} ({opts.width} x {opts.height} px, uint16, "
        f"{len(truth)} ships and tanks in {opts.clusters} clusters, open sea elsewhere) "
        f"and a held-out test scene ({side} x {side} px, {len(test_truth)} objects)"
    )

    folders = {GEOAL_ARM: out / GEOAL_ARM, RANDOM_ARM: out / RANDOM_ARM}
    strategies: dict[str, str] = {}
    rounds: dict[str, list[dict[str, Any]]] = {GEOAL_ARM: [], RANDOM_ARM: []}
    with (
        _make_project(folders[GEOAL_ARM], scene, opts) as main,
        _make_project(folders[RANDOM_ARM], scene, opts) as other,
    ):
        # the geoal arm selects with the project's default strategy, whatever it is
        strategies = {GEOAL_ARM: main.config.select.strategy, RANDOM_ARM: "random"}
        test_json = write_test_set(test_scene, test_truth, main.config.tiling, out / "test")
        n_chips = len(main.store.chip_windows(main.store.scenes()[0].id)[0])
        yield (
            f"two projects, '{GEOAL_ARM}' and '{RANDOM_ARM}', tiled it into {n_chips} chips of "
            f"{opts.chip} px; {sum(1 for _ in _chips_with_objects(main, truth))} of them show "
            "objects"
        )
        for project in (main, other):
            r = select_round(
                project,
                SelectOptions(
                    strategy="random", budget=opts.seed_chips, seed=seed, min_distance=None
                ),
            )
            _label_round(project, r.round_id, project.root / "round1", truth)
        _quiet_empty_val()
        t0 = train_project(main, _train_options(main, opts, seed, start=True))
        ev0 = evaluate_project(main, t0.model_hash, data=test_json, device=opts.device)
        _copy_model(main, other, t0.model_hash)
        yield (
            f"both arms labelled the same {opts.seed_chips} random seed chips and share the "
            f"first model ({opts.start_epochs} epochs from random weights, {t0.seconds:.0f} s)"
        )
        for name, project in ((GEOAL_ARM, main), (RANDOM_ARM, other)):
            row = {
                "round": 0,
                "labelled_chips": opts.seed_chips,
                "objects_found": _objects_found(project, truth),
                "mAP50": float(ev0["mAP50"]),
                "model": t0.model_hash,
            }
            rounds[name].append(row)
            yield _round_line(name, strategies[name], row)

    workers = max(1, min(opts.workers, 2))
    with ProcessPoolExecutor(workers, get_context("spawn"), initializer=_worker_init) as pool:
        for rnd in range(1, opts.rounds + 1):
            jobs = {
                name: RoundJob(
                    folders[name], strategies[name], rnd, seed, opts, tuple(truth), test_json
                )
                for name in (GEOAL_ARM, RANDOM_ARM)
            }
            futures = {name: pool.submit(run_round, job) for name, job in jobs.items()}
            for name, future in futures.items():
                row = future.result()
                rounds[name].append(row)
                yield _round_line(name, strategies[name], row)

    summary: dict[str, Any] = {
        "scene": {
            "path": str(scene),
            "width": opts.width,
            "height": opts.height,
            "chips": n_chips,
            "objects": len(truth),
        },
        "test": {"path": str(test_json), "objects": len(test_truth)},
        "options": dataclasses.asdict(opts),
        "arms": {
            name: {"strategy": strategies[name], "project": str(folders[name]), "rounds": rows}
            for name, rows in rounds.items()
        },
    }
    summary["comparison"] = comparison(summary)
    curves = out / "learning_curves.csv"
    _write_curves(curves, summary)
    with open_project(folders[GEOAL_ARM]) as main:
        layers = write_chip_map(main, out / "chips.gpkg")
        page = build_report(main, out / "report.html", simulation=curves)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    yield (
        f"wrote {out / 'summary.json'}, the chip map {out / 'chips.gpkg'} ({len(layers)} layers) "
        f"and the report {page} (open it in a browser); each arm is a project: "
        f"'geoal --project {folders[GEOAL_ARM]} status'"
    )
    yield str(summary["comparison"])


def _labelled(project: Project) -> list[int]:
    from geoal.pipeline.annotate import labelled_chip_ids

    return labelled_chip_ids(project)


def _chips_with_objects(project: Project, truth: Sequence[Box]) -> Iterator[int]:
    scene = project.store.scenes()[0]
    ids, windows = project.store.chip_windows(scene.id)
    for cid, w in zip(ids, windows, strict=True):
        if visible_truth(w, truth):
            yield int(cid)


def _write_curves(path: Path, summary: dict[str, Any]) -> None:
    """Both arms' rounds as a learning-curve CSV (the columns of ``geoal simulate``'s)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["strategy", "seed", "round", "n_images", "n_boxes", "mAP50"])
        for arm in summary["arms"].values():
            for row in arm["rounds"]:
                writer.writerow(
                    [
                        arm["strategy"],
                        0,
                        row["round"],
                        row["labelled_chips"],
                        row["objects_found"],
                        f"{row['mAP50']:.4f}",
                    ]
                )
