"""``geoal score --engine ray``: the local scoring engine's steps, with the chips scored on Ray actors.

The driver does what the local engine does around the model: resolve and
register the model, list the chips not yet scored by it (``chips_to_score``,
so an interrupted run resumes), and write results with the same inserts, one
transaction per task. Between, actors read the windows themselves, run the
detector and ``chip_record``, and return the small records. A chip is written
at most once: each transaction skips chips already stored for the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from geoal.distributed.cluster import (
    RayOptions,
    WorkerPool,
    forwarded_env,
    plan_actors,
    ray_session,
    require_ray,
)
from geoal.distributed.work import plan_tasks
from geoal.distributed.worker import ChipScorer, ModelSpec, ScoreParams
from geoal.errors import ProjectError
from geoal.pipeline.catalog import check_scenes_unchanged
from geoal.pipeline.scoring import (
    ScoreOptions,
    ScoreReport,
    chips_to_score,
    insert_records,
    resolve_model,
)
from geoal.project import Project
from geoal.raster.chip import Chip


def write_new(
    project: Project,
    model_hash: str,
    views: int,
    chip_ids: Sequence[int],
    records: Sequence[dict[str, Any]],
) -> int:
    """Store the chips not yet stored for ``model_hash``, in one transaction; returns how many."""
    with project.store.transaction() as conn:
        marks = ", ".join("?" for _ in chip_ids)
        have = {
            row[0]
            for row in conn.execute(
                f"SELECT chip_id FROM chip_scores WHERE model_hash = ? AND chip_id IN ({marks})",
                [model_hash, *chip_ids],
            )
        }
        keep = [i for i, chip_id in enumerate(chip_ids) if chip_id not in have]
        insert_records(
            conn, model_hash, views, [chip_ids[i] for i in keep], [records[i] for i in keep]
        )
    return len(keep)


def score_project_ray(
    project: Project, opts: ScoreOptions, ray_opts: RayOptions, *, progress: bool = True
) -> ScoreReport:
    """Score every unlabelled chip not yet scored by the model on a Ray cluster; resumable.

    Same results as ``score_project`` (same model, same chips, same batches).
    ``opts.workers`` stays the number of reader threads, now in each actor.
    """
    from tqdm import tqdm

    from geoal.detect import load_detector

    require_ray()  # before anything slow: without Ray, say how to install it
    if not project.store.counts()["chips"]:
        raise ProjectError(f"{project.root}: no chips to score; add scenes with 'geoal tile'")
    chosen = resolve_model(project, opts.model, opts.imgsz)
    # Loaded here too (on the CPU): checks the classes and gives the hash that tags results.
    detector = load_detector(
        chosen.path,
        project.config.classes,
        device="cpu",
        imgsz=chosen.imgsz,
        backend="torch",  # never runs here; each worker resolves opts.backend for its device
    )
    model_path = chosen.path  # absolute: the workers load it from the shared file system
    project.store.register_model(
        detector.model_hash,
        project.stored_model_path(model_path),
        project.config.classes,
        kind=chosen.kind,
    )
    todo, done = chips_to_score(project, detector.model_hash, opts.scene_ids)
    pending = len(todo)  # --limit scores fewer now; the rest are still left
    if opts.limit is not None:
        todo = todo[: opts.limit]
    if not todo:
        return ScoreReport(detector.model_hash, model_path, 0, done, pending, chosen.imgsz)
    check_scenes_unchanged(project, [item[1] for item in todo])
    scenes = {s.id: s for s in project.store.scenes()}
    params = ScoreParams(opts.views, opts.conf, opts.iou, opts.top_k, opts.batch, opts.workers)
    scored = seen = 0
    with ray_session(ray_opts) as ray:
        plan = plan_actors(ray.cluster_resources(), ray_opts)
        spec = ModelSpec(
            model_path,
            tuple(project.config.classes),
            chosen.imgsz,
            detector.model_hash,
            gpu=plan.gpus > 0,
            threads=plan.threads,
            backend=opts.backend or "auto",
        )
        pool = WorkerPool(ray, ChipScorer, (spec, params, forwarded_env()), plan, ray_opts)
        bar = tqdm(total=len(todo), desc="scoring (ray)", unit="chip", disable=not progress)
        try:
            chips = [Chip.at(scenes[s], i, w) for i, s, w in todo]
            tasks = plan_tasks(chips, ray_opts.batches_per_task * opts.batch, opts.batch)
            for outcome in pool.run("score", tasks):
                if outcome.error is not None:
                    raise outcome.error
                chip_ids, records = outcome.value
                scored += write_new(project, detector.model_hash, opts.views, chip_ids, records)
                seen += len(chip_ids)
                bar.update(len(chip_ids))
        finally:
            bar.close()
            pool.close()
    return ScoreReport(
        detector.model_hash,
        model_path,
        scored,
        done + seen - scored,
        pending - seen,
        chosen.imgsz,
    )
