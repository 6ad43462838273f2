"""GeoJSON: chip footprints and boxes as polygons in map coordinates, and labels back.

Export writes one ``kind: "chip"`` feature per chip (its footprint) and one feature per box
(``kind: "label"`` or ``"prediction"``), either in the scenes' own CRS (all chips must share
it; declared with the legacy ``crs`` member as ``urn:ogc:def:crs:EPSG::<code>``, which GDAL,
pyogrio and QGIS read) or in EPSG:4326 lon/lat as RFC 7946 wants. Box polygons are the four
box corners mapped exactly (not densified), so a round trip through any CRS gives the same
corners back. Pixel-only scenes cannot be exported to GeoJSON.

Which chips a GeoJSON import labels:

- if the file has ``kind: "chip"`` features (as this exporter writes), exactly the chips
  they name, each possibly a labelled negative;
- otherwise every chip passed in ``chips`` (the caller passes the round's chips, or the
  chips a drawing session covered).

A box feature with a ``chip_id`` property that names a labelled chip goes to that chip only
(so boxes exported from overlapping chips do not double up); a feature without one goes to
every labelled chip it overlaps. Each feature becomes its axis-aligned bounding box in the
chip's pixel grid (a building polygon -> its pixel bbox), clipped to the chip, and is kept
when the visible part is at least ``min_visible`` of the whole box. A feature outside every
labelled chip is a note, not a problem (a whole-scene label file imported onto one round's
chips), unless no feature at all lands on a labelled chip, which is a problem: the file is
for another place. A feature whose ``chip_id`` names a chip it lies outside is a problem;
one that overlaps chips but is mostly outside each is neither (it belongs to a neighbour).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geoal.errors import FormatError
from geoal.formats._check import as_int, check_export
from geoal.formats.records import Boxes, ChipInfo, ImportResult, Problem
from geoal.raster.footprint import WGS84, crs_to_pixel, pixel_to_crs, to_wgs84
from geoal.raster.grid import window_corners

if TYPE_CHECKING:
    import geopandas as gpd

GEOJSON_CRS = ("scene", WGS84)
"""Valid values of ``to_geojson(crs=...)``."""

VISIBLE_SLACK = 1e-9
"""Float slack on ``min_visible``: a box exactly at the threshold is kept."""


def to_geojson(
    chips: Sequence[ChipInfo],
    boxes: Mapping[int, Boxes],
    classes: Sequence[str],
    crs: str = "scene",
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of chip footprints and boxes, in the scene CRS or EPSG:4326.

    FormatError for a pixel-only chip, for ``crs="scene"`` with chips in different CRSs or
    in a CRS without an EPSG code, and for an unknown ``crs``.
    """
    from pyproj import CRS

    if crs not in GEOJSON_CRS:
        raise FormatError(f"GeoJSON crs must be one of {list(GEOJSON_CRS)}, got {crs!r}")
    by_id = check_export(chips, dict(boxes), classes)
    for chip in by_id.values():
        if chip.crs is None:
            raise FormatError(
                f"chip {chip.chip_id} of scene {chip.scene_name!r} has no CRS (pixel "
                "coordinates only): GeoJSON needs georeferenced scenes; export COCO or YOLO"
            )
    crs_objs = {c: CRS.from_user_input(c) for c in {chip.crs for chip in by_id.values()} if c}
    out: dict[str, Any] = {"type": "FeatureCollection"}
    if crs == "scene" and crs_objs:
        first = next(iter(crs_objs.values()))
        if any(not first.equals(other) for other in crs_objs.values()):
            names = sorted({chip.scene_name for chip in by_id.values()})
            raise FormatError(
                f"the chips' scenes {names} are in different CRSs: export with "
                "crs='EPSG:4326' or one scene at a time"
            )
        code = first.to_epsg()
        if code is None:
            raise FormatError(
                f"the scenes' CRS ({first.name}) has no EPSG code to declare in GeoJSON: "
                "export with crs='EPSG:4326'"
            )
        out["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{code}"}}

    projectors: dict[str | None, Any] = {c: _projector(c, crs) for c in crs_objs}
    rings = _footprint_rings(list(by_id.values()), crs)
    features: list[dict[str, Any]] = []
    for chip, footprint in zip(by_id.values(), rings, strict=True):
        project = projectors[chip.crs]
        features.append(
            _feature(
                footprint,
                {
                    "kind": "chip",
                    "chip_id": chip.chip_id,
                    "scene": chip.scene_name,
                    "scene_id": chip.scene_id,
                    "window": list(chip.window),
                },
            )
        )
        b = boxes.get(chip.chip_id)
        if b is None or len(b) == 0:
            continue
        x1, y1, x2, y2 = b.xyxy.T
        cols = np.stack([x1, x2, x2, x1], axis=1)
        rows = np.stack([y1, y1, y2, y2], axis=1)
        xs, ys = pixel_to_crs(chip.transform, cols, rows)
        xs, ys = project(xs, ys)
        kind = "prediction" if b.score is not None else "label"
        for i in range(len(b)):
            features.append(
                _feature(
                    np.column_stack([xs[i], ys[i]]),
                    {
                        "kind": kind,
                        "chip_id": chip.chip_id,
                        "class": classes[int(b.cls[i])],
                        "class_id": int(b.cls[i]),
                        "score": None if b.score is None else float(b.score[i]),
                    },
                )
            )
    out["features"] = features
    return out


def _projector(src: str, dst: str) -> Any:
    """(xs, ys) -> (xs, ys) from the chip's CRS to the export CRS (identity for "scene")."""
    if dst == "scene":
        return lambda xs, ys: (xs, ys)
    from pyproj import CRS, Transformer

    t = Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)
    return t.transform


def _footprint_rings(chips: Sequence[ChipInfo], crs: str) -> list[np.ndarray]:
    """Each chip's footprint as an open ring (K, 2) in the export CRS.

    In EPSG:4326 the edges are densified (:func:`geoal.raster.footprint.to_wgs84`), one
    transformation per scene CRS.
    """
    import shapely

    corners = [window_corners(c.transform, np.array([[0, 0, c.width, c.height]]))[0] for c in chips]
    if crs != WGS84:
        return corners
    out: list[np.ndarray] = list(corners)
    by_crs: dict[str, list[int]] = {}
    for k, chip in enumerate(chips):
        by_crs.setdefault(chip.crs, []).append(k)  # type: ignore[arg-type]
    for src, ks in by_crs.items():
        polys = to_wgs84(shapely.polygons(np.stack([corners[k] for k in ks])), src)
        if polys is None:  # pixel-only scenes were refused before
            continue
        for k, poly in zip(ks, polys, strict=True):
            out[k] = shapely.get_coordinates(poly.exterior)[:-1]
    return out


def _feature(corners: np.ndarray, properties: dict[str, Any]) -> dict[str, Any]:
    """A Polygon feature from an open ring (K, 2), counter-clockwise as RFC 7946 asks."""
    x, y = corners[:, 0], corners[:, 1]
    if float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)) < 0:
        corners = corners[::-1]
    ring = [[float(a), float(b)] for a, b in corners]
    ring.append(list(ring[0]))
    return {
        "type": "Feature",
        "properties": properties,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


def read_geojson(path: str | Path) -> gpd.GeoDataFrame:
    """Read a vector file into a GeoDataFrame; FormatError naming the file when unreadable
    or without a CRS."""
    import geopandas as gpd

    try:
        gdf = gpd.read_file(path, engine="pyogrio")
    except Exception as exc:  # pyogrio raises several types for missing / corrupt files
        raise FormatError(f"{path}: cannot read as GeoJSON ({exc})") from exc
    if gdf.crs is None:
        raise FormatError(f"{path}: no CRS; declare one (or write lon/lat EPSG:4326)")
    return gdf


def from_geojson(
    features: gpd.GeoDataFrame,
    chips: Sequence[ChipInfo],
    classes: Sequence[str],
    class_field: str = "class",
    min_visible: float = 0.5,
    source: str = "geojson",
) -> ImportResult:
    """Labels from features in any CRS, mapped onto chips (see the module docstring).

    Boxes come back in chip pixels, clipped to the chip. Problems: no CRS, no class column,
    unknown class, empty or invalid geometry, a geometry without area in pixel space, a
    feature outside every labelled chip, a chip feature or chip_id naming an unknown chip.
    """
    import shapely

    if not 0.0 < min_visible <= 1.0:
        raise ValueError(f"min_visible must be in (0, 1], got {min_visible}")
    problems: list[Problem] = []

    notes: list[Problem] = []

    def report(where: str, message: str) -> None:
        problems.append(Problem(source, where, message))

    if features.crs is None:
        report("file", "the features have no CRS: cannot place them on the scenes")
        return ImportResult({}, problems)
    chips_by_id = {c.chip_id: c for c in chips}
    n = len(features)
    kind = _column(features, "kind", n)
    chip_col = _column(features, "chip_id", n)
    is_chip = np.array([k == "chip" for k in kind], dtype=bool)

    labelled: dict[int, ChipInfo] = {}
    for i in np.flatnonzero(is_chip).tolist():
        cid = as_int(chip_col[i])
        if cid is None or cid not in chips_by_id:
            report(f"feature {i}", f"chip feature names chip {chip_col[i]!r}, not one of the chips")
        else:
            labelled[cid] = chips_by_id[cid]
    if not is_chip.any():
        labelled = dict(chips_by_id)
    for cid, chip in list(labelled.items()):
        if chip.crs is None:
            report(f"chip {cid}", "pixel-only scene: GeoJSON features cannot be placed on it")
            del labelled[cid]
    if class_field not in features.columns and not is_chip.all():
        report("file", f"no {class_field!r} property: cannot tell the features' classes")
        return ImportResult({}, problems)

    class_index = {name: i for i, name in enumerate(classes)}
    names = _column(features, class_field, n)
    geoms = np.asarray(features.geometry.values, dtype=object)
    cand: list[int] = []
    cand_cls: list[int] = []
    target: list[int | None] = []  # fixed chip (from chip_id) or None = any it overlaps
    for i in np.flatnonzero(~is_chip).tolist():
        where = f"feature {i}"
        name = names[i]
        if _missing(name):
            report(where, f"no {class_field!r} value: unknown class")
            continue
        if not isinstance(name, str) or name not in class_index:
            report(where, f"unknown class {name!r}: not one of {list(classes)}")
            continue
        g = geoms[i]
        if g is None or shapely.is_empty(g):
            report(where, "empty geometry")
            continue
        if not shapely.is_valid(g):
            report(where, f"invalid geometry ({shapely.is_valid_reason(g)})")
            continue
        fixed = None
        if not _missing(chip_col[i]):
            fixed = as_int(chip_col[i])
            if fixed is None or fixed not in labelled:
                report(where, f"chip_id {chip_col[i]!r} is not one of the labelled chips")
                continue
        cand.append(i)
        cand_cls.append(class_index[name])
        target.append(fixed)

    # per labelled chip: (candidate position, clipped box in chip px, class index)
    found: dict[int, list[tuple[int, tuple[float, float, float, float], int]]] = {
        c: [] for c in labelled
    }
    seen = np.zeros(len(cand), dtype=bool)  # overlaps some labelled chip
    flat = np.zeros(len(cand), dtype=bool)  # no area in pixel space
    fixed_arr = np.array([-1 if t is None else t for t in target], dtype=np.int64)
    broken = np.zeros(len(cand), dtype=bool)  # could not be reprojected
    groups: dict[str, list[ChipInfo]] = {}
    for chip in labelled.values():
        groups.setdefault(chip.crs, []).append(chip)  # type: ignore[arg-type]
    for crs, group in groups.items():
        if not cand:
            break
        in_crs = np.asarray(features.geometry.iloc[cand].to_crs(crs).values, dtype=object)
        tree = shapely.STRtree(_footprints(group))
        feat_idx, chip_idx = tree.query(in_crs, predicate="intersects")
        free = fixed_arr[feat_idx] < 0
        pairs: dict[int, list[int]] = {}
        for f, c in zip(feat_idx[free], chip_idx[free], strict=True):
            pairs.setdefault(int(c), []).append(int(f))
        pos = {chip.chip_id: k for k, chip in enumerate(group)}
        for f in np.flatnonzero(fixed_arr >= 0).tolist():
            if int(fixed_arr[f]) in pos:
                pairs.setdefault(pos[int(fixed_arr[f])], []).append(int(f))
        for c, fs in sorted(pairs.items()):
            chip = group[c]
            fs_arr = np.array(sorted(fs), dtype=np.int64)
            xyxy = _pixel_bounds(in_crs[fs_arr], chip)
            kept, vis, area_ok = _clip(xyxy, chip.width, chip.height, min_visible)
            finite = np.isfinite(xyxy).all(axis=1)
            seen[fs_arr[vis]] = True
            flat[fs_arr[finite & ~area_ok]] = True
            broken[fs_arr[~finite]] = True
            for fk, box in zip(fs_arr[kept].tolist(), xyxy[kept], strict=True):
                clipped = (
                    max(float(box[0]), 0.0),
                    max(float(box[1]), 0.0),
                    min(float(box[2]), float(chip.width)),
                    min(float(box[3]), float(chip.height)),
                )
                found[chip.chip_id].append((fk, clipped, cand_cls[fk]))

    for k, i in enumerate(cand):
        if broken[k]:
            report(f"feature {i}", "cannot be reprojected into the scene's CRS")
        elif flat[k]:
            report(f"feature {i}", "geometry has no area in pixel space (a point or a line?)")
        elif not seen[k] and target[k] is not None:
            report(f"feature {i}", f"feature lies outside its chip {target[k]}")
        elif not seen[k]:
            notes.append(
                Problem(source, f"feature {i}", "feature lies outside every labelled chip")
            )
    if len(cand) and len(notes) == len(cand):
        report(
            "file",
            "no feature lies on any of the chips being labelled: is the file for this place?",
        )

    labels: dict[int, Boxes] = {}
    for cid, items in found.items():
        items.sort(key=lambda t: t[0])  # file order, whatever the CRS groups' order
        labels[cid] = (
            Boxes(np.array([t[1] for t in items]), np.array([t[2] for t in items]))
            if items
            else Boxes.empty()
        )
    return ImportResult(labels, problems, notes=notes)


def _column(gdf: gpd.GeoDataFrame, name: str, n: int) -> list[Any]:
    """A property column as a list (None everywhere when absent)."""
    if name not in gdf.columns:
        return [None] * n
    return list(gdf[name])


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _footprints(group: Sequence[ChipInfo]) -> np.ndarray:
    """Chip footprints (N,) shapely Polygons in their scene CRS, from each chip's transform."""
    import shapely

    corners = np.stack(
        [window_corners(c.transform, np.array([[0, 0, c.width, c.height]]))[0] for c in group]
    )
    return shapely.polygons(corners)


def _pixel_bounds(geoms: np.ndarray, chip: ChipInfo) -> np.ndarray:
    """Bounding boxes (N, 4) [x1, y1, x2, y2] in chip pixels of geometries in the chip's CRS."""
    import shapely

    xy, part = shapely.get_coordinates(geoms, return_index=True)
    cols, rows = crs_to_pixel(chip.transform, xy[:, 0], xy[:, 1])
    out = np.empty((len(geoms), 4))
    out[:, :2] = np.inf
    out[:, 2:] = -np.inf
    np.minimum.at(out[:, 0], part, cols)
    np.minimum.at(out[:, 1], part, rows)
    np.maximum.at(out[:, 2], part, cols)
    np.maximum.at(out[:, 3], part, rows)
    return out


def _clip(
    xyxy: np.ndarray, width: int, height: int, min_visible: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks (N,): kept (visible share >= min_visible), visible (> 0 px²), has area."""
    w = xyxy[:, 2] - xyxy[:, 0]
    h = xyxy[:, 3] - xyxy[:, 1]
    finite = np.isfinite(xyxy).all(axis=1)
    area = np.where(finite, w * h, 0.0)
    has_area = finite & (w > 0) & (h > 0)
    vw = np.clip(np.minimum(xyxy[:, 2], width) - np.maximum(xyxy[:, 0], 0), 0, None)
    vh = np.clip(np.minimum(xyxy[:, 3], height) - np.maximum(xyxy[:, 1], 0), 0, None)
    vis_area = np.where(has_area, vw * vh, 0.0)
    share = np.divide(vis_area, area, out=np.zeros_like(area), where=has_area)
    return has_area & (share >= min_visible - VISIBLE_SLACK), vis_area > 0, has_area
