"""Benchmark: cataloguing and chip-read throughput of geoal against plain rasterio and SAHI.

Builds a large synthetic scene (tiled, deflate-compressed, with overviews and a
nodata border, like a real delivery), then in separate processes (so each peak
RSS is its own):

- geoal: catalogue the scene (decimated statistics, nodata skip) and read every
  kept chip as (H, W, 3) uint8 through ``iter_chips`` (thread pool);
- rasterio: a plain loop of ``ds.read(window=...)`` over the same windows (the floor);
- sahi: ``sahi.slicing.slice_image`` on the same scene, where it can run.

Last stdout line: one JSON object with geoal_mb_s, rasterio_mb_s, ratio_vs_rasterio,
sahi_mb_s (or null and sahi_error), peak_rss_mb, catalogue_s and more.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_mb() -> float:
    """Peak resident memory of this process in MB (VmHWM; ru_maxrss survives exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_geoal(scene: str, size: int, workers: int) -> dict:
    from geoal.config import TilingConfig
    from geoal.raster.chip import Chip
    from geoal.raster.reader import read_chips
    from geoal.raster.scene import catalogue

    t0 = time.perf_counter()
    cat = catalogue(scene, TilingConfig(size=size, overlap=0.0))
    t_cat = time.perf_counter() - t0
    chips = [Chip.at(cat.scene, i, w) for i, w in enumerate(cat.windows)]
    t0 = time.perf_counter()
    nbytes = 0
    for _, arr in read_chips(chips, workers=workers):
        nbytes += arr.nbytes
    t_read = time.perf_counter() - t0
    return {
        "catalogue_s": t_cat,
        "chips": len(chips),
        "skipped_nodata": cat.skipped,
        "read_s": t_read,
        "mb": nbytes / 1e6,
        "windows": cat.windows.tolist(),
        "peak_rss_mb": _rss_mb(),
    }


def worker_rasterio(scene: str, windows: list[list[int]]) -> dict:
    import rasterio
    from rasterio.windows import Window

    t0 = time.perf_counter()
    nbytes = 0
    with rasterio.open(scene) as ds:
        for col, row, w, h in windows:
            arr = ds.read(window=Window(col, row, w, h))
            nbytes += arr.nbytes
    return {"read_s": time.perf_counter() - t0, "mb": nbytes / 1e6, "peak_rss_mb": _rss_mb()}


def worker_sahi(scene: str, size: int) -> dict:
    from sahi.slicing import slice_image

    t0 = time.perf_counter()
    result = slice_image(
        image=scene,
        slice_height=size,
        slice_width=size,
        overlap_height_ratio=0.0,
        overlap_width_ratio=0.0,
        verbose=False,
    )
    images = result.images
    nbytes = sum(img.nbytes for img in images)
    return {
        "read_s": time.perf_counter() - t0,
        "mb": nbytes / 1e6,
        "chips": len(images),
        "peak_rss_mb": _rss_mb(),
    }


def run_worker(args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(tail[0][:300])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size", type=int, default=20000, help="scene side in pixels (default 20000)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a 6000 x 6000 scene (under 2 minutes)"
    )
    parser.add_argument("--chip", type=int, default=640, help="chip side in pixels")
    parser.add_argument("--workers", type=int, default=2, help="geoal reader threads")
    parser.add_argument("--repeat", type=int, default=3, help="runs per reader (median kept)")
    parser.add_argument("--keep", type=Path, default=None, help="folder to keep the scene in")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        kind, scene, *rest = args.worker
        if kind == "geoal":
            out = worker_geoal(scene, int(rest[0]), int(rest[1]))
        elif kind == "rasterio":
            out = worker_rasterio(scene, json.loads(Path(rest[0]).read_text()))
        else:
            out = worker_sahi(scene, int(rest[0]))
        print(json.dumps(out))
        return

    from geoal.synthetic import SceneSpec, write_scene

    side = 6000 if args.quick else args.size
    folder = args.keep or Path(tempfile.mkdtemp(prefix="geoal-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    scene = folder / f"bench_{side}.tif"
    t0 = time.perf_counter()
    if not scene.exists():
        print(
            f"writing {side} x {side} x 3 uint8 scene (deflate, 256 px tiles, overviews)...",
            file=sys.stderr,
        )
        spec = SceneSpec(
            width=side,
            height=side,
            bands=3,
            dtype="uint8",
            nodata=0,
            border=side // 8,
            overviews=True,
            objects=200,
            strip=1024,
        )
        write_scene(scene, spec)
    build_s = time.perf_counter() - t0

    # Alternate the two readers, each in a fresh process, and keep the median of
    # --repeat runs: one run of a few hundred chips is at the mercy of the machine.
    geoal_runs, rio_runs = [], []
    win_file = folder / "windows.json"
    for _ in range(args.repeat):
        g = run_worker(["geoal", str(scene), str(args.chip), str(args.workers)], timeout=3600)
        win_file.write_text(json.dumps(g.pop("windows")))
        r = run_worker(["rasterio", str(scene), str(win_file)], timeout=3600)
        geoal_runs.append(g)
        rio_runs.append(r)
    g = sorted(geoal_runs, key=lambda x: x["mb"] / x["read_s"])[len(geoal_runs) // 2]
    r = sorted(rio_runs, key=lambda x: x["mb"] / x["read_s"])[len(rio_runs) // 2]
    g["peak_rss_mb"] = max(x["peak_rss_mb"] for x in geoal_runs)
    sahi_mb_s = None
    sahi_error = None
    sahi_rss = None
    try:
        s = run_worker(["sahi", str(scene), str(args.chip)], timeout=1800)
        sahi_mb_s = s["mb"] / s["read_s"]
        sahi_rss = s["peak_rss_mb"]
    except Exception as exc:  # report why SAHI could not run on this scene
        sahi_error = f"{type(exc).__name__}: {exc}"
    geoal_mb_s = g["mb"] / g["read_s"]
    rasterio_mb_s = r["mb"] / r["read_s"]
    result = {
        "scene_px": side,
        "scene_raw_mb": side * side * 3 / 1e6,
        "build_s": round(build_s, 2),
        "catalogue_s": round(g["catalogue_s"], 3),
        "chips": g["chips"],
        "skipped_nodata": g["skipped_nodata"],
        "geoal_mb_s": round(geoal_mb_s, 1),
        "rasterio_mb_s": round(rasterio_mb_s, 1),
        "ratio_vs_rasterio": round(geoal_mb_s / rasterio_mb_s, 3),
        "sahi_mb_s": None if sahi_mb_s is None else round(sahi_mb_s, 1),
        "sahi_error": sahi_error,
        "sahi_peak_rss_mb": sahi_rss,
        "peak_rss_mb": round(g["peak_rss_mb"], 1),
        "rasterio_peak_rss_mb": round(r["peak_rss_mb"], 1),
        "workers": args.workers,
        "repeat": args.repeat,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
