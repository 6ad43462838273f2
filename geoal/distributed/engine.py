"""``geoal score --engine ray``: the local scoring engine's steps, with the chips scored on Ray actors.

The driver does what the local engine does around the model (``start_run``: resolve,
load and register the model, list the chips not yet scored by it, so an interrupted
run resumes) and writes results with the same inserts, one transaction per task.
Between, actors read the windows themselves, run the scoring stream
(``geoal.detect.stream``) and return the small encoded records. A chip is written at
most once: each transaction skips chips already stored for the model.
"""

from __future__ import annotations

from collections.abc import Sequence

from geoal.distributed.cluster import RayOptions, actor_pool, require_ray
from geoal.distributed.work import plan_tasks
from geoal.distributed.worker import ChipScorer, ModelSpec
from geoal.pipeline.scoring import ScoreOptions, ScoreReport, start_run
from geoal.project import Project
from geoal.store.scores import ScoreRecord, insert_new_records


def write_new(
    project: Project,
    model_hash: str,
    views: int,
    chip_ids: Sequence[int],
    records: Sequence[ScoreRecord],
) -> int:
    """Store the chips not yet stored for ``model_hash``, in one transaction; returns how many."""
    with project.store.transaction() as conn:
        return insert_new_records(conn, model_hash, views, chip_ids, records)


def score_project_ray(
    project: Project, opts: ScoreOptions, ray_opts: RayOptions, *, progress: bool = True
) -> ScoreReport:
    """Score every unlabelled chip not yet scored by the model on a Ray cluster; resumable.

    Same results as ``score_project`` (same model, same chips, same batches).
    ``opts.workers`` stays the number of reader threads, now in each actor.
    """
    from tqdm import tqdm

    require_ray()  # before anything slow: without Ray, say how to install it
    # Loaded here too (on the CPU, never run): checks the classes and gives the hash that
    # tags results; each worker resolves opts.backend for its own device.
    run = start_run(project, opts, device="cpu", backend="torch")
    model_hash = run.detector.model_hash
    if not run.todo:
        return run.report(0)
    spec = ModelSpec(
        run.model.path,  # absolute: the workers load it from the shared file system
        tuple(project.config.classes),
        run.model.imgsz,
        model_hash,
        backend=opts.backend or "auto",
    )
    scored = seen = 0
    with actor_pool(ray_opts, ChipScorer, spec, opts.params()) as pool:
        bar = tqdm(total=len(run.todo), desc="scoring (ray)", unit="chip", disable=not progress)
        try:
            tasks = plan_tasks(run.todo, ray_opts.batches_per_task * opts.batch, opts.batch)
            for outcome in pool.run("score", tasks):
                if outcome.error is not None:
                    raise outcome.error
                chip_ids, records = outcome.value
                scored += write_new(project, model_hash, opts.views, chip_ids, records)
                seen += len(chip_ids)
                bar.update(len(chip_ids))
        finally:
            bar.close()
    return run.report(scored, seen)
