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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from geoal import formats
from geoal.errors import ConfigError, FormatError, GeoalError
from geoal.formats import Boxes
from geoal.pipeline.catalog import check_scenes_unchanged
from geoal.project import Project
from geoal.store import labels as label_store

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


@dataclass(frozen=True)
class ImportOptions:
    """Options of ``geoal import``."""

    fmt: str | None = None  # coco | geojson | labelstudio; None: from the file's content
    on_duplicate: str = "keep"  # one of ON_DUPLICATE (or "last")
    round_id: int | None = None  # geojson without chip features: label this round's chips
    min_visible: float = 0.5  # geojson: keep a clipped box showing at least this of it (0-1]
    class_field: str | None = None  # geojson: the class property (None: the usual names)
    fixed_class: str | None = None  # geojson: every feature is of this class
    accept_predictions: bool = False  # take a model's boxes as labels, knowingly
    layer: str | None = None  # the layer of a vector file with several


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
    return {
        c.id: Chip.at(scenes[c.scene_id], c.id, c.window)
        for c in label_store.chip_rows(project.store.conn, chip_ids)
    }


def predictions(
    project: Project, chip_ids: Sequence[int], model_hash: str | None, min_conf: float = 0.0
) -> dict[int, Any]:
    """The model's stored detections of these chips at or above ``min_conf`` (0-1) as Boxes
    (with scores)."""
    if model_hash is None:
        return {}
    rows = label_store.detection_arrays(project.store.conn, chip_ids, model_hash, min_conf)
    return {
        cid: Boxes(xyxy=arr[:, :4], cls=arr[:, 4].astype(np.int64), score=arr[:, 5])
        for cid, arr in rows.items()
    }


def labels(project: Project, chip_ids: Sequence[int]) -> dict[int, Any]:
    """The stored labels of these (labelled) chips as Boxes."""
    rows = label_store.label_arrays(project.store.conn, chip_ids)
    return {
        cid: Boxes(xyxy=arr[:, :4], cls=arr[:, 4].astype(np.int64), score=None)
        for cid, arr in rows.items()
    }


def labelled_chip_ids(project: Project) -> list[int]:
    """Every labelled chip (negatives included)."""
    return label_store.labelled_chip_ids(project.store.conn)


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


@dataclass(frozen=True)
class _RoundExport:
    """What an export of one round writes: its chips (Chip, in selection order), the
    model's boxes of each (at or above the threshold) and the model that made them."""

    round_id: int
    chips: list[Any]
    boxes: dict[int, Any]
    model_hash: str | None
    classes: tuple[str, ...]


@dataclass
class _ExportFiles:
    """The files an export writes besides the images: JSON documents and text, by file name."""

    documents: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def export_round(project: Project, opts: ExportOptions, *, progress: bool = True) -> dict[str, Any]:
    """Write a round's chips (or, for yolo, every labelled chip) in the chosen format.

    The annotation file is built before any image is written, and images written by a
    run that fails are removed again: a failed export leaves the folder as it was.
    Returns the round, chip count, file, predictions written, the confidence threshold
    and ``notes`` (warnings for the user).
    """
    conf, crs = _check_export_options(project, opts)
    out = Path(opts.out)
    if opts.format == "yolo":
        out.mkdir(parents=True, exist_ok=True)
        return _export_yolo(project, opts)
    root = _image_root(opts.image_root)
    rx = _round_export(project, opts, conf)
    check_scenes_unchanged(project, [c.scene_id for c in rx.chips])
    if opts.format == "coco":
        files = _coco_files(rx)
    elif opts.format == "geojson":
        files = _geojson_files(rx, crs)
    else:
        files = _labelstudio_files(rx, root)
    with _UndoOnFailure(out) as written:
        _write_chip_images(project, rx.chips, out, opts, written, progress)
        targets = []
        for file, data in files.documents.items():
            written.append(out / file)
            targets.append(formats.write_json(out / file, data))
        for file, text in files.texts.items():
            written.append(out / file)
            formats.write_text(out / file, text)
    n_pred = sum(len(b) for b in rx.boxes.values())
    note = _record_export(project, targets[0], rx.round_id, opts.format, n_pred)
    return {
        "round": rx.round_id,
        "chips": len(rx.chips),
        "file": str(targets[0]),
        "predictions": n_pred,
        "conf": conf,
        "notes": files.notes + ([note] if note else []),
    }


def _check_export_options(project: Project, opts: ExportOptions) -> tuple[float, str]:
    """The confidence threshold (0-1) and the GeoJSON CRS choice of valid options."""
    if opts.format not in EXPORT_FORMATS:
        raise ConfigError(f"--format {opts.format}: choose one of {', '.join(EXPORT_FORMATS)}")
    if opts.image_format not in ("png", "jpg"):
        raise ConfigError(f"--image-format {opts.image_format}: choose png or jpg")
    conf = project.config.export.conf if opts.conf is None else float(opts.conf)
    if not 0.0 <= conf <= 1.0:
        raise ConfigError(f"--conf {conf:g}: a confidence in [0, 1]")
    return conf, _geojson_crs_option(opts.crs)


def _round_export(project: Project, opts: ExportOptions, conf: float) -> _RoundExport:
    """The chips of the round to export (image files named for ``opts.image_format``) and
    the round model's boxes of them at or above ``conf``."""
    from geoal.pipeline.rounds import round_chip_ids

    round_id, ids = round_chip_ids(project, opts.round_id)
    model_hash = label_store.round_model_hash(project.store.conn, round_id)
    infos = chip_infos(project, ids)
    chips = [infos[i] for i in ids]
    if opts.image_format != "png":
        chips = [replace(c, image_ext=opts.image_format) for c in chips]
    boxes = predictions(project, ids, model_hash, conf)
    return _RoundExport(round_id, chips, boxes, model_hash, project.config.classes)


def _coco_files(rx: _RoundExport) -> _ExportFiles:
    name = f"round{rx.round_id}_coco.json"
    return _ExportFiles({name: formats.to_coco(rx.chips, rx.boxes, rx.classes)})


def _geojson_files(rx: _RoundExport, crs: str) -> _ExportFiles:
    """One GeoJSON file, in the scenes' CRS or (``auto`` and several CRSs) EPSG:4326."""
    files = _ExportFiles()
    if crs == "auto":
        crs = formats.auto_crs(rx.chips)
        if crs != "scene":
            files.notes.append(
                f"round {rx.round_id}'s scenes are in different CRSs: the GeoJSON is in "
                "EPSG:4326 lon/lat"
            )
    suffix = "scene_crs" if crs == "scene" else "wgs84"
    files.documents[f"round{rx.round_id}_{suffix}.geojson"] = formats.to_geojson(
        rx.chips, rx.boxes, rx.classes, crs=crs
    )
    return files


def _labelstudio_files(rx: _RoundExport, root: str) -> _ExportFiles:
    """Label Studio tasks (images under ``root``) and the labelling config."""

    def url(chip: Any) -> str:
        return f"{root}/{chip.file_name}" if root else chip.file_name

    files = _ExportFiles()
    files.documents[f"round{rx.round_id}_labelstudio.json"] = formats.to_labelstudio(
        rx.chips, rx.boxes, rx.classes, url, model_version=rx.model_hash or "none"
    )
    if not root:
        files.notes.append(
            "the tasks point at images/... relative to nothing: Label Studio shows no image "
            "for an imported file. Serve this folder and export with --image-root URL "
            "(e.g. http://host:8000, or /data/local-files/?d=FOLDER with Label Studio's "
            "local files), or use 'geoal labelstudio push', which uploads the images"
        )
    files.texts["labelstudio_config.xml"] = formats.labelstudio_config(rx.classes)
    return files


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
    digest = content_digest(Path(path).read_bytes())
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


def content_digest(data: bytes) -> str:
    """The sha256 (hex) that names a file's content in the store: exports and imports."""
    return hashlib.sha256(data).hexdigest()


def import_labels(project: Project, path: Path, opts: ImportOptions | None = None) -> ImportReport:
    """Validate a label file and apply it completely, or not at all.

    A GeoJSON file without chip features labels the chips of ``opts.round_id`` (default:
    the latest open round, or every chip of the project when no round is open) that it
    covers. ``opts.class_field=None`` finds the class property among the usual names;
    ``opts.layer`` names the layer of a vector file with several.
    """
    opts = opts or ImportOptions()
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: file not found")
    on_duplicate = _on_duplicate(opts.on_duplicate)
    digest = content_digest(path.read_bytes())
    data = None if path.suffix.lower() in (".gpkg", ".shp") else formats.read_json(path)
    fmt = opts.fmt or detect_format(path, data)
    if fmt not in IMPORT_FORMATS:
        raise ConfigError(f"--format {fmt}: import reads {', '.join(IMPORT_FORMATS)}")
    exported = project.store.get_meta(EXPORT_META + digest)
    if exported is not None and not opts.accept_predictions:
        report = ImportReport(source=str(path), format=fmt)
        report.problems.append(_unedited_export(str(path), json.loads(exported)))
        return report
    classes = project.config.classes
    scope = ""
    if fmt == "geojson":
        result, scope = _parse_geojson(project, path, opts)
    elif fmt == "coco":
        result = formats.from_coco(data, chip_infos(project), classes, str(path))
    else:
        result = formats.from_labelstudio(
            data,
            chip_infos(project),
            classes,
            str(path),
            accept_predictions=opts.accept_predictions,
        )
    report = apply_import(
        project,
        result,
        source=str(path),
        digest=digest,
        fmt=fmt,
        on_duplicate=on_duplicate,
        record=str(path.resolve()),
        accept_predictions=opts.accept_predictions,
    )
    report.scope = scope
    return report


def _parse_geojson(project: Project, path: Path, opts: ImportOptions) -> tuple[Any, str]:
    """Labels (an ImportResult) from a vector file, and which chips it was offered
    ("" for every chip, or "round N")."""
    classes = project.config.classes
    gdf = formats.read_geojson(path, opts.layer)
    class_field = opts.class_field
    if opts.fixed_class is not None:
        if formats.class_lookup(classes)(opts.fixed_class) is None:
            raise ConfigError(
                f"--class {opts.fixed_class}: not a project class ({', '.join(classes)})"
            )
        class_field = "__geoal_class"
        gdf[class_field] = [
            None if k == "chip" else opts.fixed_class for k in gdf.get("kind", [None] * len(gdf))
        ]
    chips, scope = _geojson_chips(project, opts.round_id, "chip_id" in gdf.columns)
    result = formats.from_geojson(
        gdf, chips, classes, class_field=class_field, min_visible=opts.min_visible, source=str(path)
    )
    return result, scope


def _geojson_chips(
    project: Project, round_id: int | None, names_chips: bool
) -> tuple[list[Any], str]:
    """The chips a vector file may label (Chip) and how the summary names them.

    A file that names its chips (a geoal export) may label any chip; one that does not
    labels the chips of ``round_id`` (default: the latest open round, or every chip when
    no round is open).
    """
    from geoal.pipeline.rounds import round_chip_ids

    if not names_chips and round_id is None:
        round_id = label_store.open_round_id(project.store.conn)
    if names_chips or round_id is None:
        return list(chip_infos(project).values()), ""
    round_id, ids = round_chip_ids(project, round_id)
    return list(chip_infos(project, ids).values()), f"round {round_id}"


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


@dataclass(frozen=True)
class _ImportPlan:
    """How parsed labels meet the store's: what to write, and what to leave and why.

    Chips this content labelled before are left out of all of these.
    """

    write: dict[int, Any]  # chip id -> Boxes to store
    already: set[int]  # labelled by an earlier import, with other labels
    kept: set[int]  # of ``already``, those that keep their labels (on_duplicate keep)
    unchanged: set[int]  # already holding exactly these labels
    earlier_import: int | None  # the import of this same content, when it labelled any chip


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
    report.problems.extend(_refusals(result, source, on_duplicate, accept_predictions))
    plan = _plan_import(project, result, digest, on_duplicate)
    if plan.already and on_duplicate == "refuse":
        report.problems.append(
            f"{source}: {len(plan.already)} chip(s) already labelled by an earlier import "
            f"(e.g. {sorted(plan.already)[:5]}); use --on-duplicate replace to replace their labels"
        )
    if report.problems:
        return report
    if not result.labels:
        report.problems.append(_nothing_labelled(source, result))
        return report
    report.kept, report.unchanged = len(plan.kept), len(plan.unchanged)
    if not plan.write:
        report.already_imported = plan.earlier_import
        return report
    stored_fmt = f"{fmt}+predictions" if accept_predictions and result.predictions else fmt
    chips = {c: label_store.LabelWrite(b.xyxy, b.cls) for c, b in plan.write.items()}
    with project.store.transaction() as conn:
        label_store.write_import(
            conn, origin=record or source, sha256=digest, fmt=stored_fmt, chips=chips
        )
    report.applied = True
    report.chips = len(plan.write)
    report.boxes = sum(len(b) for b in plan.write.values())
    report.negatives = sum(1 for b in plan.write.values() if len(b) == 0)
    report.replaced = len(plan.already & set(plan.write))
    report.accepted_predictions = len(result.predictions) if accept_predictions else 0
    return report


def _refusals(result: Any, source: str, on_duplicate: str, accept_predictions: bool) -> list[str]:
    """What refuses a parsed file whatever the store holds: a model's boxes taken as labels
    unasked, a chip labelled twice in the file (with ``on_duplicate="refuse"``)."""
    problems = []
    if result.predictions and not accept_predictions:
        first = result.predictions[0]
        problems.append(
            f"{source}: {len(result.predictions)} box(es) are a model's pre-annotations, not "
            f"labels (e.g. {first.where}: {first.message}). Review them in your annotation "
            "tool and import what it exports; a box you keep by hand must lose the model's "
            "marker (COCO: its 'score'; GeoJSON: kind 'label', no score or confidence). Or "
            "pass --accept-predictions to take them as labels knowingly"
        )
    if result.duplicates and on_duplicate == "refuse":
        problems.append(
            f"{source}: chips labelled twice in this file: {sorted(result.duplicates)[:20]}"
        )
    return problems


def _plan_import(project: Project, result: Any, digest: str, on_duplicate: str) -> _ImportPlan:
    """Compare parsed labels (an ImportResult) of the content ``digest`` with the store's."""
    by_import = label_store.chip_imports(project.store.conn)
    same = {c for c in result.labels if c in by_import and by_import[c].sha256 == digest}
    incoming = {c: b for c, b in result.labels.items() if c not in same}
    stored = labels(project, [c for c in incoming if c in by_import])
    unchanged = {c for c, b in stored.items() if _same_boxes(b, incoming[c])}
    already = {c for c in incoming if c in by_import} - unchanged
    kept = already if on_duplicate == "keep" else set()
    return _ImportPlan(
        write={c: b for c, b in incoming.items() if c not in unchanged and c not in kept},
        already=already,
        kept=kept,
        unchanged=unchanged,
        earlier_import=by_import[next(iter(same))].import_id if same else None,
    )


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
