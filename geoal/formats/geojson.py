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
- otherwise the chips passed in ``chips`` that the file covers: a chip that holds one of
  its boxes, or, on a scene the features reach, a chip at least half inside the bounding
  box of the features on that scene (a labelled negative when it holds none). Chips of
  other scenes (other places, other UTM zones) and chips beyond the labelled area are
  left alone and listed in ``uncovered``: a label file never says "nothing here" about
  a place it does not cover.

Predictions are not labels: a feature with ``kind: "prediction"`` (geoal's export) or a
number in ``score`` or ``confidence`` (``geoal predict``, ``geoal map``) is listed in
``predictions`` for the caller to refuse unless the user accepts them.

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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geoal.errors import FormatError
from geoal.formats._check import as_int, as_number, check_export, class_lookup
from geoal.formats.records import Boxes, ImportResult, Problem
from geoal.raster.chip import Chip
from geoal.raster.footprint import WGS84, crs_to_pixel, pixel_to_crs, to_wgs84

if TYPE_CHECKING:
    import geopandas as gpd

GEOJSON_CRS = ("scene", WGS84)
"""Valid values of ``to_geojson(crs=...)``; ``geoal export --crs auto`` picks one with
:func:`auto_crs`."""

VISIBLE_SLACK = 1e-9
"""Float slack on ``min_visible``: a box exactly at the threshold is kept."""


def auto_crs(chips: Sequence[Chip]) -> str:
    """``"scene"`` when all chips share one CRS with an EPSG code, else ``"EPSG:4326"``.

    A round with scenes in several UTM zones cannot be written in one projected CRS, and
    GeoJSON holds one; lon/lat is what RFC 7946 asks for anyway.
    """
    from pyproj import CRS

    wkts = {c.crs for c in chips if c.crs}
    if not wkts:
        return "scene"  # pixel-only or empty: to_geojson says what is wrong
    crs = [CRS.from_user_input(w) for w in wkts]
    same = all(crs[0].equals(other) for other in crs[1:])
    return "scene" if same and crs[0].to_epsg() is not None else WGS84


def to_geojson(
    chips: Sequence[Chip],
    boxes: Mapping[int, Boxes],
    classes: Sequence[str],
    crs: str = "scene",
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of chip footprints and boxes, in the scene CRS or EPSG:4326
    (``crs="auto"``: the scene CRS when the chips share one, else EPSG:4326).

    FormatError for a pixel-only chip, for ``crs="scene"`` with chips in different CRSs or
    in a CRS without an EPSG code, and for an unknown ``crs``.
    """
    if crs == "auto":
        crs = auto_crs(chips)
    if crs not in GEOJSON_CRS:
        raise FormatError(f"--crs {crs}: choose scene, EPSG:4326 or auto")
    by_id = check_export(chips, dict(boxes), classes)
    for chip in by_id.values():
        if chip.crs is None:
            raise FormatError(
                f"chip {chip.id} of scene {chip.scene.name!r} has no CRS (pixel "
                "coordinates only): GeoJSON needs georeferenced scenes; export COCO or YOLO"
            )
    out: dict[str, Any] = {"type": "FeatureCollection"}
    if crs == "scene" and by_id:
        out["crs"] = _scene_crs_member(list(by_id.values()))
    projectors: dict[str | None, Any] = {c.crs: _projector(c.crs, crs) for c in by_id.values()}
    rings = _footprint_rings(list(by_id.values()), crs)
    features: list[dict[str, Any]] = []
    for chip, footprint in zip(by_id.values(), rings, strict=True):
        properties = {
            "kind": "chip",
            "chip_id": chip.id,
            "scene": chip.scene.name,
            "scene_id": chip.scene_id,
            "window": list(chip.window),
        }
        features.append(_feature(footprint, properties))
        b = boxes.get(chip.id)
        if b is not None and len(b):
            features.extend(_box_features(chip, b, classes, projectors[chip.crs]))
    out["features"] = features
    return out


def _scene_crs_member(chips: Sequence[Chip]) -> dict[str, Any]:
    """The legacy ``crs`` member naming the chips' one scene CRS by its EPSG code.

    FormatError when the chips' scenes are in different CRSs, or theirs has no EPSG code.
    """
    from pyproj import CRS

    crs_objs = [CRS.from_user_input(c) for c in {chip.crs for chip in chips} if c]
    first = crs_objs[0]
    if any(not first.equals(other) for other in crs_objs[1:]):
        names = sorted({chip.scene.name for chip in chips})
        raise FormatError(
            f"the chips' scenes {names} are in different CRSs: export with "
            "--crs EPSG:4326 (or --crs auto)"
        )
    code = first.to_epsg()
    if code is None:
        raise FormatError(
            f"the scenes' CRS ({first.name}) has no EPSG code to declare in GeoJSON: "
            "export with --crs EPSG:4326 (or --crs auto)"
        )
    return {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{code}"}}


def _box_features(
    chip: Chip, b: Boxes, classes: Sequence[str], project: Any
) -> list[dict[str, Any]]:
    """One polygon feature per box of ``chip``: its 4 corners mapped exactly by ``project``."""
    x1, y1, x2, y2 = b.xyxy.T
    cols = np.stack([x1, x2, x2, x1], axis=1)
    rows = np.stack([y1, y1, y2, y2], axis=1)
    xs, ys = pixel_to_crs(chip.transform, cols, rows)
    xs, ys = project(xs, ys)
    kind = "prediction" if b.score is not None else "label"
    return [
        _feature(
            np.column_stack([xs[i], ys[i]]),
            {
                "kind": kind,
                "chip_id": chip.id,
                "class": classes[int(b.cls[i])],
                "class_id": int(b.cls[i]),
                "score": None if b.score is None else float(b.score[i]),
            },
        )
        for i in range(len(b))
    ]


def _projector(src: str | None, dst: str) -> Any:
    """(xs, ys) -> (xs, ys) from the chip's CRS to the export CRS (identity for "scene")."""
    if dst == "scene":
        return lambda xs, ys: (xs, ys)
    from pyproj import CRS, Transformer

    t = Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)
    return t.transform


def _footprint_rings(chips: Sequence[Chip], crs: str) -> list[np.ndarray]:
    """Each chip's footprint as an open ring (K, 2) in the export CRS.

    In EPSG:4326 the edges are densified (:func:`geoal.raster.footprint.to_wgs84`), one
    transformation per scene CRS.
    """
    import shapely

    corners = [c.corners for c in chips]
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


def read_geojson(path: str | Path, layer: str | None = None) -> gpd.GeoDataFrame:
    """Read a vector file (or one ``layer`` of it) into a GeoDataFrame.

    FormatError naming the file when it is unreadable, has no CRS, has several layers and
    none is named (a GeoPackage from ``geoal map`` or QGIS: reading the first one would
    import the wrong features), or holds coordinates that cannot be the lon/lat its CRS
    says (a GeoJSON without a ``crs`` member is EPSG:4326 by RFC 7946; UTM metres saved
    that way would land nowhere).
    """
    import geopandas as gpd
    import pyogrio

    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
    except Exception as exc:  # pyogrio raises several types for missing / corrupt files
        raise FormatError(f"{path}: cannot read as GeoJSON ({exc})") from exc
    if layer is None and len(layers) > 1:
        raise FormatError(
            f"{path}: has {len(layers)} layers ({', '.join(layers)}); name the one holding "
            "the labels with --layer NAME"
        )
    if layer is not None and layer not in layers:
        raise FormatError(f"{path}: no layer {layer!r}; it has {', '.join(layers)}")
    try:
        gdf = gpd.read_file(path, engine="pyogrio", layer=layer)
    except Exception as exc:
        raise FormatError(f"{path}: cannot read as GeoJSON ({exc})") from exc
    if gdf.crs is None:
        raise FormatError(f"{path}: no CRS; declare one (or write lon/lat EPSG:4326)")
    if gdf.crs.is_geographic and len(gdf) and not gdf.geometry.is_empty.all():
        x1, y1, x2, y2 = gdf.total_bounds
        if min(x1, y1) < -360 or max(x2, y2) > 360:
            raise FormatError(
                f"{path}: coordinates such as ({x1:.1f}, {y1:.1f}) are not longitude/latitude, "
                f"but the file's CRS is {gdf.crs.name} (a GeoJSON without a 'crs' member is "
                "read as EPSG:4326); save it with its real CRS (in QGIS: Export > Save "
                "Features As, choosing the CRS)"
            )
    return gdf


CLASS_FIELDS = ("class", "label", "category", "name", "type")
"""Properties searched, in this order, for a feature's class when none is named."""

PREDICTION_FIELDS = ("score", "confidence")
"""Properties whose number marks a feature as a model's detection (geoal export, predict, map)."""

MIN_COVERED = 0.5
"""Share of a chip that must lie inside the file's extent for an empty chip to be a negative."""


@dataclass
class _Found:
    """Where the candidate features (K of them) landed, per labelled chip and per feature.

    ``boxes``: chip id -> [(candidate position, clipped box in chip px, class index)];
    ``seen`` (K,) overlaps some labelled chip; ``flat`` (K,) no area in pixel space;
    ``broken`` (K,) could not be reprojected; ``uncovered``: chips the file does not cover.
    """

    boxes: dict[int, list[tuple[int, tuple[float, float, float, float], int]]]
    seen: np.ndarray
    flat: np.ndarray
    broken: np.ndarray
    uncovered: list[int] = field(default_factory=list)


def from_geojson(
    features: gpd.GeoDataFrame,
    chips: Sequence[Chip],
    classes: Sequence[str],
    class_field: str | None = "class",
    min_visible: float = 0.5,
    source: str = "geojson",
) -> ImportResult:
    """Labels from features in any CRS, mapped onto chips (see the module docstring).

    Boxes come back in chip pixels, clipped to the chip. ``class_field=None`` finds the
    class property among :data:`CLASS_FIELDS`; class names match ignoring case. Problems: no
    CRS, no class property, unknown class, empty or invalid geometry, a geometry without
    area in pixel space, a chip feature or chip_id naming an unknown chip. Features a model
    made are listed in ``predictions``; chips the file does not cover in ``uncovered``.
    """
    if not 0.0 < min_visible <= 1.0:
        raise ValueError(f"min_visible must be in (0, 1], got {min_visible}")
    problems: list[Problem] = []
    info: list[str] = []

    def report(where: str, message: str) -> None:
        problems.append(Problem(source, where, message))

    if features.crs is None:
        report("file", "the features have no CRS: cannot place them on the scenes")
        return ImportResult({}, problems)
    n = len(features)
    kind = _column(features, "kind", n)
    chip_col = _column(features, "chip_id", n)
    is_chip = np.array([k == "chip" for k in kind], dtype=bool)
    labelled = _labelled_chips(chips, chip_col, is_chip, report)
    lookup = class_lookup(classes)
    field_name = _class_field(features, ~is_chip, class_field, lookup)
    if field_name is None and not is_chip.all():
        props = [str(c) for c in features.columns if c != "geometry"][:12]
        named = repr(class_field) if class_field else f"class ({', '.join(CLASS_FIELDS)})"
        report(
            "file",
            f"no {named} property: cannot tell the features' classes (the file has {props}); "
            "give --class-field NAME, or --class NAME to give every feature one class",
        )
        return ImportResult({}, problems)
    if field_name is not None and class_field is None:
        info.append(f"classes from property {field_name!r}")
    names = _column(features, field_name, n) if field_name is not None else [None] * n
    cand, cand_cls, target = _candidates(
        features, names, field_name, chip_col, is_chip, classes, labelled, report
    )
    by_extent = not is_chip.any()  # no chip features: the features' extent says what is covered
    found = _place(features, cand, cand_cls, target, labelled, min_visible, by_extent)
    notes, predicted = _report_features(
        found, cand, target, _prediction_marks(features, kind, n), source, report
    )
    labels: dict[int, Boxes] = {}
    for cid, items in found.boxes.items():
        items.sort(key=lambda t: t[0])  # file order, whatever the CRS groups' order
        labels[cid] = (
            Boxes(np.array([t[1] for t in items]), np.array([t[2] for t in items]))
            if items
            else Boxes.empty()
        )
    return ImportResult(
        labels, problems, notes=notes, predictions=predicted, uncovered=found.uncovered, info=info
    )


def _labelled_chips(
    chips: Sequence[Chip],
    chip_col: list[Any],
    is_chip: np.ndarray,
    report: Callable[[str, str], None],
) -> dict[int, Chip]:
    """The chips the file labels: those its chip features name, or (none) every chip given.

    A chip feature naming an unknown chip, and a pixel-only chip, are reported.
    """
    chips_by_id = {c.id: c for c in chips}
    labelled: dict[int, Chip] = {}
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
    return labelled


def _candidates(
    features: gpd.GeoDataFrame,
    names: list[Any],
    field_name: str | None,
    chip_col: list[Any],
    is_chip: np.ndarray,
    classes: Sequence[str],
    labelled: Mapping[int, Chip],
    report: Callable[[str, str], None],
) -> tuple[list[int], list[int], list[int | None]]:
    """The box features worth placing: (feature rows, class indexes, fixed chip or None).

    A feature with an unknown class, an empty or invalid geometry, or a ``chip_id`` that
    names no labelled chip is reported and left out.
    """
    import shapely

    lookup = class_lookup(classes)
    geoms = np.asarray(features.geometry.values, dtype=object)
    cand: list[int] = []
    cand_cls: list[int] = []
    target: list[int | None] = []  # fixed chip (from chip_id) or None = any it overlaps
    for i in np.flatnonzero(~is_chip).tolist():
        where = f"feature {i}"
        name = names[i]
        if _missing(name):
            report(where, f"no {field_name!r} value: unknown class")
            continue
        cls = lookup(name)
        if cls is None:
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
        cand_cls.append(cls)
        target.append(fixed)
    return cand, cand_cls, target


def _place(
    features: gpd.GeoDataFrame,
    cand: list[int],
    cand_cls: list[int],
    target: list[int | None],
    labelled: Mapping[int, Chip],
    min_visible: float,
    by_extent: bool,
) -> _Found:
    """Map the candidate features onto the labelled chips, one scene CRS at a time."""
    import shapely

    found = _Found(
        boxes={c: [] for c in labelled},
        seen=np.zeros(len(cand), dtype=bool),
        flat=np.zeros(len(cand), dtype=bool),
        broken=np.zeros(len(cand), dtype=bool),
    )
    fixed_arr = np.array([-1 if t is None else t for t in target], dtype=np.int64)
    groups: dict[str, list[Chip]] = {}
    for chip in labelled.values():
        groups.setdefault(chip.crs, []).append(chip)  # type: ignore[arg-type]
    for crs, group in groups.items():
        if not cand:
            found.uncovered.extend(c.id for c in group if by_extent)
            continue
        in_crs = np.asarray(features.geometry.iloc[cand].to_crs(crs).values, dtype=object)
        footprints = _footprints(group)
        feat_idx, chip_idx = shapely.STRtree(footprints).query(in_crs, predicate="intersects")
        free = fixed_arr[feat_idx] < 0
        pairs: dict[int, list[int]] = {}
        for f, c in zip(feat_idx[free], chip_idx[free], strict=True):
            pairs.setdefault(int(c), []).append(int(f))
        pos = {chip.id: k for k, chip in enumerate(group)}
        for f in np.flatnonzero(fixed_arr >= 0).tolist():
            if int(fixed_arr[f]) in pos:
                pairs.setdefault(pos[int(fixed_arr[f])], []).append(int(f))
        for c, fs in sorted(pairs.items()):
            _place_on_chip(
                group[c], np.array(sorted(fs), dtype=np.int64), in_crs, cand_cls, found, min_visible
            )
        if by_extent:
            covered = _covered(group, footprints, in_crs, feat_idx, chip_idx, found.boxes)
            found.uncovered.extend(c.id for c, ok in zip(group, covered, strict=True) if not ok)
    for cid in found.uncovered:
        found.boxes.pop(cid, None)
    return found


def _place_on_chip(
    chip: Chip,
    fs: np.ndarray,
    in_crs: np.ndarray,
    cand_cls: list[int],
    found: _Found,
    min_visible: float,
) -> None:
    """Record the candidates ``fs`` (F,) that overlap ``chip``: kept boxes, and why not."""
    xyxy = _pixel_bounds(in_crs[fs], chip)
    kept, vis, area_ok = _clip(xyxy, chip.width, chip.height, min_visible)
    finite = np.isfinite(xyxy).all(axis=1)
    found.seen[fs[vis]] = True
    found.flat[fs[finite & ~area_ok]] = True
    found.broken[fs[~finite]] = True
    for fk, box in zip(fs[kept].tolist(), xyxy[kept], strict=True):
        clipped = (
            max(float(box[0]), 0.0),
            max(float(box[1]), 0.0),
            min(float(box[2]), float(chip.width)),
            min(float(box[3]), float(chip.height)),
        )
        found.boxes[chip.id].append((fk, clipped, cand_cls[fk]))


def _report_features(
    found: _Found,
    cand: list[int],
    target: list[int | None],
    marks: list[str],
    source: str,
    report: Callable[[str, str], None],
) -> tuple[list[Problem], list[Problem]]:
    """Report the candidates that landed nowhere; returns (notes, model's detections kept)."""
    notes: list[Problem] = []
    predicted: list[Problem] = []
    kept_any = {fk for items in found.boxes.values() for fk, _, _ in items}
    for k, i in enumerate(cand):
        if found.broken[k]:
            report(f"feature {i}", "cannot be reprojected into the scene's CRS")
        elif found.flat[k]:
            report(f"feature {i}", "geometry has no area in pixel space (a point or a line?)")
        elif not found.seen[k] and target[k] is not None:
            report(f"feature {i}", f"feature lies outside its chip {target[k]}")
        elif not found.seen[k]:
            notes.append(
                Problem(source, f"feature {i}", "feature lies outside every labelled chip")
            )
        if k in kept_any and marks[i]:
            predicted.append(Problem(source, f"feature {i}", f"a model's detection ({marks[i]})"))
    if len(cand) and len(notes) == len(cand):
        report(
            "file",
            "no feature lies on any of the chips being labelled: is the file for this place?",
        )
    return notes, predicted


def _class_field(
    features: gpd.GeoDataFrame,
    rows: np.ndarray,
    wanted: str | None,
    lookup: Callable[[object], int | None],
) -> str | None:
    """The property naming the features' classes: ``wanted`` (any case), or, when None, the
    first of :data:`CLASS_FIELDS` present that names a project class in some feature (else
    the first present, so its unknown names are reported)."""
    columns = [str(c) for c in features.columns if c != "geometry"]
    by_fold: dict[str, str] = {}
    for c in columns:
        by_fold.setdefault(c.casefold(), c)
    if wanted is not None:
        return wanted if wanted in columns else by_fold.get(wanted.casefold())
    present = [by_fold[f] for f in CLASS_FIELDS if f in by_fold]
    for c in present:
        values = features.loc[rows, c].dropna().unique().tolist()
        if any(lookup(v) is not None for v in values):
            return c
    return present[0] if present else None


def _prediction_marks(features: gpd.GeoDataFrame, kind: list[Any], n: int) -> list[str]:
    """Per feature, why it is a model's detection ("" for none): ``kind: prediction`` as
    geoal exports them, or, unless its ``kind`` is ``label``, a number in ``score`` /
    ``confidence`` (geoal predict, map)."""
    marks = ["kind 'prediction'" if k == "prediction" else "" for k in kind]
    for name in PREDICTION_FIELDS:
        for i, v in enumerate(_column(features, name, n)):
            if not marks[i] and kind[i] != "label" and as_number(v) is not None and v == v:
                marks[i] = f"property {name!r} = {float(v):.3g}"
    return marks


def _covered(
    group: Sequence[Chip],
    footprints: np.ndarray,
    geoms: np.ndarray,
    feat_idx: np.ndarray,
    chip_idx: np.ndarray,
    found: Mapping[int, list[Any]],
) -> np.ndarray:
    """Which chips (N,) bool of one CRS the file covers: a chip that holds one of its boxes,
    or one whose scene the features reach and that lies at least :data:`MIN_COVERED` inside
    the bounding box of the features on that scene."""
    import shapely

    out = np.array([bool(found.get(c.id)) for c in group], dtype=bool)
    bounds = shapely.bounds(geoms)
    scene_of = np.array([c.scene_id for c in group])
    for scene in np.unique(scene_of).tolist():
        on_scene = np.unique(feat_idx[scene_of[chip_idx] == scene])
        b = bounds[on_scene]
        b = b[np.isfinite(b).all(axis=1)]
        if not len(b):
            continue
        extent = shapely.box(b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
        mine = np.flatnonzero(scene_of == scene)
        inside = shapely.area(shapely.intersection(footprints[mine], extent))
        share = inside / np.maximum(shapely.area(footprints[mine]), 1e-300)
        out[mine] |= share >= MIN_COVERED - VISIBLE_SLACK
    return out


def _column(gdf: gpd.GeoDataFrame, name: str, n: int) -> list[Any]:
    """A property column as a list (None everywhere when absent)."""
    if name not in gdf.columns:
        return [None] * n
    return list(gdf[name])


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _footprints(group: Sequence[Chip]) -> np.ndarray:
    """Chip footprints (N,) shapely Polygons in their scene CRS, from each chip's transform."""
    import shapely

    return shapely.polygons(np.stack([c.corners for c in group]))


def _pixel_bounds(geoms: np.ndarray, chip: Chip) -> np.ndarray:
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
