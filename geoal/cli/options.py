"""Options said once: the ones several commands share, and options grouped into one argument.

Options are ``click.Option`` values (``option("--round round_id", help, type=int)``); the
shared ones are functions here (the help varies by command where the meaning does).
``attach`` adds options to a command, ``option_group`` adds options whose values reach the
command as one object (a config, not ten parameters). Every command shows its defaults
(the ``geoal`` group sets ``show_default``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

FILE = click.Path(dir_okay=False, path_type=Path)
FOLDER = click.Path(file_okay=False, path_type=Path)


def attach(*options: click.Parameter) -> Callable[[F], F]:
    """Add ``options`` to a command, shown in this order by --help."""

    def decorate(func: F) -> F:
        stack = func.__dict__.setdefault("__click_params__", [])
        stack.extend(reversed(options))  # click lists a command's params in reverse
        return func

    return decorate


def option_group(name: str, build: Callable[..., Any], *options: click.Option) -> Callable[[F], F]:
    """Add ``options``; the command gets ``name=build(**their values)`` instead of each one.

    ``build`` may raise GeoalError: put ``friendly`` above the group.
    """

    def decorate(func: F) -> F:
        names = [str(option.name) for option in options]

        @wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            values = {key: kwargs.pop(key) for key in names}
            return func(*args, **kwargs, **{name: build(**values)})

        command.__click_params__ = [  # type: ignore[attr-defined]
            *getattr(func, "__click_params__", []),
            *reversed(options),
        ]
        return command  # type: ignore[return-value]

    return decorate


def values(**kwargs: Any) -> dict[str, Any]:
    """An option group's values as they are (``build`` for groups read as a dict)."""
    return kwargs


TRAINED_IMGSZ = "Model input size in pixels (default: the size the model was trained at)."


def option(decls: str, help: str | None = None, **attrs: Any) -> click.Option:
    """A click option from space-separated declarations, e.g. ``option("--round round_id", help)``."""
    return click.Option(decls.split(), help=help, **attrs)


def quiet(help: str = "No progress bar.") -> click.Option:
    return option("--quiet -q", help, is_flag=True)


def as_json() -> click.Option:
    return option("--json as_json", "Print machine-readable JSON.", is_flag=True)


def device(default: str | None = "cpu", help: str | None = "cpu or cuda:N.") -> click.Option:
    return option("--device", help, default=default)


def imgsz(help: str) -> click.Option:
    """--imgsz: a model input size in pixels (a multiple of 32 where it trains)."""
    return option("--imgsz", help, type=click.IntRange(32))


def batch(default: int | None, most: int | None = None, help: str | None = None) -> click.Option:
    return option("--batch", help, type=click.IntRange(1, most), default=default)


def epochs(default: int, help: str | None = None) -> click.Option:
    return option("--epochs", help, type=click.IntRange(1), default=default)


def seed(default: int | None, help: str | None = None) -> click.Option:
    return option("--seed", help, type=int, default=default)


def conf(help: str, default: float | None = None) -> click.Option:
    """--conf: a detection confidence, 0-1."""
    return option("--conf", help, type=click.FloatRange(0, 1), default=default)


def val_fraction(help: str) -> click.Option:
    return option("--val-fraction", help, type=click.FloatRange(0, 0.9), default=0.2)


def class_balance(help: str) -> click.Option:
    return option("--class-balance", help, is_flag=True)


def scenes(help: str) -> click.Option:
    """--scene (repeatable): scene ids or names, as ``scenes``."""
    return option("--scene scenes", help, multiple=True)


def round_id(help: str) -> click.Option:
    return option("--round round_id", help, type=int)


def model(help: str, required: bool = False) -> click.Option:
    """--model / -m: a registered model or a model file."""
    return option("--model -m", help, required=required)


def chip_size(default: int | None, help: str) -> click.Option:
    return option("--size", help, type=int, default=default)


def overlap(default: float | None, help: str) -> click.Option:
    return option("--overlap", help, type=float, default=default)


def bands(help: str) -> click.Option:
    return option("--bands", help)


def backend() -> click.Option:
    """--backend: the runtime of the detector's forward pass (``geoal.detect.backends``)."""
    from geoal.detect.backends import AUTO, list_backends

    return option(
        "--backend",
        "Runtime of the forward pass; auto: OpenVINO on a CPU when installed "
        "(else ONNX Runtime, else torch), torch on a GPU, or $GEOAL_BACKEND.",
        type=click.Choice([AUTO, *list_backends()]),
        default=AUTO,
    )
