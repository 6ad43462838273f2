"""GeoTIFF scenes + GeoJSON labels as a simulation's data set: chips, COCO pool and test set.

``prepare_geo_dataset`` tiles the scenes as ``geoal tile`` does (same grid, band
choice, stretch and nodata skip), maps every labelled feature onto the chips it
falls on with ``geoal.formats.from_geojson`` (any CRS, polygons or boxes; a box cut
by a chip edge is kept when at least ``min_visible`` of it is inside), splits the
chips into a pool and a fixed test set, and writes them as PNG chips and two COCO
files. The simulation then runs on those as on any COCO data set.

The split is by scene (whole scenes are held out: nothing of a test scene is ever
seen in training) or by chip (random chips are held out, and pool chips that
overlap a test chip are dropped, so no pixel is in both). It is seeded and fixed
for every strategy and seed of the simulation.

The folder is written once, atomically (built beside, then renamed) with a
``source.json`` manifest of the inputs (scene fingerprints, label file hashes,
settings); running again with the same inputs reuses it, other inputs are refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geoal.config import TilingConfig
from geoal.errors import ConfigError, FormatError, GeoalError
from geoal.formats import from_geojson, read_geojson
from geoal.raster.chip import Chip
from geoal.raster.reader import read_chips
from geoal.raster.scene import Catalogued, catalogue, expand_inputs

Split = Literal["scene", "chip"]

MANIFEST = "source.json"
POOL_JSON = "pool.json"
TEST_JSON = "test.json"
IMAGES = "images"


@dataclass(frozen=True)
class GeoSource:
    """Scenes and their labels, and how to cut and split them.

    Attributes:
        scenes: raster paths, folders or globs (as ``geoal tile`` takes them).
        labels: GeoJSON (or any vector file GDAL reads) of the objects, in any CRS.
        size: chip side in pixels.
        overlap: chip overlap as a fraction of the side (0 = no object is seen twice).
        class_field: the feature property holding the class name.
        default_class: class of every feature of a file without ``class_field`` (one-class
            files such as building footprints); None = such a file is an error.
        classes: the class names in model order; None = the sorted names found.
        split: "scene" holds out whole scenes, "chip" random chips (overlapping pool
            chips dropped).
        test_fraction: share of the chips held out for testing (about: whole scenes).
        split_seed: the split's random seed (one fixed test set for every run).
        bands: 1-based bands to read (None = the scene's default RGB choice).
        min_visible: share of an object's box that must lie in a chip to label it there.
    """

    scenes: tuple[str, ...]
    labels: tuple[Path, ...]
    size: int = 640
    overlap: float = 0.0
    class_field: str = "class"
    default_class: str | None = None
    classes: tuple[str, ...] | None = None
    split: Split = "scene"
    test_fraction: float = 0.25
    split_seed: int = 0
    bands: tuple[int, ...] | None = None
    min_visible: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenes", tuple(str(s) for s in self.scenes))
        object.__setattr__(self, "labels", tuple(Path(p).expanduser() for p in self.labels))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(self.classes))
        if not self.scenes:
            raise ConfigError("--scenes: give at least one GeoTIFF (file, folder or glob)")
        if not self.labels:
            raise ConfigError("--labels: give at least one GeoJSON file of the scenes' objects")
        if self.size < 32 or self.size % 32:
            raise ConfigError(f"--chip-size must be a positive multiple of 32, got {self.size}")
        if not 0.0 <= self.overlap < 1.0:
            raise ConfigError(f"--chip-overlap must be in [0, 1), got {self.overlap}")
        if self.split not in ("scene", "chip"):
            raise ConfigError(f"--split must be scene or chip, got {self.split!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"--test-fraction must be in (0, 1), got {self.test_fraction}")
        if not 0.0 < self.min_visible <= 1.0:
            raise ConfigError(f"min_visible must be in (0, 1], got {self.min_visible}")


@dataclass(frozen=True)
class GeoDataset:
    """The written data set: COCO files of the pool and the test set, and the chip folder."""

    folder: Path
    pool_json: Path
    test_json: Path
    images: Path
    summary: dict[str, Any]


def prepare_geo_dataset(source: GeoSource, folder: Path, *, progress: bool = False) -> GeoDataset:
    """Write (or reuse) ``folder`` with ``pool.json``, ``test.json`` and ``images/``.

    Raises ConfigError / FormatError naming the file and the problem: unreadable scenes,
    label files that cannot be read, have no CRS, name unknown classes, or lie on no scene;
    a split that leaves the pool or the test set empty.
    """
    folder = Path(folder)
    scenes = _catalogue(source)
    manifest = _manifest(source, scenes)
    if (folder / MANIFEST).is_file():
        saved = json.loads((folder / MANIFEST).read_text())
        if saved.get("key") != manifest["key"]:
            raise ConfigError(
                f"{folder} was prepared from other scenes, labels or settings: "
                "give another --out, or the same inputs to resume"
            )
        return _dataset(folder, saved["summary"])
    placed = [(cat.scene, w) for cat in scenes for w in cat.windows]
    chips = [Chip.at(scene, i, w) for i, (scene, w) in enumerate(placed)]
    if not chips:
        raise ConfigError(f"{', '.join(source.scenes)}: no chip with valid pixels")
    classes, labels, notes = _labels(source, chips)
    test_ids, dropped = split_chips(
        np.array([c.scene_id for c in chips]),
        np.array([c.window for c in chips], dtype=np.int64).reshape(-1, 4),
        source.split,
        source.test_fraction,
        source.split_seed,
    )
    is_test = np.zeros(len(chips), dtype=bool)
    is_test[test_ids] = True
    pool_ids = [c.id for c in chips if not is_test[c.id] and c.id not in dropped]
    if len(pool_ids) < 2:
        raise ConfigError(
            f"the split leaves {len(pool_ids)} pool chips: use smaller chips, a smaller "
            "--test-fraction or more scenes"
        )
    pool_boxes = int(sum(len(labels[i][1]) for i in pool_ids))
    test_boxes = int(sum(len(labels[i][1]) for i in test_ids))
    if not pool_boxes or not test_boxes:
        raise ConfigError(
            f"the {'pool' if not pool_boxes else 'test set'} holds no labelled object "
            f"({len(pool_ids)} pool chips, {len(test_ids)} test chips): try another "
            "--split-seed or --test-fraction, or --split chip"
        )
    summary = {
        "scenes": [cat.scene.path for cat in scenes],
        "classes": list(classes),
        "chips": len(chips),
        "pool_chips": len(pool_ids),
        "test_chips": len(test_ids),
        "dropped_overlapping_test": len(dropped),
        "pool_boxes": pool_boxes,
        "test_boxes": test_boxes,
        "features_outside_chips": notes,
    }
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / IMAGES).mkdir(parents=True)
    names = _write_chips(tmp / IMAGES, chips, [*pool_ids, *test_ids.tolist()], progress)
    for name, ids in ((POOL_JSON, pool_ids), (TEST_JSON, test_ids.tolist())):
        coco = _coco(chips, ids, names, labels, classes)
        (tmp / name).write_text(json.dumps(coco))
    (tmp / MANIFEST).write_text(json.dumps({**manifest, "summary": summary}, indent=1))
    if folder.exists():
        shutil.rmtree(folder)  # an earlier half-written folder without a manifest
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, folder)
    return _dataset(folder, summary)


def split_chips(
    scene_of: np.ndarray, windows: np.ndarray, split: Split, test_fraction: float, seed: int
) -> tuple[np.ndarray, set[int]]:
    """(test chip indices (T,) int64 sorted, pool chips dropped for touching a test chip).

    ``scene_of``: (N,) scene index of each chip; ``windows``: (N, 4) [col, row, w, h] in
    its scene's pixels. "scene": whole scenes drawn in a seeded order until the test chips
    reach ``test_fraction`` of N (at least one scene stays in the pool). "chip": a seeded
    random ``test_fraction`` of the chips (at least one); a pool chip whose window overlaps
    a test chip's window of the same scene (positive area) is dropped.
    """
    n = len(scene_of)
    rng = np.random.default_rng(seed)
    want = max(1, round(test_fraction * n))
    if split == "scene":
        ids = np.unique(scene_of)
        if len(ids) < 2:
            raise ConfigError(
                "--split scene needs at least two scenes (one for the pool, one for testing); "
                "use --split chip with a single scene"
            )
        test_scenes: list[int] = []
        count = 0
        for s in rng.permutation(ids)[:-1].tolist():
            if count >= want:
                break
            test_scenes.append(int(s))
            count += int((scene_of == s).sum())
        return np.flatnonzero(np.isin(scene_of, test_scenes)).astype(np.int64), set()
    if n < 2:
        raise ConfigError("--split chip needs at least two chips: use smaller chips")
    test = np.sort(rng.permutation(n)[: min(want, n - 1)]).astype(np.int64)
    is_test = np.zeros(n, dtype=bool)
    is_test[test] = True
    x1, y1 = windows[:, 0], windows[:, 1]
    x2, y2 = x1 + windows[:, 2], y1 + windows[:, 3]
    dropped: set[int] = set()
    for t in test.tolist():
        touch = (
            (scene_of == scene_of[t])
            & ~is_test
            & (np.minimum(x2, x2[t]) > np.maximum(x1, x1[t]))
            & (np.minimum(y2, y2[t]) > np.maximum(y1, y1[t]))
        )
        dropped.update(np.flatnonzero(touch).tolist())
    return test, dropped


def _catalogue(source: GeoSource) -> list[Catalogued]:
    """Every scene catalogued, scene id = its position; ConfigError listing the unreadable ones."""
    paths, problems = expand_inputs(source.scenes)
    tiling = TilingConfig(size=source.size, overlap=source.overlap, bands=source.bands)
    out: list[Catalogued] = []
    for path in paths:
        try:
            cat = catalogue(path, tiling)
        except GeoalError as error:
            problems.append(str(error))
            continue
        if cat.scene.crs is None:
            problems.append(f"{path}: no CRS, so GeoJSON labels cannot be placed on it")
            continue
        scene = dataclasses.replace(cat.scene, id=len(out))
        out.append(dataclasses.replace(cat, scene=scene))
    if problems:
        raise ConfigError("cannot use the scenes:\n  " + "\n  ".join(problems))
    if not out:
        raise ConfigError(f"--scenes {' '.join(source.scenes)}: no raster found")
    names = [cat.scene.name for cat in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"two scenes share a name: {sorted(names)}; rename one")
    return out


def _manifest(source: GeoSource, scenes: list[Catalogued]) -> dict[str, Any]:
    settings = asdict(source)
    settings["labels"] = [str(p.resolve()) for p in source.labels]
    settings["scenes"] = [cat.scene.fingerprint for cat in scenes]
    settings["label_sha256"] = [_sha256(p) for p in source.labels]
    return {"key": json.loads(json.dumps(settings))}


def _sha256(path: Path) -> str:
    from geoal.detect.loading import sha256_file

    try:
        return sha256_file(path)
    except OSError as error:
        raise FormatError(f"{path}: cannot read the labels ({error.strerror or error})") from error


def _labels(
    source: GeoSource, chips: list[Chip]
) -> tuple[tuple[str, ...], dict[int, tuple[np.ndarray, np.ndarray]], int]:
    """(classes, chip id -> ((n, 4) xyxy chip px, (n,) class index), features on no chip)."""
    frames = []
    for path in source.labels:
        gdf = read_geojson(path)
        if source.class_field not in gdf.columns:
            if source.default_class is None:
                props = [c for c in gdf.columns if c != "geometry"]
                raise FormatError(
                    f"{path}: no {source.class_field!r} property (it has {props[:12]}); "
                    "give --class-field, or --default-class NAME for a one-class file"
                )
            gdf = gdf.assign(**{source.class_field: source.default_class})
        frames.append((path, gdf))
    found = sorted(
        {str(v) for _, g in frames for v in g[source.class_field].dropna().unique().tolist()}
    )
    classes = source.classes or tuple(found)
    if not classes:
        raise FormatError(f"{', '.join(map(str, source.labels))}: no labelled feature")
    boxes: dict[int, list[np.ndarray]] = {c.id: [] for c in chips}
    cls: dict[int, list[np.ndarray]] = {c.id: [] for c in chips}
    outside = 0
    for path, gdf in frames:
        result = from_geojson(
            gdf, chips, classes, source.class_field, source.min_visible, source=str(path)
        )
        if result.problems:
            shown = "\n  ".join(str(p) for p in result.problems[:10])
            more = len(result.problems) - 10
            raise FormatError(
                f"{path}: {len(result.problems)} problem(s):\n  {shown}"
                + (f"\n  ... and {more} more" if more > 0 else "")
            )
        outside += len(result.notes)
        for cid, b in result.labels.items():
            boxes[cid].append(b.xyxy)
            cls[cid].append(b.cls)
    labels = {
        cid: (
            np.concatenate(boxes[cid]).reshape(-1, 4) if boxes[cid] else np.zeros((0, 4)),
            np.concatenate(cls[cid]).astype(np.int64) if cls[cid] else np.zeros(0, dtype=np.int64),
        )
        for cid in boxes
    }
    return tuple(classes), labels, outside


def _write_chips(
    folder: Path, chips: list[Chip], ids: list[int], progress: bool
) -> dict[int, tuple[str, int, int]]:
    """Write the chips ``ids`` as PNG (the stretched RGB the model sees).

    Returns chip id -> (file name, width, height in pixels).
    """
    from PIL import Image
    from tqdm import tqdm

    names: dict[int, tuple[str, int, int]] = {}
    stream = read_chips(chips[cid] for cid in sorted(ids))
    bar = tqdm(total=len(ids), desc="writing chips", unit="chip", disable=not progress)
    try:
        for cid, pixels in stream:
            name = Path(chips[cid].file_name).name
            Image.fromarray(pixels).save(folder / name, format="PNG")
            names[cid] = (name, int(pixels.shape[1]), int(pixels.shape[0]))
            bar.update(1)
    finally:
        bar.close()
    return names


def _coco(
    chips: list[Chip],
    ids: Sequence[int],
    names: dict[int, tuple[str, int, int]],
    labels: dict[int, tuple[np.ndarray, np.ndarray]],
    classes: tuple[str, ...],
) -> dict[str, Any]:
    """A COCO dict of the chips ``ids`` (image id = chip id + 1, category id = class + 1)."""
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for cid in sorted(int(i) for i in ids):
        chip = chips[cid]
        file_name, width, height = names[cid]
        images.append(
            {
                "id": cid + 1,
                "file_name": file_name,
                "width": width,
                "height": height,
                "scene": chip.scene.name,
                "window": list(chip.window),
            }
        )
        xyxy, k = labels[cid]
        for box, c in zip(xyxy.tolist(), k.tolist(), strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": cid + 1,
                    "category_id": int(c) + 1,
                    "bbox": [round(box[0], 3), round(box[1], 3), round(w, 3), round(h, 3)],
                    "area": round(w * h, 3),
                    "iscrowd": 0,
                }
            )
    return {
        "images": images,
        "annotations": anns,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(classes)],
    }


def _dataset(folder: Path, summary: dict[str, Any]) -> GeoDataset:
    return GeoDataset(
        folder=folder,
        pool_json=folder / POOL_JSON,
        test_json=folder / TEST_JSON,
        images=folder / IMAGES,
        summary=summary,
    )
