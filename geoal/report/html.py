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
import json
from pathlib import Path
from typing import Any

import numpy as np

from geoal.project import Project

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


def _models(project: Project) -> list[dict[str, Any]]:
    rows = project.store.conn.execute(
        "SELECT hash, round_id, metrics, created_at FROM models WHERE kind = 'trained' ORDER BY id"
    ).fetchall()
    return [
        {"hash": r[0], "round": r[1], "metrics": json.loads(r[2] or "{}"), "created": r[3]}
        for r in rows
    ]


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
    from geoal.pipeline.annotate import (
        chip_images,
        chip_infos,
        labelled_chip_ids,
        labels,
        predictions,
    )
    from geoal.pipeline.catalog import chip_table, project_status
    from geoal.report import figures

    classes = project.config.classes
    status = project_status(project)
    parts = [f"<h1>geoal report: {html.escape(str(status['name']))}</h1>"]
    counts = status["counts"]
    parts.append(_table(list(counts), [list(counts.values())]))
    parts.append(
        f'<p class="note">classes: {html.escape(", ".join(classes))}; project {html.escape(str(project.root))}</p>'
    )

    # learning curves
    parts.append("<h2>Learning curves</h2>")
    models = _models(project)
    model_rows = []
    for m in models:
        ev = m["metrics"].get("eval") or {}
        n = int(m["metrics"].get("train_chips", 0)) + len(m["metrics"].get("val_chip_ids", []))
        model_rows.append(
            [
                m["hash"][:12],
                m["round"],
                n,
                ev.get("mAP50"),
                ev.get("mAP50-95"),
                (m["metrics"].get("train") or {}).get("mAP50"),
            ]
        )
    if models:
        evaluated = [r for r in model_rows if r[3] is not None]
        # never mix held-out metrics with training-split ones in one curve
        rows_y, y_name = (evaluated, 3) if evaluated else (model_rows, 5)
        curve = [
            {"strategy": "project", "seed": 0, "n_images": r[2], "mAP50": r[y_name]} for r in rows_y
        ]
        ylabel = "held-out mAP50 (geoal evaluate)" if evaluated else "val mAP50 (training split)"
        parts.append(
            _img(
                figures.learning_curve_png(curve, xlabel="labelled chips", ylabel=ylabel),
                "project learning curve",
            )
        )
        if not evaluated:
            parts.append(
                '<p class="note">no model evaluated on held-out chips yet (geoal evaluate): '
                "the curve shows the validation mAP50 measured while training.</p>"
            )
        parts.append(
            _table(
                [
                    "model",
                    "round",
                    "labelled chips",
                    "eval mAP50",
                    "eval mAP50-95",
                    "val mAP50 (training)",
                ],
                model_rows,
            )
        )
    else:
        parts.append('<p class="note">no trained model yet (geoal train).</p>')
    if simulation is not None:
        csv_path = (
            Path(simulation) / "results.csv" if Path(simulation).is_dir() else Path(simulation)
        )
        with csv_path.open(newline="", encoding="utf-8") as fh:
            sim_rows = list(csv.DictReader(fh))
        parts.append(f"<h3>Compared strategies: {html.escape(str(csv_path))}</h3>")
        parts.append(
            '<p class="note">one line per strategy: the mean over seeds, the band their '
            "range; random (dashed) is the control arm.</p>"
        )
        parts.append(
            _img(
                figures.learning_curve_png(
                    sim_rows, xlabel="labelled images (chips)", ylabel="held-out mAP50"
                ),
                "learning curves by strategy",
            )
        )

    # per-class AP per model
    per_round = [
        (
            f"round {m['round']} ({m['hash'][:8]})",
            (m["metrics"].get("eval") or {}).get("ap50") or {},
        )
        for m in models
        if (m["metrics"].get("eval") or {}).get("ap50")
    ]
    parts.append("<h2>Per-class AP50</h2>")
    if per_round:
        parts.append(_img(figures.class_ap_png(per_round, classes), "per-class AP"))
        parts.append(
            _table(
                ["model", *classes],
                [[label, *(ap.get(c) for c in classes)] for label, ap in per_round],
            )
        )
        parts.append(
            '<p class="note">AP50 on each model\'s evaluation set; "-" / "n/a": the class has '
            "no object there.</p>"
        )
    else:
        parts.append(
            '<p class="note">not evaluated yet: run geoal evaluate (on the held-out chips, '
            "or --data COCO_JSON --images DIR).</p>"
        )

    # chip-score maps
    parts.append("<h2>Chip scores over each scene</h2>")
    parts.append(
        '<p class="note">fill: each chip\'s latest score (the default aggregation, '
        f"{html.escape(project.config.score.aggregation)}); where chips overlap, the higher "
        "score; the colour bar says whether it shows the scores or their percentiles. "
        "Outline: green = labelled, cyan = selected.</p>"
    )
    table = chip_table(project)
    for scene in project.store.scenes():
        rows = [r for r in table if r["scene_id"] == scene.id]
        if not rows:
            continue
        overview, scale = _scene_overview(scene)
        windows = np.array([[r["col_off"], r["row_off"], r["width"], r["height"]] for r in rows])
        scores = np.array([np.nan if r["score"] is None else r["score"] for r in rows], dtype=float)
        png = figures.score_map_png(
            overview, scale, windows, scores, [r["state"] for r in rows], scene.name
        )
        parts.append(_img(png, f"score map {scene.name}"))

    # gallery of the latest round
    rnd = project.store.conn.execute(
        "SELECT id, strategy, model_hash FROM rounds WHERE status != 'cancelled' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    parts.append("<h2>Selected chips</h2>")
    if rnd is None:
        parts.append('<p class="note">no round yet (geoal select).</p>')
    else:
        ids = [
            int(r[0])
            for r in project.store.conn.execute(
                "SELECT chip_id FROM round_chips WHERE round_id = ? ORDER BY rank LIMIT ?",
                (rnd[0], gallery),
            )
        ]
        scores_by_chip = dict(
            project.store.conn.execute(
                "SELECT chip_id, score FROM round_chips WHERE round_id = ?", (rnd[0],)
            ).fetchall()
        )
        infos = chip_infos(project, ids)
        preds = predictions(project, ids, rnd[2])
        labelled = set(labelled_chip_ids(project)) & set(ids)
        truth = labels(project, sorted(labelled))
        parts.append(
            f'<p class="note">round {rnd[0]}, strategy {html.escape(rnd[1])}, model '
            f"{html.escape((rnd[2] or 'none')[:12])}. Yellow dashed: that model's detections "
            f"with score &ge; {min_score:g} (class and score); green: the chip's labels, once "
            'imported.</p><div class="gallery">'
        )
        with chip_images(project) as read:
            for rank, cid in enumerate(ids):
                info = infos[cid]
                pixels = read(info)
                boxes, texts, hidden = _shown_detections(preds.get(cid), classes, min_score)
                known = truth[cid].xyxy if cid in truth else None
                score = scores_by_chip.get(cid)
                title = f"#{rank + 1} chip {cid} ({info.scene.name})"
                caption = (
                    f"score {_fmt(score)}; {_count(len(boxes), 'detection')} shown"
                    + (f" ({hidden} below {min_score:g} not drawn)" if hidden else "")
                    + ("" if known is None else f"; {_count(len(known), 'labelled object')}")
                    + f"; window {info.window[:2]}"
                )
                png = figures.chip_png(pixels, boxes, texts, title, truth=known)
                parts.append(
                    f"<figure>{_img(png, title)}<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
        parts.append("</div>")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>geoal report</title><style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
