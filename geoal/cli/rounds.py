"""Commands of an active-learning round: score, select, rounds, export, import, Label Studio."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from geoal.cli.base import (
    backend_option,
    fail,
    friendly,
    main,
    open_cli_project,
    ray_engine_options,
    ray_options,
    scene_ids,
    shard_option,
)
from geoal.errors import ConfigError


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
    "--imgsz",
    type=click.IntRange(32),
    default=None,
    help="Model input size in pixels (default: the size the model was trained at).",
)
@backend_option
@ray_engine_options("score")
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
    imgsz: int | None,
    backend: str,
    engine: str,
    address: str | None,
    ray_workers: int | None,
    gpus_per_worker: float | None,
    cpus_per_worker: float | None,
    shard: str | None,
    shard_out: Path | None,
    quiet: bool,
) -> None:
    """Score every chip with the detector: detections, instance uncertainty, chip scores.

    Chips already scored by the same model (content hash) are skipped, so an
    interrupted run resumes where it stopped. A model whose classes differ from
    the project's is refused. --engine ray scores on a Ray cluster; --shard I/N
    scores one shard into a file for 'geoal merge-shards' (schedulers without Ray).
    """
    import warnings
    from contextlib import AbstractContextManager, nullcontext

    from geoal.pipeline.scoring import ScoreOptions, score_project

    ray_opts = ray_options(engine, address, ray_workers, gpus_per_worker, cpus_per_worker)
    part = shard_option(shard, shard_out, ray_opts)
    with open_cli_project(ctx) as project:
        cfg = project.config.score
        opts = ScoreOptions(
            model=model,
            views=views or cfg.views,
            batch=batch or cfg.batch,
            device=device or cfg.device,
            top_k=top_k or cfg.top_k,
            conf=cfg.conf,
            iou=cfg.iou,
            scene_ids=scene_ids(project, scenes),
            workers=workers,
            limit=limit,
            imgsz=imgsz,
            backend=backend,
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
                size = f", input {report.imgsz} px" if report.imgsz else ""
                on = f" on {report.backend}" if report.backend else ""
                summary = (
                    f"scored {report.scored} chips with model {report.model_hash[:12]} "
                    f"({report.model_path}{size}){on}; {report.skipped} already scored, "
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
    help="adaptive, hybrid, uncertainty, typiclust, coreset or random (default: config, "
    "adaptive; see README 'Selecting chips').",
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
@click.option(
    "--class-balance",
    is_flag=True,
    help="Weight chip scores towards classes rare among the labels so far.",
)
@click.option(
    "--scene", "scenes", multiple=True, help="Only chips of this scene (id or name); repeatable."
)
@click.option(
    "--aoi",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Only chips that intersect the polygons of this file (GeoJSON, GeoPackage, shapefile; any CRS).",
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
    class_balance: bool,
    scenes: tuple[str, ...],
    aoi: Path | None,
) -> None:
    """Select the chips worth labelling under a budget and record them as a new round.

    Cold start (nothing scored yet): adaptive (the default) starts with typiclust on image
    statistics; random, coreset and typiclust run cold too.
    --scene and --aoi limit the candidates (a round for a new scene, or an area drawn in QGIS).
    """
    from geoal.pipeline.rounds import SelectOptions, select_round

    if budget is not None and budget_objects is not None:
        raise ConfigError("give --budget (chips) or --budget-objects (objects), not both")
    with open_cli_project(ctx) as project:
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
            class_balance=class_balance,
            scene_ids=scene_ids(project, scenes),
            aoi=aoi,
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

    with open_cli_project(ctx) as project:
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
    default="auto",
    show_default=True,
    help="GeoJSON: 'scene' (the scenes' CRS, declared), EPSG:4326, or auto (scene if shared, else 4326).",
)
@click.option("--image-format", default="png", show_default=True, help="png or jpg chip images.")
@click.option("--geotiff", is_flag=True, help="Also write georeferenced chip GeoTIFFs (geotiff/).")
@click.option(
    "--image-root",
    default=None,
    help="Label Studio: URL (or /data/local-files/?d=DIR) under which this folder is served.",
)
@click.option(
    "--conf",
    type=click.FloatRange(0, 1),
    default=None,
    help="Pre-annotations: the model's boxes at or above this confidence (default: export.conf, 0.25).",
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
    conf: float | None,
    val_fraction: float,
    quiet: bool,
) -> None:
    """Export chips for annotation (with the model's detections as pre-annotations) or training.

    Chip images are 8-bit with the project's stored stretch. COCO images record
    their scene and window, so labels come back to the right pixels. Pre-annotations
    are marked as the model's (COCO 'score', GeoJSON kind 'prediction', Label Studio
    predictions): importing the file unedited is refused.
    """
    from geoal.pipeline.annotate import ExportOptions, export_round

    with open_cli_project(ctx) as project:
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
            conf=conf,
        )
        info = export_round(project, opts, progress=not quiet)
    for note in info.get("notes", []):
        click.echo(f"geoal: warning: {note}", err=True)
    what = f"round {info['round']}" if info["round"] is not None else "labelled chips"
    pre = (
        f", {info['predictions']} pre-annotations at confidence >= {info['conf']:g}"
        if "conf" in info
        else ""
    )
    click.echo(f"exported {info['chips']} chips ({what}{pre}) to {info['file']}")


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
    default="keep",
    show_default=True,
    help="A chip an earlier import labelled: 'keep' its labels, 'replace' them, or 'refuse' the file.",
)
@click.option(
    "--accept-predictions",
    is_flag=True,
    help="Take the model's pre-annotations (and an unedited export) as labels, knowingly.",
)
@click.option(
    "--round",
    "round_id",
    type=int,
    default=None,
    help="GeoJSON without chip features: the round whose chips it labels "
    "(default: the latest open round; with none open, every chip the file covers).",
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
    default=None,
    help="GeoJSON: the property that names each feature's class "
    "(default: the first of class, label, category, name, type that names a project class).",
)
@click.option(
    "--class",
    "fixed_class",
    default=None,
    help="GeoJSON: give every feature this class (files without a class property).",
)
@click.option(
    "--layer", default=None, help="GeoPackage with several layers: the one holding the labels."
)
@click.pass_context
@friendly
def import_(
    ctx: click.Context,
    file: Path,
    fmt: str | None,
    on_duplicate: str,
    accept_predictions: bool,
    round_id: int | None,
    min_visible: float,
    class_field: str | None,
    fixed_class: str | None,
    layer: str | None,
) -> None:
    """Import labels (COCO, GeoJSON in any CRS, Label Studio JSON, JSON-MIN or COCO export).

    All of the file or nothing: every problem is reported once per kind (unknown
    class, bad box, box outside its chip, an image that is not a project chip, a
    path outside the export folder, the model's pre-annotations, ...); with any
    problem nothing is stored. Chips already labelled keep their labels unless
    --on-duplicate replace. A GeoJSON file labels only the chips it covers.
    Importing the same file again labels only chips new to it.
    """
    from geoal.pipeline.annotate import ImportOptions, import_labels, import_summary

    opts = ImportOptions(
        fmt=fmt.lower() if fmt else None,
        on_duplicate=on_duplicate,
        round_id=round_id,
        min_visible=min_visible,
        class_field=class_field,
        fixed_class=fixed_class,
        accept_predictions=accept_predictions,
        layer=layer,
    )
    with open_cli_project(ctx) as project, project.write_lock("import"):
        report = import_labels(project, file, opts)
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
@click.option(
    "--conf",
    type=click.FloatRange(0, 1),
    default=None,
    help="Predictions: the model's boxes at or above this confidence (default: export.conf, 0.25).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
@friendly
def labelstudio_push(
    ctx: click.Context,
    url: str,
    token: str | None,
    round_id: int | None,
    conf: float | None,
    quiet: bool,
) -> None:
    """Add a round's chips as tasks, the model's detections as predictions to correct.

    The first push creates a Label Studio project with the project's classes; pushing
    again adds only chips without a task. Chip images are uploaded with the tasks.
    """
    from geoal.labelstudio import connect, push_round, push_summary

    with (
        open_cli_project(ctx) as project,
        connect(url, token) as client,
        project.write_lock("labelstudio push"),
    ):
        report = push_round(project, client, round_id, progress=not quiet, conf=conf)
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
        open_cli_project(ctx) as project,
        connect(url, token) as client,
        project.write_lock("labelstudio pull"),
    ):
        report = pull_labels(project, client)
    for note in report.notes:
        click.echo(f"geoal: warning: {note}", err=True)
    for line in report.problems[:200]:
        click.echo(f"geoal: problem: {line}", err=True)
    if report.problems:
        fail(f"{url}: {len(report.problems)} problem(s); nothing imported")
    for line in pull_summary(report):
        click.echo(line)
