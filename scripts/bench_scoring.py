"""Benchmark: `geoal score` on each backend against plain ultralytics `YOLO.predict`.

Same model (a random yolov8n with BatchNorm statistics calibrated on the scene's chips
and damped output layers, so that its outputs depend on the input and, like a trained
model's, give tens of detections per chip with scores spread over (0, 1); a local .pt),
same chips (640 px from a synthetic
georeferenced scene), same image size and batch, in one run; every arm runs in a
fresh process started with the environment of a shell (this script imports
ultralytics, which sets OMP_NUM_THREADS=1 for itself; `geoal score` from a shell
does not inherit that):

- plain: a rasterio loop reads each chip window, `YOLO.predict(list_of_chips, imgsz, batch)`;
- geoal, one arm per backend (torch, openvino, onnxruntime), one view and two views:
  `score_project` (thread-pool reads, prefetch, head-level NMS with class vectors,
  uncertainty, embeddings, store writes in transactions);
- busy: plain and every backend's one view again while another process keeps one
  core busy (a Python busy loop).

The exported backends' ONNX file is made once before the timings (its cost is reported
as export_s: a model is exported once, then every run reuses the file); each timing is
the best of --repeat runs and includes loading the model (and compiling the export)
on both sides. Agreement of each backend with torch is read from the stores: the share
of detections matched (same class, IoU >= 0.99, score within 1e-3, both ways), the
largest score difference, the Spearman correlation of chip scores for each aggregation
(the default ranking is miaod), the smallest embedding cosine.

Last stdout line: one JSON object with plain_chips_s, <backend>_chips_s,
speedup_vs_ultralytics_<backend> (plain time / geoal time), busy_speedup_vs_ultralytics_<backend>,
process_speedup_vs_ultralytics_<backend> (the same for the whole processes, start to exit),
two_view_ratio_<backend> (two-view time / plain time), agreement_<backend>, load averages.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="geoal-yolo-"))
# Arms start from this environment, taken before anything imports ultralytics.
_SHELL_ENV = dict(os.environ)

BACKENDS = ("torch", "openvino", "onnxruntime")
CONF, IOU = 0.05, 0.7


def make_checkpoint(
    path: Path,
    classes: tuple[str, ...],
    imgsz: int,
    logit_scale: float = 1.0,
    chips: Any = None,
    class_bias: float = -4.0,
) -> None:
    """A random yolov8n whose BatchNorm statistics are calibrated on random images.

    ``logit_scale`` shrinks the class logits: below 1 the scores spread inside (0, 1)
    instead of saturating at 1.0 (no ties between detections). ``chips`` ((N, S, S, 3)
    uint8 RGB): calibrate on these instead, and damp the box branch as the tests' model
    does (boxes a few strides wide): on the bench scene its scores spread over (0, 1)
    without ties, so that backends can be compared detection by detection.
    """
    import torch
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=len(classes), verbose=False)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        if chips is None:
            model(torch.rand(2, 3, imgsz, imgsz))
        else:
            model(torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255)
    model.eval()
    head = model.model[-1]
    for branch in head.cv3:  # zero class biases: scores spread over (0, 1), few ties
        branch[-1].bias.data.zero_()
        branch[-1].weight.data *= logit_scale
    if chips is not None:
        for branch in head.cv3:  # few objects per chip, as a trained model sees
            branch[-1].bias.data.fill_(class_bias)
        bins = torch.arange(head.reg_max, dtype=torch.float32).repeat(4)
        for branch in head.cv2:  # box sides of a few strides, not the whole chip
            branch[-1].weight.data.mul_(0.3)
            branch[-1].bias.data.copy_(-0.7 * bins)
    model.names = dict(enumerate(classes))
    torch.save({"model": model, "train_args": {}}, path)


# -- the arms, each in its own process -------------------------------------------------


def worker_plain(
    scene: str, weights: str, windows: list[list[int]], imgsz: int, batch: int
) -> dict:
    import rasterio
    from rasterio.windows import Window
    from ultralytics import YOLO

    # the model is loaded inside the timing on both sides: geoal score loads it too
    t0 = time.perf_counter()
    yolo = YOLO(weights, task="detect")
    with rasterio.open(scene) as ds:
        for i in range(0, len(windows), batch):
            # ultralytics takes numpy images as BGR: flip the RGB chip for it
            imgs = [
                ds.read(window=Window(*w)).transpose(1, 2, 0)[..., ::-1]
                for w in windows[i : i + batch]
            ]
            yolo.predict(imgs, imgsz=imgsz, batch=batch, conf=CONF, iou=IOU, verbose=False)
    return {"seconds": time.perf_counter() - t0}


def worker_geoal(project: str, weights: str, backend: str, views: int, batch: int, n: int) -> dict:
    from geoal.pipeline.scoring import ScoreOptions, score_project
    from geoal.project import open_project

    proj = open_project(project)
    opts = ScoreOptions(
        model=weights, views=views, batch=batch, conf=CONF, iou=IOU, limit=n, backend=backend
    )
    t0 = time.perf_counter()
    report = score_project(proj, opts, progress=False)
    seconds = time.perf_counter() - t0
    proj.close()
    if report.scored != n:
        raise RuntimeError(f"scored {report.scored} of {n} chips")
    return {"seconds": seconds, "backend": report.backend}


def run_worker(args: list[Any], threads: str = "") -> dict:
    """Run an arm in a fresh process; ``threads``: its OMP_NUM_THREADS ("": geoal chooses).

    Adds ``process_seconds``: the process's wall time, start to exit (imports included).
    """
    env = dict(_SHELL_ENV, OMP_NUM_THREADS=threads) if threads else _SHELL_ENV
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=3600,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr or proc.stdout).strip().splitlines()[-1][:400])
    return dict(
        json.loads(proc.stdout.strip().splitlines()[-1]), process_seconds=time.perf_counter() - t0
    )


# -- agreement between two scored stores ---------------------------------------------


def _iou(box: Any, boxes: Any) -> Any:
    import numpy as np

    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (
        boxes[:, 3] - boxes[:, 1]
    )
    return inter / np.maximum(union - inter, 1e-9)


def _read_store(db: Path) -> tuple[dict[int, Any], dict[int, dict], dict[int, Any]]:
    """Per chip: detections (N, 6) [x1, y1, x2, y2, conf, cls], scores, embedding."""
    import numpy as np

    from geoal.store.scores import stored_scores

    conn = sqlite3.connect(db)
    try:
        dets: dict[int, list[list[float]]] = {}
        for row in conn.execute(
            "SELECT chip_id, x1, y1, x2, y2, confidence, class_id FROM detections"
        ):
            dets.setdefault(row[0], []).append(list(row[1:]))
        scores, emb = {}, {}
        for row in stored_scores(conn):
            scores[row.chip_id] = row.scores
            emb[row.chip_id] = row.embedding
    finally:
        conn.close()
    return {c: np.asarray(dets.get(c, []), dtype=float).reshape(-1, 6) for c in scores}, scores, emb


def agreement(ref_db: Path, db: Path) -> dict[str, float]:
    """How closely the store ``db`` agrees with the reference store ``ref_db``."""
    import numpy as np
    from scipy.stats import spearmanr

    ref_dets, ref_scores, ref_emb = _read_store(ref_db)
    dets, scores, emb = _read_store(db)
    chips = sorted(ref_scores)
    matched = total = 0
    max_diff = 0.0
    for a_all, b_all in ((ref_dets, dets), (dets, ref_dets)):
        for chip in chips:
            a, b = a_all[chip], b_all[chip]
            for row in a:
                total += 1
                same = b[b[:, 5] == row[5]]
                if not len(same):
                    continue
                ious = _iou(row, same)
                best = int(np.argmax(ious))
                diff = abs(float(same[best, 4] - row[4]))
                max_diff = max(max_diff, diff)
                matched += bool(ious[best] >= 0.99 and diff <= 1e-3)
    rhos = {
        k: round(
            float(
                spearmanr(
                    [ref_scores[c][k] for c in chips], [scores[c][k] for c in chips]
                ).statistic
            ),
            5,
        )
        for k in ref_scores[chips[0]]
    }
    cosines = [float(ref_emb[c] @ emb[c]) for c in chips]
    return {
        "detections": total // 2,
        "matched": round(matched / max(total, 1), 5),
        "max_score_diff": round(max_diff, 6),
        # per aggregation; "max" and "topk_mean" of one view's entropy saturate near 1.0 on
        # every chip (values within 1e-11 of each other), so their ranks are rounding noise
        "spearman": rhos,
        "cosine_min": round(min(cosines), 6),
    }


# -- the run ----------------------------------------------------------------------------


class BusyCore:
    """Another process keeping one core busy while the block runs."""

    def __enter__(self) -> BusyCore:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chips", type=int, default=64, help="chips to score (default 64)")
    parser.add_argument("--quick", action="store_true", help="16 chips, 1 repeat, one view only")
    parser.add_argument("--imgsz", type=int, default=640, help="chip and model input size")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated arms; NAME:ompN runs NAME with OMP_NUM_THREADS=N (one call of "
        "N threads at a time instead of geoal's choice), e.g. openvino:omp2",
    )
    parser.add_argument("--no-busy", action="store_true", help="skip the busy-core runs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = json.loads(args.worker)
        out = worker_plain(*rest) if kind == "plain" else worker_geoal(*rest)
        print(json.dumps(out))
        return

    n_chips = 16 if args.quick else args.chips
    repeat = 1 if args.quick else args.repeat
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    load_start = os.getloadavg()

    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from geoal.config import with_tiling
    from geoal.detect import load_detector
    from geoal.detect.backends import resolve_backend
    from geoal.pipeline.catalog import tile_scenes
    from geoal.project import init_project
    from geoal.synthetic import CLASSES, SceneSpec, write_scene

    work = Path(tempfile.mkdtemp(prefix="geoal-bench-score-"))
    side = int(np.ceil(np.sqrt(n_chips))) * args.imgsz
    scene = work / "scene.tif"
    write_scene(scene, SceneSpec(width=side, height=side, objects=n_chips * 4, seed=1))
    template = init_project(work / "template", list(CLASSES))
    template.config = with_tiling(template.config, size=args.imgsz, overlap=0.0)
    tile_scenes(template, [str(scene)], template.config.tiling, progress=False)
    windows = [list(map(int, w)) for w in template.store.chip_windows(1)[1][:n_chips]]
    template.close()
    weights = work / "model.pt"
    with rasterio.open(scene) as ds:  # calibrate on the scene's chips: a model like a trained one
        sample = np.stack([ds.read(window=Window(*w)).transpose(1, 2, 0) for w in windows[:4]])
    make_checkpoint(weights, CLASSES, args.imgsz, chips=sample)

    export_s = {}
    for name in {b.partition(":")[0] for b in backends}:  # exported once per model, then reused
        if name != "torch":
            t0 = time.perf_counter()
            det = load_detector(weights, CLASSES, backend=name, imgsz=args.imgsz)
            det.predict_batch(np.zeros((1, args.imgsz, args.imgsz, 3), np.uint8))
            export_s[name] = round(time.perf_counter() - t0, 2)
            if det.backend != name:
                raise RuntimeError(f"backend {name} fell back to torch")

    runs = iter(range(1_000_000))
    last_db: dict[tuple[str, int], Path] = {}

    process: dict[str, list[float]] = {}  # quiet runs only
    quiet = True

    def geoal(arm: str, views: int) -> float:
        name, _, threads = arm.partition(":omp")
        folder = work / f"{name}-{threads}-{views}v-{next(runs)}"
        shutil.copytree(work / "template", folder)
        job = ["geoal", str(folder), str(weights), name, views, args.batch, n_chips]
        out = run_worker(job, threads)
        if out["backend"] != name:
            raise RuntimeError(f"arm {arm} ran {out['backend']}")
        last_db[(arm, views)] = folder / "geoal.db"
        if quiet:
            process.setdefault(f"{arm}-{views}", []).append(out["process_seconds"])
        return float(out["seconds"])

    def plain() -> float:
        out = run_worker(["plain", str(scene), str(weights), windows, args.imgsz, args.batch])
        if quiet:
            process.setdefault("plain", []).append(out["process_seconds"])
        return float(out["seconds"])

    view_counts = (1,) if args.quick else (1, 2)
    if not args.quick:  # warm-up: the OS file cache, Python's bytecode cache
        plain()
        geoal(backends[0], 1)
    times: dict[str, list[float]] = {}
    for k in range(repeat):
        times.setdefault("plain", []).append(plain())
        for name in backends:
            for views in view_counts:
                times.setdefault(f"{name}-{views}", []).append(geoal(name, views))
        print(
            f"repeat {k}: " + ", ".join(f"{n} {v[-1]:.2f}s" for n, v in times.items()),
            file=sys.stderr,
        )
    if not args.no_busy:
        quiet = False
        with BusyCore():
            for _ in range(repeat):
                times.setdefault("busy-plain", []).append(plain())
                for name in backends:
                    times.setdefault(f"busy-{name}", []).append(geoal(name, 1))
    best = {n: min(v) for n, v in times.items()}
    result: dict[str, Any] = {
        "chips": n_chips,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "cpus": os.cpu_count(),
        "default_backend": resolve_backend(None, "cpu"),
        "load_avg_start": [round(v, 2) for v in load_start],
        "plain_chips_s": round(n_chips / best["plain"], 3),
    }
    if "busy-plain" in best:
        result["plain_busy_chips_s"] = round(n_chips / best["busy-plain"], 3)
    for name in backends:
        result[f"{name}_chips_s"] = round(n_chips / best[f"{name}-1"], 3)
        # whole processes as a shell runs them (imports included; warm-up runs too)
        result[f"process_speedup_vs_ultralytics_{name}"] = round(
            min(process["plain"]) / min(process[f"{name}-1"]), 3
        )
        result[f"speedup_vs_ultralytics_{name}"] = round(best["plain"] / best[f"{name}-1"], 3)
        if f"{name}-2" in best:
            result[f"{name}_two_view_chips_s"] = round(n_chips / best[f"{name}-2"], 3)
            result[f"two_view_ratio_{name}"] = round(best[f"{name}-2"] / best["plain"], 3)
        if f"busy-{name}" in best:
            result[f"{name}_busy_chips_s"] = round(n_chips / best[f"busy-{name}"], 3)
            result[f"busy_speedup_vs_ultralytics_{name}"] = round(
                best["busy-plain"] / best[f"busy-{name}"], 3
            )
    if "torch" in backends:
        for name in backends:
            if name != "torch" and ":" not in name:
                for views in view_counts:
                    key = f"agreement_{name}" + ("" if views == 1 else "_two_view")
                    result[key] = agreement(last_db[("torch", views)], last_db[(name, views)])
    result["export_s"] = export_s
    result["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
