"""Open scenes and catalogue them: metadata, fingerprint, statistics, chip grid.

Nothing here reads a scene whole at full resolution: nodata masks and stretch
statistics come from one decimated read (served from overviews when the file
has them), and truncation is caught by reading a few single pixels.
"""

from __future__ import annotations

import glob
import hashlib
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from geoal.config import TilingConfig
from geoal.errors import RasterError
from geoal.raster.grid import (
    chip_grid,
    covered_fractions,
    covered_grid,
    grid_count,
    valid_fractions,
)
from geoal.raster.stretch import percentile_clip

RASTER_SUFFIXES = {".tif", ".tiff", ".vrt", ".jpg", ".jpeg", ".png", ".jp2", ".img"}
NOT_RASTER_SUFFIXES = {
    # labels, vectors, sidecars and notes that sit beside scenes and that `geoal tile data/*`
    # sweeps up: skipped with a note, not reported as unreadable rasters
    ".geojson", ".json", ".csv", ".txt", ".md", ".shp", ".shx", ".dbf", ".prj", ".cpg",
    ".gpkg", ".kml", ".xml", ".ovr", ".msk", ".qml", ".qmd", ".aux", ".pdf", ".html", ".zip",
}  # fmt: skip
GDAL_CACHE_MB = "64"
"""GDAL's block cache unless the user set GDAL_CACHEMAX: its default (5 % of RAM) lets the
cache, and so a process's memory, grow with the scene read; chips read each block about
once (twice where they overlap), so a small cache loses nothing."""
_HASH_CHUNK = 1 << 20
T = TypeVar("T")
GDAL_NETWORK_DEFAULTS = {
    "GDAL_HTTP_CONNECTTIMEOUT": "15",  # seconds to open a connection
    "GDAL_HTTP_LOW_SPEED_TIME": "30",  # give up on a request that stalls this many seconds ...
    "GDAL_HTTP_LOW_SPEED_LIMIT": "1",  # ... below this many bytes per second
    "GDAL_HTTP_TIMEOUT": "300",  # seconds for one request, however slow or fast
    "GDAL_HTTP_MAX_RETRY": "2",  # retries of a request that failed on a 429/5xx or a timeout
    "GDAL_HTTP_RETRY_DELAY": "1",  # seconds before the first retry (then doubled)
}
"""GDAL's HTTP settings for /vsicurl/, /vsis3/... unless the user set them: GDAL's own default
is to wait for ever, so a server that accepts and never answers would hang ``geoal tile``
(holding the project's write lock) with no end and no message."""


Transform6 = tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class Scene:
    """A scene: where its file is, its pixel grid, its CRS and how it is shown.

    ``transform``: the affine (a, b, c, d, e, f), pixel -> CRS; ``crs``: WKT, None =
    pixel coordinates; ``bands``: the 3 1-based bands shown as R, G, B; ``stretch``:
    (lo, hi) per shown band, None = shown as stored; ``fingerprint``: the content hash
    (:func:`fingerprint`). ``id`` is the project's scene id (0 for a scene not stored).
    """

    id: int
    path: str
    name: str
    fingerprint: str
    driver: str
    width: int
    height: int
    band_count: int
    dtype: str
    crs: str | None
    transform: Transform6
    nodata: float | None
    bands: tuple[int, int, int]
    stretch: tuple[tuple[float, float], ...] | None
    chip_size: int
    overlap: float


@dataclass(frozen=True)
class Catalogued:
    """A scene ready to be stored (``scene.id`` 0), its chip windows and their valid fractions."""

    scene: Scene
    windows: np.ndarray  # (N, 4) int64 [col, row, w, h]
    valid: np.ndarray  # (N,) float, 0-1
    skipped: int  # chips dropped as (nearly) all nodata
    warnings: tuple[str, ...]


def expand_inputs(items: Iterable[str]) -> tuple[list[str], list[str]]:
    """Files from paths, globs and folders (recursive for rasters); returns (paths, problems)."""
    paths: list[str] = []
    problems: list[str] = []
    for item in items:
        if item.startswith("/vsi") or "://" in item:
            paths.append(item)
        elif os.path.isdir(item):
            found = sorted(
                str(p) for p in Path(item).rglob("*") if p.suffix.lower() in RASTER_SUFFIXES
            )
            if not found:
                problems.append(
                    f"{item}: folder holds no raster files ({', '.join(sorted(RASTER_SUFFIXES))})"
                )
            paths.extend(found)
        elif any(ch in item for ch in "*?["):
            found = sorted(glob.glob(item, recursive=True))
            if not found:
                problems.append(f"{item}: pattern matches no files")
            paths.extend(found)
        else:
            paths.append(item)
    return list(dict.fromkeys(paths)), problems


def canonical_path(path: str) -> str:
    """Absolute, resolved path for local files; GDAL URLs unchanged."""
    if path.startswith("/vsi") or "://" in path:
        return path
    try:
        return str(Path(path).resolve())
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError for a symlink loop
        raise RasterError(
            f"{path}: symlink loop (a link that points back to itself); fix or remove the link"
        ) from None


def fingerprint(path: str, ds: Any) -> str:
    """Content fingerprint: sha256 of size, head and tail (1 MiB each), and the grid.

    Cheap on a 10 GB file, and the same file copied elsewhere has the same print.
    """
    h = hashlib.sha256()
    h.update(repr((ds.width, ds.height, ds.count, ds.dtypes, tuple(ds.transform))).encode())
    if os.path.isfile(path):
        size = os.path.getsize(path)
        h.update(str(size).encode())
        with open(path, "rb") as fh:
            h.update(fh.read(_HASH_CHUNK))
            if size > _HASH_CHUNK:
                fh.seek(max(_HASH_CHUNK, size - _HASH_CHUNK))
                h.update(fh.read(_HASH_CHUNK))
    else:
        h.update(path.encode())
    return h.hexdigest()


# (path, fingerprint) -> the file's stat when it last matched: a scene is hashed once per
# process (command), then only stat()ed; a write changes st_mtime/st_ctime/st_size.
_UNCHANGED: dict[tuple[str, str], tuple[int, ...]] = {}
_UNCHANGED_LOCK = threading.Lock()


def _stat_key(path: str) -> tuple[int, ...] | None:
    if path.startswith("/vsi") or "://" in path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def check_unchanged(scene: Scene, ds: Any) -> None:
    """RasterError unless ``ds`` (the open file of stored ``scene``) is the file that was tiled.

    Compares the content fingerprint stored at tile time (size, first and last MiB, grid):
    chips, labels and scores refer to the tiled pixels, so a file overwritten since must
    not be read as if it were the same. Cheap: each scene is
    hashed once per process, later calls only stat the file.
    """
    key = (scene.path, scene.fingerprint)
    stat = _stat_key(scene.path)
    with _UNCHANGED_LOCK:
        if stat is not None and _UNCHANGED.get(key) == stat:
            return
    if fingerprint(scene.path, ds) == scene.fingerprint:
        if stat is not None:
            with _UNCHANGED_LOCK:
                _UNCHANGED[key] = stat
        return
    was = (scene.width, scene.height, scene.band_count)
    now = (ds.width, ds.height, ds.count)
    if was != now:
        detail = (
            f"now {now[0]} x {now[1]} px, {now[2]} band(s); "
            f"tiled at {was[0]} x {was[1]} px, {was[2]} band(s)"
        )
    elif tuple(ds.transform)[:6] != tuple(scene.transform):
        detail = "its georeferencing differs"
    else:
        detail = "same size, other content"
    raise RasterError(
        f"{scene.path}: the file changed since it was tiled as scene {scene.id} ({scene.name}): "
        f"{detail}; its chips, labels and scores refer to the old pixels: put the tiled file "
        "back, and add a new version under another name with 'geoal tile'"
    )


def open_scene(scene: Scene) -> Any:
    """Open a stored scene's file, checked to be the file that was tiled.

    A file that is gone, or changed since tiling, raises RasterError saying what to do.
    """
    local = not (scene.path.startswith("/vsi") or "://" in scene.path)
    if local and not os.path.exists(scene.path):
        raise RasterError(
            f"{scene.path}: file not found; it was tiled as scene {scene.id} ({scene.name}): "
            "if it moved, run 'geoal tile NEW_PATH' to tell the project where it is now"
        )
    ds = open_raster(scene.path)
    try:
        check_unchanged(scene, ds)
    except BaseException:
        ds.close()
        raise
    return ds


def check_scenes(scenes: Iterable[Scene]) -> None:
    """:func:`open_scene` for each scene (once each); the first problem raises."""
    for scene in scenes:
        open_scene(scene).close()


def open_raster(path: str) -> Any:
    """Open a raster with rasterio; missing, unreadable or non-raster files raise RasterError."""
    # Read by GDAL when its block cache starts, so before the first rasterio read.
    os.environ.setdefault("GDAL_CACHEMAX", GDAL_CACHE_MB)
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    local = not (path.startswith("/vsi") or "://" in path)
    if not local:
        for key, value in GDAL_NETWORK_DEFAULTS.items():  # read by GDAL at each request
            os.environ.setdefault(key, value)
    if local and not os.path.exists(path):
        raise RasterError(f"{path}: file not found")
    if local and os.path.isdir(path):
        raise RasterError(f"{path}: is a folder, not a raster")
    if local and os.path.getsize(path) == 0:
        raise RasterError(f"{path}: file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        msg = str(exc).split("\n")[0]
        if not local and ("too slow" in msg or "timed out" in msg):
            raise RasterError(
                f"{path}: the server did not answer ({msg}); check the URL and the network, "
                "or allow longer with GDAL_HTTP_LOW_SPEED_TIME / GDAL_HTTP_TIMEOUT (seconds)"
            ) from None
        raise RasterError(f"{path}: not a readable raster ({msg})") from None


def interruptible(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``func(*args, **kwargs)`` in a worker thread, so that Ctrl-C stops the caller at once.

    GDAL blocks in C while it waits for a server (Python runs no signal handler until it
    returns); the caller waits on the thread instead, which Ctrl-C interrupts. The thread
    is a daemon: an interrupted process exits without waiting for the server.
    """
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = func(*args, **kwargs)
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=work, name="geoal-catalogue", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return cast(T, box["value"])


def default_bands(ds: Any) -> tuple[int, int, int]:
    """Bands shown as R, G, B: the first three non-alpha bands, or one band thrice."""
    from rasterio.enums import ColorInterp

    usable = [i + 1 for i, ci in enumerate(ds.colorinterp) if ci != ColorInterp.alpha]
    usable = usable or [1]
    if len(usable) >= 3:
        return usable[0], usable[1], usable[2]
    return usable[0], usable[0], usable[0]


def resolve_bands(ds: Any, path: str, bands: tuple[int, ...] | None) -> tuple[int, int, int]:
    """The 3 band indexes to show, validated against the scene's band count."""
    if bands is None:
        return default_bands(ds)
    bad = [b for b in bands if not 1 <= b <= ds.count]
    if bad:
        raise RasterError(
            f"{path}: band {bad[0]} out of range: the scene has {ds.count} band(s) (1-{ds.count})"
        )
    if len(bands) == 1:
        return bands[0], bands[0], bands[0]
    return bands[0], bands[1], bands[2]


def statistics_shape(width: int, height: int, overview_max: int) -> tuple[int, int]:
    """(h, w) of the decimated statistics read: longest side <= overview_max."""
    scale = max(width, height) / overview_max
    if scale <= 1:
        return height, width
    return max(1, round(height / scale)), max(1, round(width / scale))


def decimated_sample(
    ds: Any, bands: tuple[int, ...], overview_max: int, window: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """One decimated read: band data (B, h, w) and the valid mask (h, w) bool.

    The mask honours the nodata value, internal masks and alpha (GDAL's dataset
    mask) and NaN in float data. Served from overviews when the file has them.
    ``window``: a rasterio Window to sample instead of the whole scene.
    """
    from rasterio.enums import MaskFlags, Resampling

    width, height = (ds.width, ds.height) if window is None else (window.width, window.height)
    h, w = statistics_shape(int(width), int(height), overview_max)
    # One read of every band: the nodata mask needs them all, the stretch the shown ones.
    full = ds.read(out_shape=(ds.count, h, w), window=window, resampling=Resampling.nearest)
    data = full[[b - 1 for b in bands]]
    flags = ds.mask_flag_enums
    if all(f == [MaskFlags.all_valid] for f in flags):
        valid = np.ones((h, w), dtype=bool)
    elif ds.nodata is not None and all(MaskFlags.nodata in f for f in flags):
        # GDAL's dataset mask for nodata: valid where any band differs from nodata.
        nodata = ds.nodata
        if np.isnan(nodata):
            valid = ~np.all(np.isnan(full), axis=0)
        else:
            valid = np.any(full != np.asarray(nodata, dtype=full.dtype), axis=0)
    else:
        valid = ds.dataset_mask(out_shape=(h, w), window=window, resampling=Resampling.nearest) > 0
    if data.dtype.kind == "f":
        valid &= np.all(np.isfinite(data), axis=0)
    return data, valid


def _check_readable(ds: Any, path: str) -> None:
    """Read single pixels at the corners and centre: catches truncated files cheaply."""
    from rasterio.windows import Window

    w, h = ds.width, ds.height
    for col, row in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1), (w // 2, h // 2)):
        try:
            ds.read(1, window=Window(col, row, 1, 1))
        except Exception as exc:
            msg = str(exc).split("\n")[0]
            raise RasterError(
                f"{path}: cannot read pixels (truncated or corrupt file: {msg})"
            ) from None


def vrt_source_rects(path: str, ds: Any) -> np.ndarray | None:
    """Where a VRT mosaic has data: its sources' (M, 4) [x0, y0, x1, y1] in the VRT's pixels.

    None when ``ds`` is not a VRT file, or when its sources cover all of it (or a source
    has no DstRect: it fills the VRT), so every chip may hold data. ``gdalbuildvrt`` of
    two distant scenes makes a raster almost all gaps that read as zeros.
    """
    import xml.etree.ElementTree as ET

    if ds.driver != "VRT" or not os.path.isfile(path):
        return None
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return None
    if root.tag != "VRTDataset" or root.get("subClass"):  # a warped VRT: no source rects
        return None
    rects = []
    for band in root.iter("VRTRasterBand"):
        for source in band:
            if not source.tag.endswith("Source"):
                continue
            dst = source.find("DstRect")
            if dst is None:
                return None
            try:
                x, y = float(dst.get("xOff", "")), float(dst.get("yOff", ""))
                w, h = float(dst.get("xSize", "")), float(dst.get("ySize", ""))
            except ValueError:
                return None
            rects.append((max(x, 0.0), max(y, 0.0), min(x + w, ds.width), min(y + h, ds.height)))
    out = np.array([r for r in rects if r[2] > r[0] and r[3] > r[1]], dtype=np.float64)
    if not len(out):
        return out.reshape(0, 4)
    out = np.unique(out, axis=0)  # each band lists the same sources
    full = covered_fractions(np.array([[0, 0, ds.width, ds.height]]), out, ds.width, ds.height)[0]
    return None if full >= 1.0 - 1e-9 else out


def sources_sample(
    ds: Any, bands: tuple[int, ...], rects: np.ndarray, overview_max: int
) -> tuple[np.ndarray, np.ndarray]:
    """A decimated sample of a mosaic's sources only: data (B, 1, n) and valid (1, n).

    For a VRT so much larger than its sources that the whole-scene sample misses them.
    """
    from rasterio.windows import Window

    side = max(16, overview_max // max(1, int(np.ceil(np.sqrt(len(rects))))))
    parts, masks = [], []
    for x0, y0, x1, y1 in rects[:256]:
        win = Window(int(x0), int(y0), max(1, int(x1 - x0)), max(1, int(y1 - y0)))
        data, valid = decimated_sample(ds, bands, side, window=win)
        parts.append(data.reshape(len(bands), -1))
        masks.append(valid.reshape(-1))
    return np.concatenate(parts, axis=1)[:, None, :], np.concatenate(masks)[None, :]


def rect_mask(rects: np.ndarray, shape: tuple[int, int], width: int, height: int) -> np.ndarray:
    """(h, w) bool of a decimated grid over a ``width`` x ``height`` scene: pixel centres in ``rects``."""
    h, w = shape
    xs = (np.arange(w) + 0.5) * width / w
    ys = (np.arange(h) + 0.5) * height / h
    mask = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in rects:
        mask[np.ix_((ys >= y0) & (ys < y1), (xs >= x0) & (xs < x1))] = True
    return mask


def _check_chip_count(path: str, ds: Any, tiling: TilingConfig, n: int) -> None:
    """RasterError when a scene would make more chips than ``tiling.max_chips``."""
    if n > tiling.max_chips:
        raise RasterError(
            f"{path}: would make {n:,} chips (a {ds.width:,} x {ds.height:,} px scene in "
            f"{tiling.size} px chips), more than --max-chips {tiling.max_chips:,}; if the "
            f"scene is meant to be this large, run again with --max-chips {n}"
        )


def catalogue(path: str, tiling: TilingConfig, *, sample: bool = True) -> Catalogued:
    """Open ``path`` and compute what the store keeps about it, without a full-resolution read.

    ``sample=False`` skips the decimated read where nothing needs it: no stretch and
    every pixel valid by the file's mask flags (an 8-bit scene without nodata, mask
    or alpha). Every chip is then kept, and a block that cannot be decoded is found
    by the chip reads (``RasterError`` there) instead of here. ``geoal predict`` uses
    it: for a 3,200 px deflate scene the read costs as much as 5 % of the prediction.
    """
    ds = open_raster(path)
    notes: list[str] = []
    try:
        if ds.width < 1 or ds.height < 1 or ds.count < 1:
            raise RasterError(f"{path}: empty raster ({ds.width} x {ds.height}, {ds.count} bands)")
        bands = resolve_bands(ds, path, tiling.bands)
        _check_readable(ds, path)
        dtype = ds.dtypes[bands[0] - 1]
        mode = tiling.stretch.mode
        needs_stretch = mode == "always" or (mode == "auto" and dtype != "uint8")
        data, valid = _sample(ds, path, bands, tiling, sample or needs_stretch)
        rects = vrt_source_rects(path, ds)
        # a decimated pixel wider than a quarter chip cannot tell one chip's data from gaps
        coarse = max(ds.width, ds.height) / max(valid.shape) > tiling.size / 4
        if rects is not None:
            # pixels between a mosaic's sources read as 0 but are not data: out of the stretch
            if coarse and len(rects):  # the sample is too coarse to see the sources
                data, valid = sources_sample(ds, bands, rects, tiling.overview_max)
            else:
                valid = valid & rect_mask(rects, valid.shape, ds.width, ds.height)
        if not valid.any():
            raise RasterError(f"{path}: scene holds no valid pixels (all nodata); nothing to tile")
        stretch = None
        if needs_stretch:
            stretch = percentile_clip(data, valid, tiling.stretch.low, tiling.stretch.high)
        notes.extend(_scene_notes(path, ds, tiling.size))
        windows, frac = _chip_windows(path, ds, tiling, valid, rects, coarse, notes)
        keep = frac >= max(tiling.min_valid, 1e-9)
        return Catalogued(
            scene=_scene(path, ds, tiling, dtype, bands, stretch),
            windows=windows[keep],
            valid=frac[keep],
            skipped=int((~keep).sum()),
            warnings=tuple(notes),
        )
    finally:
        ds.close()


def _sample(
    ds: Any, path: str, bands: tuple[int, int, int], tiling: TilingConfig, wanted: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The decimated sample (B, h, w) and valid mask (h, w), or a 1-pixel stand-in.

    The read is skipped (a stand-in of one valid pixel) unless ``wanted`` or the file's
    mask flags say some pixels may be invalid.
    """
    from rasterio.enums import MaskFlags

    all_valid = all(f == [MaskFlags.all_valid] for f in ds.mask_flag_enums)
    if not wanted and all_valid:
        dtype = ds.dtypes[bands[0] - 1]
        return np.zeros((len(bands), 1, 1), dtype=dtype), np.ones((1, 1), dtype=bool)
    try:
        return decimated_sample(ds, bands, tiling.overview_max)
    except RasterError:
        raise
    except Exception as exc:
        msg = str(exc).split("\n")[0]
        raise RasterError(
            f"{path}: cannot read pixels (truncated or corrupt file: {msg})"
        ) from None


def _scene_notes(path: str, ds: Any, size: int) -> list[str]:
    """What is worth telling about a scene: no CRS, smaller than a chip."""
    notes = []
    if ds.crs is None:
        notes.append(f"{path}: no CRS; using pixel coordinates (footprints are in pixels)")
    if ds.width < size or ds.height < size:
        notes.append(
            f"{path}: scene ({ds.width} x {ds.height}) is smaller than the chip size "
            f"{size}; it becomes one padded chip"
        )
    return notes


def _chip_windows(
    path: str,
    ds: Any,
    tiling: TilingConfig,
    valid: np.ndarray,
    rects: np.ndarray | None,
    coarse: bool,
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray]:
    """The chip windows (N, 4) [col, row, w, h] and their valid fractions (N,) 0-1.

    ``valid``: the decimated (h, w) mask; ``rects``: a VRT's source rectangles (M, 4) or
    None; ``coarse``: the sample is too coarse to see nodata inside the sources. A note
    on the chips that lie where no source is goes to ``notes``.
    """
    grid = (ds.width, ds.height, tiling.size, tiling.overlap)
    if rects is None:
        _check_chip_count(path, ds, tiling, grid_count(*grid))
        windows = chip_grid(*grid)
        return windows, valid_fractions(valid, windows, ds.width, ds.height)
    windows = covered_grid(*grid, rects)
    _check_chip_count(path, ds, tiling, len(windows))
    uncovered = grid_count(*grid) - len(windows)
    if uncovered:
        notes.append(
            f"{path}: {uncovered:,} chips of the grid lie where none of the VRT's "
            f"{len(rects)} sources is; skipped"
        )
    frac = covered_fractions(windows, rects, ds.width, ds.height)
    if not coarse:  # the sample sees nodata inside the sources too
        frac = np.minimum(frac, valid_fractions(valid, windows, ds.width, ds.height))
    return windows, frac


def _scene(
    path: str,
    ds: Any,
    tiling: TilingConfig,
    dtype: str,
    bands: tuple[int, int, int],
    stretch: list[tuple[float, float]] | None,
) -> Scene:
    """The :class:`Scene` (id 0: not stored yet) of the open dataset ``ds`` of ``path``."""
    a, b, c, d, e, f = (float(v) for v in tuple(ds.transform)[:6])
    return Scene(
        id=0,
        path=canonical_path(path),
        name=Path(path).stem if not path.startswith("/vsi") else path.rsplit("/", 1)[-1],
        fingerprint=fingerprint(path, ds),
        driver=ds.driver,
        width=int(ds.width),
        height=int(ds.height),
        band_count=int(ds.count),
        dtype=str(dtype),
        crs=ds.crs.to_wkt() if ds.crs is not None else None,
        transform=(a, b, c, d, e, f),
        nodata=None if ds.nodata is None else float(ds.nodata),
        bands=(int(bands[0]), int(bands[1]), int(bands[2])),
        stretch=None if stretch is None else tuple((float(lo), float(hi)) for lo, hi in stretch),
        chip_size=tiling.size,
        overlap=tiling.overlap,
    )
