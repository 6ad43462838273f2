"""Commands on scenes and chips: init, tile, status, map, demo."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from geoal.cli import options as opt
from geoal.cli.base import friendly, main, open_cli_project
from geoal.cli.options import FILE, FOLDER, attach, option
from geoal.errors import ConfigError


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@attach(
    option(
        "--classes", "Object classes in model order, comma separated: ship,whale", required=True
    ),
    option(
        "--profile",
        "Imagery profile overlaid on the defaults: rgb8-aerial, pan16-sea-survey, ms-float.",
    ),
    option("--name", "Project name (default: the folder name)."),
)
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
@attach(
    opt.chip_size(None, "Chip side in pixels (default: config, 640)."),
    opt.overlap(None, "Overlap between chips, 0-1 (default 0.2)."),
    opt.bands("1-based bands shown as R,G,B, e.g. 3,2,1 (or one band)."),
    option("--min-valid", "Skip chips with less valid data than this fraction.", type=float),
    option(
        "--max-chips",
        "Refuse a scene that would make more chips (default: config, 1,000,000).",
        type=click.IntRange(1),
    ),
    opt.quiet(),
)
@click.pass_context
@friendly
def tile(
    ctx: click.Context,
    scenes: tuple[str, ...],
    size: int | None,
    overlap: float | None,
    bands: str | None,
    min_valid: float | None,
    max_chips: int | None,
    quiet: bool,
) -> None:
    """Add SCENES (files, globs, folders, GDAL URLs) and record their chip grids.

    GeoTIFF, COG, VRT, JPEG and PNG are read; images without a CRS live in pixel
    coordinates. Chips that are (nearly) all nodata, or that no source of a VRT
    mosaic covers, are skipped. A bad file is reported and skipped; the others are
    added (exit code 1 if any failed); a file already added is a note.
    """
    from geoal.config import parse_bands, with_tiling
    from geoal.pipeline.catalog import tile_scenes

    with open_cli_project(ctx) as project:
        changes: dict[str, Any] = {}
        if size is not None:
            changes["size"] = size
        if overlap is not None:
            changes["overlap"] = overlap
        if bands is not None:
            changes["bands"] = parse_bands(bands)
        if min_valid is not None:
            changes["min_valid"] = min_valid
        if max_chips is not None:
            changes["max_chips"] = max_chips
        tiling = with_tiling(project.config, **changes).tiling
        with project.write_lock("tile"):
            report = tile_scenes(project, scenes, tiling, progress=not quiet)
    for note in report.warnings:
        click.echo(f"geoal: warning: {note}", err=True)
    for note in report.already:
        click.echo(f"note: {note}; skipped")
    for row in report.added:
        click.echo(
            f"added scene {row['scene_id']}: {row['path']} ({row['chips']} chips, "
            f"{row['skipped_nodata']} skipped as nodata)"
        )
    for line in report.moved:
        click.echo(line)
    for err in report.errors:
        click.echo(f"geoal: error: {err}", err=True)
    if report.errors:
        sys.exit(1)


@main.command()
@attach(
    opt.as_json(),
)
@click.pass_context
@friendly
def status(ctx: click.Context, as_json: bool) -> None:
    """Counts (scenes, chips, scored, selected, labelled, rounds, models) and per-scene rows."""
    from geoal.pipeline.catalog import project_status

    with open_cli_project(ctx) as project:
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


@main.command(name="map")
@attach(
    option("--out", "GeoPackage to write.", type=FILE, default=Path("chips.gpkg")),
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
    with open_cli_project(ctx) as project:
        layers = write_chip_map(project, out)
    for layer, n in layers.items():
        click.echo(f"{out}: layer {layer} ({n} chips)")


@main.command()
@attach(
    option(
        "--out",
        "Folder to create for the demo's scenes and two projects (replaced if a previous demo).",
        type=FOLDER,
        default=Path("demo-project"),
    ),
    opt.seed(0, help="Seed of the synthetic scene."),
    opt.quiet("No progress bars."),
)
@friendly
def demo(out: Path, seed: int, quiet: bool) -> None:
    """Active learning against random labelling on a built-in synthetic survey, offline.

    Two projects start from the same labelled seed chips and model; for a few rounds, one
    selects chips with geoal's default strategy, the other at random. Prints one line per
    project per round, writes OUT/summary.json and OUT/report.html.
    """
    from geoal.demo import run_demo

    for line in run_demo(out, seed=seed, progress=not quiet):
        click.echo(line)
