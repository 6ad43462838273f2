"""The annotation round trip: export a round's chips as tasks, import labels back.

Export writes chip images (the stored stretch) and the round's chips with the
model's detections as pre-annotations in the annotator's format. Import
validates the whole file first and applies it in one transaction, or not at all;
the same file imported twice changes nothing. A chip returned with no boxes is a
labelled negative.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoal.errors import ConfigError, FormatError
from geoal.pipeline.catalog import check_scenes_unchanged
from geoal.project import Project

EXPORT_FORMATS = ("coco", "geojson", "yolo", "labelstudio")
IMPORT_FORMATS = ("coco", "geojson", "labelstudio")


@dataclass(frozen=True)
class ExportOptions:
    """Options of ``geoal export``."""

    format: str
    out: Path
    round_id: int | None = None
    crs: str = "scene"  # geojson: "scene" or "EPSG:4326"
    image_format: str = "png"  # png | jpg
    geotiff: bool = False  # also write georeferenced chip GeoTIFFs
    image_root: str | None = None  # labelstudio: URL prefix of the images
    val_fraction: float = 0.2  # yolo
    seed: int = 0  # yolo validation split


@dataclass
class ImportReport:
    """What ``geoal import`` found and did."""

    source: str
    format: str
    applied: bool = False
    already_imported: int | None = None
    chips: int = 0
    boxes: int = 0
    negatives: int = 0
    replaced: int = 0
    problems: list[str] = field(default_factory=list)
    ignored: int = 0  # features of the file outside the chips being labelled


def chip_infos(project: Project, chip_ids: Sequence[int] | None = None) -> dict[int, Any]:
    """ChipInfo of the given chips (default: every chip), keyed by chip id."""
    from geoal.formats import make_chip_info

    scenes = {s.id: s for s in project.store.scenes()}
    sql = "SELECT id, scene_id, col_off, row_off, width, height FROM chips"
    rows = project.store.conn.execute(sql).fetchall()
    wanted = None if chip_ids is None else set(chip_ids)
    return {
        r[0]: make_chip_info(scenes[r[1]], r[0], (r[2], r[3], r[4], r[5]))
        for r in rows
        if wanted is None or r[0] in wanted
    }


def predictions(
    project: Project, chip_ids: Sequence[int], model_hash: str | None
) -> dict[int, Any]:
    """The model's stored detections of these chips as Boxes (with scores)."""
    from geoal.formats import Boxes

    out: dict[int, Any] = {}
    if model_hash is None:
        return out
    conn = project.store.conn
    for cid in chip_ids:
        rows = conn.execute(
            "SELECT x1, y1, x2, y2, class_id, confidence FROM detections "
            "WHERE chip_id = ? AND model_hash = ? ORDER BY confidence DESC",
            (cid, model_hash),
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

    return ChipImages({s.id: s for s in project.store.scenes()})


def _write_image(path: Path, pixels: np.ndarray, image_format: str) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(pixels).save(tmp, format="PNG" if image_format == "png" else "JPEG", quality=95)
    tmp.replace(path)


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
    """Write a round's chips (or, for yolo, every labelled chip) in the chosen format."""
    import dataclasses

    from tqdm import tqdm

    from geoal import formats
    from geoal.pipeline.rounds import round_chip_ids

    if opts.format not in EXPORT_FORMATS:
        raise ConfigError(f"--format {opts.format}: choose one of {', '.join(EXPORT_FORMATS)}")
    if opts.image_format not in ("png", "jpg"):
        raise ConfigError(f"--image-format {opts.image_format}: choose png or jpg")
    classes = project.config.classes
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    if opts.format == "yolo":
        return _export_yolo(project, opts)
    round_id, ids = round_chip_ids(project, opts.round_id)
    model_hash = project.store.conn.execute(
        "SELECT model_hash FROM rounds WHERE id = ?", (round_id,)
    ).fetchone()[0]
    infos = chip_infos(project, ids)
    chips = [infos[i] for i in ids]
    if opts.image_format != "png":
        chips = [
            dataclasses.replace(c, file_name=c.file_name[: -len("png")] + "jpg") for c in chips
        ]
    boxes = predictions(project, ids, model_hash)
    check_scenes_unchanged(project, [c.scene_id for c in chips])
    bar = tqdm(chips, desc="chip images", unit="chip", disable=not progress or len(chips) < 50)
    with chip_images(project) as read:
        for chip in bar:
            pixels = read(chip)
            _write_image(out / chip.file_name, pixels, opts.image_format)
            if opts.geotiff and chip.crs is not None:
                _write_geotiff(out / "geotiff" / (Path(chip.file_name).stem + ".tif"), pixels, chip)
    name = f"round{round_id}"
    if opts.format == "coco":
        target = formats.write_json(
            out / f"{name}_coco.json", formats.to_coco(chips, boxes, classes)
        )
    elif opts.format == "geojson":
        data = formats.to_geojson(chips, boxes, classes, crs=opts.crs)
        suffix = "wgs84" if opts.crs.upper() == "EPSG:4326" else "scene_crs"
        target = formats.write_json(out / f"{name}_{suffix}.geojson", data)
    else:
        root = (opts.image_root or "").rstrip("/")

        def url(chip: Any) -> str:
            return f"{root}/{chip.file_name}" if root else chip.file_name

        tasks = formats.to_labelstudio(
            chips, boxes, classes, url, model_version=model_hash or "none"
        )
        target = formats.write_json(out / f"{name}_labelstudio.json", tasks)
        formats.write_text(out / "labelstudio_config.xml", formats.labelstudio_config(classes))
    return {
        "round": round_id,
        "chips": len(chips),
        "file": str(target),
        "predictions": sum(len(b) for b in boxes.values()),
    }


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
    if isinstance(data, list) and (not data or (isinstance(data[0], dict) and "data" in data[0])):
        return "labelstudio"
    raise FormatError(
        f"{path}: cannot tell the format (COCO, GeoJSON or Label Studio JSON); give --format"
    )


def import_labels(
    project: Project,
    path: Path,
    fmt: str | None = None,
    *,
    on_duplicate: str = "last",
    round_id: int | None = None,
    min_visible: float = 0.5,
    class_field: str = "class",
    fixed_class: str | None = None,
) -> ImportReport:
    """Validate a label file and apply it completely, or not at all."""
    from geoal import formats
    from geoal.pipeline.rounds import round_chip_ids

    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: file not found")
    if on_duplicate not in ("last", "refuse"):
        raise ConfigError(f"--on-duplicate {on_duplicate}: choose last or refuse")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    data: Any = None
    if path.suffix.lower() not in (".gpkg", ".shp"):
        data = formats.read_json(path)
    fmt = fmt or detect_format(path, data)
    if fmt not in IMPORT_FORMATS:
        raise ConfigError(f"--format {fmt}: import reads {', '.join(IMPORT_FORMATS)}")
    report = ImportReport(source=str(path), format=fmt)
    known = project.store.conn.execute(
        "SELECT id FROM imports WHERE sha256 = ?", (digest,)
    ).fetchone()
    if known is not None:
        report.already_imported = int(known[0])
        return report
    classes = project.config.classes
    if fmt == "geojson":
        gdf = formats.read_geojson(path)
        if fixed_class is not None:
            if fixed_class not in classes:
                raise ConfigError(
                    f"--class {fixed_class}: not a project class ({', '.join(classes)})"
                )
            class_field = "__geoal_class"
            gdf[class_field] = [
                None if k == "chip" else fixed_class for k in gdf.get("kind", [None] * len(gdf))
            ]
        if round_id is not None or "chip_id" not in gdf.columns:
            _, ids = round_chip_ids(project, round_id)
            chips = list(chip_infos(project, ids).values())
        else:
            chips = list(chip_infos(project).values())
        result = formats.from_geojson(
            gdf, chips, classes, class_field=class_field, min_visible=min_visible, source=str(path)
        )
    else:
        by_id = chip_infos(project)
        parse = formats.from_coco if fmt == "coco" else formats.from_labelstudio
        result = parse(data, by_id, classes, str(path))
    return apply_import(
        project,
        result,
        source=str(path),
        digest=digest,
        fmt=fmt,
        on_duplicate=on_duplicate,
        record=str(path.resolve()),
    )


def apply_import(
    project: Project,
    result: Any,
    *,
    source: str,
    digest: str,
    fmt: str,
    on_duplicate: str = "last",
    record: str | None = None,
) -> ImportReport:
    """Store parsed labels (an ImportResult) in one transaction, or nothing if any problem.

    ``digest`` identifies the content: the same content applied twice changes nothing.
    ``record`` is what the imports table keeps as the origin (default: ``source``).
    """
    if on_duplicate not in ("last", "refuse"):
        raise ConfigError(f"--on-duplicate {on_duplicate}: choose last or refuse")
    report = ImportReport(source=source, format=fmt)
    known = project.store.conn.execute(
        "SELECT id FROM imports WHERE sha256 = ?", (digest,)
    ).fetchone()
    if known is not None:
        report.already_imported = int(known[0])
        return report
    report.problems = [f"{p.source}: {p.where}: {p.message}" for p in result.problems]
    report.ignored = len(result.notes)
    if result.duplicates and on_duplicate == "refuse":
        report.problems.append(
            f"{source}: chips labelled twice in this file: {sorted(result.duplicates)[:20]}"
        )
    already = {
        int(r[0]) for r in project.store.conn.execute("SELECT chip_id FROM labelled_chips")
    } & set(result.labels)
    if already and on_duplicate == "refuse":
        report.problems.append(
            f"{source}: {len(already)} chip(s) already labelled by an earlier import (e.g. {sorted(already)[:5]}); "
            "use --on-duplicate last to replace their labels"
        )
    if report.problems:
        return report
    if not result.labels:
        report.problems.append(f"{source}: no chip of this project is labelled in the file")
        return report
    with project.store.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO imports (path, sha256, format, n_chips, n_boxes) VALUES (?, ?, ?, ?, ?)",
            (record or source, digest, fmt, len(result.labels), result.n_boxes),
        )
        import_id = int(cur.lastrowid or 0)
        for chip_id, boxes in result.labels.items():
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
    report.chips = len(result.labels)
    report.boxes = result.n_boxes
    report.negatives = sum(1 for b in result.labels.values() if len(b) == 0)
    report.replaced = len(already)
    return report


def import_summary(report: ImportReport) -> str:
    """One line for the CLI."""
    if report.already_imported is not None:
        return (
            f"{report.source}: already imported (import {report.already_imported}); nothing changed"
        )
    ignored = f"; {report.ignored} features outside these chips ignored" if report.ignored else ""
    return (
        f"imported {report.source} ({report.format}): {report.chips} chips, {report.boxes} boxes, "
        f"{report.negatives} labelled negatives, {report.replaced} chips relabelled{ignored}"
    )
