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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoal.errors import ProjectError
from geoal.project import Project, init_project
from geoal.synthetic import CLASSES, Box, SceneSpec, write_scene

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
        for _, box, cls in visible_truth(image["geoal"]["window"], truth, min_visible):
            annotations.append(_coco_box(len(annotations) + 1, image["id"], cls, box))
    out["annotations"] = annotations
    return out


def _coco_box(
    ann_id: int, image_id: int, cls: int, box: tuple[int, int, int, int]
) -> dict[str, Any]:
    """A COCO annotation of an xyxy ``box`` in image pixels, class index ``cls``."""
    x1, y1, x2, y2 = box
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cls + 1,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "area": (x2 - x1) * (y2 - y1),
        "iscrowd": 0,
    }


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
        for _, box, cls in visible_truth(chips[i].window, truth):
            annotations.append(_coco_box(len(annotations) + 1, i + 1, cls, box))
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


@dataclass(frozen=True)
class Survey:
    """The demo's two synthetic scenes and their ground truth (boxes in scene pixels)."""

    scene: Path
    truth: tuple[Box, ...]
    test_scene: Path
    test_truth: tuple[Box, ...]


@dataclass
class Arms:
    """The two arms as the rounds go: project folders, strategies and each round's row."""

    folders: dict[str, Path]
    strategies: dict[str, str] = field(default_factory=dict)
    rounds: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {GEOAL_ARM: [], RANDOM_ARM: []}
    )
    test_json: Path = Path()
    n_chips: int = 0

    def add(self, name: str, row: dict[str, Any]) -> str:
        """Record ``row`` as ``name``'s next round; its printed line."""
        self.rounds[name].append(row)
        return _round_line(name, self.strategies[name], row)


def run_demo(
    out: Path, *, seed: int = 0, progress: bool = True, options: DemoOptions | None = None
) -> Iterator[str]:
    """Run the demo in ``out`` (replacing an earlier demo there); yields log lines.

    The arms' rounds run side by side in two worker processes (``options.workers``); the
    results do not depend on it.
    """
    started = time.perf_counter()
    opts = options or DemoOptions()
    out = Path(out)
    _fresh_demo_folder(out)
    survey = write_survey(out / "scenes", opts, seed)
    side = opts.test_side
    yield (
        f"wrote a synthetic survey: {survey.scene.name} ({opts.width} x {opts.height} px, uint16, "
        f"{len(survey.truth)} ships and tanks in {opts.clusters} clusters, open sea elsewhere) "
        f"and a held-out test scene ({side} x {side} px, {len(survey.test_truth)} objects)"
    )
    arms = Arms({GEOAL_ARM: out / GEOAL_ARM, RANDOM_ARM: out / RANDOM_ARM})
    yield from _start_arms(arms, survey, out, opts, seed)
    yield from _run_rounds(arms, survey, opts, seed)
    summary = _summary(arms, survey, opts)
    yield from _write_outputs(out, summary, arms, started)


def _fresh_demo_folder(out: Path) -> None:
    """Make ``out`` empty (an earlier demo there is removed; any other folder is refused)."""
    if out.exists():
        if not (out / DEMO_MARK).exists():
            raise ProjectError(f"{out}: exists and is not a previous demo; choose another --out")
        shutil.rmtree(out)
    (out / "scenes").mkdir(parents=True)
    (out / DEMO_MARK).write_text("made by geoal demo; safe to delete\n")


def write_survey(folder: Path, opts: DemoOptions, seed: int) -> Survey:
    """Write the survey scene and the held-out test scene (as dense in objects) into ``folder``."""
    survey = SceneSpec(
        width=opts.width,
        height=opts.height,
        bands=3,
        dtype="uint16",
        crs="EPSG:32631",
        nodata=0,
        border=32,
        overviews=True,
        size=(20, 44),
        objects=opts.objects,
        clusters=opts.clusters,
        spread=opts.spread,
        seed=seed,
    )
    side, area = opts.test_side, opts.width * opts.height
    test = dataclasses.replace(
        survey,
        width=side,
        height=side,
        objects=max(1, round(opts.objects * side * side / area)),
        clusters=max(1, round(opts.clusters * side * side / area)),
        seed=seed + 1,
        origin=(520_000.0, 4_000_000.0),
    )
    scene, test_scene = folder / "survey_uint16.tif", folder / "test_survey_uint16.tif"
    truth = write_scene(scene, survey)
    return Survey(scene, tuple(truth), test_scene, tuple(write_scene(test_scene, test)))


def _start_arms(
    arms: Arms, survey: Survey, out: Path, opts: DemoOptions, seed: int
) -> Iterator[str]:
    """Make both projects, label the same seed chips, train the shared first model (round 0)."""
    from geoal.pipeline.rounds import SelectOptions, select_round
    from geoal.pipeline.training import evaluate_project, train_project

    truth = survey.truth
    with (
        _make_project(arms.folders[GEOAL_ARM], survey.scene, opts) as main,
        _make_project(arms.folders[RANDOM_ARM], survey.scene, opts) as other,
    ):
        # the geoal arm selects with the project's default strategy, whatever it is
        arms.strategies = {GEOAL_ARM: main.config.select.strategy, RANDOM_ARM: "random"}
        arms.test_json = write_test_set(
            survey.test_scene, survey.test_truth, main.config.tiling, out / "test"
        )
        arms.n_chips = len(main.store.chip_windows(main.store.scenes()[0].id)[0])
        yield (
            f"two projects, '{GEOAL_ARM}' and '{RANDOM_ARM}', tiled it into {arms.n_chips} chips "
            f"of {opts.chip} px; {sum(1 for _ in _chips_with_objects(main, truth))} of them show "
            "objects"
        )
        seed_set = SelectOptions(
            strategy="random", budget=opts.seed_chips, seed=seed, min_distance=None
        )
        for project in (main, other):
            r = select_round(project, seed_set)
            _label_round(project, r.round_id, project.root / "round1", truth)
        _quiet_empty_val()
        t0 = train_project(main, _train_options(main, opts, seed, start=True))
        ev0 = evaluate_project(main, t0.model_hash, data=arms.test_json, device=opts.device)
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
            yield arms.add(name, row)


def _run_rounds(arms: Arms, survey: Survey, opts: DemoOptions, seed: int) -> Iterator[str]:
    """The arms' rounds 1..``opts.rounds``, each arm's round in a worker process."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    workers = max(1, min(opts.workers, 2))
    with ProcessPoolExecutor(workers, get_context("spawn"), initializer=_worker_init) as pool:
        for rnd in range(1, opts.rounds + 1):
            futures = {
                name: pool.submit(
                    run_round,
                    RoundJob(
                        arms.folders[name],
                        arms.strategies[name],
                        rnd,
                        seed,
                        opts,
                        survey.truth,
                        arms.test_json,
                    ),
                )
                for name in (GEOAL_ARM, RANDOM_ARM)
            }
            for name, future in futures.items():
                yield arms.add(name, future.result())


def _summary(arms: Arms, survey: Survey, opts: DemoOptions) -> dict[str, Any]:
    """``summary.json``: the scenes, the options, both arms' rounds and the comparison."""
    summary: dict[str, Any] = {
        "scene": {
            "path": str(survey.scene),
            "width": opts.width,
            "height": opts.height,
            "chips": arms.n_chips,
            "objects": len(survey.truth),
        },
        "test": {"path": str(arms.test_json), "objects": len(survey.test_truth)},
        "options": dataclasses.asdict(opts),
        "arms": {
            name: {
                "strategy": arms.strategies[name],
                "project": str(arms.folders[name]),
                "rounds": rows,
            }
            for name, rows in arms.rounds.items()
        },
    }
    summary["comparison"] = comparison(summary)
    return summary


def _write_outputs(out: Path, summary: dict[str, Any], arms: Arms, started: float) -> Iterator[str]:
    """Write the learning curves, the chip map, the report and ``summary.json``."""
    from geoal.pipeline.catalog import write_chip_map
    from geoal.project import open_project
    from geoal.report.html import build_report

    curves = out / "learning_curves.csv"
    _write_curves(curves, summary)
    with open_project(arms.folders[GEOAL_ARM]) as main:
        layers = write_chip_map(main, out / "chips.gpkg")
        page = build_report(main, out / "report.html", simulation=curves)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    yield (
        f"wrote {out / 'summary.json'}, the chip map {out / 'chips.gpkg'} ({len(layers)} layers) "
        f"and the report {page} (open it in a browser); each arm is a project: "
        f"'geoal --project {arms.folders[GEOAL_ARM]} status'"
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
