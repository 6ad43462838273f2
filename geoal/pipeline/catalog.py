"""Scenes and chips: add scenes (tile), report status, write the chip map.

Each function here takes an open :class:`~geoal.project.Project`, calls the
pure/IO functions of one or more stages and writes the results to the store.
The CLI is a thin layer over these.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoal.config import TilingConfig
from geoal.errors import GeoalError, ProjectError, environment_problem
from geoal.project import Project
from geoal.raster.scene import (
    NOT_RASTER_SUFFIXES,
    canonical_path,
    catalogue,
    expand_inputs,
    interruptible,
)
from geoal.store.catalog import chip_count, chip_statuses, latest_scene_model, scene_detections

__all__ = [
    "check_scenes_unchanged",
    "expand_inputs",
    "project_status",
    "tile_scenes",
    "write_chip_map",
]


_THIS_FILE_ONLY = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG}
"""Errors of one file (the next one may be fine); a full disk or a read-only store stop the batch."""


@dataclass
class TileReport:
    """What ``geoal tile`` did: scenes added, problems per file, warnings."""

    added: list[dict[str, Any]] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)  # known scenes found at a new path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # given again, or not rasters: notes


def tile_scenes(
    project: Project, inputs: Sequence[str], tiling: TilingConfig, *, progress: bool = True
) -> TileReport:
    """Add scenes (files, globs, folders, GDAL URLs) and record their chip grids.

    Each scene is stored in its own transaction: a bad file is reported and
    skipped, the others are added, nothing is half-written. A file already added
    (a resumed run) is a note in ``already``. A file with the content of a scene whose
    file is gone is that scene, moved: its path is updated. A full disk or a store that
    cannot be written stops the batch: the scenes added before it are kept.
    """
    from tqdm import tqdm

    report = TileReport()
    paths, problems = expand_inputs(inputs)
    report.errors.extend(problems)
    for path in [p for p in paths if Path(p).suffix.lower() in NOT_RASTER_SUFFIXES]:
        report.already.append(f"{path}: not a raster ({Path(path).suffix} file)")
        paths.remove(path)
    if report.already and not paths:
        report.errors.append("no raster among the files given (GeoTIFF, COG, VRT, JPEG, PNG...)")
    store = project.store
    bar = tqdm(paths, desc="tiling", unit="scene", disable=not progress or len(paths) < 2)
    for k, path in enumerate(bar):
        bar.set_postfix_str(Path(path).name)
        try:
            known = store.find_scene(canonical_path(path))
            if known is not None:
                report.already.append(f"{path}: already added as scene {known.id} ({known.name})")
                continue
            cat = interruptible(catalogue, path, tiling)
            known = store.find_scene(cat.scene.path, cat.scene.fingerprint)
            if known is not None and _gone(known.path):
                # the tiled file moved: the same content here is that scene, chips and all
                store.move_scene(known.id, cat.scene.path)
                report.moved.append(
                    f"scene {known.id} ({known.name}) moved from {known.path} to "
                    f"{cat.scene.path}; its chips, labels and scores stay as they were"
                )
                continue
            if known is not None:
                raise ProjectError(
                    f"{path}: same content as scene {known.id} ({known.path}); not added twice"
                )
            scene_id = store.insert_scene(cat.scene, cat.windows, cat.valid)
        except GeoalError as exc:
            report.errors.append(str(exc))
            continue
        except (OSError, sqlite3.OperationalError) as exc:
            problem = environment_problem(exc)
            if problem is None:
                raise
            if isinstance(exc, OSError) and exc.errno in _THIS_FILE_ONLY:
                report.errors.append(str(problem))
                continue
            left = len(paths) - k - 1
            report.errors.append(
                f"{path}: not added: {problem}"
                + (f"; stopped, {left} file(s) not tried" if left else "")
            )
            break
        report.warnings.extend(cat.warnings)
        report.added.append(
            {
                "scene_id": scene_id,
                "path": cat.scene.path,
                "chips": len(cat.windows),
                "skipped_nodata": cat.skipped,
            }
        )
    return report


def check_scenes_unchanged(project: Project, scene_ids: Iterable[int]) -> None:
    """RasterError if one of these scenes' files changed since it was tiled.

    Commands call it before they read (and write) anything, so that no chip image,
    detection or training example comes from pixels the stored chips do not refer to.
    """
    from geoal.raster.scene import check_scenes

    wanted = set(scene_ids)
    check_scenes(s for s in project.store.scenes() if s.id in wanted)


def _gone(path: str) -> bool:
    """Whether a stored local scene path names no file any more."""
    return not (path.startswith("/vsi") or "://" in path) and not Path(path).exists()


def project_status(project: Project) -> dict[str, Any]:
    """Counts and per-scene rows, as printed by ``geoal status``."""
    from pyproj import CRS

    scenes = project.store.scene_summaries()
    for row in scenes:
        wkt = row.pop("crs")
        row["crs"] = _crs_name(CRS, wkt)
    return {
        "project": str(project.root),
        "name": project.config.name,
        "classes": list(project.config.classes),
        "counts": project.store.counts(),
        "scenes": scenes,
    }


def _crs_name(crs_cls: Any, wkt: str | None) -> str:
    if wkt is None:
        return "pixels"
    crs = crs_cls.from_wkt(wkt)
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.name


def chip_table(project: Project) -> list[dict[str, Any]]:
    """Every chip with its scene, window, state and latest score (for maps and reports)."""
    aggregation = project.config.score.aggregation
    out = []
    for chip in chip_statuses(project.store):
        col_off, row_off, width, height = chip.window
        state = (
            "labelled"
            if chip.labelled
            else "selected"
            if chip.selected
            else "scored"
            if chip.scores is not None
            else "new"
        )
        out.append(
            {
                "chip_id": chip.chip_id,
                "scene_id": chip.scene_id,
                "col_off": col_off,
                "row_off": row_off,
                "width": width,
                "height": height,
                "valid_fraction": chip.valid_fraction,
                "labelled": int(chip.labelled),
                "selected": int(chip.selected),
                "score": None if chip.scores is None else chip.scores.get(aggregation),
                "state": state,
            }
        )
    return out


def write_chip_map(project: Project, out: Path) -> dict[str, int]:
    """GeoPackage of chip footprints: one layer per scene in its own CRS, plus 'chips_wgs84'.

    Columns: chip_id, scene, col_off, row_off, width, height, valid_fraction,
    state (new | scored | selected | labelled) and score (latest, default aggregation).
    When chips have been scored, 'objects_<scene>' layers hold the latest model's stored
    detections lifted to the scene and merged across overlapping chips (the merge of
    ``geoal predict``). Written to a temporary file and renamed, so an existing map is
    never half-replaced.
    """
    import geopandas as gpd

    from geoal.formats.io import writable_folder
    from geoal.raster.footprint import WGS84, scene_footprints, to_wgs84

    scenes = {s.id: s for s in project.store.scenes()}
    if not scenes:
        raise ProjectError(f"{project.root}: no scenes yet; add some with 'geoal tile SCENE...'")
    table = chip_table(project)
    out = Path(out)
    writable_folder(out.parent)
    tmp = out.with_name(out.name + ".tmp.gpkg")
    tmp.unlink(missing_ok=True)
    layers: dict[str, int] = {}
    wgs_frames = []
    for scene in scenes.values():
        rows = [r for r in table if r["scene_id"] == scene.id]
        if not rows:
            continue
        windows = np.array([[r["col_off"], r["row_off"], r["width"], r["height"]] for r in rows])
        polys = scene_footprints(scene, windows)
        attrs = {
            "chip_id": [r["chip_id"] for r in rows],
            "scene": scene.name,
            "col_off": windows[:, 0],
            "row_off": windows[:, 1],
            "width": windows[:, 2],
            "height": windows[:, 3],
            "valid_fraction": [r["valid_fraction"] for r in rows],
            "state": [r["state"] for r in rows],
            # float even before any chip is scored (None = NaN = NULL): a numeric field in QGIS
            "score": np.array(
                [np.nan if r["score"] is None else r["score"] for r in rows], dtype=np.float64
            ),
        }
        frame = gpd.GeoDataFrame(attrs, geometry=polys, crs=scene.crs)
        layer = _layer_name(scene.name, scene.id, layers)
        frame.to_file(tmp, layer=layer, driver="GPKG")
        layers[layer] = len(frame)
        wgs = to_wgs84(polys, scene.crs)
        if wgs is not None:
            wgs_frames.append(gpd.GeoDataFrame(attrs, geometry=wgs, crs=WGS84))
        objects = stored_scene_objects(project, scene)
        if objects is not None and len(objects.objects):
            from geoal.predict.scene import objects_frame

            name = "objects_" + layer[len("chips_") :]
            objects_frame(objects, project.config.classes).to_file(tmp, layer=name, driver="GPKG")
            layers[name] = len(objects.objects)
    if wgs_frames:
        import pandas as pd

        combined = gpd.GeoDataFrame(pd.concat(wgs_frames, ignore_index=True), crs=WGS84)
        combined.to_file(tmp, layer="chips_wgs84", driver="GPKG")
        layers["chips_wgs84"] = len(combined)
    tmp.replace(out)
    return layers


def stored_scene_objects(project: Project, scene: Any, model_hash: str | None = None) -> Any:
    """The stored detections of a scene's chips lifted to scene pixels and merged (or None).

    Uses the latest model that scored chips unless ``model_hash`` is given; returns a
    :class:`~geoal.predict.scene.SceneDetections`.
    """
    from geoal.predict.merge import merge_detections
    from geoal.predict.scene import SceneDetections
    from geoal.uncertainty import entropy

    if model_hash is None:
        model_hash = latest_scene_model(project.store, scene.id)
        if model_hash is None:
            return None
    dets, probs = scene_detections(project.store, scene.id, model_hash, len(project.config.classes))
    raw = np.zeros((len(dets.confidence), 7))
    raw[:, :4] = dets.xyxy
    raw[:, 4] = dets.confidence
    raw[:, 5] = dets.class_ids
    if len(raw):
        raw[:, 6] = entropy(probs)
    raw[:, [0, 2]] = raw[:, [0, 2]].clip(0, scene.width)
    raw[:, [1, 3]] = raw[:, [1, 3]].clip(0, scene.height)
    merged, _ = merge_detections(raw)
    n_chips = chip_count(project.store, scene.id)
    return SceneDetections(
        path=scene.path,
        name=scene.name,
        crs=scene.crs,
        transform=scene.transform,
        objects=merged,
        chips=int(n_chips),
        raw_detections=len(raw),
        seconds=0.0,
    )


def _layer_name(name: str, scene_id: int, taken: dict[str, int]) -> str:
    safe = "".join(ch if ch.isalnum() else "_" for ch in name)[:40] or "scene"
    layer = f"chips_{safe}"
    return layer if layer not in taken else f"{layer}_{scene_id}"
