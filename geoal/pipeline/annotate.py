"""The annotation round trip: export a round's chips as tasks, import labels back.

Export writes chip images (the stored stretch) and the round's chips with the
model's detections (at or above ``export.conf``) as pre-annotations in the
annotator's format; it builds the annotation file before writing any image, and a
failed export leaves nothing behind. Import validates the whole file first and
applies it in one transaction, or not at all.

A label is a human's word, so import never turns a model's guess into one: a file
whose boxes carry a model's marker (COCO ``score``, GeoJSON ``kind: prediction`` or a
confidence, a Label Studio prediction), or an export geoal wrote and nobody edited
(its digest is recorded at export), is refused unless the user passes
``accept_predictions``. Chips already labelled keep their labels unless the user asks
to replace them; the same content imported twice changes nothing for the chips it
already labelled, and labels the chips new to it (a whole-scene file, round after
round). A chip returned with no boxes is a labelled negative.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoal.errors import ConfigError, FormatError, GeoalError
from geoal.pipeline.catalog import check_scenes_unchanged
from geoal.project import Project

EXPORT_FORMATS = ("coco", "geojson", "yolo", "labelstudio")
IMPORT_FORMATS = ("coco", "geojson", "labelstudio")
ON_DUPLICATE = ("keep", "replace", "refuse")
"""What an import does with a chip an earlier import labelled: keep its labels (default),
replace them, or refuse the whole file. ``last`` is read as ``replace``."""
EXPORT_META = "export:"
"""Store meta key prefix: ``export:<sha256>`` -> the round, format and file geoal wrote."""
GEOJSON_CRS_CHOICES = ("auto", "scene", "EPSG:4326")


@dataclass(frozen=True)
class ExportOptions:
    """Options of ``geoal export``."""

    format: str
    out: Path
    round_id: int | None = None
    crs: str = "auto"  # geojson: "scene", "EPSG:4326", or "auto" (scene if shared, else 4326)
    image_format: str = "png"  # png | jpg
    geotiff: bool = False  # also write georeferenced chip GeoTIFFs
    image_root: str | None = None  # labelstudio: URL prefix of the images
    val_fraction: float = 0.2  # yolo
    seed: int = 0  # yolo validation split
    conf: float | None = None  # pre-annotations at or above this (None: config export.conf)


@dataclass
class ImportReport:
    """What ``geoal import`` found and did."""

    source: str
    format: str
    applied: bool = False
    already_imported: int | None = None  # the earlier import of this content
    chips: int = 0
    boxes: int = 0
    negatives: int = 0
    replaced: int = 0
    problems: list[str] = field(default_factory=list)
    ignored: int = 0  # features of the file outside the chips being labelled
    kept: int = 0  # chips already labelled that kept their labels (on_duplicate keep)
    unchanged: int = 0  # chips already labelled with exactly these labels
    uncovered: int = 0  # chips offered that the file does not cover, left alone
    accepted_predictions: int = 0  # a model's boxes taken as labels (accept_predictions)
    scope: str = ""  # which chips were offered: "" (every chip) or "round N"
    info: list[str] = field(default_factory=list)


def chip_infos(project: Project, chip_ids: Sequence[int] | None = None) -> dict[int, Any]:
    """The Chip of the given chips (default: every chip), keyed by chip id."""
    from geoal.raster.chip import Chip

    scenes = {s.id: s for s in project.store.scenes()}
    sql = "SELECT id, scene_id, col_off, row_off, width, height FROM chips"
    rows = project.store.conn.execute(sql).fetchall()
    wanted = None if chip_ids is None else set(chip_ids)
    return {
        r[0]: Chip.at(scenes[r[1]], r[0], (r[2], r[3], r[4], r[5]))
        for r in rows
        if wanted is None or r[0] in wanted
    }


def predictions(
    project: Project, chip_ids: Sequence[int], model_hash: str | None, min_conf: float = 0.0
) -> dict[int, Any]:
    """The model's stored detections of these chips at or above ``min_conf`` (0-1) as Boxes
    (with scores)."""
    from geoal.formats import Boxes

    out: dict[int, Any] = {}
    if model_hash is None:
        return out
    conn = project.store.conn
    for cid in chip_ids:
        rows = conn.execute(
            "SELECT x1, y1, x2, y2, class_id, confidence FROM detections "
            "WHERE chip_id = ? AND model_hash = ? AND confidence >= ? ORDER BY confidence DESC",
            (cid, model_hash, float(min_conf)),
        ).fetchall()
        arr = np.array(rows, dtype=np.float64).reshape(-1, 6)
        out[cid] = Boxes(xyxy=arr[:, :4], cls=arr[:, 4].astype(np.int64), score=arr[:, 5])
    return out


def labels(project: Project, chip_ids: Sequence[int]) -> dict[int, Any]:
    """The stored labels of these (labelled) chips as Boxes."""
    from geoal.formats import Boxes

    conn = project.store.conn
    out = {}
    for cid in chip_ids:
        rows = conn.execute(
            "SELECT x1, y1, x2, y2, class_id FROM labels WHERE chip_id = ? ORDER BY id", (cid,)
        ).fetchall()
        arr = np.array(rows, dtype=np.float64).reshape(-1, 5)
        out[cid] = Boxes(xyxy=arr[:, :4], cls=arr[:, 4].astype(np.int64), score=None)
    return out


def labelled_chip_ids(project: Project) -> list[int]:
    """Every labelled chip (negatives included)."""
    return [
        int(r[0])
        for r in project.store.conn.execute("SELECT chip_id FROM labelled_chips ORDER BY chip_id")
    ]


def chip_images(project: Project) -> Any:
    """A :class:`~geoal.raster.reader.ChipImages` over the project's scenes (a context manager)."""
    from geoal.raster.reader import ChipImages

    return ChipImages()


def _write_image(path: Path, pixels: np.ndarray, image_format: str) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        Image.fromarray(pixels).save(
            tmp, format="PNG" if image_format == "png" else "JPEG", quality=95
        )
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_geotiff(path: Path, pixels: np.ndarray, chip: Any) -> None:
    import rasterio
    from affine import Affine

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.tif")
    with rasterio.open(
        tmp,
        "w",
        driver="GTiff",
        width=pixels.shape[1],
        height=pixels.shape[0],
        count=3,
        dtype="uint8",
        crs=chip.crs,
        transform=Affine(*chip.transform),
        compress="deflate",
        photometric="RGB",
    ) as ds:
        ds.write(pixels.transpose(2, 0, 1))
    tmp.replace(path)


def export_round(project: Project, opts: ExportOptions, *, progress: bool = True) -> dict[str, Any]:
    """Write a round's chips (or, for yolo, every labelled chip) in the chosen format.

    The annotation file is built before any image is written, and images written by a
    run that fails are removed again: a failed export leaves the folder as it was.
    Returns the round, chip count, file, predictions written, the confidence threshold
    and ``notes`` (warnings for the user).
    """
    import dataclasses

    from geoal import formats
    from geoal.pipeline.rounds import round_chip_ids

    if opts.format not in EXPORT_FORMATS:
        raise ConfigError(f"--format {opts.format}: choose one of {', '.join(EXPORT_FORMATS)}")
    if opts.image_format not in ("png", "jpg"):
        raise ConfigError(f"--image-format {opts.image_format}: choose png or jpg")
    conf = project.config.export.conf if opts.conf is None else float(opts.conf)
    if not 0.0 <= conf <= 1.0:
        raise ConfigError(f"--conf {conf:g}: a confidence in [0, 1]")
    crs = _geojson_crs_option(opts.crs)
    classes = project.config.classes
    out = Path(opts.out)
    if opts.format == "yolo":
        out.mkdir(parents=True, exist_ok=True)
        return _export_yolo(project, opts)
    root = _image_root(opts.image_root)
    round_id, ids = round_chip_ids(project, opts.round_id)
    model_hash = project.store.conn.execute(
        "SELECT model_hash FROM rounds WHERE id = ?", (round_id,)
    ).fetchone()[0]
    infos = chip_infos(project, ids)
    chips = [infos[i] for i in ids]
    if opts.image_format != "png":
        chips = [dataclasses.replace(c, image_ext=opts.image_format) for c in chips]
    boxes = predictions(project, ids, model_hash, conf)
    check_scenes_unchanged(project, [c.scene_id for c in chips])
    notes: list[str] = []
    name = f"round{round_id}"
    documents: dict[str, Any] = {}
    if opts.format == "coco":
        documents[f"{name}_coco.json"] = formats.to_coco(chips, boxes, classes)
    elif opts.format == "geojson":
        if crs == "auto":
            crs = formats.auto_crs(chips)
            if crs != "scene":
                notes.append(
                    f"round {round_id}'s scenes are in different CRSs: the GeoJSON is in "
                    "EPSG:4326 lon/lat"
                )
        suffix = "scene_crs" if crs == "scene" else "wgs84"
        documents[f"{name}_{suffix}.geojson"] = formats.to_geojson(chips, boxes, classes, crs=crs)
    else:

        def url(chip: Any) -> str:
            return f"{root}/{chip.file_name}" if root else chip.file_name

        documents[f"{name}_labelstudio.json"] = formats.to_labelstudio(
            chips, boxes, classes, url, model_version=model_hash or "none"
        )
        if not root:
            notes.append(
                "the tasks point at images/... relative to nothing: Label Studio shows no image "
                "for an imported file. Serve this folder and export with --image-root URL "
                "(e.g. http://host:8000, or /data/local-files/?d=FOLDER with Label Studio's "
                "local files), or use 'geoal labelstudio push', which uploads the images"
            )
    texts: dict[str, str] = {}
    if opts.format == "labelstudio":
        texts["labelstudio_config.xml"] = formats.labelstudio_config(classes)
    with _UndoOnFailure(out) as written:
        _write_chip_images(project, chips, out, opts, written, progress)
        targets = []
        for file, data in documents.items():
            written.append(out / file)
            targets.append(formats.write_json(out / file, data))
        for file, text in texts.items():
            written.append(out / file)
            formats.write_text(out / file, text)
    n_pred = sum(len(b) for b in boxes.values())
    note = _record_export(project, targets[0], round_id, opts.format, n_pred)
    notes.extend([note] if note else [])
    return {
        "round": round_id,
        "chips": len(chips),
        "file": str(targets[0]),
        "predictions": n_pred,
        "conf": conf,
        "notes": notes,
    }


def _geojson_crs_option(value: str) -> str:
    """``--crs`` as one of :data:`GEOJSON_CRS_CHOICES` (case and WGS84 spellings forgiven)."""
    v = value.strip()
    if v.upper() in ("EPSG:4326", "WGS84", "4326"):
        return "EPSG:4326"
    if v.lower() in ("auto", "scene"):
        return v.lower()
    raise ConfigError(f"--crs {value}: choose {', '.join(GEOJSON_CRS_CHOICES)}")


def _image_root(value: str | None) -> str:
    """``--image-root`` without its trailing ``/``; a URL or a server path, never relative."""
    if not value:
        return ""
    if "://" not in value and not value.startswith("/"):
        raise ConfigError(
            f"--image-root {value}: Label Studio resolves it against its own pages; give a URL "
            "(http://host:8000/round2) or a server path (/data/local-files/?d=round2)"
        )
    return value.rstrip("/")


class _UndoOnFailure:
    """Collects paths a step writes; if the step fails, removes those that were new, and
    the folders it created, so a failed export leaves nothing behind."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.existed: set[Path] = set()
        self.made: list[Path] = []
        self.written: list[Path] = []

    def __enter__(self) -> list[Path]:
        for d in (self.out, self.out / "images", self.out / "geotiff"):
            if not d.exists():
                self.made.append(d)
        self.out.mkdir(parents=True, exist_ok=True)
        self.existed = {p for p in self.out.rglob("*")}
        return self.written

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            return
        for path in self.written:
            if path not in self.existed:
                path.unlink(missing_ok=True)
        for d in reversed(self.made):
            with contextlib.suppress(OSError):  # not empty (others' files) or already gone
                d.rmdir()


def _write_chip_images(
    project: Project,
    chips: Sequence[Any],
    out: Path,
    opts: ExportOptions,
    written: list[Path],
    progress: bool,
) -> None:
    """Chip images (and georeferenced GeoTIFFs with ``opts.geotiff``) under ``out``."""
    from tqdm import tqdm

    bar = tqdm(chips, desc="chip images", unit="chip", disable=not progress or len(chips) < 50)
    with chip_images(project) as read:
        for chip in bar:
            pixels = read(chip)
            written.append(out / chip.file_name)
            _write_image(out / chip.file_name, pixels, opts.image_format)
            if opts.geotiff and chip.crs is not None:
                path = out / "geotiff" / (Path(chip.file_name).stem + ".tif")
                written.append(path)
                _write_geotiff(path, pixels, chip)


def _record_export(
    project: Project, path: Path, round_id: int, fmt: str, n_predictions: int
) -> str | None:
    """Remember the digest of an exported file, so that importing it unedited is refused.

    Returns a note when the store cannot record it (read-only, busy): the export stands.
    """
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    value = json.dumps(
        {"round": round_id, "format": fmt, "file": Path(path).name, "predictions": n_predictions}
    )
    try:
        with project.store.transaction():
            project.store.set_meta(EXPORT_META + digest, value)
    except (sqlite3.Error, GeoalError) as exc:
        return (
            f"{project.store.path}: could not record this export ({exc}); importing it "
            "unedited will not be recognised"
        )
    return None


def _export_yolo(project: Project, opts: ExportOptions) -> dict[str, Any]:
    from geoal import formats
    from geoal.train import split_train_val

    ids = labelled_chip_ids(project)
    if not ids:
        raise FormatError(
            f"{project.root}: no labelled chips to export as a YOLO dataset; import labels first"
        )
    infos = chip_infos(project, ids)
    lab = labels(project, ids)
    groups = [infos[i].scene_id for i in ids]
    _, val = split_train_val(ids, groups, opts.val_fraction, np.random.default_rng(opts.seed))
    check_scenes_unchanged(project, groups)
    with chip_images(project) as read:
        data_yaml = formats.write_yolo_dataset(
            opts.out,
            [(infos[i], lab[i]) for i in ids],
            project.config.classes,
            read,
            val_ids=set(val),
        )
    return {"round": None, "chips": len(ids), "file": str(data_yaml), "val": len(val)}


def detect_format(path: Path, data: Any) -> str:
    """coco, labelstudio or geojson, from the file's content."""
    if path.suffix.lower() in (".geojson", ".gpkg", ".shp"):
        return "geojson"
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        return "coco"
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        return "geojson"
    if isinstance(data, list) and (
        not data
        or (isinstance(data[0], dict) and any(k in data[0] for k in ("data", "annotation_id")))
    ):
        return "labelstudio"  # its JSON export, or JSON-MIN (flat rows with annotation_id)
    raise FormatError(
        f"{path}: cannot tell the format (COCO, GeoJSON or Label Studio JSON); give --format"
    )


def _on_duplicate(value: str) -> str:
    v = "replace" if value == "last" else value
    if v not in ON_DUPLICATE:
        raise ConfigError(f"--on-duplicate {value}: choose {', '.join(ON_DUPLICATE)}")
    return v


def _open_round(project: Project) -> int | None:
    row = project.store.conn.execute(
        "SELECT id FROM rounds WHERE status = 'open' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return None if row is None else int(row[0])


def import_labels(
    project: Project,
    path: Path,
    fmt: str | None = None,
    *,
    on_duplicate: str = "keep",
    round_id: int | None = None,
    min_visible: float = 0.5,
    class_field: str | None = None,
    fixed_class: str | None = None,
    accept_predictions: bool = False,
    layer: str | None = None,
) -> ImportReport:
    """Validate a label file and apply it completely, or not at all.

    A GeoJSON file without chip features labels the chips of ``round_id`` (default: the
    latest open round, or every chip of the project when no round is open) that it covers.
    ``class_field=None`` finds the class property among the usual names; ``layer`` names
    the layer of a vector file with several.
    """
    from geoal import formats
    from geoal.pipeline.rounds import round_chip_ids

    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: file not found")
    on_duplicate = _on_duplicate(on_duplicate)
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    data: Any = None
    if path.suffix.lower() not in (".gpkg", ".shp"):
        data = formats.read_json(path)
    fmt = fmt or detect_format(path, data)
    if fmt not in IMPORT_FORMATS:
        raise ConfigError(f"--format {fmt}: import reads {', '.join(IMPORT_FORMATS)}")
    report = ImportReport(source=str(path), format=fmt)
    exported = project.store.get_meta(EXPORT_META + digest)
    if exported is not None and not accept_predictions:
        report.problems.append(_unedited_export(str(path), json.loads(exported)))
        return report
    classes = project.config.classes
    scope = ""
    if fmt == "geojson":
        gdf = formats.read_geojson(path, layer)
        if fixed_class is not None:
            if formats.class_lookup(classes)(fixed_class) is None:
                raise ConfigError(
                    f"--class {fixed_class}: not a project class ({', '.join(classes)})"
                )
            class_field = "__geoal_class"
            gdf[class_field] = [
                None if k == "chip" else fixed_class for k in gdf.get("kind", [None] * len(gdf))
            ]
        if round_id is None and "chip_id" not in gdf.columns:
            round_id = _open_round(project)
        if round_id is not None and "chip_id" not in gdf.columns:
            round_id, ids = round_chip_ids(project, round_id)
            chips = list(chip_infos(project, ids).values())
            scope = f"round {round_id}"
        else:
            chips = list(chip_infos(project).values())
        result = formats.from_geojson(
            gdf, chips, classes, class_field=class_field, min_visible=min_visible, source=str(path)
        )
    elif fmt == "coco":
        result = formats.from_coco(data, chip_infos(project), classes, str(path))
    else:
        result = formats.from_labelstudio(
            data, chip_infos(project), classes, str(path), accept_predictions=accept_predictions
        )
    report = apply_import(
        project,
        result,
        source=str(path),
        digest=digest,
        fmt=fmt,
        on_duplicate=on_duplicate,
        record=str(path.resolve()),
        accept_predictions=accept_predictions,
    )
    report.scope = scope
    return report


def _unedited_export(source: str, exported: dict[str, Any]) -> str:
    n = int(exported.get("predictions", 0))
    what = (
        f"its {n} boxes are the model's pre-annotations and its chips unchecked"
        if n
        else "it has no box at all, and importing it would mark every chip as holding nothing"
    )
    return (
        f"{source}: this is geoal's own {exported.get('format')} export of round "
        f"{exported.get('round')}, unedited: {what}. Label it first (or import what your "
        "annotation tool exports), or pass --accept-predictions to take it as it is"
    )


def summarise_problems(problems: Sequence[Any], shown: int = 5) -> list[str]:
    """One line per kind of problem: identical messages are counted, with where they are."""
    groups: dict[tuple[str, str], list[str]] = {}
    for p in problems:
        groups.setdefault((p.source, p.message), []).append(p.where)
    lines = []
    for (source, message), wheres in groups.items():
        if len(wheres) == 1:
            lines.append(f"{source}: {wheres[0]}: {message}")
        else:
            more = "" if len(wheres) <= shown else f" and {len(wheres) - shown} more"
            lines.append(
                f"{source}: {message} ({len(wheres)} times: {', '.join(wheres[:shown])}{more})"
            )
    return lines


def _same_boxes(a: Any, b: Any) -> bool:
    """True when two Boxes hold the same boxes and classes, in any order (1e-9 px)."""
    if len(a) != len(b):
        return False
    rows_a = np.column_stack([a.cls, a.xyxy]) if len(a) else np.zeros((0, 5))
    rows_b = np.column_stack([b.cls, b.xyxy]) if len(b) else np.zeros((0, 5))
    rows_a = rows_a[np.lexsort(rows_a.T[::-1])]
    rows_b = rows_b[np.lexsort(rows_b.T[::-1])]
    return bool(np.allclose(rows_a, rows_b, rtol=0.0, atol=1e-9))


def apply_import(
    project: Project,
    result: Any,
    *,
    source: str,
    digest: str,
    fmt: str,
    on_duplicate: str = "keep",
    record: str | None = None,
    accept_predictions: bool = False,
) -> ImportReport:
    """Store parsed labels (an ImportResult) in one transaction, or nothing if any problem.

    ``digest`` identifies the content: chips it labelled before are skipped, the others
    (a whole-scene file imported for a later round) are labelled. A chip an earlier import
    labelled keeps its labels with ``on_duplicate="keep"``, gets this file's with
    ``"replace"``, and refuses the file with ``"refuse"``; a chip that already holds exactly
    these labels is left as it is. Boxes a model made (``result.predictions``) refuse the
    file unless ``accept_predictions``. ``record`` is what the imports table keeps as the
    origin (default: ``source``).
    """
    on_duplicate = _on_duplicate(on_duplicate)
    report = ImportReport(source=source, format=fmt)
    report.problems = summarise_problems(result.problems)
    report.ignored = len(result.notes)
    report.uncovered = len(result.uncovered)
    report.info = list(result.info)
    if result.predictions and not accept_predictions:
        first = result.predictions[0]
        report.problems.append(
            f"{source}: {len(result.predictions)} box(es) are a model's pre-annotations, not "
            f"labels (e.g. {first.where}: {first.message}). Review them in your annotation "
            "tool and import what it exports; a box you keep by hand must lose the model's "
            "marker (COCO: its 'score'; GeoJSON: kind 'label', no score or confidence). Or "
            "pass --accept-predictions to take them as labels knowingly"
        )
    if result.duplicates and on_duplicate == "refuse":
        report.problems.append(
            f"{source}: chips labelled twice in this file: {sorted(result.duplicates)[:20]}"
        )
    conn = project.store.conn
    by_import = {
        int(r[0]): (r[1], r[2])
        for r in conn.execute(
            "SELECT l.chip_id, i.id, i.sha256 FROM labelled_chips l "
            "LEFT JOIN imports i ON i.id = l.import_id"
        )
    }
    same = {c for c in result.labels if c in by_import and by_import[c][1] == digest}
    incoming = {c: b for c, b in result.labels.items() if c not in same}
    stored = labels(project, [c for c in incoming if c in by_import])
    unchanged = {c for c, b in stored.items() if _same_boxes(b, incoming[c])}
    already = {c for c in incoming if c in by_import} - unchanged
    if already and on_duplicate == "refuse":
        report.problems.append(
            f"{source}: {len(already)} chip(s) already labelled by an earlier import "
            f"(e.g. {sorted(already)[:5]}); use --on-duplicate replace to replace their labels"
        )
    if report.problems:
        return report
    if not result.labels:
        report.problems.append(_nothing_labelled(source, result))
        return report
    kept = already if on_duplicate == "keep" else set()
    write = {c: b for c, b in incoming.items() if c not in unchanged and c not in kept}
    report.kept, report.unchanged = len(kept), len(unchanged)
    if not write:
        if same:
            report.already_imported = by_import[next(iter(same))][0]
        return report
    stored_fmt = f"{fmt}+predictions" if accept_predictions and result.predictions else fmt
    with project.store.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO imports (path, sha256, format, n_chips, n_boxes) VALUES (?, ?, ?, ?, ?)",
            (record or source, digest, stored_fmt, len(write), sum(len(b) for b in write.values())),
        )
        import_id = int(cur.lastrowid or 0)
        for chip_id, boxes in write.items():
            conn.execute("DELETE FROM labelled_chips WHERE chip_id = ?", (chip_id,))
            conn.execute(
                "INSERT INTO labelled_chips (chip_id, import_id) VALUES (?, ?)",
                (chip_id, import_id),
            )
            conn.executemany(
                "INSERT INTO labels (chip_id, class_id, x1, y1, x2, y2) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (chip_id, int(c), *map(float, b))
                    for b, c in zip(boxes.xyxy, boxes.cls, strict=True)
                ],
            )
        conn.execute(
            "UPDATE rounds SET status = 'labelled' WHERE status = 'open' AND NOT EXISTS ("
            "SELECT 1 FROM round_chips rc WHERE rc.round_id = rounds.id AND NOT EXISTS ("
            "SELECT 1 FROM labelled_chips l WHERE l.chip_id = rc.chip_id))"
        )
    report.applied = True
    report.chips = len(write)
    report.boxes = sum(len(b) for b in write.values())
    report.negatives = sum(1 for b in write.values() if len(b) == 0)
    report.replaced = len(already & set(write))
    report.accepted_predictions = len(result.predictions) if accept_predictions else 0
    return report


def _nothing_labelled(source: str, result: Any) -> str:
    """Why a file that parsed cleanly labels no chip."""
    if result.unreviewed:
        return (
            f"{source}: no task has a submitted annotation; {result.unreviewed} task(s) carry only "
            "the model's predictions, which are not labels. Label them in Label Studio first, or "
            "pass --accept-predictions to take the predictions as labels"
        )
    if result.uncovered:
        return (
            f"{source}: the file covers none of the {len(result.uncovered)} chips it could "
            "label (other scenes or places); nothing imported"
        )
    return f"{source}: no chip of this project is labelled in the file"


def import_summary(report: ImportReport) -> str:
    """One line for the CLI: what was imported and what was left alone, and why."""
    alone = []
    if report.kept:
        alone.append(
            f"{report.kept} chips already labelled kept their labels "
            "(--on-duplicate replace takes this file's)"
        )
    if report.unchanged:
        alone.append(f"{report.unchanged} chips already held these labels")
    if report.uncovered:
        where = f" of {report.scope}" if report.scope else ""
        alone.append(f"{report.uncovered} chips{where} the file does not cover left alone")
    if report.ignored:
        alone.append(f"{report.ignored} features outside these chips ignored")
    if report.accepted_predictions:
        alone.append(f"{report.accepted_predictions} model boxes taken as labels")
    alone.extend(report.info)
    tail = "".join(f"; {a}" for a in alone)
    if not report.applied:
        if report.already_imported is not None:
            return (
                f"{report.source}: already imported (import {report.already_imported}); "
                f"nothing changed{tail}"
            )
        return f"{report.source}: nothing changed{tail}"
    scope = f" of {report.scope}" if report.scope else ""
    return (
        f"imported {report.source} ({report.format}): {report.chips} chips{scope}, "
        f"{report.boxes} boxes, {report.negatives} labelled negatives, "
        f"{report.replaced} chips relabelled{tail}"
    )
