"""Commands on models and results: train, evaluate, report, simulate, predict, merge-shards."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from geoal.cli.base import (
    backend_option,
    echo_warnings,
    friendly,
    main,
    open_cli_project,
    ray_engine_options,
    ray_options,
)
from geoal.errors import ConfigError

DEFAULT_IMGSZ = 640  # simulate on COCO images: ultralytics' default input size


@main.command()
@click.option(
    "--from",
    "init",
    default="last",
    show_default=True,
    help="last (the latest trained model, else the config's arch), a local .pt, or a model .yaml.",
)
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True)
@click.option(
    "--imgsz",
    type=click.IntRange(32),
    default=None,
    help="Training input size in pixels, a multiple of 32 (default: config model.imgsz, else the "
    "chip size); recorded with the model, which score, evaluate and predict then use.",
)
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda:N.")
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 0.9),
    default=0.2,
    show_default=True,
    help="Share of labelled chips held out for validation.",
)
@click.option(
    "--split",
    default="scene",
    show_default=True,
    help="Hold out whole scenes (when there are several) or chips.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No training log.")
@click.pass_context
@friendly
def train(
    ctx: click.Context,
    init: str,
    epochs: int,
    imgsz: int | None,
    batch: int,
    device: str,
    val_fraction: float,
    split: str,
    seed: int,
    quiet: bool,
) -> None:
    """Fine-tune the detector on every labelled chip and register the new model.

    Augmentation suits overhead imagery: flips both ways and 90-degree turns.
    Never needs the internet.
    """
    from geoal.pipeline.training import TrainOptions, train_project

    opts = TrainOptions(
        init=init,
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        device=device,
        val_fraction=val_fraction,
        split=split,
        seed=seed,
        progress=not quiet,
    )
    with open_cli_project(ctx) as project, project.write_lock("train"):
        report = train_project(project, opts)
    m = report.metrics["train"]
    click.echo(
        f"trained model {report.model_hash[:12]} -> {report.path} ({report.train_chips} train / "
        f"{report.val_chips} val chips, {report.seconds:.0f} s); val mAP50 {m.get('mAP50', float('nan')):.3f}, "
        f"mAP50-95 {m.get('mAP50-95', float('nan')):.3f}"
    )


@main.command()
@click.option(
    "--model",
    "-m",
    default=None,
    help="Registered model (hash prefix) or a .pt (default: latest trained).",
)
@click.option(
    "--data",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="COCO JSON ground truth (default: the model's held-out chips).",
)
@click.option(
    "--images",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the COCO file's images (default: beside it).",
)
@click.option("--device", default="cpu", show_default=True)
@click.option(
    "--conf",
    type=click.FloatRange(0, 1),
    default=0.25,
    show_default=True,
    help="Operating threshold for recall.",
)
@click.option(
    "--imgsz",
    type=click.IntRange(32),
    default=None,
    help="Model input size in pixels (default: the size the model was trained at).",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
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
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("report.html"),
    show_default=True,
)
@click.option(
    "--simulation",
    type=click.Path(path_type=Path),
    default=None,
    help="A 'geoal simulate' output folder (or its results.csv) to plot too.",
)
@click.option(
    "--gallery",
    type=click.IntRange(0, 500),
    default=24,
    show_default=True,
    help="Selected chips shown.",
)
@click.option(
    "--min-score",
    type=click.FloatRange(0.0, 1.0),
    default=0.25,
    show_default=True,
    help="Lowest detection score drawn on the gallery's chips.",
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


@main.command()
@click.option(
    "--data",
    type=click.Path(dir_okay=False, path_type=Path),
    help="COCO JSON of the pool (its labels are hidden, then revealed by the oracle).",
)
@click.option(
    "--images",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the pool's images.",
)
@click.option(
    "--test-data",
    type=click.Path(dir_okay=False, path_type=Path),
    help="COCO JSON of the fixed test set (evaluation only).",
)
@click.option(
    "--test-images",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the test images (default: --images).",
)
@click.option(
    "--scenes",
    multiple=True,
    help="Instead of COCO: GeoTIFF scenes (files, folders or globs; repeat the option).",
)
@click.option(
    "--labels",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --scenes: GeoJSON files of the scenes' objects, any CRS (repeat the option).",
)
@click.option(
    "--chip-size",
    type=int,
    default=640,
    show_default=True,
    help="With --scenes: chip side in pixels.",
)
@click.option(
    "--chip-overlap",
    type=float,
    default=0.0,
    show_default=True,
    help="With --scenes: chip overlap fraction (0: no object is bought twice).",
)
@click.option(
    "--class-field", default="class", show_default=True, help="With --labels: class property."
)
@click.option(
    "--default-class",
    default=None,
    help="With --labels: class of the features of a file without --class-field.",
)
@click.option(
    "--split",
    type=click.Choice(["scene", "chip"]),
    default="scene",
    show_default=True,
    help="With --scenes: hold out whole scenes, or random chips (overlapping pool chips dropped).",
)
@click.option(
    "--test-fraction",
    type=float,
    default=0.25,
    show_default=True,
    help="With --scenes: share of the chips held out as the test set.",
)
@click.option(
    "--split-seed",
    type=int,
    default=0,
    show_default=True,
    help="With --scenes: seed of the test split (one fixed test set for every run).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder; run the same command again to resume.",
)
@click.option("--strategies", default="random,adaptive", show_default=True)
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option(
    "--budgets",
    default="0.05,0.10,0.15,0.20,0.30",
    show_default=True,
    help="Cumulative labelled fractions of the pool, one per round.",
)
@click.option(
    "--budget-unit", type=click.Choice(["images", "boxes"]), default="images", show_default=True
)
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True, help="Per round.")
@click.option(
    "--min-iterations",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Each round trains at least this many optimiser steps (more epochs for small rounds).",
)
@click.option(
    "--full-epochs",
    type=click.IntRange(1),
    default=None,
    help="Epochs of the --full-pool ceiling (default: epochs x rounds).",
)
@click.option(
    "--imgsz",
    type=click.IntRange(32),
    default=None,
    help="Training and inference size in pixels (default: the chip size with --scenes, else 640).",
)
@click.option("--batch", type=click.IntRange(1), default=16, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda:N.")
@backend_option
@click.option(
    "--init",
    default="yolov8n.yaml",
    show_default=True,
    help="A model .yaml, or a local .pt (other classes: its weights under a new head).",
)
@click.option(
    "--start",
    type=click.Choice(["previous", "init"]),
    default="previous",
    show_default=True,
    help="Each round fine-tunes the previous round's weights, or trains afresh from --init.",
)
@click.option("--views", type=click.IntRange(1, 8), default=2, show_default=True)
@click.option("--aggregation", default="miaod", show_default=True, help="Chip score to rank by.")
@click.option(
    "--class-balance",
    is_flag=True,
    help="Weight each image's score towards classes rare among the labels so far.",
)
@click.option(
    "--random-rounds",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="The first N acquisitions of every arm are random (a warm-up), then the strategy's.",
)
@click.option("--full-pool", is_flag=True, help="Also train once on the whole pool (the ceiling).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@friendly
def simulate(
    data: Path | None,
    images: Path | None,
    test_data: Path | None,
    test_images: Path | None,
    scenes: tuple[str, ...],
    labels: tuple[Path, ...],
    chip_size: int,
    chip_overlap: float,
    class_field: str,
    default_class: str | None,
    split: str,
    test_fraction: float,
    split_seed: int,
    out: Path,
    strategies: str,
    seeds: str,
    budgets: str,
    budget_unit: str,
    epochs: int,
    min_iterations: int,
    full_epochs: int | None,
    imgsz: int | None,
    batch: int,
    device: str,
    backend: str,
    init: str,
    start: str,
    views: int,
    aggregation: str,
    class_balance: bool,
    random_rounds: int,
    full_pool: bool,
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

    if scenes or labels:
        if data or images or test_data or test_images:
            raise ConfigError("give either --scenes and --labels, or --data/--images/--test-data")
        from geoal.simulate.geo import GeoSource, prepare_geo_dataset

        geo = prepare_geo_dataset(
            GeoSource(
                scenes=scenes,
                labels=labels,
                size=chip_size,
                overlap=chip_overlap,
                class_field=class_field,
                default_class=default_class,
                split=split,  # type: ignore[arg-type]
                test_fraction=test_fraction,
                split_seed=split_seed,
            ),
            out / "dataset",
            progress=not quiet,
        )
        summary = geo.summary
        click.echo(
            f"data set: {summary['pool_chips']} pool chips ({summary['pool_boxes']} boxes), "
            f"{summary['test_chips']} test chips ({summary['test_boxes']} boxes), classes "
            f"{', '.join(summary['classes'])}; {summary['dropped_overlapping_test']} chips "
            "dropped for overlapping the test set"
        )
        data, images, test_data = geo.pool_json, geo.images, geo.test_json
        if imgsz is None:  # the chips at their own size: no silent up- or downsampling
            from geoal.detect.loading import stride_size

            imgsz = stride_size(chip_size)
    elif not (data and images and test_data):
        raise ConfigError(
            "give --data, --images and --test-data (a COCO data set), "
            "or --scenes and --labels (GeoTIFFs + GeoJSON)"
        )

    cfg = SimConfig(
        data=data,
        images=images,
        test_data=test_data,
        test_images=test_images,
        out=out,
        strategies=_csv(strategies, str, "--strategies"),
        seeds=_csv(seeds, int, "--seeds"),
        budgets=_csv(budgets, float, "--budgets"),
        budget_unit=budget_unit,  # type: ignore[arg-type]
        epochs=epochs,
        min_iterations=min_iterations,
        full_epochs=full_epochs,
        imgsz=imgsz or DEFAULT_IMGSZ,
        batch=batch,
        device=device,
        backend=backend,
        init=init,
        start=start,  # type: ignore[arg-type]
        views=views,
        aggregation=aggregation,
        class_balance=class_balance,
        random_rounds=random_rounds,
        full_pool=full_pool,
    )
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


@main.command()
@click.argument("scenes", nargs=-1, required=True)
@click.option("--model", "-m", required=True, help="Local .pt (its class names are used).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("detections.gpkg"),
    show_default=True,
    help=".gpkg (a layer per scene, its CRS) or .geojson (EPSG:4326).",
)
@click.option("--conf", type=float, default=0.25, show_default=True, help="Minimum confidence.")
@click.option("--size", type=int, default=640, show_default=True, help="Chip side in pixels.")
@click.option(
    "--imgsz",
    type=click.IntRange(32),
    default=None,
    help="Model input size in pixels (default: the model's trained scale; chips are resized).",
)
@click.option(
    "--overlap", type=float, default=0.2, show_default=True, help="Overlap between chips, 0-1."
)
@click.option(
    "--merge",
    default="greedy-nmm",
    show_default=True,
    help="nms, nmm or greedy-nmm (SAHI's options).",
)
@click.option(
    "--match",
    default="ios",
    show_default=True,
    help="iou, or ios (intersection over the smaller box).",
)
@click.option(
    "--threshold", type=float, default=0.5, show_default=True, help="Match threshold for merging."
)
@click.option("--batch", type=click.IntRange(1, 1024), default=16, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda:N.")
@backend_option
@click.option("--bands", default=None, help="1-based bands shown as R,G,B.")
@click.option(
    "--summary",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write counts per scene and class to this CSV.",
)
@ray_engine_options("detect")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@friendly
def predict(
    scenes: tuple[str, ...],
    model: str,
    out: Path,
    conf: float,
    size: int,
    imgsz: int | None,
    overlap: float,
    merge: str,
    match: str,
    threshold: float,
    batch: int,
    device: str,
    backend: str,
    bands: str | None,
    summary: Path | None,
    engine: str,
    address: str | None,
    ray_workers: int | None,
    gpus_per_worker: float | None,
    cpus_per_worker: float | None,
    quiet: bool,
) -> None:
    """Detect objects over whole SCENES: sliced inference, cross-chip merging, georeferenced output.

    Objects cut by a chip edge are merged with their whole view in the
    neighbouring chip, so each appears once. Prints counts per scene and class.
    --engine ray detects on a Ray cluster (the scenes' paths must be readable there).
    """
    from geoal.config import parse_bands
    from geoal.pipeline.catalog import expand_inputs
    from geoal.predict.scene import PredictOptions, predict_scenes, write_detections, write_summary

    opts = PredictOptions(
        model=model,
        conf=conf,
        size=size,
        imgsz=imgsz,
        overlap=overlap,
        merge=merge,
        match=match,
        threshold=threshold,
        batch=batch,
        device=device,
        bands=parse_bands(bands) if bands else None,
        backend=backend,
    )
    ray_opts = ray_options(engine, address, ray_workers, gpus_per_worker, cpus_per_worker)
    paths, problems = expand_inputs(scenes)
    with echo_warnings():
        if ray_opts is None:
            report = predict_scenes(paths, opts, progress=not quiet)
        else:
            from geoal.distributed import predict_scenes_ray

            report = predict_scenes_ray(paths, opts, ray_opts, progress=not quiet)
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
