"""Shared pieces of the command line: the ``geoal`` group, error handling, option helpers."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from geoal.cli.options import attach, option, option_group
from geoal.errors import ConfigError, GeoalError, environment_problem

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> None:
    click.echo(f"geoal: error: {message}", err=True)
    sys.exit(code)


def friendly(func: F) -> F:
    """Turn GeoalError (and Ctrl-C) into one line and an exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GeoalError as exc:
            fail(str(exc), exc.exit_code)
        except (OSError, sqlite3.OperationalError) as exc:
            problem = environment_problem(exc)  # a full disk, a folder that is not writable
            if problem is None:
                raise
            fail(str(problem), problem.exit_code)
        except KeyboardInterrupt:
            fail("interrupted; what was finished is saved, run the command again to resume", 130)

    return wrapper  # type: ignore[return-value]


def _offline_ultralytics() -> None:
    """Keep ultralytics offline and its settings out of the user's home if not configured."""
    os.environ.setdefault("YOLO_OFFLINE", "1")


@contextmanager
def open_cli_project(ctx: click.Context) -> Iterator[Any]:
    """The project of --project DIR (or the current folder), closed afterwards."""
    from geoal.project import open_project

    project = open_project(ctx.obj.get("project"))
    try:
        yield project
    finally:
        project.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@attach(
    option(
        "--project -p",
        "Project folder (default: the current folder).",
        type=click.Path(file_okay=False, path_type=Path),
    ),
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


@contextmanager
def echo_warnings() -> Iterator[None]:
    """Show geoal's warnings raised inside as one ``geoal: warning:`` line each."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        yield
    seen: set[str] = set()
    for w in caught:
        text = str(w.message)
        if "geoal" in str(w.filename) and text not in seen:
            seen.add(text)
            click.echo(f"geoal: warning: {text}", err=True)


def ray_group(verb: str) -> Callable[[F], F]:
    """--engine and the Ray options of ``geoal score`` and ``geoal predict``, as ``ray``.

    The command gets ``ray``: RayOptions for --engine ray, None for the local engine.
    """
    return option_group(
        "ray",
        ray_options,
        option(
            "--engine",
            f"ray: {verb} on a Ray cluster, a worker per GPU (pip install 'geoal[ray]').",
            type=click.Choice(["local", "ray"]),
            default="local",
        ),
        option(
            "--address",
            "Ray cluster: auto, or ray://HOST:10001 (default: start Ray on this machine).",
        ),
        option(
            "--ray-workers",
            "Ray workers, each loads the model once (default: one per GPU, else per CPU).",
            type=click.IntRange(1),
        ),
        option(
            "--gpus-per-worker",
            "GPUs per Ray worker (default: 1 if the cluster has GPUs, else 0).",
            type=click.FloatRange(0),
        ),
        option(
            "--cpus-per-worker",
            "CPUs per Ray worker (default 1).",
            type=click.FloatRange(0, min_open=True),
        ),
    )


def ray_options(
    engine: str,
    address: str | None,
    ray_workers: int | None,
    gpus_per_worker: float | None,
    cpus_per_worker: float | None,
) -> Any:
    """RayOptions for --engine ray, None for the local engine (which takes no Ray option)."""
    if engine != "ray":
        given = [
            name
            for name, value in (
                ("--address", address),
                ("--ray-workers", ray_workers),
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
        workers=ray_workers,
        gpus_per_worker=gpus_per_worker,
        cpus_per_worker=cpus_per_worker or 1.0,
    )


def shard_option(shard: str | None, shard_out: Path | None, ray_opts: Any) -> Any:
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


def scene_ids(project: Any, names: tuple[str, ...]) -> tuple[int, ...]:
    """Scene ids from ids or names given on the command line."""
    if not names:
        return ()
    scenes = project.store.scenes()
    out = []
    for name in names:
        match = [s for s in scenes if str(s.id) == name] or [s for s in scenes if s.name == name]
        if not match:
            valid = ", ".join(f"{s.id} ({s.name})" for s in scenes)
            raise ConfigError(f"--scene {name}: no such scene; the project has {valid or 'none'}")
        if len(match) > 1:  # the same file name in two folders: 2021/x.tif, 2022/x.tif
            which = ", ".join(f"{s.id} ({s.path})" for s in match)
            raise ConfigError(
                f"--scene {name}: {len(match)} scenes have this name: {which}; give the id"
            )
        out.append(match[0].id)
    return tuple(out)
