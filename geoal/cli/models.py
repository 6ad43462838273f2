"""Commands on models and results: train, evaluate, report, simulate, predict, merge-shards."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from geoal.cli import options as opt
from geoal.cli.base import echo_warnings, friendly, main, open_cli_project, ray_group
from geoal.cli.options import FILE, FOLDER, attach, option, option_group, values
from geoal.errors import ConfigError

DEFAULT_IMGSZ = 640  # simulate on COCO images: ultralytics' default input size


def _train_options(quiet: bool, **fields: Any) -> Any:
    """TrainOptions of ``geoal train``'s options (--quiet: no training log)."""
    from geoal.pipeline.training import TrainOptions

    return TrainOptions(progress=not quiet, **fields)


@main.command()
@click.pass_context
@friendly
@option_group(
    "opts",
    _train_options,
    option(
        "--from init",
        "last (the latest trained model, else the config's arch), a local .pt, or a model .yaml.",
        default="last",
    ),
    opt.epochs(30),
    opt.imgsz(
        "Training input size in pixels, a multiple of 32 (default: config model.imgsz, else the "
        "chip size); recorded with the model, which score, evaluate and predict then use."
    ),
    opt.batch(8),
    opt.device(),
    opt.val_fraction("Share of labelled chips held out for validation."),
    option("--split", "Hold out whole scenes (when there are several) or chips.", default="scene"),
    opt.seed(0),
    opt.quiet("No training log."),
)
def train(ctx: click.Context, opts: Any) -> None:
    """Fine-tune the detector on every labelled chip and register the new model.

    Augmentation suits overhead imagery: flips both ways and 90-degree turns.
    Never needs the internet.
    """
    from geoal.pipeline.training import train_project

    with open_cli_project(ctx) as project, project.write_lock("train"):
        report = train_project(project, opts)
    m = report.metrics["train"]
    click.echo(
        f"trained model {report.model_hash[:12]} -> {report.path} ({report.train_chips} train / "
        f"{report.val_chips} val chips, {report.seconds:.0f} s); val mAP50 {m.get('mAP50', float('nan')):.3f}, "
        f"mAP50-95 {m.get('mAP50-95', float('nan')):.3f}"
    )


@main.command()
@attach(
    opt.model("Registered model (hash prefix) or a .pt (default: latest trained)."),
    option("--data", "COCO JSON ground truth (default: the model's held-out chips).", type=FILE),
    option("--images", "Folder of the COCO file's images (default: beside it).", type=FOLDER),
    opt.device(help=None),
    opt.conf("Operating threshold for recall.", default=0.25),
    opt.imgsz(opt.TRAINED_IMGSZ),
    opt.as_json(),
)
@click.pass_context
@friendly
def evaluate(
    ctx: click.Context,
    model: str | None,
    data: Path | None,
    images: Path | None,
    device: str,
    conf: float,
    imgsz: int | None,
    as_json: bool,
) -> None:
    """COCO metrics (mAP50, mAP50-95, per-class AP, recall at the operating threshold), stored with the model."""
    from geoal.pipeline.training import evaluate_project

    with open_cli_project(ctx) as project, project.write_lock("evaluate"):
        metrics = evaluate_project(
            project, model, data=data, images=images, device=device, conf=conf, imgsz=imgsz
        )
    if as_json:
        click.echo(json.dumps(metrics, indent=2, default=str))
        return
    click.echo(
        f"{metrics['source']}: mAP50 {metrics['mAP50']:.3f}  mAP50-95 {metrics['mAP50-95']:.3f}  "
        f"recall@{conf:g} {metrics['recall']:.3f}  ({metrics['n_images']} images, {metrics['n_gt']} boxes)"
    )
    for name, ap in metrics["ap50"].items():
        click.echo(f"  {name:<24} AP50 {ap:.3f}  AP50-95 {metrics['ap50_95'][name]:.3f}")


@main.command()
@attach(
    option(
        "--out -o", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html")
    ),
    option(
        "--simulation",
        "A 'geoal simulate' output folder (or its results.csv) to plot too.",
        type=click.Path(path_type=Path),
    ),
    option("--gallery", "Selected chips shown.", type=click.IntRange(0, 500), default=24),
    option(
        "--min-score",
        "Lowest detection score drawn on the gallery's chips.",
        type=click.FloatRange(0.0, 1.0),
        default=0.25,
    ),
)
@click.pass_context
@friendly
def report(
    ctx: click.Context, out: Path, simulation: Path | None, gallery: int, min_score: float
) -> None:
    """Write one self-contained HTML page: learning curves, per-class AP, score maps, selected chips."""
    from geoal.report.html import build_report

    with open_cli_project(ctx) as project:
        path = build_report(
            project, out, simulation=simulation, gallery=gallery, min_score=min_score
        )
    click.echo(f"wrote {path}")


def _csv(text: str, kind: type, option: str) -> tuple[Any, ...]:
    """A comma-separated option value as a tuple of ``kind``; ConfigError naming the option."""
    try:
        return tuple(kind(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{option}: expected a comma-separated list, got {text!r}") from None


def _geo_source(
    scenes: tuple[str, ...],
    labels: tuple[Path, ...],
    chip_size: int,
    chip_overlap: float,
    **rest: Any,
) -> Any:
    """The GeoSource of --scenes and --labels (and how to cut and split them); None without."""
    if not (scenes or labels):
        return None
    from geoal.simulate.geo import GeoSource

    return GeoSource(scenes=scenes, labels=labels, size=chip_size, overlap=chip_overlap, **rest)


def _simulation_run(strategies: str, seeds: str, budgets: str, **rest: Any) -> dict[str, Any]:
    """SimConfig's fields from the options of the runs (the lists parsed)."""
    return {
        "strategies": _csv(strategies, str, "--strategies"),
        "seeds": _csv(seeds, int, "--seeds"),
        "budgets": _csv(budgets, float, "--budgets"),
        **rest,
    }


@main.command()
@friendly
@option_group(
    "coco",
    values,
    option(
        "--data",
        "COCO JSON of the pool (its labels are hidden, then revealed by the oracle).",
        type=FILE,
    ),
    option("--images", "Folder of the pool's images.", type=FOLDER),
    option("--test-data", "COCO JSON of the fixed test set (evaluation only).", type=FILE),
    option("--test-images", "Folder of the test images (default: --images).", type=FOLDER),
)
@option_group(
    "geo",
    _geo_source,
    option(
        "--scenes",
        "Instead of COCO: GeoTIFF scenes (files, folders or globs; repeat the option).",
        multiple=True,
    ),
    option(
        "--labels",
        "With --scenes: GeoJSON files of the scenes' objects, any CRS (repeat the option).",
        multiple=True,
        type=FILE,
    ),
    option("--chip-size", "With --scenes: chip side in pixels.", type=int, default=640),
    option(
        "--chip-overlap",
        "With --scenes: chip overlap fraction (0: no object is bought twice).",
        type=float,
        default=0.0,
    ),
    option("--class-field", "With --labels: class property.", default="class"),
    option(
        "--default-class", "With --labels: class of the features of a file without --class-field."
    ),
    option(
        "--split",
        "With --scenes: hold out whole scenes, or random chips (overlapping pool chips dropped).",
        type=click.Choice(["scene", "chip"]),
        default="scene",
    ),
    option(
        "--test-fraction",
        "With --scenes: share of the chips held out as the test set.",
        type=float,
        default=0.25,
    ),
    option(
        "--split-seed",
        "With --scenes: seed of the test split (one fixed test set for every run).",
        type=int,
        default=0,
    ),
)
@attach(
    option(
        "--out", "Output folder; run the same command again to resume.", required=True, type=FOLDER
    ),
    opt.imgsz(
        "Training and inference size in pixels (default: the chip size with --scenes, else 640)."
    ),
)
@option_group(
    "run",
    _simulation_run,
    option("--strategies", default="random,adaptive"),
    option("--seeds", default="0,1,2"),
    option(
        "--budgets",
        "Cumulative labelled fractions of the pool, one per round.",
        default="0.05,0.10,0.15,0.20,0.30",
    ),
    option("--budget-unit", type=click.Choice(["images", "boxes"]), default="images"),
    opt.epochs(10, help="Per round."),
    option(
        "--min-iterations",
        "Each round trains at least this many optimiser steps (more epochs for small rounds).",
        type=click.IntRange(0),
        default=0,
    ),
    option(
        "--full-epochs",
        "Epochs of the --full-pool ceiling (default: epochs x rounds).",
        type=click.IntRange(1),
    ),
    opt.batch(16),
    opt.device(),
    opt.backend(),
    option(
        "--init",
        "A model .yaml, or a local .pt (other classes: its weights under a new head).",
        default="yolov8n.yaml",
    ),
    option(
        "--start",
        "Each round fine-tunes the previous round's weights, or trains afresh from --init.",
        type=click.Choice(["previous", "init"]),
        default="previous",
    ),
    option("--views", type=click.IntRange(1, 8), default=2),
    option("--aggregation", "Chip score to rank by.", default="miaod"),
    opt.class_balance("Weight each image's score towards classes rare among the labels so far."),
    option(
        "--random-rounds",
        "The first N acquisitions of every arm are random (a warm-up), then the strategy's.",
        type=click.IntRange(0),
        default=0,
    ),
    option("--full-pool", "Also train once on the whole pool (the ceiling).", is_flag=True),
)
@attach(
    opt.quiet("No progress bars."),
)
def simulate(
    coco: dict[str, Any],
    geo: Any,
    out: Path,
    imgsz: int | None,
    run: dict[str, Any],
    quiet: bool,
) -> None:
    """Label-efficiency simulation on a labelled data set: learning curves per strategy.

    The data set is a COCO pool and test set (--data, --images, --test-data), or
    GeoTIFF scenes with GeoJSON labels (--scenes, --labels): those are tiled, the
    labels mapped onto the chips, and the chips split into a pool and a test set
    (by scene or by chip), written under --out/dataset.

    Hides the pool's labels; per (strategy, seed), round 0 is a random set, then
    each round trains, evaluates mAP on the fixed test set, scores the pool as
    'geoal score' does, selects and reveals. Writes results.csv, summary.json and
    learning_curves.png under --out; killed, the same command resumes.
    """
    from geoal.simulate import SimConfig, run_simulation

    if geo is not None:
        coco, imgsz = _prepare_geo_dataset(geo, coco, out, imgsz, quiet)
    elif not (coco["data"] and coco["images"] and coco["test_data"]):
        raise ConfigError(
            "give --data, --images and --test-data (a COCO data set), "
            "or --scenes and --labels (GeoTIFFs + GeoJSON)"
        )
    cfg = SimConfig(**coco, out=out, imgsz=imgsz or DEFAULT_IMGSZ, **run)
    with echo_warnings():
        summary = run_simulation(cfg, progress=not quiet)
    for name, arm in summary["strategies"].items():
        curve = "  ".join(f"{r['n_images_mean']:.0f}:{r['mAP50_mean']:.3f}" for r in arm["rounds"])
        click.echo(f"{name:<12} images:mAP50  {curve}")
    if summary["ceiling"]:
        click.echo(f"{'full pool':<12} mAP50 {summary['ceiling']['mAP50']:.3f}")
    click.echo(
        f"wrote {out / 'results.csv'}, {out / 'summary.json'}, {out / 'learning_curves.png'}"
    )


def _prepare_geo_dataset(
    geo: Any, coco: dict[str, Any], out: Path, imgsz: int | None, quiet: bool
) -> tuple[dict[str, Any], int]:
    """Tile --scenes and map --labels into a COCO pool and test set under ``out/dataset``.

    Returns the COCO paths for SimConfig and the input size (the chips' own by default).
    """
    if any(coco.values()):
        raise ConfigError("give either --scenes and --labels, or --data/--images/--test-data")
    from geoal.detect.loading import stride_size
    from geoal.simulate.geo import prepare_geo_dataset

    dataset = prepare_geo_dataset(geo, out / "dataset", progress=not quiet)
    summary = dataset.summary
    click.echo(
        f"data set: {summary['pool_chips']} pool chips ({summary['pool_boxes']} boxes), "
        f"{summary['test_chips']} test chips ({summary['test_boxes']} boxes), classes "
        f"{', '.join(summary['classes'])}; {summary['dropped_overlapping_test']} chips "
        "dropped for overlapping the test set"
    )
    paths = {"data": dataset.pool_json, "images": dataset.images, "test_data": dataset.test_json}
    # the chips at their own size: no silent up- or downsampling
    return {**paths, "test_images": None}, imgsz or stride_size(geo.size)


def _predict_options(model: str, bands: str | None, **rest: Any) -> Any:
    """PredictOptions of the --model, sizes, merging and runtime options."""
    from geoal.config import parse_bands
    from geoal.predict.scene import PredictOptions

    return PredictOptions(model=model, bands=parse_bands(bands) if bands else None, **rest)


@main.command()
@click.argument("scenes", nargs=-1, required=True)
@attach(
    option(
        "--out",
        ".gpkg (a layer per scene, its CRS) or .geojson (EPSG:4326).",
        type=FILE,
        default=Path("detections.gpkg"),
    ),
)
@friendly
@option_group(
    "opts",
    _predict_options,
    opt.model("Local .pt (its class names are used).", required=True),
    option("--conf", "Minimum confidence.", type=float, default=0.25),
    opt.chip_size(640, "Chip side in pixels."),
    opt.imgsz(
        "Model input size in pixels (default: the model's trained scale; chips are resized)."
    ),
    opt.overlap(0.2, "Overlap between chips, 0-1."),
    option("--merge", "nms, nmm or greedy-nmm (SAHI's options).", default="greedy-nmm"),
    option("--match", "iou, or ios (intersection over the smaller box).", default="ios"),
    option("--threshold", "Match threshold for merging.", type=float, default=0.5),
    opt.batch(16, most=1024),
    opt.device(),
    opt.backend(),
    opt.bands("1-based bands shown as R,G,B."),
)
@attach(
    option("--summary", "Write counts per scene and class to this CSV.", type=FILE),
)
@ray_group("detect")
@attach(
    opt.quiet("No progress bars."),
)
def predict(
    scenes: tuple[str, ...], out: Path, opts: Any, summary: Path | None, ray: Any, quiet: bool
) -> None:
    """Detect objects over whole SCENES: sliced inference, cross-chip merging, georeferenced output.

    Objects cut by a chip edge are merged with their whole view in the
    neighbouring chip, so each appears once. Prints counts per scene and class.
    --engine ray detects on a Ray cluster (the scenes' paths must be readable there).
    """
    from geoal.pipeline.catalog import expand_inputs
    from geoal.predict.scene import predict_scenes, write_detections, write_summary

    paths, problems = expand_inputs(scenes)
    with echo_warnings():
        if ray is None:
            report = predict_scenes(paths, opts, progress=not quiet)
        else:
            from geoal.distributed import predict_scenes_ray

            report = predict_scenes_ray(paths, opts, ray, progress=not quiet)
    report.errors[:0] = problems
    if report.scenes:
        layers = write_detections(report, out)
        click.echo(f"wrote {out} ({', '.join(layers)})")
    for scene in report.scenes:
        rate = scene.chips / scene.seconds if scene.seconds else 0.0
        click.echo(
            f"{scene.name}: {len(scene.objects)} objects from {scene.raw_detections} chip detections, "
            f"{scene.chips} chips ({rate:.1f} chips/s)"
        )
    for row in report.counts():
        click.echo(f"  {row['scene']:<24} {row['class']:<16} {row['count']:>7}")
    if summary is not None:
        write_summary(report, summary)
        click.echo(f"wrote {summary}")
    for err in report.errors:
        click.echo(f"geoal: error: {err}", err=True)
    if report.errors:
        sys.exit(1)


@main.command(name="merge-shards")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
@friendly
def merge_shards(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Bring shard FILES of 'geoal score --shard I/N' into the store (default: shards/*.sqlite).

    One transaction per file. Chips the model has already scored are skipped,
    so merging a file again, or a shard that ran twice, adds nothing.
    """
    from geoal.distributed import merge_shards as merge

    with open_cli_project(ctx) as project, project.write_lock("merge-shards"):
        reports = merge(project, files)
    for r in reports:
        click.echo(
            f"{r.path}: shard {r.shard}, merged {r.merged} chips, "
            f"{r.skipped} already scored (model {r.model_hash[:12]})"
        )
        if not r.complete:
            click.echo(
                f"geoal: warning: {r.path}: shard {r.shard} has not finished; "
                "run it again, then merge again",
                err=True,
            )
