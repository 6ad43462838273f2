"""Benchmark: `geoal score` (one and two views) against plain ultralytics `YOLO.predict`.

Same model (a random yolov8n with BatchNorm statistics calibrated so its outputs
depend on the input, saved as a local .pt), same chips (640 px from a synthetic
georeferenced scene), same image size and batch, in one run:

- plain: a rasterio loop reads each chip window, `YOLO.predict(list_of_chips, imgsz, batch)`;
- geoal one view: `score_project` (thread-pool reads, prefetch, head-level NMS with
  class vectors, uncertainty, store writes in transactions);
- geoal two views: the same with the horizontally flipped view in the same forward pass.

Each timing is the best of --repeat runs (after one warm-up) and includes loading the
model on both sides. Last stdout line: one
JSON object with plain_chips_s, geoal_chips_s, geoal_two_view_chips_s,
overhead_ratio (geoal one-view time / plain time) and two_view_ratio (two-view /
plain time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="geoal-yolo-"))


def make_checkpoint(
    path: Path, classes: tuple[str, ...], imgsz: int, logit_scale: float = 1.0
) -> None:
    """A random yolov8n whose BatchNorm statistics are calibrated on random images.

    ``logit_scale`` shrinks the class logits: below 1 the scores spread inside (0, 1)
    instead of saturating at 1.0 (no ties between detections).
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
        model(torch.rand(2, 3, imgsz, imgsz))
    model.eval()
    for branch in model.model[-1].cv3:  # zero class biases: scores spread over (0, 1), few ties
        branch[-1].bias.data.zero_()
        branch[-1].weight.data *= logit_scale
    model.names = dict(enumerate(classes))
    torch.save({"model": model, "train_args": {}}, path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chips", type=int, default=64, help="chips to score (default 64)")
    parser.add_argument("--quick", action="store_true", help="16 chips, 1 repeat (under 2 minutes)")
    parser.add_argument("--imgsz", type=int, default=640, help="chip and model input size")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    n_chips = 16 if args.quick else args.chips
    repeat = 1 if args.quick else args.repeat

    import numpy as np
    import rasterio
    from rasterio.windows import Window
    from ultralytics import YOLO

    from geoal.config import with_tiling
    from geoal.pipeline.catalog import tile_scenes
    from geoal.pipeline.scoring import ScoreOptions, score_project
    from geoal.project import init_project
    from geoal.synthetic import CLASSES, write_scene

    work = Path(tempfile.mkdtemp(prefix="geoal-bench-score-"))
    side = int(np.ceil(np.sqrt(n_chips))) * args.imgsz
    scene = work / "scene.tif"
    write_scene(scene, width=side, height=side, dtype="uint8", objects=n_chips * 4, seed=1)
    weights = work / "model.pt"
    make_checkpoint(weights, CLASSES, args.imgsz)
    conf, iou = 0.05, 0.7

    def new_project(name: str):
        proj = init_project(work / name, list(CLASSES))
        proj.config = with_tiling(proj.config, size=args.imgsz, overlap=0.0)
        tile_scenes(proj, [str(scene)], proj.config.tiling, progress=False)
        return proj

    base = new_project("probe")
    windows = [tuple(map(int, w)) for w in base.store.chip_windows(1)[1][:n_chips]]
    base.close()

    def plain() -> float:
        # the model is loaded inside the timing on both sides: geoal score loads it too
        t0 = time.perf_counter()
        yolo = YOLO(str(weights), task="detect")
        with rasterio.open(scene) as ds:
            for i in range(0, len(windows), args.batch):
                # ultralytics takes numpy images as BGR: flip the RGB chip for it
                imgs = [
                    ds.read(window=Window(*w)).transpose(1, 2, 0)[..., ::-1]
                    for w in windows[i : i + args.batch]
                ]
                yolo.predict(
                    imgs,
                    imgsz=args.imgsz,
                    batch=args.batch,
                    conf=conf,
                    iou=iou,
                    device=args.device,
                    verbose=False,
                )
        return time.perf_counter() - t0

    def geoal(views: int, k: int) -> float:
        proj = new_project(f"p{views}_{k}")
        opts = ScoreOptions(
            model=str(weights),
            views=views,
            batch=args.batch,
            device=args.device,
            conf=conf,
            iou=iou,
            limit=n_chips,
        )
        t0 = time.perf_counter()
        report = score_project(proj, opts, progress=False)
        elapsed = time.perf_counter() - t0
        assert report.scored == n_chips, report
        proj.close()
        return elapsed

    plain()  # warm-up: model load, thread pools, allocator
    geoal(1, -1)
    times: dict[str, list[float]] = {"plain": [], "one": [], "two": []}
    for k in range(repeat):
        times["plain"].append(plain())
        times["one"].append(geoal(1, k))
        times["two"].append(geoal(2, k))
        print(
            f"repeat {k}: " + ", ".join(f"{n} {v[-1]:.2f}s" for n, v in times.items()),
            file=sys.stderr,
        )
    best = {n: min(v) for n, v in times.items()}
    import torch

    result = {
        "chips": n_chips,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "plain_chips_s": round(n_chips / best["plain"], 3),
        "geoal_chips_s": round(n_chips / best["one"], 3),
        "geoal_two_view_chips_s": round(n_chips / best["two"], 3),
        "overhead_ratio": round(best["one"] / best["plain"], 3),
        "two_view_ratio": round(best["two"] / best["plain"], 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
