"""Benchmark: the Ray engine (`geoal score --engine ray`) against the local engine, same chips.

Same model (a random yolov8n with calibrated BatchNorm, saved as a local .pt; see
bench_scoring.py), same chips (square chips of a synthetic georeferenced scene),
same views, batch and image size, in one run on this machine, each run on a fresh
copy of the project and timed from the call to the last write:

- local: `score_project` (reader threads, prefetch, torch, store writes);
- ray: `score_project_ray` on a Ray started here: actors that each load the model,
  read their chips' windows themselves and return records that the driver writes.
  The actors' start (a fresh process that imports torch and loads the model) is
  included and also reported alone (ray_actor_start_s); starting Ray itself (once
  per cluster, not per run) is reported apart (ray_start_s).

Headline, at equal compute: the local engine with T torch threads against one Ray
actor with T CPUs (T = --threads, default 1: on a small shared machine more
threads measure the neighbours' load more than geoal). With --all-cpus, also: the
default plan (one actor per CPU) against the local engine with torch on every CPU.
Also: how fast one reader (2 threads) reads chips, and how fast the driver writes
records (the two ceilings of docs/scaling.md).

Each timing is the best of --repeat runs. With a CUDA device, one GPU actor is
compared with local GPU scoring; without one, those fields are null with the
reason. Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="geoal-yolo-"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chips", type=int, default=1024, help="chips to score (default 1024)")
    parser.add_argument("--imgsz", type=int, default=256, help="chip and model input size")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, equal-compute line")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--gpu-chips", type=int, default=4096, help="chips for the GPU line")
    parser.add_argument(
        "--all-cpus",
        action="store_true",
        help="also: torch on every CPU against one actor per CPU (slow on a loaded machine)",
    )
    parser.add_argument("--quick", action="store_true", help="96 chips, 1 repeat")
    args = parser.parse_args()
    n_chips = 96 if args.quick else args.chips
    repeat = 1 if args.quick else args.repeat

    import ray
    import torch

    from geoal.distributed import RayOptions

    gpu = torch.cuda.is_available()
    cpus = os.cpu_count() or 1
    bench = Bench(args.imgsz, args.batch, args.views, max(n_chips, args.gpu_chips if gpu else 0))
    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t0
    equal = RayOptions(workers=1, cpus_per_worker=args.threads, gpus_per_worker=0)
    default = RayOptions(gpus_per_worker=0)
    bench.run("cpu", 4 * args.batch, threads=args.threads)  # warm-up: page cache, imports
    best = best_of(
        {
            "local": lambda: bench.run("cpu", n_chips, threads=args.threads),
            "ray": lambda: bench.run("cpu", n_chips, equal),
        },
        repeat,
        "cpu",
    )
    if args.all_cpus:
        best |= best_of(
            {
                "local_all_cpus": lambda: bench.run("cpu", n_chips, threads=cpus),
                "ray_default": lambda: bench.run("cpu", n_chips, default),
            },
            1,
            "cpu, all CPUs",
        )
    result: dict[str, Any] = {
        "chips": n_chips,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "views": args.views,
        "cpus": cpus,
        "threads": args.threads,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "ray_start_s": round(ray_start, 2),
        "ray_actor_start_s": round(bench.actor_start(equal), 2),
        "read_chips_s": round(bench.read_rate(n_chips), 1),
        "driver_write_chips_s": round(bench.write_rate(), 1),
        "detections_per_chip": round(bench.detections_per_chip(), 1),
        **{
            f"{name}_chips_s": round(n_chips / best[name], 3) if name in best else None
            for name in ("local_all_cpus", "ray_default")
        },
        "ray_default_workers": cpus,
        "local_chips_s": round(n_chips / best["local"], 3),
        "ray_chips_s": round(n_chips / best["ray"], 3),
        "overhead_ratio": round(best["ray"] / best["local"], 3),
    }
    if gpu:
        one_gpu = RayOptions(workers=1, gpus_per_worker=1, cpus_per_worker=min(4, cpus))
        n = args.gpu_chips
        gpu_best = best_of(
            {
                "local": lambda: bench.run("cuda:0", n),
                "ray": lambda: bench.run("cuda:0", n, one_gpu),
            },
            repeat,
            "cuda:0",
        )
        result |= {
            "gpu_chips": n,
            "gpu_local_chips_s": round(n / gpu_best["local"], 3),
            "gpu_ray_1worker_chips_s": round(n / gpu_best["ray"], 3),
            "gpu_overhead_ratio": round(gpu_best["ray"] / gpu_best["local"], 3),
            "gpu_reason": torch.cuda.get_device_name(0),
        }
    else:
        result |= {
            "gpu_local_chips_s": None,
            "gpu_ray_1worker_chips_s": None,
            "gpu_reason": "no CUDA device on this machine (no GPU machine lent to this task)",
        }
    ray.shutdown()
    print(json.dumps(result))


def best_of(runs: dict[str, Callable[[], float]], repeat: int, label: str) -> dict[str, float]:
    """Best seconds of ``repeat`` interleaved rounds of every run."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for k in range(repeat):
        for name, run in runs.items():
            times[name].append(run())
        print(
            f"{label} repeat {k}: " + ", ".join(f"{n} {v[-1]:.2f}s" for n, v in times.items()),
            file=sys.stderr,
        )
    return {name: min(v) for name, v in times.items()}


class Bench:
    """A synthetic scene tiled into a project, a model, and timed runs on fresh copies."""

    def __init__(self, imgsz: int, batch: int, views: int, max_chips: int) -> None:
        import numpy as np
        import yaml
        from bench_scoring import make_checkpoint

        from geoal.config import with_tiling
        from geoal.pipeline.catalog import tile_scenes
        from geoal.project import init_project
        from geoal.synthetic import CLASSES, SceneSpec, write_scene

        self.work = Path(tempfile.mkdtemp(prefix="geoal-bench-dist-"))
        self.batch, self.views = batch, views
        side = int(np.ceil(np.sqrt(max_chips))) * imgsz
        scene = self.work / "scene.tif"
        write_scene(
            scene, SceneSpec(width=side, height=side, dtype="uint8", objects=max_chips * 4, seed=1)
        )
        self.weights = self.work / "model.pt"
        make_checkpoint(self.weights, CLASSES, imgsz)
        base = init_project(self.work / "base", list(CLASSES))
        base.config = with_tiling(base.config, size=imgsz, overlap=0.0)
        tile_scenes(base, [str(scene)], base.config.tiling, progress=False)
        base.close()
        cfg_path = self.work / "base" / "geoal.yaml"
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["model"]["imgsz"] = imgsz
        cfg_path.write_text(yaml.safe_dump(cfg))
        self.copies = 0
        self.last: Path | None = None  # the last project scored

    def _fresh(self) -> Path:
        self.copies += 1
        path = self.work / f"p{self.copies}"
        shutil.copytree(self.work / "base", path)
        return path

    def options(self, device: str, n_chips: int) -> Any:
        from geoal.pipeline.scoring import ScoreOptions

        return ScoreOptions(
            model=str(self.weights),
            views=self.views,
            batch=self.batch,
            device=device,
            conf=0.05,
            limit=n_chips,
        )

    def run(self, device: str, n_chips: int, ray_opts: Any = None, threads: int = 0) -> float:
        """Seconds to score ``n_chips`` on a fresh project (local engine, or Ray with ray_opts)."""
        import torch

        from geoal.distributed import score_project_ray
        from geoal.pipeline.scoring import score_project
        from geoal.project import open_project

        opts = self.options(device, n_chips)
        self.last = self._fresh()
        with open_project(self.last) as project:
            if threads:
                torch.set_num_threads(threads)
            t0 = time.perf_counter()
            if ray_opts is None:
                report = score_project(project, opts, progress=False)
            else:
                report = score_project_ray(project, opts, ray_opts, progress=False)
            elapsed = time.perf_counter() - t0
        if report.scored != n_chips:
            raise RuntimeError(f"scored {report.scored} of {n_chips} chips")
        return elapsed

    def actor_start(self, ray_opts: Any) -> float:
        """Seconds from creating a pool of scoring actors to all of them holding the model."""
        import ray

        from geoal.detect import load_detector
        from geoal.distributed.cluster import WorkerPool, forwarded_env, plan_actors
        from geoal.distributed.worker import ChipScorer, ModelSpec, ScoreParams
        from geoal.project import open_project

        with open_project(self.work / "base") as project:
            classes = tuple(project.config.classes)
            imgsz = project.config.model.imgsz
        model_hash = load_detector(str(self.weights), classes, imgsz=imgsz).model_hash
        plan = plan_actors(ray.cluster_resources(), ray_opts)
        spec = ModelSpec(str(self.weights), classes, imgsz, model_hash, threads=plan.threads)
        params = ScoreParams(self.views, 0.05, 0.7, 3, self.batch, 2)
        t0 = time.perf_counter()
        pool = WorkerPool(ray, ChipScorer, (spec, params, forwarded_env()), plan, ray_opts)
        ray.get([actor.ready.remote() for actor in pool.actors])
        elapsed = time.perf_counter() - t0
        pool.close()
        return elapsed

    def read_rate(self, n_chips: int) -> float:
        """Chips/s that one reader (2 threads, as in each actor) reads from the scene."""
        from geoal.pipeline.scoring import chips_to_score
        from geoal.project import open_project
        from geoal.raster.reader import iter_chips

        with open_project(self.work / "base") as project:
            todo = chips_to_score(project, "none")[0][:n_chips]
            scenes = {s.id: s for s in project.store.scenes()}
        t0 = time.perf_counter()
        for _ in iter_chips(scenes, todo, workers=2):
            pass
        return len(todo) / (time.perf_counter() - t0)

    def detections_per_chip(self) -> float:
        """Mean detections stored per chip in the last run."""
        import sqlite3

        if self.last is None:
            raise RuntimeError("no scored project yet")
        conn = sqlite3.connect(self.last / "geoal.db")
        (mean,) = conn.execute("SELECT AVG(n_detections) FROM chip_scores").fetchone()
        conn.close()
        return float(mean)

    def write_rate(self, per_task: int = 32) -> float:
        """Chips/s the driver writes: the last run's records again, into a fresh copy, per task."""
        from geoal.distributed.engine import write_new
        from geoal.project import open_project
        from geoal.store import Store
        from geoal.store.scores import read_records, stored_scores

        if self.last is None:
            raise RuntimeError("no scored project yet")
        with Store(self.last / "geoal.db") as store:
            first = stored_scores(store.conn)[0]
            model_hash, views = first.model_hash, first.views
            ids = [row.chip_id for row in stored_scores(store.conn, model_hash)]
            records = read_records(store.conn, model_hash, ids)[views]
        with open_project(self._fresh()) as project:
            project.store.register_model(model_hash, "bench", project.config.classes)
            t0 = time.perf_counter()
            for i in range(0, len(records), per_task):
                part = records[i : i + per_task]
                write_new(project, model_hash, views, [c for c, _ in part], [r for _, r in part])
            elapsed = time.perf_counter() - t0
        return len(records) / elapsed


if __name__ == "__main__":
    main()
