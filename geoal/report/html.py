"""``geoal report``: one self-contained HTML page (figures embedded as PNG data URIs).

Sections: project summary; learning curves (trained models of the project, and a
``geoal simulate`` run if given); per-class AP per model; a map of chip scores
over each scene; a gallery of the latest round's chips with the model's boxes, so
an analyst sees why the model asked for them.
"""

from __future__ import annotations

import base64
import csv
import html
from pathlib import Path
from typing import Any

import numpy as np

from geoal.pipeline.annotate import (
    chip_images,
    chip_infos,
    labelled_chip_ids,
    labels,
    predictions,
)
from geoal.pipeline.catalog import chip_table, project_status
from geoal.project import Project
from geoal.report import figures
from geoal.store import report as report_store
from geoal.store.report import TrainedModel

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}.gallery{display:flex;flex-wrap:wrap;gap:8px}.gallery figure{margin:0}
figcaption{font-size:.8em;color:#555;max-width:330px}.note{color:#666;font-size:.9em}
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if not np.isfinite(v) else f"{v:.3f}"
    return str(v)


def _scene_overview(scene: Any, max_side: int = 900) -> tuple[np.ndarray, float]:
    """A decimated (h, w, 3) uint8 view of the scene with its stored bands and stretch."""
    from rasterio.enums import Resampling

    from geoal.raster.scene import open_scene
    from geoal.raster.stretch import apply_stretch

    scale = min(1.0, max_side / max(scene.width, scene.height))
    h, w = max(1, round(scene.height * scale)), max(1, round(scene.width * scale))
    with open_scene(scene) as ds:
        data = ds.read(list(scene.bands), out_shape=(3, h, w), resampling=Resampling.nearest)
    rgb = apply_stretch(data, scene.stretch, zero=scene.nodata)
    return np.ascontiguousarray(rgb.transpose(1, 2, 0)), w / scene.width


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _shown_detections(
    boxes: Any, classes: tuple[str, ...], min_score: float, limit: int = 30
) -> tuple[np.ndarray, list[str], int]:
    """The detections drawn on a gallery chip: ((K, 4) xyxy px, "class 0.87" texts, hidden).

    Only those with score >= ``min_score``, the ``limit`` most confident of them; ``hidden``
    counts the rest.
    """
    if boxes is None or boxes.score is None or not len(boxes.xyxy):
        return np.zeros((0, 4)), [], 0
    order = np.argsort(-boxes.score, kind="stable")
    keep = order[boxes.score[order] >= min_score][:limit]
    texts = [f"{classes[int(boxes.cls[i])]} {boxes.score[i]:.2f}" for i in keep]
    return boxes.xyxy[keep], texts, len(boxes.xyxy) - len(keep)


def build_report(
    project: Project,
    out: Path,
    *,
    simulation: Path | None = None,
    gallery: int = 24,
    min_score: float = 0.25,
) -> Path:
    """Write the report to ``out`` (atomically) and return its path.

    ``simulation``: a ``geoal simulate`` folder or a CSV of its columns (strategy, seed,
    n_images, mAP50) to plot; ``min_score``: the lowest detection score drawn in the gallery.
    """
    models = report_store.trained_models(project.store.conn)
    parts = [
        *_summary_section(project),
        *_learning_curve_section(models, simulation),
        *_class_ap_section(models, project.config.classes),
        *_score_map_section(project),
        *_gallery_section(project, gallery, min_score),
    ]
    return _write_page(Path(out), parts)


def _summary_section(project: Project) -> list[str]:
    """Title, project-wide counts, classes and folder."""
    status = project_status(project)
    counts = status["counts"]
    classes = ", ".join(project.config.classes)
    return [
        f"<h1>geoal report: {html.escape(str(status['name']))}</h1>",
        _table(list(counts), [list(counts.values())]),
        f'<p class="note">classes: {html.escape(classes)}; '
        f"project {html.escape(str(project.root))}</p>",
    ]


def _model_rows(models: list[TrainedModel]) -> list[list[Any]]:
    """Per model: hash (12), round, labelled chips, eval mAP50, eval mAP50-95, val mAP50."""
    rows = []
    for m in models:
        ev = m.metrics.get("eval") or {}
        n = int(m.metrics.get("train_chips", 0)) + len(m.metrics.get("val_chip_ids", []))
        train = m.metrics.get("train") or {}
        rows.append(
            [m.hash[:12], m.round_id, n, ev.get("mAP50"), ev.get("mAP50-95"), train.get("mAP50")]
        )
    return rows


def _learning_curve_section(models: list[TrainedModel], simulation: Path | None) -> list[str]:
    """The project's learning curve and model table, then a simulation's curves if given."""
    parts = ["<h2>Learning curves</h2>"]
    if not models:
        parts.append('<p class="note">no trained model yet (geoal train).</p>')
    else:
        model_rows = _model_rows(models)
        evaluated = [r for r in model_rows if r[3] is not None]
        # never mix held-out metrics with training-split ones in one curve
        rows_y, y = (evaluated, 3) if evaluated else (model_rows, 5)
        curve = [
            {"strategy": "project", "seed": 0, "n_images": r[2], "mAP50": r[y]} for r in rows_y
        ]
        ylabel = "held-out mAP50 (geoal evaluate)" if evaluated else "val mAP50 (training split)"
        png = figures.learning_curve_png(curve, xlabel="labelled chips", ylabel=ylabel)
        parts.append(_img(png, "project learning curve"))
        if not evaluated:
            parts.append(
                '<p class="note">no model evaluated on held-out chips yet (geoal evaluate): '
                "the curve shows the validation mAP50 measured while training.</p>"
            )
        header = ["model", "round", "labelled chips", "eval mAP50", "eval mAP50-95"]
        parts.append(_table([*header, "val mAP50 (training)"], model_rows))
    if simulation is not None:
        parts.extend(_simulation_curves(Path(simulation)))
    return parts


def _simulation_curves(simulation: Path) -> list[str]:
    """Learning curves by strategy of a ``geoal simulate`` folder or its results CSV."""
    csv_path = simulation / "results.csv" if simulation.is_dir() else simulation
    with csv_path.open(newline="", encoding="utf-8") as fh:
        sim_rows = list(csv.DictReader(fh))
    png = figures.learning_curve_png(
        sim_rows, xlabel="labelled images (chips)", ylabel="held-out mAP50"
    )
    return [
        f"<h3>Compared strategies: {html.escape(str(csv_path))}</h3>",
        '<p class="note">one line per strategy: the mean over seeds, the band their '
        "range; random (dashed) is the control arm.</p>",
        _img(png, "learning curves by strategy"),
    ]


def _class_ap_section(models: list[TrainedModel], classes: tuple[str, ...]) -> list[str]:
    """Per-class AP50 of each evaluated model: a figure and a table."""
    per_round = [
        (f"round {m.round_id} ({m.hash[:8]})", (m.metrics.get("eval") or {}).get("ap50") or {})
        for m in models
        if (m.metrics.get("eval") or {}).get("ap50")
    ]
    parts = ["<h2>Per-class AP50</h2>"]
    if not per_round:
        parts.append(
            '<p class="note">not evaluated yet: run geoal evaluate (on the held-out chips, '
            "or --data COCO_JSON --images DIR).</p>"
        )
        return parts
    rows = [[label, *(ap.get(c) for c in classes)] for label, ap in per_round]
    parts += [
        _img(figures.class_ap_png(per_round, classes), "per-class AP"),
        _table(["model", *classes], rows),
        '<p class="note">AP50 on each model\'s evaluation set; "-" / "n/a": the class has '
        "no object there.</p>",
    ]
    return parts


def _score_map_section(project: Project) -> list[str]:
    """A map of the chips' latest scores and states over each scene."""
    parts = [
        "<h2>Chip scores over each scene</h2>",
        '<p class="note">fill: each chip\'s latest score (the default aggregation, '
        f"{html.escape(project.config.score.aggregation)}); where chips overlap, the higher "
        "score; the colour bar says whether it shows the scores or their percentiles. "
        "Outline: green = labelled, cyan = selected.</p>",
    ]
    table = chip_table(project)
    for scene in project.store.scenes():
        rows = [r for r in table if r["scene_id"] == scene.id]
        if not rows:
            continue
        overview, scale = _scene_overview(scene)
        windows = np.array([[r["col_off"], r["row_off"], r["width"], r["height"]] for r in rows])
        scores = np.array([np.nan if r["score"] is None else r["score"] for r in rows], dtype=float)
        states = [r["state"] for r in rows]
        png = figures.score_map_png(overview, scale, windows, scores, states, scene.name)
        parts.append(_img(png, f"score map {scene.name}"))
    return parts


def _gallery_section(project: Project, gallery: int, min_score: float) -> list[str]:
    """The latest round's first ``gallery`` chips with its model's detections and the labels."""
    parts = ["<h2>Selected chips</h2>"]
    rnd = report_store.latest_round(project.store.conn)
    if rnd is None:
        parts.append('<p class="note">no round yet (geoal select).</p>')
        return parts
    ranking = report_store.round_ranking(project.store.conn, rnd.id, gallery)
    ids = [int(c) for c in ranking.chip_ids]
    infos = chip_infos(project, ids)
    preds = predictions(project, ids, rnd.model_hash)
    truth = labels(project, sorted(set(labelled_chip_ids(project)) & set(ids)))
    parts.append(
        f'<p class="note">round {rnd.id}, strategy {html.escape(rnd.strategy)}, model '
        f"{html.escape((rnd.model_hash or 'none')[:12])}. Yellow dashed: that model's detections "
        f"with score &ge; {min_score:g} (class and score); green: the chip's labels, once "
        'imported.</p><div class="gallery">'
    )
    classes = project.config.classes
    with chip_images(project) as read:
        for rank, (cid, score) in enumerate(zip(ids, ranking.scores, strict=True)):
            info = infos[cid]
            boxes, texts, hidden = _shown_detections(preds.get(cid), classes, min_score)
            known = truth[cid].xyxy if cid in truth else None
            title = f"#{rank + 1} chip {cid} ({info.scene.name})"
            caption = (
                f"score {_fmt(score)}; {_count(len(boxes), 'detection')} shown"
                + (f" ({hidden} below {min_score:g} not drawn)" if hidden else "")
                + ("" if known is None else f"; {_count(len(known), 'labelled object')}")
                + f"; window {info.window[:2]}"
            )
            png = figures.chip_png(read(info), boxes, texts, title, truth=known)
            parts.append(
                f"<figure>{_img(png, title)}<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    parts.append("</div>")
    return parts


def _write_page(out: Path, parts: list[str]) -> Path:
    """The HTML page of these parts, written to ``out`` atomically (a temporary file renamed)."""
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>geoal report</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
