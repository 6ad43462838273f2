"""``geoal score`` on a project: choose the model, list the chips to score, run the stream, store.

The scoring itself is ``geoal.detect.stream`` (read -> detect with views -> chip scores),
shared with shards, Ray workers and ``geoal simulate``; the rows it writes are
``geoal.store.scores``'s. Reading overlaps model compute (a reader thread pool feeds a
prefetching iterator). Each batch of chips is written in one transaction together with its
"done" rows (``chip_scores``), so an interrupted run resumes exactly where it
stopped: no chip is scored twice for one model, none is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from geoal.detect.stream import ScoreParams, score_scene_chips
from geoal.errors import ModelError, ProjectError
from geoal.pipeline.catalog import check_scenes_unchanged
from geoal.project import Project
from geoal.raster.chip import Chip
from geoal.store import scores

UNTRAINED_SUFFIXES = (".yaml", ".yml")
"""A model given as an architecture file has random weights (geoal builds it from YAML_SEED)."""


@dataclass(frozen=True)
class ScoreOptions:
    """Options of ``geoal score`` (defaults come from the project's config)."""

    model: str | None = None
    views: int = 2
    batch: int = 16
    device: str = "cpu"
    top_k: int = 3
    conf: float = 0.05
    iou: float = 0.7
    scene_ids: tuple[int, ...] = ()
    workers: int = 2
    limit: int | None = None  # score at most this many chips (tests, quick looks)
    imgsz: int | None = None  # model input size, pixels; None = the one recorded with the model
    backend: str | None = None  # torch, openvino, onnxruntime; None: auto (geoal.detect.backends)

    def params(self) -> ScoreParams:
        """What the scoring stream needs of these options (``workers``: reader threads)."""
        return ScoreParams(self.views, self.conf, self.iou, self.top_k, self.batch, self.workers)


@dataclass(frozen=True)
class ScoreReport:
    """What a scoring run did."""

    model_hash: str
    model_path: str
    scored: int
    skipped: int  # already scored by this model
    remaining: int
    imgsz: int | None = None  # the model's input size, pixels (None: each chip's own size)
    backend: str = ""  # the runtime of the forward pass ("" when each Ray worker chose its own)


@dataclass(frozen=True)
class ScoringModel:
    """The model a scoring run loads, how it came to be chosen, and its input size."""

    path: str  # what load_detector opens: an absolute path or an architecture name
    kind: str  # trained (by geoal train) | external (given)
    imgsz: int | None  # pixels chips are resized to; None = each chip's own size


def resolve_model(project: Project, model: str | None, imgsz: int | None = None) -> ScoringModel:
    """The model to score with: given, else the latest trained, else the config's ``.pt``.

    With no trained model and an architecture (``.yaml``) as the config's model, scoring
    would rank chips by random weights: refused unless the model is given explicitly.
    """
    if model:
        path, kind = project.model_file(project.stored_model_path(model)), "external"
    else:
        latest = project.store.latest_model("trained")
        if latest is not None:
            path, kind = project.model_file(str(latest["path"])), "trained"
        elif not is_untrained(project.config.model.arch):
            path, kind = project.config.model.arch, "external"
        else:
            raise ModelError(
                f"{project.root}: no trained model yet: run 'geoal train' first, or select with "
                "a cold-start strategy ('geoal select --strategy random', coreset or typiclust); "
                f"'geoal score --model {project.config.model.arch}' scores with untrained weights"
            )
    return ScoringModel(path, kind, imgsz or model_imgsz(project, path))


def is_untrained(model: str) -> bool:
    """Whether a model path names an architecture file, i.e. random weights."""
    return model.lower().endswith(UNTRAINED_SUFFIXES)


def model_imgsz(project: Project, path: str) -> int | None:
    """The input size (pixels) a model was trained at, as recorded with it.

    The project's record of the model first, then the checkpoint (geoal's record or
    ultralytics' train_args), then the config's ``model.imgsz``, then what ``geoal
    train`` would choose: the chip size up to a multiple of 32 (None: no chips).
    """
    from geoal.detect.loading import checkpoint_input, stride_size

    metrics = scores.recorded_metrics(project.store.conn, project.stored_model_path(path))
    recorded = None if metrics is None else metrics.get("imgsz")
    if isinstance(recorded, int) and recorded >= 32:
        return recorded
    found = checkpoint_input(path)
    if found is not None:
        return found.imgsz
    if project.config.model.imgsz is not None:
        return project.config.model.imgsz
    side = scores.largest_chip_side(project.store.conn)
    return None if side is None else stride_size(side)


def chips_to_score(
    project: Project, model_hash: str, scene_ids: Sequence[int] = ()
) -> tuple[list[scores.ChipItem], int]:
    """Chips not yet scored by ``model_hash``: [(chip_id, scene_id, window)], n_done.

    Labelled chips are scored too: the model's detections on them, against their labels,
    measure how hard each class is for it (``adaptive`` selection), and their embeddings
    seed the diversity step; they are never candidates for selection.
    """
    return scores.unscored_chips(project.store.conn, model_hash, scene_ids)


def load_model(
    project: Project, opts: ScoreOptions, *, device: str | None = None, backend: str | None = None
) -> tuple[ScoringModel, Any]:
    """The model of ``opts`` (see :func:`resolve_model`), loaded for the project's classes.

    ``device`` and ``backend`` replace the options' (the Ray driver loads on the CPU).
    """
    from geoal.detect import load_detector

    chosen = resolve_model(project, opts.model, opts.imgsz)
    detector = load_detector(
        chosen.path,
        project.config.classes,
        device=device or opts.device,
        imgsz=chosen.imgsz,
        backend=backend or opts.backend,
    )
    return chosen, detector


@dataclass(frozen=True)
class ScoringRun:
    """A scoring run, set up: its model, loaded and registered, and the chips to score now."""

    model: ScoringModel
    detector: Any
    todo: list[Chip]  # at most opts.limit chips, in scoring order
    done: int  # already scored by the model
    pending: int  # not yet scored (before --limit)

    def report(self, scored: int, seen: int | None = None, backend: str = "") -> ScoreReport:
        """The report of a run that stored ``scored`` of the ``seen`` chips it scored."""
        seen = scored if seen is None else seen
        return ScoreReport(
            self.detector.model_hash,
            self.model.path,
            scored,
            self.done + seen - scored,
            self.pending - seen,
            self.model.imgsz,
            backend,
        )


def start_run(
    project: Project, opts: ScoreOptions, *, device: str | None = None, backend: str | None = None
) -> ScoringRun:
    """Load and register the model, list the chips it has not scored, check their scenes."""
    if not project.store.counts()["chips"]:
        raise ProjectError(f"{project.root}: no chips to score; add scenes with 'geoal tile'")
    chosen, detector = load_model(project, opts, device=device, backend=backend)
    project.store.register_model(
        detector.model_hash,
        project.stored_model_path(chosen.path),
        project.config.classes,
        kind=chosen.kind,
    )
    rows, done = chips_to_score(project, detector.model_hash, opts.scene_ids)
    pending = len(rows)  # --limit scores fewer now; the rest are still left
    if opts.limit is not None:
        rows = rows[: opts.limit]
    if rows:
        check_scenes_unchanged(project, [scene_id for _, scene_id, _ in rows])
    scenes = {s.id: s for s in project.store.scenes()}
    todo = [Chip.at(scenes[scene_id], chip_id, window) for chip_id, scene_id, window in rows]
    return ScoringRun(chosen, detector, todo, done, pending)


def score_project(project: Project, opts: ScoreOptions, *, progress: bool = True) -> ScoreReport:
    """Score every chip not yet scored by the model (labelled ones too); resumable.

    Each batch is stored in one transaction with its done rows.
    """
    from tqdm import tqdm

    run = start_run(project, opts)
    model_hash = run.detector.model_hash
    if not run.todo:
        return run.report(0, backend=run.detector.backend)
    scored = 0
    bar = tqdm(
        total=len(run.todo), desc="scoring", unit="chip", disable=not progress, smoothing=0.1
    )
    stream = score_scene_chips(run.detector, run.todo, opts.params())
    try:
        for chip_ids, chips in stream:
            records = [scores.encode_chip(*chip) for chip in chips]
            with project.store.transaction() as conn:
                scores.insert_records(conn, model_hash, opts.views, chip_ids, records)
            scored += len(chip_ids)
            bar.update(len(chip_ids))
    finally:
        stream.close()
        bar.close()
    return run.report(scored, backend=run.detector.backend)
