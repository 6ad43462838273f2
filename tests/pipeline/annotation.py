"""Helpers of the annotation and report tests: the CLI, a project of real scenes, and the
store read through its typed queries (never raw SQL)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from click.testing import CliRunner, Result

from geoal.cli import main
from geoal.store import Store
from geoal.store import labels as label_store

T = TypeVar("T")


def run(*args: str, ok: bool = True) -> Result:
    """``geoal ARGS``; with ``ok``, it must succeed."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def make_project(tmp_path: Path, geotiff: Path, classes: str, *scenes: str) -> Path:
    """A project of real scenes tiled in 200 px chips without overlap."""
    proj = tmp_path / "p"
    run("init", str(proj), "--classes", classes)
    paths = [str(geotiff / s) for s in scenes]
    run("-p", str(proj), "tile", *paths, "--size", "200", "--overlap", "0", "-q")
    return proj


def trees_round(tmp_path: Path, geotiff: Path, k: int, classes: str = "tree") -> Path:
    """The real 0.1 m RGB raster (osbs029) in 200 px chips, with a random round of k chips."""
    proj = make_project(tmp_path, geotiff, classes, "osbs029_rgb_10cm.tif")
    run("-p", str(proj), "select", "-k", str(k), "-s", "random")
    return proj


def export_coco(proj: Path, folder: Path, round_id: int = 1) -> dict[str, Any]:
    """``geoal export -f coco`` of the latest open round into ``folder``; the COCO dict."""
    run("-p", str(proj), "export", "-f", "coco", "-o", str(folder))
    return json.loads((folder / f"round{round_id}_coco.json").read_text())


def read(proj: Path, query: Callable[..., T], *args: object) -> T:
    """``query(conn, *args)`` on the project's store."""
    with Store(proj / "geoal.db") as store:
        return query(store.conn, *args)


def labelled_boxes(proj: Path) -> dict[int, np.ndarray]:
    """Each labelled chip's labels: (K, 5) [x1, y1, x2, y2, class_id] in chip pixels (K = 0: a
    negative), chips in id order, labels in the order they were stored."""
    with Store(proj / "geoal.db") as store:
        conn = store.conn
        return label_store.label_arrays(conn, label_store.labelled_chip_ids(conn))


def labelled_scene_names(proj: Path) -> list[str]:
    """The scenes holding a labelled chip, in the order they were added."""
    with Store(proj / "geoal.db") as store:
        conn = store.conn
        chips = label_store.chip_rows(conn, label_store.labelled_chip_ids(conn))
        scene_ids = {c.scene_id for c in chips}
        return [s.name for s in store.scenes() if s.id in scene_ids]


def export_labelstudio(proj: Path, folder: Path, *options: str, ok: bool = True) -> Result:
    """``geoal export -f labelstudio -o FOLDER OPTIONS`` of the latest open round."""
    return run("-p", str(proj), "export", "-f", "labelstudio", "-o", str(folder), *options, ok=ok)
