"""Commands of an active-learning round: score, select, rounds, export, import, Label Studio."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from geoal.cli import options as opt
from geoal.cli.base import (
    fail,
    friendly,
    main,
    open_cli_project,
    ray_group,
    scene_ids,
    shard_option,
)
from geoal.cli.options import FILE, FOLDER, attach, option, option_group, values
from geoal.errors import ConfigError


@main.command()
@attach(
    opt.model("Local .pt or model .yaml (default: latest trained model)."),
    option(
        "--views",
        "1 = one view; 2+ = MI-AOD-style discrepancy between flips/rotations (default 2).",
        type=click.IntRange(1, 6),
    ),
    opt.batch(None, most=1024, help="Chips per forward pass (default 16)."),
    opt.device(None, help="cpu or cuda:N (half precision on GPU)."),
    opt.scenes("Only this scene (id or name); repeatable."),
    option("--top-k", "k of the top-k aggregations.", type=click.IntRange(1, 10000)),
    option(
        "--workers",
        "Chip reader threads (in each Ray worker with --engine ray).",
        type=click.IntRange(1, 64),
        default=2,
    ),
    option("--limit", "Score at most this many chips now.", type=click.IntRange(1)),
    opt.imgsz(opt.TRAINED_IMGSZ),
    opt.backend(),
)
@click.pass_context
@friendly
@ray_group("score")
@attach(
    option(
        "--shard",
        "I/N: score only shard I of N (chip id % N == I) into a shard file (SLURM arrays).",
    ),
    option(
        "--shard-out",
        "Shard file (default: shards/MODEL-I-of-N.sqlite in the project).",
        type=FILE,
    ),
    opt.quiet(),
)
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
    ray: Any,
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
    from geoal.pipeline.scoring import ScoreOptions

    part = shard_option(shard, shard_out, ray)
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
        summary = _score(project, opts, part, shard_out, ray, quiet)
    click.echo(summary)


def _score(
    project: Any, opts: Any, part: Any, shard_out: Path | None, ray: Any, quiet: bool
) -> str:
    """Score one shard (``part``) or the project (local or Ray engine); the summary line.

    The warnings of geoal (and the one on an untrained model) are shown as one line each.
    """
    import warnings
    from contextlib import AbstractContextManager, nullcontext

    from geoal.pipeline.scoring import score_project

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
            if ray is None:
                report = score_project(project, opts, progress=not quiet)
            else:
                from geoal.distributed import score_project_ray

                report = score_project_ray(project, opts, ray, progress=not quiet)
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
    return summary


@main.command()
@attach(
    option(
        "--budget -k",
        "Chips to select (default: config, 50).",
        type=click.IntRange(1),
    ),
    option(
        "--budget-objects",
        "Instead of chips: expected objects to label (annotators pay per box).",
        type=click.FloatRange(min=0, min_open=True),
    ),
    option(
        "--strategy -s",
        (
            "adaptive, hybrid, uncertainty, typiclust, coreset or random (default: config, "
            "adaptive; see README 'Selecting chips')."
        ),
    ),
    option(
        "--aggregation",
        "Stored chip score to rank by: miaod, max, mean, sum, topk_mean, box_instability.",
    ),
    option(
        "--model model_hash",
        "Use the scores of this model (hash prefix; default: the latest).",
    ),
    opt.seed(None, help="Random seed (default: config, 0)."),
    option(
        "--min-distance",
        "Selected chips must not overlap and lie at least this far apart (CRS units); -1 allows overlap.",
        type=float,
        default=0.0,
    ),
    option(
        "--max-share",
        "Per-scene quota: no scene takes more than this share of the round.",
        type=click.FloatRange(0, 1, min_open=True),
    ),
    option(
        "--pool-factor",
        "hybrid: diversity among the top pool-factor x budget uncertain chips.",
        type=click.FloatRange(min=1),
        default=5.0,
    ),
    opt.class_balance("Weight chip scores towards classes rare among the labels so far."),
    opt.scenes("Only chips of this scene (id or name); repeatable."),
    option(
        "--aoi",
        (
            "Only chips that intersect the polygons of this file (GeoJSON, GeoPackage, "
            "shapefile; any CRS)."
        ),
        type=FILE,
    ),
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
@attach(
    option(
        "--cancel cancel_id",
        "Cancel this open round (its chips become candidates again).",
        type=int,
    ),
    opt.as_json(),
)
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
@attach(
    option(
        "--format -f fmt",
        "coco, geojson, labelstudio (a round's chips with predictions) or yolo (all labelled chips).",
        required=True,
    ),
    option("--out -o", "Folder to write.", type=FOLDER, required=True),
    opt.round_id("Round to export (default: the latest open round)."),
    option(
        "--crs",
        "GeoJSON: 'scene' (the scenes' CRS, declared), EPSG:4326, or auto (scene if shared, else 4326).",
        default="auto",
    ),
    option("--image-format", "png or jpg chip images.", default="png"),
    option("--geotiff", "Also write georeferenced chip GeoTIFFs (geotiff/).", is_flag=True),
    option(
        "--image-root",
        "Label Studio: URL (or /data/local-files/?d=DIR) under which this folder is served.",
    ),
    opt.conf(
        "Pre-annotations: the model's boxes at or above this confidence "
        "(default: export.conf, 0.25)."
    ),
    opt.val_fraction("YOLO: share held out for validation (by scene when possible)."),
    opt.quiet(),
)
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
@click.argument("file", type=FILE)
@attach(option("--format -f fmt", "coco, geojson or labelstudio (default: from the content)."))
@click.pass_context
@friendly
@option_group(
    "how",
    values,
    option(
        "--on-duplicate",
        "A chip an earlier import labelled: 'keep' its labels, 'replace' them, or 'refuse' the file.",
        default="keep",
    ),
    option(
        "--accept-predictions",
        "Take the model's pre-annotations (and an unedited export) as labels, knowingly.",
        is_flag=True,
    ),
    opt.round_id(
        "GeoJSON without chip features: the round whose chips it labels "
        "(default: the latest open round; with none open, every chip the file covers)."
    ),
    option(
        "--min-visible",
        "GeoJSON: keep a box cut by a chip edge when this share of it is inside.",
        type=click.FloatRange(0, 1, min_open=True),
        default=0.5,
    ),
    option(
        "--class-field",
        (
            "GeoJSON: the property that names each feature's class "
            "(default: the first of class, label, category, name, type that names a project class)."
        ),
    ),
    option(
        "--class fixed_class",
        "GeoJSON: give every feature this class (files without a class property).",
    ),
    option("--layer", "GeoPackage with several layers: the one holding the labels."),
)
def import_(ctx: click.Context, file: Path, fmt: str | None, how: dict[str, Any]) -> None:
    """Import labels (COCO, GeoJSON in any CRS, Label Studio JSON, JSON-MIN or COCO export).

    All of the file or nothing: every problem is reported once per kind (unknown
    class, bad box, box outside its chip, an image that is not a project chip, a
    path outside the export folder, the model's pre-annotations, ...); with any
    problem nothing is stored. Chips already labelled keep their labels unless
    --on-duplicate replace. A GeoJSON file labels only the chips it covers.
    Importing the same file again labels only chips new to it.
    """
    from geoal.pipeline.annotate import ImportOptions, import_labels, import_summary

    opts = ImportOptions(fmt=fmt.lower() if fmt else None, **how)
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


def _label_studio() -> tuple[click.Option, click.Option]:
    """--url and --token of a Label Studio server."""
    return (
        option("--url", "Label Studio address, e.g. http://localhost:8080.", required=True),
        option(
            "--token",
            "API token (default: $LABEL_STUDIO_API_KEY); prefer the variable, a flag shows in `ps`.",
        ),
    )


@labelstudio.command(name="push")
@attach(
    *_label_studio(),
    opt.round_id("Round to push (default: latest open)."),
    opt.conf(
        "Predictions: the model's boxes at or above this confidence (default: export.conf, 0.25)."
    ),
    opt.quiet(),
)
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
@attach(*_label_studio())
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
