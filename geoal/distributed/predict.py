"""``geoal predict --engine ray``: whole-scene detection with the chips detected on Ray actors.

The driver catalogues each scene (one decimated read), sends chip windows to the
actors, which read them and return each chip's detections in scene pixels, and
merges a scene's detections (in chip order, as the local engine does) as soon
as all of its chips are back. Tasks of several scenes are in flight at once, so
the actors do not wait at scene boundaries.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoal.distributed import cluster
from geoal.distributed.cluster import RayOptions
from geoal.distributed.work import Task, plan_tasks
from geoal.distributed.worker import ChipPredictor, ModelSpec, PredictParams
from geoal.errors import GeoalError
from geoal.predict.scene import (
    PredictOptions,
    PredictReport,
    SceneDetections,
    with_model_input,
)
from geoal.raster.chip import Chip
from geoal.raster.scene import Scene, catalogue


@dataclass
class _SceneRun:
    """A scene in progress: the scene, its chips still out, what came back."""

    scene: Scene
    chips: int
    t0: float
    open_tasks: int = 0
    planned: bool = False
    parts: dict[int, np.ndarray] = field(default_factory=dict)
    error: str | None = None


def predict_scenes_ray(
    paths: Sequence[str],
    opts: PredictOptions,
    ray_opts: RayOptions,
    classes: Sequence[str] | None = None,
    *,
    progress: bool = True,
) -> PredictReport:
    """Detect over every scene on Ray; a scene that fails is reported, the others go on.

    Same objects as ``predict_scenes`` (same model, same chips, same merge).
    """
    from tqdm import tqdm

    from geoal.detect import load_detector

    cluster.require_ray()
    opts = with_model_input(opts)
    # Loaded here too (on the CPU): checks the model, its classes and the hash workers must match.
    detector = load_detector(opts.model, classes, device="cpu", imgsz=opts.imgsz, backend="torch")
    names = tuple(detector.classes)
    report = PredictReport(classes=names)
    runs: dict[int, _SceneRun] = {}
    done: dict[int, SceneDetections] = {}
    params = PredictParams(opts.conf, opts.iou, opts.batch, opts.workers)
    model = Path(opts.model)  # absolute, for workers that start elsewhere
    shared = str(model.resolve()) if model.exists() else opts.model
    with cluster.ray_session(ray_opts) as ray:
        plan = cluster.plan_actors(ray.cluster_resources(), ray_opts)
        gpu, threads, backend = plan.gpus > 0, plan.threads, opts.backend or "auto"
        spec = ModelSpec(shared, names, opts.imgsz, detector.model_hash, gpu, threads, backend)
        env = cluster.forwarded_env()
        pool = cluster.WorkerPool(ray, ChipPredictor, (spec, params, env), plan, ray_opts)
        bar = tqdm(total=0, desc="predicting (ray)", unit="chip", disable=not progress)
        try:
            tasks = _tasks(paths, opts, ray_opts, runs, report, bar)
            for outcome in pool.run("predict", tasks):
                key = outcome.task.chips[0].scene_id
                run = runs[key]
                run.open_tasks -= 1
                if outcome.error is not None:
                    run.error = run.error or str(outcome.error)
                else:
                    run.parts.update(outcome.value)
                bar.update(len(outcome.task))
                _finish_ready(runs, done, report, opts)
        finally:
            bar.close()
            pool.close()
    _finish_ready(runs, done, report, opts)
    report.scenes = [done[key] for key in sorted(done)]  # in the order of ``paths``
    return report


def _tasks(
    paths: Sequence[str],
    opts: PredictOptions,
    ray_opts: RayOptions,
    runs: dict[int, _SceneRun],
    report: PredictReport,
    bar: Any,
) -> Iterator[Task]:
    """Catalogue scenes one by one as the pool asks for work; yield their chips' tasks.

    A scene's id is its position in ``paths`` (the key of ``runs``).
    """
    for key, path in enumerate(paths):
        t0 = time.perf_counter()
        try:
            cat = catalogue(path, opts.tiling)
        except GeoalError as exc:
            report.errors.append(str(exc))
            continue
        scene = dataclasses.replace(cat.scene, id=key)
        chips = [Chip.at(scene, i, w) for i, w in enumerate(cat.windows)]
        run = runs[key] = _SceneRun(scene, len(chips), t0)
        bar.total += len(chips)
        bar.refresh()
        tasks = list(plan_tasks(chips, ray_opts.batches_per_task * opts.batch, opts.batch))
        run.open_tasks = len(tasks)
        run.planned = True
        yield from tasks


def _finish_ready(
    runs: dict[int, _SceneRun],
    done: dict[int, SceneDetections],
    report: PredictReport,
    opts: PredictOptions,
) -> None:
    """Merge and report every scene whose chips are all back."""
    for key in [k for k, r in runs.items() if r.planned and r.open_tasks == 0]:
        run = runs.pop(key)
        if run.error is not None:
            report.errors.append(run.error)
            continue
        parts = [run.parts[i] for i in sorted(run.parts)]  # chip order, as the local engine
        done[key] = SceneDetections.merged(run.scene, parts, run.chips, opts, run.t0)
