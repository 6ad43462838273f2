"""A chip: a window of a scene, as rasterio's ``Window`` is a window of a dataset.

A :class:`Chip` is a frozen value: its id, its :class:`~geoal.raster.scene.Scene` and its
window ``(col_off, row_off, width, height)`` in scene pixels. Everything else (its affine
transform, its footprint, the file name of its image) is derived from those, never
stored a second time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from affine import Affine

from geoal.raster.footprint import scene_footprints
from geoal.raster.grid import window_corners, window_transform
from geoal.raster.scene import Scene, Transform6

Window = tuple[int, int, int, int]  # (col_off, row_off, width, height) in scene pixels

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def chip_file_name(scene_name: str, chip_id: int, ext: str = "png") -> str:
    """The default export path of a chip image: ``images/<scene>_<chip_id>.<ext>``.

    Characters other than letters, digits, ``.``, ``_`` and ``-`` in the scene name become
    ``_`` so the name is one safe path component on every OS.
    """
    stem = _UNSAFE.sub("_", scene_name).strip(".") or "scene"
    return f"images/{stem}_{int(chip_id)}.{ext}"


@dataclass(frozen=True)
class Chip:
    """Chip ``id``: the ``window`` (col_off, row_off, width, height) of ``scene``, in its pixels.

    ``image_ext`` is the format its image is exported in (png or jpg), which names its file.
    """

    id: int
    scene: Scene
    window: Window
    image_ext: str = "png"

    @classmethod
    def at(cls, scene: Scene, chip_id: int, window: Window | npt.ArrayLike) -> Chip:
        """The chip ``chip_id`` of ``scene`` at ``window`` (any 4 integers: a tuple, an array row)."""
        col, row, width, height = (int(v) for v in np.asarray(window).reshape(4))
        return cls(int(chip_id), scene, (col, row, width, height))

    @property
    def scene_id(self) -> int:
        """The id of the chip's scene."""
        return self.scene.id

    @property
    def width(self) -> int:
        """Chip width in pixels."""
        return self.window[2]

    @property
    def height(self) -> int:
        """Chip height in pixels."""
        return self.window[3]

    @property
    def crs(self) -> str | None:
        """The scene's CRS as WKT; None = pixel coordinates."""
        return self.scene.crs

    @property
    def transform(self) -> Transform6:
        """The chip's own affine (a, b, c, d, e, f): chip pixel -> scene CRS."""
        a, b, c, d, e, f = tuple(window_transform(Affine(*self.scene.transform), self.window))[:6]
        return (a, b, c, d, e, f)

    @property
    def corners(self) -> np.ndarray:
        """(4, 2) float64 [x, y] of the chip's corners in the scene CRS (padding included)."""
        return window_corners(self.transform, np.array([[0, 0, self.width, self.height]]))[0]

    @property
    def footprint(self) -> Any:
        """The chip's shapely Polygon in the scene CRS, cut to the scene's extent."""
        return scene_footprints(self.scene, np.array([self.window]))[0]

    @property
    def file_name(self) -> str:
        """Its image's path relative to an export folder: ``images/<scene>_<id>.<ext>``."""
        return chip_file_name(self.scene.name, self.id, self.image_ext)


def group_by_size(chips: Sequence[Chip]) -> list[list[Chip]]:
    """Chips grouped by (width, height), groups in order of first appearance, order kept."""
    groups: dict[tuple[int, int], list[Chip]] = {}
    for chip in chips:
        groups.setdefault((chip.width, chip.height), []).append(chip)
    return list(groups.values())
