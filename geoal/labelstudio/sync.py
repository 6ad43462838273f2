"""Push a round to Label Studio and pull its annotations back, through geoal's file round trip.

Push makes exactly the tasks of ``geoal export --format labelstudio`` (chip data, the
model's detections as predictions tagged with the model hash) and uploads the chip images
with them, so the server needs neither internet nor a folder shared with geoal. Pull reads
Label Studio's JSON export, parses it with :func:`geoal.formats.from_labelstudio` and
applies it with :func:`geoal.pipeline.annotate.apply_import`: all of it or nothing, and
the same annotations pulled twice change nothing.

The geoal project remembers its Label Studio project per server URL in the store's
``meta`` table (``labelstudio:<url>`` -> ``{"project": id, "rounds": [...]}``), never a token.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoal.labelstudio.client import Client, LabelStudioError
from geoal.pipeline.annotate import ImportReport
from geoal.project import Project
from geoal.store.rounds import unlabelled_round_chips

META_PREFIX = "labelstudio:"
_ANNOTATION_KEYS = ("id", "result", "was_cancelled", "created_at", "updated_at")
_CHIP_KEYS = ("chip_id", "fingerprint", "window")


@dataclass
class PushReport:
    """What ``geoal labelstudio push`` did."""

    url: str
    ls_project: int
    created: bool
    round_id: int
    chips: int
    added: int
    present: int
    predictions: int
    notes: list[str] = field(default_factory=list)


@dataclass
class PullReport:
    """What ``geoal labelstudio pull`` found and did; ``imported`` is the import's own report."""

    url: str
    ls_project: int
    tasks: int = 0
    open: int = 0  # no annotation yet: stays unlabelled
    skipped: int = 0  # only skipped (cancelled) annotations: stays unlabelled
    missing: list[int] = field(default_factory=list)  # pushed chips whose task is gone
    notes: list[str] = field(default_factory=list)
    imported: ImportReport | None = None

    @property
    def problems(self) -> list[str]:
        """Problems that refused the import (empty when it was applied or nothing was new)."""
        return [] if self.imported is None else self.imported.problems


def linked_project(project: Project, url: str) -> dict[str, Any] | None:
    """``{"project": id, "rounds": [...]}`` of this geoal project on the server ``url``."""
    raw = project.store.get_meta(META_PREFIX + url)
    if raw is None:
        return None
    try:
        link = json.loads(raw)
        return {"project": int(link["project"]), "rounds": [int(r) for r in link["rounds"]]}
    except (ValueError, KeyError, TypeError):
        return None


def _save_link(project: Project, url: str, ls_project: int, rounds: set[int]) -> None:
    value = json.dumps({"project": ls_project, "rounds": sorted(rounds)})
    with project.store.transaction():
        project.store.set_meta(META_PREFIX + url, value)


def config_labels(label_config: str) -> list[str] | None:
    """The box labels of a labelling config (geoal's RectangleLabels), None if it has none."""
    from geoal.formats.labelstudio import FROM_NAME

    try:
        root = ET.fromstring(label_config)
    except ET.ParseError:
        return None
    for tag in root.iter("RectangleLabels"):
        if tag.get("name") == FROM_NAME:
            return [str(label.get("value")) for label in tag.iter("Label")]
    return None


def _labels_differ(info: dict[str, Any], classes: tuple[str, ...], url: str) -> str | None:
    labels = config_labels(str(info.get("label_config", "")))
    if labels is not None and sorted(labels) == sorted(classes):
        return None
    shown = "no box labels" if labels is None else f"box labels {labels}"
    return (
        f"Label Studio project {info.get('id')} at {url} has {shown} but the geoal project's "
        f"classes are {list(classes)}: a box with another label cannot be imported; put the "
        "labels back in Label Studio (project Settings > Labeling Interface)"
    )


def push_round(
    project: Project,
    client: Client,
    round_id: int | None = None,
    *,
    progress: bool = False,
    conf: float | None = None,
) -> PushReport:
    """Add a round's chips (default: the latest open round) as tasks with predictions.

    Predictions are the model's boxes at or above ``conf`` (default: the config's
    ``export.conf``). Creates the Label Studio project on the first push to a server;
    chips that already have a task there are left alone, so pushing again only adds
    what is missing.
    """
    from geoal.formats import labelstudio_config, read_json
    from geoal.pipeline.annotate import ExportOptions, export_round
    from geoal.pipeline.rounds import round_chip_ids

    round_id, _ = round_chip_ids(project, round_id)  # no round: fail before touching the server
    classes = project.config.classes
    url = client.url
    notes = []
    link = linked_project(project, url)
    info = None if link is None else client.project(link["project"])
    created = info is None
    if link is not None and info is None:
        notes.append(
            f"Label Studio project {link['project']} at {url} no longer exists; created a new one"
        )
    if info is None:
        name = project.config.name or project.root.name
        info = client.create_project(
            f"geoal {name}",
            f"Chips of the geoal project at {project.root}, pushed by 'geoal labelstudio push'.",
            labelstudio_config(classes),
        )
        _save_link(project, url, int(info["id"]), set())
    ls_project = int(info["id"])
    differ = _labels_differ(info, classes, url)
    if differ is not None:
        raise LabelStudioError(f"{differ}; nothing pushed")
    rounds = set() if created or link is None else set(link["rounds"])
    present = {_chip_id(task) for task in client.export_tasks(ls_project)}
    with tempfile.TemporaryDirectory(prefix="geoal-labelstudio-") as tmp:
        out = Path(tmp)
        info_export = export_round(
            project,
            ExportOptions(format="labelstudio", out=out, round_id=round_id, conf=conf),
            progress=progress,
        )
        tasks = read_json(info_export["file"])
        new = [t for t in tasks if _chip_id(t) not in present]
        for start in range(0, len(new), 50):
            batch = new[start : start + 50]
            files = [
                (Path(t["data"]["image"]).name, (out / t["data"]["image"]).read_bytes())
                for t in batch
            ]
            for task, image_url in zip(batch, client.upload_files(ls_project, files), strict=True):
                task["data"]["image"] = image_url
            client.import_tasks(ls_project, batch)
    round_done = int(info_export["round"])
    _save_link(project, url, ls_project, rounds | {round_done})
    return PushReport(
        url=url,
        ls_project=ls_project,
        created=created,
        round_id=round_done,
        chips=len(tasks),
        added=len(new),
        present=len(tasks) - len(new),
        predictions=sum(len(p["result"]) for t in new for p in t.get("predictions", [])),
        notes=notes,
    )


def _chip_id(task: Any) -> int | None:
    data = task.get("data") if isinstance(task, dict) else None
    value = data.get("chip_id") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _live(annotation: Any) -> bool:
    return isinstance(annotation, dict) and not annotation.get("was_cancelled", False)


def canonical_tasks(tasks: list[Any]) -> list[Any]:
    """The part of an export that decides labels: tasks with a submitted annotation, sorted.

    Per task only its id, the chip keys of its data and its annotations' id, result,
    cancelled flag and times are kept, so the digest of this list changes exactly when
    what an import would store changes (and not when a task is merely opened or added).
    """
    out = []
    for task in tasks:
        if not isinstance(task, dict):
            out.append(task)  # reported by from_labelstudio
            continue
        annotations = task.get("annotations")
        if not isinstance(annotations, list) or not any(_live(a) for a in annotations):
            continue
        data = task.get("data")
        if isinstance(data, dict):
            data = {k: data[k] for k in _CHIP_KEYS if k in data}
        out.append(
            {
                "id": task.get("id"),
                "data": data,
                "annotations": [
                    {k: a.get(k) for k in _ANNOTATION_KEYS} if isinstance(a, dict) else a
                    for a in annotations
                ],
            }
        )
    return sorted(out, key=lambda t: str(t.get("id")) if isinstance(t, dict) else "")


def pull_labels(project: Project, client: Client) -> PullReport:
    """Import the submitted annotations of the project's Label Studio tasks: all or nothing.

    A task submitted without boxes is a labelled negative; a task still open, or only
    skipped, stays unlabelled; a pushed chip whose task was deleted stays unlabelled and
    is reported. Pulling the same annotations again changes nothing.
    """
    from geoal.formats import from_labelstudio
    from geoal.pipeline.annotate import apply_import, chip_infos

    url = client.url
    link = linked_project(project, url)
    if link is None:
        raise LabelStudioError(
            f"{project.root}: no round pushed to {url} yet: run 'geoal labelstudio push --url {url}'"
        )
    ls_project = link["project"]
    info = client.project(ls_project)
    if info is None:
        raise LabelStudioError(
            f"Label Studio project {ls_project} at {url} no longer exists (deleted?); nothing "
            "imported. 'geoal labelstudio push' creates a new one"
        )
    tasks = client.export_tasks(ls_project)
    report = PullReport(url=url, ls_project=ls_project, tasks=len(tasks))
    for task in tasks:
        annotations = task.get("annotations") if isinstance(task, dict) else None
        if not annotations:
            report.open += 1
        elif not any(_live(a) for a in annotations):
            report.skipped += 1
    differ = _labels_differ(info, project.config.classes, url)
    if differ is not None:
        report.notes.append(differ)
    canonical = canonical_tasks(tasks)
    source = f"{url}/projects/{ls_project}"
    content = json.dumps(
        {"source": source, "tasks": canonical}, sort_keys=True, separators=(",", ":")
    )
    result = from_labelstudio(canonical, chip_infos(project), project.config.classes, source)
    if result.labels or result.problems:
        report.imported = apply_import(
            project,
            result,
            source=source,
            digest=hashlib.sha256(content.encode("utf-8")).hexdigest(),
            fmt="labelstudio",
            on_duplicate="replace",  # a task submitted again in Label Studio: its latest labels
        )
    report.missing = _missing_chips(project, link["rounds"], tasks)
    return report


def _missing_chips(project: Project, rounds: list[int], tasks: list[Any]) -> list[int]:
    """Unlabelled chips of the pushed rounds that have no task any more."""
    if not rounds:
        return []
    present = {_chip_id(t) for t in tasks}
    return [c for c in unlabelled_round_chips(project.store, rounds) if c not in present]


def push_summary(report: PushReport) -> list[str]:
    """Lines for the CLI."""
    verb = "created" if report.created else "reused"
    lines = [*report.notes]
    lines.append(
        f"round {report.round_id}: {report.added} tasks added ({report.predictions} predicted boxes), "
        f"{report.present} already there; Label Studio project {report.ls_project} ({verb}) "
        f"at {report.url}/projects/{report.ls_project}"
    )
    return lines


def pull_summary(report: PullReport) -> list[str]:
    """Lines for the CLI (problems are listed separately)."""
    imp = report.imported
    if imp is None:
        head = "no submitted annotations yet; nothing imported"
    elif imp.already_imported is not None:
        head = f"nothing new since import {imp.already_imported}; nothing changed"
    elif not imp.applied:
        head = "no annotation changed; nothing changed"
    else:
        unchanged = f", {imp.unchanged} unchanged" if imp.unchanged else ""
        head = (
            f"imported {imp.chips} chips ({imp.boxes} boxes, {imp.negatives} labelled negatives, "
            f"{imp.replaced} relabelled{unchanged})"
        )
    lines = [
        f"Label Studio project {report.ls_project} at {report.url}: {report.tasks} tasks, "
        f"{report.open} open, {report.skipped} skipped; {head}"
    ]
    if report.missing:
        shown = ", ".join(map(str, report.missing[:20]))
        more = "" if len(report.missing) <= 20 else f" and {len(report.missing) - 20} more"
        lines.append(
            f"{len(report.missing)} pushed chip(s) have no task any more (deleted in Label Studio?) "
            f"and stay unlabelled: {shown}{more}; 'geoal labelstudio push' adds them again"
        )
    return lines
