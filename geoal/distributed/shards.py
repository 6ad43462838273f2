"""Scoring without Ray: ``geoal score --shard I/N`` into a shard file, ``geoal merge-shards``.

For schedulers such as SLURM job arrays. Shard I of N holds the chips whose
id % N == I (of the chips not yet scored by the model when the shard starts),
scored by the scoring stream on that node. A shard file (``geoal.store.shards``) is
a small SQLite database with the store's own ``chip_scores`` and ``detections``
tables, written one transaction per batch: a shard killed and run again continues where it
stopped, and a finished one run again does nothing. The shard job only reads
the project's store; ``merge-shards`` brings shard files into it, one
transaction per file, skipping chips the model has already scored there, so
merging twice (or a shard that was run twice) adds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from geoal.detect.stream import score_scene_chips
from geoal.distributed.work import Shard
from geoal.errors import ConfigError, ProjectError
from geoal.pipeline.catalog import check_scenes_unchanged
from geoal.pipeline.scoring import ScoreOptions, ScoringModel, chips_to_score, load_model
from geoal.project import Project
from geoal.raster.chip import Chip
from geoal.raster.scene import Scene
from geoal.store.scores import chip_ids as store_chip_ids
from geoal.store.scores import encode_chip, insert_records, read_records, scored_chip_ids
from geoal.store.shards import ShardFile, open_shard_file

FORMAT = "geoal-shard/1"
SHARD_SUFFIX = ".sqlite"

# What a shard must agree on with a shard file it resumes.
_IDENTITY = ("format", "model_hash", "shard", "views", "top_k", "conf", "iou")


@dataclass(frozen=True)
class ShardReport:
    """What a shard run did."""

    path: Path
    shard: Shard
    model_hash: str
    scored: int
    already: int  # in the shard file from an earlier run
    remaining: int
    complete: bool


@dataclass(frozen=True)
class MergeReport:
    """What merging one shard file did."""

    path: Path
    model_hash: str
    shard: str
    merged: int
    skipped: int  # already in the store for that model
    complete: bool


def default_shard_path(project: Project, model_hash: str, shard: Shard) -> Path:
    """``<project>/shards/<model hash>-<I>-of-<N>.sqlite``."""
    name = f"{model_hash[:12]}-{shard.index}-of-{shard.count}{SHARD_SUFFIX}"
    return project.root / "shards" / name


def score_shard(
    project: Project,
    opts: ScoreOptions,
    shard: Shard,
    out: Path | None = None,
    *,
    progress: bool = True,
) -> ShardReport:
    """Score shard ``shard`` of the chips not yet scored by the model into a shard file.

    Only reads the project's store. ``out`` defaults to :func:`default_shard_path`.
    """
    from tqdm import tqdm

    chosen, detector = load_model(project, opts)
    model_hash = detector.model_hash
    path = Path(out) if out is not None else default_shard_path(project, model_hash, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, _ = chips_to_score(project, model_hash, opts.scene_ids)
    scenes = {s.id: s for s in project.store.scenes()}
    todo = shard.select([Chip.at(scenes[s], i, w) for i, s, w in rows])
    check_scenes_unchanged(project, [chip.scene_id for chip in todo])
    with open_shard_file(path, hint="; give another --shard-out") as file:
        _open_shard(file, _shard_meta(project, opts, shard, chosen, model_hash), scenes)
        have = scored_chip_ids(file.conn)
        already = sum(1 for chip in todo if chip.id in have)
        todo = [chip for chip in todo if chip.id not in have]
        pending = len(todo)
        if opts.limit is not None:
            todo = todo[: opts.limit]
        scored = 0
        bar = tqdm(total=len(todo), desc=f"shard {shard}", unit="chip", disable=not progress)
        stream = score_scene_chips(detector, todo, opts.params())
        try:
            for chip_ids, chips in stream:
                records = [encode_chip(*chip) for chip in chips]
                with file.conn as conn:  # a killed shard keeps every finished batch
                    insert_records(conn, model_hash, opts.views, chip_ids, records)
                scored += len(chip_ids)
                bar.update(len(chip_ids))
        finally:
            stream.close()
            bar.close()
        complete = scored == pending
        with file.conn:
            file.set_meta({"complete": "1" if complete else "0"})
    return ShardReport(path, shard, model_hash, scored, already, pending - scored, complete)


def _shard_meta(
    project: Project, opts: ScoreOptions, shard: Shard, chosen: ScoringModel, model_hash: str
) -> dict[str, str]:
    """What a shard file records of the run that writes it."""
    return {
        "format": FORMAT,
        "model_hash": model_hash,
        "model_path": chosen.path,
        "model_kind": chosen.kind,
        "classes": json.dumps(list(project.config.classes)),
        "shard": str(shard),
        "views": str(opts.views),
        "top_k": str(opts.top_k),
        "conf": repr(opts.conf),
        "iou": repr(opts.iou),
        "project": str(project.root.resolve()),
    }


def _open_shard(file: ShardFile, meta: dict[str, str], scenes: Mapping[int, Scene]) -> None:
    """Create the shard file's tables and meta, or check that an existing one is this shard's."""
    file.create()
    old = file.meta()
    if old:
        diff = [k for k in _IDENTITY if old.get(k) != meta[k]]
        if diff:
            raise ConfigError(
                f"{file.path}: a shard file of another run ({', '.join(f'{k} {old.get(k)!r}' for k in diff)}; "
                f"this run has {', '.join(f'{k} {meta[k]!r}' for k in diff)}): "
                "give another --shard-out, or delete it"
            )
    with file.conn:
        file.set_meta(meta)
        file.set_scene_fingerprints({s.id: s.fingerprint for s in scenes.values()})


def shard_files(project: Project, paths: Sequence[Path]) -> list[Path]:
    """The files given, or every ``*.sqlite`` in the project's ``shards/`` folder."""
    if paths:
        return [Path(p) for p in paths]
    found = sorted((project.root / "shards").glob(f"*{SHARD_SUFFIX}"))
    if not found:
        raise ConfigError(
            f"no shard files given and none in {project.root / 'shards'}; "
            "give the files written by 'geoal score --shard I/N --shard-out PATH'"
        )
    return found


def merge_shards(project: Project, paths: Sequence[Path], *, chunk: int = 500) -> list[MergeReport]:
    """Bring shard files into the store: one transaction per file; chips already scored skipped.

    Each file is checked first: a geoal shard, for this project's classes and
    scenes (same scene ids, same content fingerprints).
    """
    reports = []
    for path in shard_files(project, paths):
        reports.append(_merge_one(project, path, chunk))
    return reports


def _merge_one(project: Project, path: Path, chunk: int) -> MergeReport:
    if not path.is_file():
        raise ConfigError(f"{path}: no such shard file")
    with open_shard_file(path) as file:
        meta = file.meta()
        if meta.get("format") != FORMAT:
            raise ConfigError(f"{path}: not a geoal shard file (format {meta.get('format')!r})")
        _check_project(project, file, meta)
        file.upgrade()
        model_hash = meta["model_hash"]
        project.store.register_model(
            model_hash,
            project.stored_model_path(meta["model_path"]),
            json.loads(meta["classes"]),
            kind=meta["model_kind"],
        )
        ids = sorted(scored_chip_ids(file.conn, model_hash))
        merged = 0
        with project.store.transaction() as conn:
            stored = scored_chip_ids(conn, model_hash)
            new = [chip_id for chip_id in ids if chip_id not in stored]
            known = store_chip_ids(conn)
            unknown = [chip_id for chip_id in new if chip_id not in known]
            if unknown:
                raise ProjectError(
                    f"{path}: {len(unknown)} chip(s) not in {project.root} (e.g. chip "
                    f"{unknown[0]}): the shard was made from another project's chips"
                )
            for start in range(0, len(new), chunk):
                part = new[start : start + chunk]
                for views, group in read_records(file.conn, model_hash, part).items():
                    insert_records(
                        conn, model_hash, views, [c for c, _ in group], [r for _, r in group]
                    )
                merged += len(part)
    return MergeReport(
        path,
        model_hash,
        meta.get("shard", "?"),
        merged,
        len(ids) - merged,
        meta.get("complete") == "1",
    )


def _check_project(project: Project, file: ShardFile, meta: dict[str, str]) -> None:
    classes = json.loads(meta["classes"])
    if classes != list(project.config.classes):
        raise ConfigError(
            f"{file.path}: scored for classes {classes}, the project's are "
            f"{list(project.config.classes)}; merge it into the project it was made from"
        )
    ours = {s.id: s.fingerprint for s in project.store.scenes()}
    for scene_id, fingerprint in file.scene_fingerprints().items():
        if ours.get(scene_id, fingerprint) != fingerprint:
            raise ProjectError(
                f"{file.path}: scene {scene_id} of the shard is not scene {scene_id} of "
                f"{project.root} (other content): merge it into the project it was made from"
            )
