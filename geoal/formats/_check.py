"""Checks shared by the importers and exporters: boxes, numbers, relative paths."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from geoal.errors import FormatError
from geoal.formats.records import Boxes
from geoal.raster.chip import Chip

EDGE_TOLERANCE_PX = 0.5
"""A box may stick out of its chip by this much (pixels) and is clipped; more is a problem."""


def as_number(value: Any) -> float | None:
    """``value`` as a float, or None when it is not a JSON number (bools are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    return float(value)


def as_int(value: Any) -> int | None:
    """``value`` as an int when it is an integral number (3 or 3.0), else None."""
    x = as_number(value)
    if x is None or not math.isfinite(x) or x != int(x):
        return None
    return int(x)


def as_numbers(value: Any, n: int) -> tuple[float, ...] | None:
    """``value`` as ``n`` floats (NaN/inf allowed: checked later), or None."""
    if not isinstance(value, list | tuple) or len(value) != n:
        return None
    out = tuple(as_number(v) for v in value)
    return None if any(v is None for v in out) else out  # type: ignore[return-value]


def check_box(
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    width: int,
    height: int,
    tol: float = EDGE_TOLERANCE_PX,
) -> tuple[tuple[float, float, float, float] | None, str]:
    """Validate one box in chip pixels: (clipped box, "") or (None, what is wrong).

    Non-finite or degenerate (x2 <= x1 or y2 <= y1) boxes are refused; a box sticking out
    of the ``width`` x ``height`` chip by more than ``tol`` px is refused, less is clipped.
    """
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None, f"box {_fmt(x1, y1, x2, y2)} has NaN or infinite coordinates"
    if x2 <= x1 or y2 <= y1:
        return None, f"degenerate box {_fmt(x1, y1, x2, y2)}: width and height must be > 0"
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        return None, (
            f"box {_fmt(x1, y1, x2, y2)} extends beyond the {width} x {height} px chip "
            f"by more than {tol} px"
        )
    cx1, cy1 = max(x1, 0.0), max(y1, 0.0)
    cx2, cy2 = min(x2, float(width)), min(y2, float(height))
    if cx2 <= cx1 or cy2 <= cy1:
        return None, f"box {_fmt(x1, y1, x2, y2)} is empty once clipped to the chip"
    return (cx1, cy1, cx2, cy2), ""


def _fmt(*values: float) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def unsafe_path_reason(name: str) -> str:
    """Why ``name`` may not be used as a path inside an export folder ("" when it is fine).

    Refuses absolute paths (POSIX or Windows, drive letters, UNC) and any ``..`` component,
    whatever it would resolve to.
    """
    if not name:
        return "file_name is empty"
    if "\x00" in name:
        return "file_name contains a NUL character"
    posix, win = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or win.is_absolute() or win.drive or win.root:
        return f"file_name {name!r} is an absolute path; it must be relative to the export folder"
    if ".." in posix.parts or ".." in win.parts:
        return f"file_name {name!r} reaches outside the export folder ('..')"
    return ""


def class_lookup(classes: Sequence[str]) -> Callable[[object], int | None]:
    """A function: class name in a label file -> project class index, or None when unknown.

    An exact match wins; otherwise names match ignoring case and surrounding spaces ("Tree"
    -> "tree"), unless two project classes differ only by case.
    """
    exact = {name: i for i, name in enumerate(classes)}
    folded: dict[str, int | None] = {}
    for i, name in enumerate(classes):
        key = name.strip().casefold()
        folded[key] = None if key in folded else i

    def lookup(name: object) -> int | None:
        if not isinstance(name, str):
            return None
        if name in exact:
            return exact[name]
        return folded.get(name.strip().casefold())

    return lookup


_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}(-|__)")


def image_basenames(name: str) -> list[str]:
    """The file name at the end of a path or URL, then without Label Studio's upload prefix.

    Label Studio stores an uploaded ``scene_3.png`` as ``/data/upload/1/8f2c1a3b-scene_3.png``
    and its COCO export names images ``images/8f2c1a3b-scene_3.png`` (or, for an image served
    by URL, ``images/8f2c1a3b__scene_3.png``); this gives ``[that name, "scene_3.png"]``.
    """
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(name.replace("\\", "/"))
    local = parse_qs(parts.query).get("d")  # Label Studio local files: /data/local-files/?d=x
    path = local[0] if local else parts.path
    base = path.rstrip("/").rsplit("/", 1)[-1]
    return list(dict.fromkeys([base, _UPLOAD_PREFIX.sub("", base)]))


def is_url_or_absolute(name: str) -> bool:
    """True for ``http://host/x.png``, ``s3://b/x.png`` or ``/data/upload/1/x.png``."""
    return "://" in name or name.startswith("/")


def normalise_rel_path(name: str) -> str:
    """A safe relative path in one spelling: ``/`` separators, no ``.`` components."""
    return "/".join(p for p in PureWindowsPath(name).parts if p not in (".", ""))


def check_export(
    chips: Sequence[Chip], boxes: dict[int, Boxes] | Any, classes: Sequence[str]
) -> dict[int, Chip]:
    """Index chips by id and refuse boxes an exporter cannot write faithfully.

    FormatError for: a chip id given twice, boxes for a chip not exported, a class index
    outside ``classes``, non-finite coordinates or scores.
    """
    by_id: dict[int, Chip] = {}
    for chip in chips:
        if chip.id in by_id:
            raise FormatError(f"chip {chip.id} is listed twice in the export")
        by_id[chip.id] = chip
    for chip_id, b in boxes.items():
        if chip_id not in by_id:
            raise FormatError(f"boxes given for chip {chip_id}, which is not among the chips")
        if len(b) and (b.cls.min() < 0 or b.cls.max() >= len(classes)):
            raise FormatError(
                f"chip {chip_id}: class index outside 0..{len(classes) - 1} ({list(classes)})"
            )
        if not np.isfinite(b.xyxy).all() or (
            b.score is not None and not np.isfinite(b.score).all()
        ):
            raise FormatError(f"chip {chip_id}: boxes with NaN or infinite values")
    return by_id
