"""Benchmark: `geoal predict` on each backend against SAHI's sliced prediction, same image, model and settings.

Both slice a synthetic uint8 RGB GeoTIFF into 640 px chips with 20 % overlap, run
the same YOLO checkpoint (a random yolov8n with calibrated BatchNorm statistics and
shrunk class logits, so its detections depend on the image and their scores do not
tie at 1.0; no pretrained weights exist offline) at the same confidence, and merge
with greedy NMM / IOS / 0.5, class-aware. Reported:

- match_rate: share of SAHI's merged objects that geoal (default backend) also reports
  (same class, IoU >= 0.9), and the reverse; per backend match_rate_<backend>, and
  agreement_<backend>: the share of torch's objects it reports at IoU >= 0.99 (both ways);
- throughput (chips/s) side by side, one geoal arm per backend (torch, openvino,
  onnxruntime; the exported ones' ONNX file is made once before the timings), best of
  --repeat runs, each in a fresh process: the first scene of a process (imports and
  first-call set-up included, what one `geoal predict` run on one scene costs), then
  the same scene again in the same process ("warm": the steady state of a long run);
  speedup_vs_sahi_<backend> and warm_speedup_vs_sahi_<backend>;
- the same first-run throughput while another process keeps one core busy
  (busy_speedup_vs_sahi_<backend>), unless --no-busy;
- whole processes, as a shell runs them: the wall time from starting the worker process to
  its exit, imports, model loading and writing the objects included, one scene per process
  (process_speedup_vs_sahi_<backend>; with the export on disk, geoal's OpenVINO and ONNX
  Runtime processes import neither torch nor ultralytics);
- the floor: the bare network of each backend on the same number of chips, through geoal's
  CPU streams, no NMS or merge (network_chips_s_<backend>): what no pipeline around that
  network can beat;
- peak RSS of geoal on the scene and on a scene 4x larger in area (it must not grow
  with the scene: geoal holds detections, never the scene).

Last stdout line: one JSON object with geoal_chips_s (default backend), sahi_chips_s,
match_rate, speedup_vs_sahi_<backend>, peak_rss_mb (and more).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="geoal-yolo-"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
# Workers start from this environment: importing ultralytics here (make_checkpoint) sets
# OMP_NUM_THREADS=1 in os.environ, which a `geoal predict` run from a shell does not see.
_WORKER_ENV = dict(os.environ)

CONF, SIZE, OVERLAP = 0.75, 640, 0.2
BACKENDS = (
    "torch",
    "openvino",
    "onnxruntime",
)  # the bench model's scores spread over about 0.5-0.86


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def worker_geoal(
    scene: str, weights: str, batch: int, out: str, warm: bool = False, backend: str = "auto"
) -> dict:
    from geoal.detect import load_detector
    from geoal.predict import scene as predict_scene_mod

    detector = load_detector(weights, None, backend=backend)
    opts = predict_scene_mod.PredictOptions(
        model=weights, conf=CONF, size=SIZE, overlap=OVERLAP, batch=batch
    )
    t0 = time.perf_counter()
    det = predict_scene_mod.predict_scene(detector, scene, opts, progress=False)
    seconds = time.perf_counter() - t0
    objects = det.objects
    Path(out).write_text(json.dumps(objects[:, :6].tolist()))
    warm_seconds = None
    if warm:
        t0 = time.perf_counter()
        predict_scene_mod.predict_scene(detector, scene, opts, progress=False)
        warm_seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "warm_seconds": warm_seconds,
        "chips": det.chips,
        "objects": len(objects),
        "raw": det.raw_detections,
        "peak_rss_mb": _rss_mb(),
        "backend": detector.backend,
    }


def worker_network(
    scene: str, weights: str, batch: int, out: str, warm: bool = False, backend: str = "auto"
) -> dict:
    """The bare network: geoal's forward calls (its CPU streams) on the scene's chip count."""
    import numpy as np
    import rasterio

    from geoal.detect import load_detector
    from geoal.raster.grid import chip_grid

    del out, warm
    with rasterio.open(scene) as ds:
        n_chips = len(chip_grid(ds.width, ds.height, SIZE, OVERLAP))
    detector = load_detector(weights, None, backend=backend)
    chips = np.random.default_rng(0).integers(0, 256, (batch, SIZE, SIZE, 3), dtype=np.uint8)
    views = ("identity",)
    [c.result() for c in detector._submit(chips, views).calls]  # compile, first call
    t0 = time.perf_counter()
    pending = [detector._submit(chips, views) for _ in range(-(-n_chips // batch))]
    for batch_calls in pending:
        [c.result() for c in batch_calls.calls]
    return {
        "seconds": time.perf_counter() - t0,
        "chips": len(pending) * batch,
        "backend": detector.backend,
    }


def worker_sahi(
    scene: str, weights: str, batch: int, out: str, warm: bool = False, backend: str = ""
) -> dict:
    import numpy as np
    from sahi import AutoDetectionModel
    from sahi.predict import get_sliced_prediction
    from sahi.slicing import get_slice_bboxes

    model = AutoDetectionModel.from_pretrained(
        model_type="ultralytics",
        model_path=weights,
        confidence_threshold=CONF,
        device="cpu",
        image_size=SIZE,
    )
    import rasterio

    with rasterio.open(scene) as ds:
        height, width = ds.height, ds.width
    n_chips = len(get_slice_bboxes(height, width, SIZE, SIZE, False, OVERLAP, OVERLAP))

    def run() -> Any:
        return get_sliced_prediction(  # SAHI reads the file itself, inside the timing, as geoal
            str(scene),
            model,
            slice_height=SIZE,
            slice_width=SIZE,
            overlap_height_ratio=OVERLAP,
            overlap_width_ratio=OVERLAP,
            perform_standard_pred=False,
            postprocess_type="GREEDYNMM",
            postprocess_match_metric="IOS",
            postprocess_match_threshold=0.5,
            verbose=0,
            batch_size=batch,
        )

    t0 = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - t0
    warm_seconds = None
    if warm:
        t0 = time.perf_counter()
        run()
        warm_seconds = time.perf_counter() - t0
    objs = [
        [*p.bbox.to_xyxy(), p.score.value, p.category.id] for p in result.object_prediction_list
    ]
    Path(out).write_text(json.dumps(np.asarray(objs, dtype=float).reshape(-1, 6).tolist()))
    return {
        "seconds": seconds,
        "warm_seconds": warm_seconds,
        "chips": n_chips,
        "objects": len(objs),
        "peak_rss_mb": _rss_mb(),
    }


def run_worker(args: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", *args],
        capture_output=True,
        text=True,
        timeout=3600,
        env=_WORKER_ENV,
    )
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr or proc.stdout).strip().splitlines()[-1][:400])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def match_rate(a: list[list[float]], b: list[list[float]], iou: float = 0.9) -> float:
    """Share of objects in ``a`` with a same-class object in ``b`` at IoU >= ``iou``."""
    import numpy as np

    if not a:
        return 1.0 if not b else 0.0
    A, B = np.asarray(a), np.asarray(b).reshape(-1, 6)
    hits = 0
    for row in A:
        same = B[B[:, 5] == row[5]]
        if not len(same):
            continue
        ix = np.clip(np.minimum(row[2], same[:, 2]) - np.maximum(row[0], same[:, 0]), 0, None)
        iy = np.clip(np.minimum(row[3], same[:, 3]) - np.maximum(row[1], same[:, 1]), 0, None)
        inter = ix * iy
        union = (
            (row[2] - row[0]) * (row[3] - row[1])
            + (same[:, 2] - same[:, 0]) * (same[:, 3] - same[:, 1])
            - inter
        )
        hits += bool(np.any(inter / np.maximum(union, 1e-9) >= iou))
    return hits / len(A)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--side", type=int, default=3200, help="scene side in pixels (default 3200: 36 chips)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a 1600 px scene, one repeat (a few minutes)"
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated arms")
    parser.add_argument("--no-busy", action="store_true", help="skip the busy-core runs")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, scene_arg, weights_arg, batch_arg, out_arg, warm_arg, backend_arg = args.worker
        worker = {"geoal": worker_geoal, "sahi": worker_sahi, "network": worker_network}[kind]
        print(
            json.dumps(
                worker(
                    scene_arg,
                    weights_arg,
                    int(batch_arg),
                    out_arg,
                    warm_arg == "warm",
                    backend_arg,
                )
            )
        )
        return

    from bench_scoring import BusyCore, make_checkpoint

    from geoal.detect import load_detector
    from geoal.detect.backends import resolve_backend
    from geoal.synthetic import CLASSES, SceneSpec, write_scene

    load_start = os.getloadavg()
    side = 1600 if args.quick else args.side
    repeat = 1 if args.quick else args.repeat
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    default = resolve_backend(None, "cpu")
    work = Path(tempfile.mkdtemp(prefix="geoal-bench-predict-"))
    scene = work / "scene.tif"
    big = work / "scene_4x.tif"
    write_scene(scene, SceneSpec(width=side, height=side, objects=side // 20, seed=2))
    write_scene(big, SceneSpec(width=2 * side, height=2 * side, objects=side // 10, seed=3))
    weights = work / "model.pt"
    make_checkpoint(weights, CLASSES, SIZE, logit_scale=0.03)
    export_s = {}
    for name in backends:  # the export is made once per model; every run after reuses it
        if name != "torch":
            import numpy as np

            t0 = time.perf_counter()
            det = load_detector(weights, None, backend=name)
            det.predict_batch(np.zeros((1, SIZE, SIZE, 3), np.uint8), details=False)
            export_s[name] = round(time.perf_counter() - t0, 2)

    def once(kind: str, backend: str, target: Path = scene, warm: str = "warm") -> dict:
        out = str(work / f"{kind}-{backend}-{target.stem}.json")
        t0 = time.perf_counter()
        res = run_worker([kind, str(target), str(weights), str(args.batch), out, warm, backend])
        res["process_seconds"] = time.perf_counter() - t0
        if kind != "sahi" and res["backend"] != backend:
            raise RuntimeError(f"arm {backend} ran {res['backend']}")
        res["out"] = out
        return res

    arms = [("sahi", "")] + [("geoal", b) for b in backends]
    runs: dict[tuple[str, str], list[dict]] = {arm: [] for arm in arms}
    fresh: dict[tuple[str, str], list[dict]] = {arm: [] for arm in arms}
    network: dict[str, list[dict]] = {name: [] for name in backends}
    for _ in range(repeat):
        for arm in arms:
            runs[arm].append(once(*arm))
            fresh[arm].append(once(*arm, warm="once"))
        for name in backends:
            network[name].append(once("network", name, warm="once"))
    busy: dict[tuple[str, str], list[dict]] = {arm: [] for arm in arms}
    if not args.no_busy:
        with BusyCore():
            for _ in range(repeat):
                for arm in arms:
                    busy[arm].append(once(*arm, warm="once"))

    def rate(res: dict, key: str = "seconds") -> float:
        return res["chips"] / res[key]

    def best(arm: tuple[str, str], key: str = "seconds", table: dict | None = None) -> float:
        return max(rate(r, key) for r in (table or runs)[arm])

    def objects(arm: tuple[str, str]) -> list[list[float]]:
        return json.loads(Path(runs[arm][-1]["out"]).read_text())

    sahi = ("sahi", "")
    s = runs[sahi][0]
    result: dict[str, Any] = {
        "scene_px": side,
        "chips": runs[arms[1]][0]["chips"],
        "sahi_chips": s["chips"],
        "batch": args.batch,
        "cpus": os.cpu_count(),
        "default_backend": default,
        "load_avg_start": [round(v, 2) for v in load_start],
        "sahi_chips_s": round(best(sahi), 3),
        "sahi_warm_chips_s": round(best(sahi, "warm_seconds"), 3),
        "sahi_objects": len(objects(sahi)),
        "sahi_peak_rss_mb": round(s["peak_rss_mb"], 1),
    }
    if busy[sahi]:
        result["sahi_busy_chips_s"] = round(best(sahi, table=busy), 3)
    result["sahi_process_chips_s"] = round(best(sahi, "process_seconds", fresh), 3)
    for name in backends:
        arm = ("geoal", name)
        result[f"{name}_chips_s"] = round(best(arm), 3)
        result[f"{name}_warm_chips_s"] = round(best(arm, "warm_seconds"), 3)
        result[f"speedup_vs_sahi_{name}"] = round(best(arm) / best(sahi), 3)
        result[f"warm_speedup_vs_sahi_{name}"] = round(
            best(arm, "warm_seconds") / best(sahi, "warm_seconds"), 3
        )
        if busy[arm]:
            result[f"{name}_busy_chips_s"] = round(best(arm, table=busy), 3)
            result[f"busy_speedup_vs_sahi_{name}"] = round(
                best(arm, table=busy) / best(sahi, table=busy), 3
            )
        result[f"{name}_process_chips_s"] = round(best(arm, "process_seconds", fresh), 3)
        result[f"process_speedup_vs_sahi_{name}"] = round(
            best(arm, "process_seconds", fresh) / best(sahi, "process_seconds", fresh), 3
        )
        result[f"network_chips_s_{name}"] = round(max(rate(r) for r in network[name]), 3)
        result[f"{name}_peak_rss_mb"] = round(min(r["peak_rss_mb"] for r in runs[arm]), 1)
        result[f"{name}_objects"] = len(objects(arm))
        result[f"match_rate_{name}"] = round(match_rate(objects(sahi), objects(arm)), 4)
        if name != "torch" and "torch" in backends:
            ref = objects(("geoal", "torch"))
            result[f"agreement_{name}"] = round(
                min(match_rate(ref, objects(arm), 0.99), match_rate(objects(arm), ref, 0.99)), 4
            )
    main_arm = ("geoal", default if default in backends else backends[0])
    g_objs, s_objs = objects(main_arm), objects(sahi)
    g_big = once("geoal", main_arm[1], target=big, warm="once")
    result.update(
        {
            "geoal_backend": main_arm[1],
            "geoal_chips_s": round(best(main_arm), 3),
            "speedup_vs_sahi": round(best(main_arm) / best(sahi), 3),
            "geoal_warm_chips_s": round(best(main_arm, "warm_seconds"), 3),
            "warm_speedup_vs_sahi": round(
                best(main_arm, "warm_seconds") / best(sahi, "warm_seconds"), 3
            ),
            "geoal_objects": len(g_objs),
            "match_rate": round(match_rate(s_objs, g_objs), 4),
            "match_rate_reverse": round(match_rate(g_objs, s_objs), 4),
            "peak_rss_mb": round(runs[main_arm][0]["peak_rss_mb"], 1),
            "peak_rss_mb_4x_scene": round(g_big["peak_rss_mb"], 1),
            "export_s": export_s,
            "load_avg_end": [round(v, 2) for v in os.getloadavg()],
        }
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
