"""Whole-scene detection: run the detector over every chip, lift boxes to the scene, merge.

Reuses the tiling (grid, stretch, nodata skip) and the batched, I/O-overlapped
reader of the scoring stage. Memory holds the detections, never the scene: the
peak does not grow with the scene's size.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoal.config import TilingConfig
from geoal.errors import ConfigError, GeoalError
from geoal.predict.merge import MATCH_METRICS, MERGE_METHODS, merge_detections
from geoal.raster.chip import Chip
from geoal.raster.reader import iter_batches, read_chips
from geoal.raster.scene import Scene, catalogue

MIN_CHIP, MAX_CHIP = 32, 8192  # pixels, as tiling.size


@dataclass(frozen=True)
class PredictOptions:
    """Options of ``geoal predict``."""

    model: str
    conf: float = 0.25
    iou: float = 0.7  # NMS inside a chip
    size: int = 640
    overlap: float = 0.2
    merge: str = "greedy-nmm"
    match: str = "ios"
    threshold: float = 0.5
    batch: int = 16
    device: str = "cpu"
    workers: int = 2
    bands: tuple[int, ...] | None = None
    imgsz: int | None = None  # model input size, pixels; None = as the model was trained
    backend: str | None = None  # torch, openvino, onnxruntime; None: auto (geoal.detect.backends)

    def __post_init__(self) -> None:
        if self.merge not in MERGE_METHODS:
            raise ConfigError(f"--merge {self.merge}: choose one of {', '.join(MERGE_METHODS)}")
        if self.match not in MATCH_METRICS:
            raise ConfigError(f"--match {self.match}: choose one of {', '.join(MATCH_METRICS)}")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"--threshold must be in (0, 1], got {self.threshold}")
        if not 0 < self.conf < 1:
            raise ConfigError(f"--conf must be in (0, 1), got {self.conf}")
        # the same bounds as tiling.size: a 100,000 px chip would ask for ~28 GiB per chip
        if not MIN_CHIP <= self.size <= MAX_CHIP:
            raise ConfigError(
                f"--size {self.size}: chip side must be {MIN_CHIP}-{MAX_CHIP} pixels "
                "(the detector sees one chip at a time; 640 is usual)"
            )
        if not 0 <= self.overlap < 1:
            raise ConfigError(f"--overlap must be in [0, 1), got {self.overlap}")

    @property
    def tiling(self) -> TilingConfig:
        """How scenes are cut into chips: ``size``, ``overlap``, ``bands``, the rest default."""
        return TilingConfig(size=self.size, overlap=self.overlap, bands=self.bands)


@dataclass
class SceneDetections:
    """Merged objects of one scene: (M, 7) [x1, y1, x2, y2, score, class, entropy] in scene pixels."""

    path: str
    name: str
    crs: str | None
    transform: tuple[float, ...]
    objects: np.ndarray
    chips: int
    raw_detections: int
    seconds: float

    @classmethod
    def merged(
        cls, scene: Scene, parts: Sequence[np.ndarray], chips: int, opts: PredictOptions, t0: float
    ) -> SceneDetections:
        """The scene's objects: its chips' detections ``parts`` (each (N, 7), in chip order)
        merged with ``opts``' method; ``t0``: when the scene's work began (perf_counter)."""
        raw = np.concatenate(parts) if len(parts) else np.zeros((0, 7))
        merged, _ = merge_detections(raw, opts.merge, opts.match, opts.threshold)
        seconds = time.perf_counter() - t0
        return cls(
            scene.path, scene.name, scene.crs, scene.transform, merged, chips, len(raw), seconds
        )


@dataclass
class PredictReport:
    """Every scene's merged objects, the classes, and the problems met."""

    classes: tuple[str, ...]
    scenes: list[SceneDetections] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def counts(self) -> list[dict[str, Any]]:
        """Object counts per scene and class (rows for the summary)."""
        rows = []
        for s in self.scenes:
            cls = s.objects[:, 5].astype(int) if len(s.objects) else np.zeros(0, int)
            for k, name in enumerate(self.classes):
                rows.append({"scene": s.name, "class": name, "count": int((cls == k).sum())})
        return rows


def predict_scene(
    detector: Any, path: str, opts: PredictOptions, *, progress: bool = True
) -> SceneDetections:
    """Detect and merge the objects of one scene."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    cat = catalogue(path, opts.tiling, sample=False)
    chips = [Chip.at(cat.scene, i, w) for i, w in enumerate(cat.windows)]
    batches = iter_batches(read_chips(chips, workers=opts.workers), opts.batch)
    parts: list[np.ndarray] = []
    bar = tqdm(total=len(chips), desc=cat.scene.name[:24], unit="chip", disable=not progress)
    stream = detector.iter_predict(batches, views=1, conf=opts.conf, iou=opts.iou, details=False)
    try:
        for chip_idx, results in stream:
            for idx, res in zip(chip_idx, results, strict=True):
                if len(res):
                    parts.append(chip_objects(res, chips[idx]))
            bar.update(len(chip_idx))
    finally:
        stream.close()
        bar.close()
    return SceneDetections.merged(cat.scene, parts, len(chips), opts, t0)


def chip_objects(res: Any, chip: Chip) -> np.ndarray:
    """A chip's detections in scene pixels: (N, 7) [x1, y1, x2, y2, score, class, entropy]."""
    from geoal.uncertainty import entropy

    col, row = chip.window[0], chip.window[1]
    boxes = res.boxes.astype(np.float64) + np.array([col, row, col, row], dtype=np.float64)
    # a padded chip (scene smaller than a chip) may see boxes in the padding
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, chip.scene.width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, chip.scene.height)
    return np.column_stack([boxes, res.conf, res.cls, entropy(res.probs)])


def with_model_input(opts: PredictOptions) -> PredictOptions:
    """``opts`` with the model's input size for chips of ``opts.size`` when none is given.

    A model trained by geoal records its input size and chip size: chips of another
    ``--size`` keep the trained scale (e.g. 640 px chips trained at 320 run at 320,
    1280 px chips at 640). Another checkpoint runs at its training size (ultralytics'
    train_args), as ultralytics' predictor does; an architecture file at the chip size
    (up to a multiple of 32).
    """
    if opts.imgsz is not None:
        return opts
    import dataclasses

    from geoal.detect.loading import checkpoint_input, stride_size

    found = checkpoint_input(opts.model)
    imgsz = found.for_chip(opts.size) if found is not None else stride_size(opts.size)
    return dataclasses.replace(opts, imgsz=None if imgsz == opts.size else imgsz)


def predict_scenes(
    paths: Sequence[str],
    opts: PredictOptions,
    classes: Sequence[str] | None = None,
    *,
    progress: bool = True,
) -> PredictReport:
    """Detect over every scene; a scene that fails is reported, the others go on."""
    from geoal.detect import load_detector

    opts = with_model_input(opts)
    detector = load_detector(
        opts.model, classes, device=opts.device, imgsz=opts.imgsz, backend=opts.backend
    )
    report = PredictReport(classes=detector.classes)
    for path in paths:
        try:
            report.scenes.append(predict_scene(detector, path, opts, progress=progress))
        except GeoalError as exc:
            report.errors.append(str(exc))
    return report


def objects_frame(scene: SceneDetections, classes: Sequence[str]) -> Any:
    """A GeoDataFrame of the scene's objects as polygons in its CRS (pixels if none)."""
    import geopandas as gpd
    import shapely

    from geoal.raster.grid import window_corners

    obj = scene.objects
    px = (
        np.column_stack([obj[:, 0], obj[:, 1], obj[:, 2] - obj[:, 0], obj[:, 3] - obj[:, 1]])
        if len(obj)
        else np.zeros((0, 4))
    )
    corners = window_corners(scene.transform, px)
    geoms = shapely.polygons(corners) if len(obj) else []
    cls = obj[:, 5].astype(int) if len(obj) else np.zeros(0, int)
    return gpd.GeoDataFrame(
        {
            "scene": scene.name,
            "class": [classes[c] for c in cls],
            "class_id": cls,
            "confidence": obj[:, 4] if len(obj) else [],
            "uncertainty": obj[:, 6] if len(obj) else [],
            "x1_px": obj[:, 0] if len(obj) else [],
            "y1_px": obj[:, 1] if len(obj) else [],
            "x2_px": obj[:, 2] if len(obj) else [],
            "y2_px": obj[:, 3] if len(obj) else [],
        },
        geometry=geoms,
        crs=scene.crs,
    )


def write_detections(report: PredictReport, out: Path) -> list[str]:
    """GeoPackage (one layer per scene, its own CRS) or GeoJSON (EPSG:4326, scene column).

    Written to a temporary file and renamed, so an existing output is never half-replaced.
    """
    import pandas as pd

    from geoal.formats.io import writable_folder

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix in (".gpkg", ".geojson", ".json"):
        writable_folder(out.parent)
    tmp = out.with_name(out.name + ".tmp" + suffix)
    tmp.unlink(missing_ok=True)
    written = []
    if suffix == ".gpkg":
        used: set[str] = set()
        for scene in report.scenes:
            layer = "".join(ch if ch.isalnum() else "_" for ch in scene.name)[:50] or "scene"
            while layer in used:
                layer += "_"
            used.add(layer)
            objects_frame(scene, report.classes).to_file(tmp, layer=layer, driver="GPKG")
            written.append(layer)
    elif suffix in (".geojson", ".json"):
        frames = []
        for scene in report.scenes:
            frame = objects_frame(scene, report.classes)
            if scene.crs is None:
                raise ConfigError(
                    f"{scene.path}: no CRS, so no EPSG:4326 GeoJSON; write a .gpkg instead"
                )
            frames.append(frame.to_crs("EPSG:4326"))
        import geopandas as gpd

        combined = (
            gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs="EPSG:4326")
            if frames
            else gpd.GeoDataFrame({"scene": []}, geometry=[], crs="EPSG:4326")
        )
        # RFC 7946: no 'crs' member, counter-clockwise exterior rings; the layer name is
        # the file's own (written as the collection's 'name'), not the temporary file's
        combined.to_file(tmp, driver="GeoJSON", layer=out.stem, RFC7946="YES")
        written.append("EPSG:4326")
    else:
        raise ConfigError(
            f"--out {out}: give a .gpkg (one layer per scene) or .geojson (EPSG:4326)"
        )
    tmp.replace(out)
    return written


def write_summary(report: PredictReport, out: Path) -> None:
    """Counts per scene and class as CSV (scene, class, count)."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with Path(out).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["scene", "class", "count"])
        writer.writeheader()
        writer.writerows(report.counts())
