"""The ``geoal`` command line: thin commands that parse, open the project, call one function, print.

Errors of geoal's own type become one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from geoal.errors import ConfigError, GeoalError

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"geoal: error: {message}", err=True)
    sys.exit(code)


def friendly(func: F) -> F:
    """Turn GeoalError (and Ctrl-C) into one line and an exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GeoalError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; what was finished is saved, run the command again to resume", 130)

    return wrapper  # type: ignore[return-value]


def _offline_ultralytics() -> None:
    """Keep ultralytics offline and its settings out of the user's home if not configured."""
    os.environ.setdefault("YOLO_OFFLINE", "1")


@contextmanager
def _project(ctx: click.Context) -> Iterator[Any]:
    from geoal.project import open_project

    project = open_project(ctx.obj.get("project"))
    try:
        yield project
    finally:
        project.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    "-p",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Project folder (default: the current folder).",
)
@click.version_option(package_name="geoal")
@click.pass_context
def main(ctx: click.Context, project: Path | None) -> None:
    """geoal: active learning for object detection in satellite and aerial imagery.

    A round: tile scenes into chips -> score chips with a YOLO detector -> select
    the chips worth labelling -> export them for annotation -> import labels ->
    retrain. Run 'geoal COMMAND --help' for each step.
    """
    _offline_ultralytics()
    ctx.ensure_object(dict)
    ctx.obj["project"] = project


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--classes", required=True, help="Object classes in model order, comma separated: ship,whale"
)
@click.option(
    "--profile",
    default=None,
    help="Imagery profile overlaid on the defaults: rgb8-aerial, pan16-sea-survey, ms-float.",
)
@click.option("--name", default=None, help="Project name (default: the folder name).")
@friendly
def init(directory: Path, classes: str, profile: str | None, name: str | None) -> None:
    """Create a project folder DIRECTORY with geoal.yaml and an empty store."""
    from geoal.project import init_project

    project = init_project(directory, classes, profile=profile, name=name)
    project.close()
    click.echo(f"created project {directory} with classes {', '.join(project.config.classes)}")
    click.echo(f"next: geoal --project {directory} tile SCENE.tif ...")


@main.command()
@click.argument("scenes", nargs=-1, required=True)
@click.option("--size", type=int, default=None, help="Chip side in pixels (default: config, 640).")
@click.option(
    "--overlap", type=float, default=None, help="Overlap between chips, 0-1 (default 0.2)."
)
@click.option(
    "--bands", default=None, help="1-based bands shown as R,G,B, e.g. 3,2,1 (or one band)."
)
@click.option(
    "--min-valid",
    type=float,
    default=None,
    help="Skip chips with less valid data than this fraction.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
@friendly
def tile(
    ctx: click.Context,
    scenes: tuple[str, ...],
    size: int | None,
    overlap: float | None,
    bands: str | None,
    min_valid: float | None,
    quiet: bool,
) -> None:
    """Add SCENES (files, globs, folders, GDAL URLs) and record their chip grids.

    GeoTIFF, COG, VRT, JPEG and PNG are read; images without a CRS live in pixel
    coordinates. Chips that are (nearly) all nodata are skipped. A bad file is
    reported and skipped; the others are added (exit code 1 if any failed).
    """
    from geoal.config import parse_bands, with_tiling
    from geoal.pipeline.catalog import tile_scenes

    with _project(ctx) as project:
        changes: dict[str, Any] = {}
        if size is not None:
            changes["size"] = size
        if overlap is not None:
            changes["overlap"] = overlap
        if bands is not None:
            changes["bands"] = parse_bands(bands)
        if min_valid is not None:
            changes["min_valid"] = min_valid
        tiling = with_tiling(project.config, **changes).tiling
        with project.write_lock("tile"):
            report = tile_scenes(project, scenes, tiling, progress=not quiet)
    for note in report.warnings:
        click.echo(f"geoal: warning: {note}", err=True)
    for row in report.added:
        click.echo(
            f"added scene {row['scene_id']}: {row['path']} ({row['chips']} chips, "
            f"{row['skipped_nodata']} skipped as nodata)"
        )
    for err in report.errors:
        click.echo(f"geoal: error: {err}", err=True)
    if report.errors:
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
@friendly
def status(ctx: click.Context, as_json: bool) -> None:
    """Counts (scenes, chips, scored, selected, labelled, rounds, models) and per-scene rows."""
    from geoal.pipeline.catalog import project_status

    with _project(ctx) as project:
        info = project_status(project)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"project {info['name']} ({info['project']}), classes: {', '.join(info['classes'])}")
    click.echo("  ".join(f"{k}: {v}" for k, v in info["counts"].items()))
    if info["scenes"]:
        click.echo(
            f"{'id':>4}  {'scene':<28} {'size':>13} {'bands':>5} {'dtype':<8} {'crs':<11} "
            f"{'chips':>6} {'scored':>6} {'labelled':>8}"
        )
        for s in info["scenes"]:
            click.echo(
                f"{s['id']:>4}  {s['name'][:28]:<28} {s['width']:>6}x{s['height']:<6} "
                f"{s['band_count']:>5} {s['dtype']:<8} {s['crs'][:11]:<11} {s['chips']:>6} "
                f"{s['scored']:>6} {s['labelled']:>8}"
            )


@main.command()
@click.option(
    "--model", "-m", default=None, help="Local .pt or model .yaml (default: latest trained model)."
)
@click.option(
    "--views",
    type=click.IntRange(1, 6),
    default=None,
    help="1 = one view; 2+ = MI-AOD-style discrepancy between flips/rotations (default 2).",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 1024),
    default=None,
    help="Chips per forward pass (default 16).",
)
@click.option("--device", default=None, help="cpu or cuda:N (half precision on GPU).")
@click.option("--scene", "scenes", multiple=True, help="Only this scene (id or name); repeatable.")
@click.option(
    "--top-k", type=click.IntRange(1, 10000), default=None, help="k of the top-k aggregations."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Chip reader threads (in each Ray worker with --engine ray).",
)
@click.option(
    "--limit", type=click.IntRange(1), default=None, help="Score at most this many chips now."
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="ray: score on a Ray cluster, a worker per GPU (pip install 'geoal[ray]').",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster: auto, or ray://HOST:10001 (default: start Ray on this machine).",
)
@click.option(
    "--ray-workers",
    type=click.IntRange(1),
    default=None,
    help="Ray workers, each loads the model once (default: one per GPU, else per CPU).",
)
@click.option(
    "--gpus-per-worker",
    type=click.FloatRange(0),
    default=None,
    help="GPUs per Ray worker (default: 1 if the cluster has GPUs, else 0).",
)
@click.option(
    "--cpus-per-worker",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="CPUs per Ray worker (default 1).",
)
@click.option(
    "--shard",
    default=None,
    help="I/N: score only shard I of N (chip id % N == I) into a shard file (SLURM arrays).",
)
@click.option(
    "--shard-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Shard file (default: shards/MODEL-I-of-N.sqlite in the project).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
@friendly
def score(
    ctx: click.Context,
    model: str | None,
    views: int | None,
    batch: int | None,
    device: str | None,
    scenes: tuple[str, ...],
    top_k: int | None,
    workers: int,
    limit: int | None,
    engine: str,
    address: str | None,
    ray_workers: int | None,
    gpus_per_worker: float | None,
    cpus_per_worker: float | None,
    shard: str | None,
    shard_out: Path | None,
    quiet: bool,
) -> None:
    """Score every unlabelled chip with the detector: detections, instance uncertainty, chip scores.

    Chips already scored by the same model (content hash) are skipped, so an
    interrupted run resumes where it stopped. A model whose classes differ from
    the project's is refused. --engine ray scores on a Ray cluster; --shard I/N
    scores one shard into a file for 'geoal merge-shards' (schedulers without Ray).
    """
    import warnings
    from contextlib import AbstractContextManager, nullcontext

    from geoal.pipeline.scoring import ScoreOptions, score_project

    ray_opts = _ray_options(engine, address, ray_workers, gpus_per_worker, cpus_per_worker)
    part = _shard(shard, shard_out, ray_opts)
    with _project(ctx) as project:
        cfg = project.config.score
        opts = ScoreOptions(
            model=model,
            views=views or cfg.views,
            batch=batch or cfg.batch,
            device=device or cfg.device,
            top_k=top_k or cfg.top_k,
            conf=cfg.conf,
            iou=cfg.iou,
            scene_ids=_scene_ids(project, scenes),
            workers=workers,
            limit=limit,
        )
        # a shard only reads the store: many run at once, 'geoal merge-shards' writes
        lock: AbstractContextManager[Any] = (
            nullcontext() if part is not None else project.write_lock("score")
        )
        with lock, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            if part is not None:
                from geoal.distributed import score_shard

                done = score_shard(project, opts, part, shard_out, progress=not quiet)
                summary = (
                    f"shard {part}: scored {done.scored} chips into {done.path} with model "
                    f"{done.model_hash[:12]}; {done.already} already there, {done.remaining} left"
                )
            else:
                if ray_opts is None:
                    report = score_project(project, opts, progress=not quiet)
                else:
                    from geoal.distributed import score_project_ray

                    report = score_project_ray(project, opts, ray_opts, progress=not quiet)
                summary = (
                    f"scored {report.scored} chips with model {report.model_hash[:12]} "
                    f"({report.model_path}); {report.skipped} already scored, "
                    f"{report.remaining} left"
                )
        for w in caught:
            if "geoal" in str(w.filename) or "trained" in str(w.message):
                click.echo(f"geoal: warning: {w.message}", err=True)
    click.echo(summary)


@main.command()
@click.option(
    "--budget",
    "-k",
    type=click.IntRange(1),
    default=None,
    help="Chips to select (default: config, 50).",
)
@click.option(
    "--budget-objects",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Instead of chips: expected objects to label (annotators pay per box).",
)
@click.option(
    "--strategy",
    "-s",
    default=None,
    help="random, uncertainty, coreset or hybrid (default: config, hybrid).",
)
@click.option(
    "--aggregation",
    default=None,
    help="Stored chip score to rank by: miaod, max, mean, sum, topk_mean, box_instability.",
)
@click.option(
    "--model",
    "model_hash",
    default=None,
    help="Use the scores of this model (hash prefix; default: the latest).",
)
@click.option("--seed", type=int, default=None, help="Random seed (default: config, 0).")
@click.option(
    "--min-distance",
    type=float,
    default=0.0,
    show_default=True,
    help="Selected chips must not overlap and lie at least this far apart (CRS units); -1 allows overlap.",
)
@click.option(
    "--max-share",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Per-scene quota: no scene takes more than this share of the round.",
)
@click.option(
    "--pool-factor",
    type=click.FloatRange(min=1),
    default=5.0,
    show_default=True,
    help="hybrid: diversity among the top pool-factor x budget uncertain chips.",
)
@click.pass_context
@friendly
def select(
    ctx: click.Context,
    budget: int | None,
    budget_objects: float | None,
    strategy: str | None,
    aggregation: str | None,
    model_hash: str | None,
    seed: int | None,
    min_distance: float,
    max_share: float | None,
    pool_factor: float,
) -> None:
    """Select the chips worth labelling under a budget and record them as a new round.

    Cold start (nothing scored yet): --strategy random, or coreset on image statistics.
    """
    from geoal.pipeline.rounds import SelectOptions, select_round

    if budget is not None and budget_objects is not None:
        raise ConfigError("give --budget (chips) or --budget-objects (objects), not both")
    with _project(ctx) as project:
        cfg = project.config
        opts = SelectOptions(
            strategy=strategy or cfg.select.strategy,
            budget=None if budget_objects is not None else (budget or cfg.select.budget),
            budget_objects=budget_objects,
            aggregation=aggregation or cfg.score.aggregation,
            model_hash=model_hash,
            seed=cfg.select.seed if seed is None else seed,
            min_distance=None if min_distance < 0 else min_distance,
            max_share=max_share,
            pool_factor=pool_factor,
        )
        with project.write_lock("select"):
            report = select_round(project, opts)
    model = report.model_hash[:12] if report.model_hash else "none (cold start)"
    click.echo(
        f"round {report.round_id}: {len(report.chips)} chips selected by {opts.strategy} (model {model})"
    )
    if report.note:
        click.echo(f"note: {report.note}")
    click.echo(
        f"next: geoal export --round {report.round_id} --format coco --out round{report.round_id}/"
    )


@main.command()
@click.option(
    "--cancel",
    "cancel_id",
    type=int,
    default=None,
    help="Cancel this open round (its chips become candidates again).",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
@friendly
def rounds(ctx: click.Context, cancel_id: int | None, as_json: bool) -> None:
    """List the selection rounds (or cancel one)."""
    from geoal.pipeline.rounds import cancel_round, list_rounds

    with _project(ctx) as project:
        if cancel_id is not None:
            with project.write_lock("rounds --cancel"):
                n = cancel_round(project, cancel_id)
            click.echo(f"round {cancel_id} cancelled ({n} chips are candidates again)")
            return
        rows = list_rounds(project)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no rounds yet; create one with 'geoal select'")
    for r in rows:
        model = (r["model_hash"] or "-")[:12]
        click.echo(
            f"round {r['id']:>3}  {r['status']:<9} {r['strategy']:<11} model {model:<12} "
            f"chips {r['chips']:>5}  labelled {r['labelled']:>5}  {r['created_at']}"
        )


@main.command(name="export")
@click.option(
    "--format",
    "-f",
    "fmt",
    required=True,
    help="coco, geojson, labelstudio (a round's chips with predictions) or yolo (all labelled chips).",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write.",
)
@click.option(
    "--round",
    "round_id",
    type=int,
    default=None,
    help="Round to export (default: the latest open round).",
)
@click.option(
    "--crs",
    default="scene",
    show_default=True,
    help="GeoJSON: 'scene' (the scenes' CRS, declared) or EPSG:4326.",
)
@click.option("--image-format", default="png", show_default=True, help="png or jpg chip images.")
@click.option("--geotiff", is_flag=True, help="Also write georeferenced chip GeoTIFFs (geotiff/).")
@click.option(
    "--image-root", default=None, help="Label Studio: URL prefix under which the images are served."
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 0.9),
    default=0.2,
    show_default=True,
    help="YOLO: share held out for validation (by scene when possible).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
@friendly
def export(
    ctx: click.Context,
    fmt: str,
    out: Path,
    round_id: int | None,
    crs: str,
    image_format: str,
    geotiff: bool,
    image_root: str | None,
    val_fraction: float,
    quiet: bool,
) -> None:
    """Export chips for annotation (with the model's detections as pre-annotations) or training.

    Chip images are 8-bit with the project's stored stretch. COCO images record
    their scene and window, so labels come back to the right pixels.
    """
    from geoal.pipeline.annotate import ExportOptions, export_round

    with _project(ctx) as project:
        opts = ExportOptions(
            format=fmt.lower(),
            out=out,
            round_id=round_id,
            crs=crs,
            image_format=image_format.lower(),
            geotiff=geotiff,
            image_root=image_root,
            val_fraction=val_fraction,
            seed=project.config.select.seed,
        )
        info = export_round(project, opts, progress=not quiet)
    what = f"round {info['round']}" if info["round"] is not None else "labelled chips"
    click.echo(f"exported {info['chips']} chips ({what}) to {info['file']}")


@main.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "-f",
    "fmt",
    default=None,
    help="coco, geojson or labelstudio (default: from the content).",
)
@click.option(
    "--on-duplicate",
    default="last",
    show_default=True,
    help="A chip labelled twice: 'last' wins, or 'refuse' the file.",
)
@click.option(
    "--round",
    "round_id",
    type=int,
    default=None,
    help="GeoJSON without chip features: the round whose chips it labels (default: latest open).",
)
@click.option(
    "--min-visible",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.5,
    show_default=True,
    help="GeoJSON: keep a box cut by a chip edge when this share of it is inside.",
)
@click.option(
    "--class-field",
    default="class",
    show_default=True,
    help="GeoJSON: the property that names each feature's class.",
)
@click.option(
    "--class",
    "fixed_class",
    default=None,
    help="GeoJSON: give every feature this class (files without a class property).",
)
@click.pass_context
@friendly
def import_(
    ctx: click.Context,
    file: Path,
    fmt: str | None,
    on_duplicate: str,
    round_id: int | None,
    min_visible: float,
    class_field: str,
    fixed_class: str | None,
) -> None:
    """Import labels (COCO, GeoJSON in any CRS, Label Studio export): all of the file or nothing.

    Every problem is reported (unknown class, bad box, box outside its chip, an
    image that is not a project chip, a path outside the export folder, ...);
    with any problem nothing is stored. Importing the same file again changes nothing.
    """
    from geoal.pipeline.annotate import import_labels, import_summary

    with _project(ctx) as project, project.write_lock("import"):
        report = import_labels(
            project,
            file,
            fmt.lower() if fmt else None,
            on_duplicate=on_duplicate,
            round_id=round_id,
            min_visible=min_visible,
            class_field=class_field,
            fixed_class=fixed_class,
        )
    if report.problems:
        for line in report.problems[:200]:
            click.echo(f"geoal: problem: {line}", err=True)
        more = len(report.problems) - 200
        if more > 0:
            click.echo(f"geoal: ... and {more} more problems", err=True)
        click.echo(
            f"geoal: error: {file}: {len(report.problems)} problem(s); nothing imported", err=True
        )
        sys.exit(1)
    click.echo(import_summary(report))


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
    help="Training size in pixels (default: config model.imgsz).",
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
    with _project(ctx) as project, project.write_lock("train"):
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
    as_json: bool,
) -> None:
    """COCO metrics (mAP50, mAP50-95, per-class AP, recall at the operating threshold), stored with the model."""
    from geoal.pipeline.training import evaluate_project

    with _project(ctx) as project, project.write_lock("evaluate"):
        metrics = evaluate_project(
            project, model, data=data, images=images, device=device, conf=conf
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
@click.pass_context
@friendly
def report(ctx: click.Context, out: Path, simulation: Path | None, gallery: int) -> None:
    """Write one self-contained HTML page: learning curves, per-class AP, score maps, selected chips."""
    from geoal.report.html import build_report

    with _project(ctx) as project:
        path = build_report(project, out, simulation=simulation, gallery=gallery)
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
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="COCO JSON of the pool (its labels are hidden, then revealed by the oracle).",
)
@click.option(
    "--images",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the pool's images.",
)
@click.option(
    "--test-data",
    required=True,
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
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder; run the same command again to resume.",
)
@click.option("--strategies", default="random,hybrid", show_default=True)
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
    "--full-epochs",
    type=click.IntRange(1),
    default=None,
    help="Epochs of the --full-pool ceiling (default: epochs x rounds).",
)
@click.option("--imgsz", type=click.IntRange(32), default=640, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=16, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda:N.")
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
@click.option("--full-pool", is_flag=True, help="Also train once on the whole pool (the ceiling).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@friendly
def simulate(
    data: Path,
    images: Path,
    test_data: Path,
    test_images: Path | None,
    out: Path,
    strategies: str,
    seeds: str,
    budgets: str,
    budget_unit: str,
    epochs: int,
    full_epochs: int | None,
    imgsz: int,
    batch: int,
    device: str,
    init: str,
    start: str,
    views: int,
    aggregation: str,
    full_pool: bool,
    quiet: bool,
) -> None:
    """Label-efficiency simulation on a labelled COCO data set: learning curves per strategy.

    Hides the pool's labels; per (strategy, seed), round 0 is a random set, then
    each round trains, evaluates mAP on the fixed test set, scores the pool as
    'geoal score' does, selects and reveals. Writes results.csv, summary.json and
    learning_curves.png under --out; killed, the same command resumes.
    """
    from geoal.simulate import SimConfig, run_simulation

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
        full_epochs=full_epochs,
        imgsz=imgsz,
        batch=batch,
        device=device,
        init=init,
        start=start,  # type: ignore[arg-type]
        views=views,
        aggregation=aggregation,
        full_pool=full_pool,
    )
    summary = run_simulation(cfg, progress=not quiet)
    for name, arm in summary["strategies"].items():
        curve = "  ".join(f"{r['n_images_mean']:.0f}:{r['mAP50_mean']:.3f}" for r in arm["rounds"])
        click.echo(f"{name:<12} images:mAP50  {curve}")
    if summary["ceiling"]:
        click.echo(f"{'full pool':<12} mAP50 {summary['ceiling']['mAP50']:.3f}")
    click.echo(
        f"wrote {out / 'results.csv'}, {out / 'summary.json'}, {out / 'learning_curves.png'}"
    )


@main.group()
def labelstudio() -> None:
    """Label rounds in a Label Studio server: push tasks with predictions, pull labels back.

    The API token comes from $LABEL_STUDIO_API_KEY (or $LABEL_STUDIO_TOKEN, or --token):
    a personal access token or a legacy token. geoal never stores or prints it.
    """


_LS_URL = click.option(
    "--url", required=True, help="Label Studio address, e.g. http://localhost:8080."
)
_LS_TOKEN = click.option(
    "--token",
    default=None,
    help="API token (default: $LABEL_STUDIO_API_KEY); prefer the variable, a flag shows in `ps`.",
)


@labelstudio.command(name="push")
@_LS_URL
@_LS_TOKEN
@click.option(
    "--round", "round_id", type=int, default=None, help="Round to push (default: latest open)."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
@friendly
def labelstudio_push(
    ctx: click.Context, url: str, token: str | None, round_id: int | None, quiet: bool
) -> None:
    """Add a round's chips as tasks, the model's detections as predictions to correct.

    The first push creates a Label Studio project with the project's classes; pushing
    again adds only chips without a task. Chip images are uploaded with the tasks.
    """
    from geoal.labelstudio import connect, push_round, push_summary

    with (
        _project(ctx) as project,
        connect(url, token) as client,
        project.write_lock("labelstudio push"),
    ):
        report = push_round(project, client, round_id, progress=not quiet)
    for line in push_summary(report):
        click.echo(line)


@labelstudio.command(name="pull")
@_LS_URL
@_LS_TOKEN
@click.pass_context
@friendly
def labelstudio_pull(ctx: click.Context, url: str, token: str | None) -> None:
    """Import the submitted annotations like 'geoal import': all of them or nothing.

    A task submitted without boxes is a labelled negative; open or skipped tasks stay
    unlabelled. Pulling again without new annotations changes nothing.
    """
    from geoal.labelstudio import connect, pull_labels, pull_summary

    with (
        _project(ctx) as project,
        connect(url, token) as client,
        project.write_lock("labelstudio pull"),
    ):
        report = pull_labels(project, client)
    for note in report.notes:
        click.echo(f"geoal: warning: {note}", err=True)
    for line in report.problems[:200]:
        click.echo(f"geoal: problem: {line}", err=True)
    if report.problems:
        _fail(f"{url}: {len(report.problems)} problem(s); nothing imported")
    for line in pull_summary(report):
        click.echo(line)


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

    with _project(ctx) as project, project.write_lock("merge-shards"):
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


def _ray_options(
    engine: str,
    address: str | None,
    workers: int | None,
    gpus_per_worker: float | None,
    cpus_per_worker: float | None,
) -> Any:
    """RayOptions for --engine ray, None for the local engine (which takes no Ray option)."""
    if engine != "ray":
        given = [
            name
            for name, value in (
                ("--address", address),
                ("--ray-workers", workers),
                ("--gpus-per-worker", gpus_per_worker),
                ("--cpus-per-worker", cpus_per_worker),
            )
            if value is not None
        ]
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --engine ray")
        return None
    from geoal.distributed import RayOptions

    return RayOptions(
        address=address,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        cpus_per_worker=cpus_per_worker or 1.0,
    )


def _shard(shard: str | None, shard_out: Path | None, ray_opts: Any) -> Any:
    """The Shard of --shard I/N, or None; --shard runs on the local engine."""
    if shard is None:
        if shard_out is not None:
            raise ConfigError("--shard-out: only with --shard I/N")
        return None
    if ray_opts is not None:
        raise ConfigError(
            "--shard scores one shard with the local engine on this machine; leave out --engine ray"
        )
    from geoal.distributed import parse_shard

    return parse_shard(shard)


def _scene_ids(project: Any, names: tuple[str, ...]) -> tuple[int, ...]:
    """Scene ids from ids or names given on the command line."""
    if not names:
        return ()
    scenes = project.store.scenes()
    out = []
    for name in names:
        match = [s.id for s in scenes if str(s.id) == name or s.name == name]
        if not match:
            valid = ", ".join(f"{s.id} ({s.name})" for s in scenes)
            raise ConfigError(f"--scene {name}: no such scene; the project has {valid or 'none'}")
        out.extend(match)
    return tuple(out)


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
@click.option("--bands", default=None, help="1-based bands shown as R,G,B.")
@click.option(
    "--summary",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write counts per scene and class to this CSV.",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="ray: detect on a Ray cluster, a worker per GPU (pip install 'geoal[ray]').",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster: auto, or ray://HOST:10001 (default: start Ray on this machine).",
)
@click.option(
    "--ray-workers",
    type=click.IntRange(1),
    default=None,
    help="Ray workers, each loads the model once (default: one per GPU, else per CPU).",
)
@click.option(
    "--gpus-per-worker",
    type=click.FloatRange(0),
    default=None,
    help="GPUs per Ray worker (default: 1 if the cluster has GPUs, else 0).",
)
@click.option(
    "--cpus-per-worker",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="CPUs per Ray worker (default 1).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@friendly
def predict(
    scenes: tuple[str, ...],
    model: str,
    out: Path,
    conf: float,
    size: int,
    overlap: float,
    merge: str,
    match: str,
    threshold: float,
    batch: int,
    device: str,
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
        overlap=overlap,
        merge=merge,
        match=match,
        threshold=threshold,
        batch=batch,
        device=device,
        bands=parse_bands(bands) if bands else None,
    )
    ray_opts = _ray_options(engine, address, ray_workers, gpus_per_worker, cpus_per_worker)
    paths, problems = expand_inputs(scenes)
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


@main.command(name="map")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("chips.gpkg"),
    show_default=True,
    help="GeoPackage to write.",
)
@click.pass_context
@friendly
def map_(ctx: click.Context, out: Path) -> None:
    """Write chip footprints with state and latest score as a GeoPackage (opens in QGIS).

    One layer per scene in the scene's own CRS, and 'chips_wgs84' with every
    georeferenced chip in EPSG:4326.
    """
    from geoal.pipeline.catalog import write_chip_map

    if out.suffix.lower() != ".gpkg":
        raise ConfigError(f"--out {out}: the map is a GeoPackage; give a .gpkg file name")
    with _project(ctx) as project:
        layers = write_chip_map(project, out)
    for layer, n in layers.items():
        click.echo(f"{out}: layer {layer} ({n} chips)")


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-project"),
    show_default=True,
    help="Project folder to create (replaced if it is a previous demo).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthetic scene.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@friendly
def demo(out: Path, seed: int, quiet: bool) -> None:
    """Run the pipeline end to end on a built-in synthetic georeferenced scene, offline."""
    from geoal.demo import run_demo

    for line in run_demo(out, seed=seed, progress=not quiet):
        click.echo(line)


if __name__ == "__main__":  # pragma: no cover
    main()
