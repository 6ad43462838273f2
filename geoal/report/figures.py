"""Figures for the report: learning curves, per-class AP, chip-score maps, chip gallery.

Each function returns PNG bytes (matplotlib, Agg backend, no fonts downloaded).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def learning_curve_png(
    rows: Sequence[Mapping[str, Any]], x: str = "n_images", y: str = "mAP50"
) -> bytes:
    """Mean and min-max band of ``y`` over seeds against ``x``, one line per strategy.

    ``rows``: dicts with strategy, seed, ``x`` and ``y`` (simulate's results.csv, or
    one row per trained model with strategy 'project').
    """
    fig, ax = _figure(6.4, 4.0)
    strategies = sorted({str(r["strategy"]) for r in rows}, key=lambda s: (s != "random", s))
    for name in strategies:
        pts: dict[float, list[float]] = {}
        for r in rows:
            if str(r["strategy"]) == name and r.get(y) not in (None, ""):
                pts.setdefault(float(r[x]), []).append(float(r[y]))
        if not pts:
            continue
        xs = np.array(sorted(pts))
        mean = np.array([np.mean(pts[v]) for v in xs])
        lo = np.array([np.min(pts[v]) for v in xs])
        hi = np.array([np.max(pts[v]) for v in xs])
        style = {"color": "0.35", "linestyle": "--"} if name == "random" else {}
        line = ax.plot(xs, mean, marker="o", label=name, **style)[0]
        ax.fill_between(xs, lo, hi, alpha=0.15, color=line.get_color())
    ax.set_xlabel("labelled images" if x == "n_images" else x.replace("_", " "))
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return _png(fig)


def class_ap_png(per_round: Sequence[tuple[str, Mapping[str, float | None]]]) -> bytes:
    """Grouped bars: AP50 per class (x) for each model/round (bars)."""
    fig, ax = _figure(7.0, 3.6)
    classes = sorted({c for _, ap in per_round for c in ap})
    width = 0.8 / max(1, len(per_round))
    for k, (label, ap) in enumerate(per_round):
        vals = [ap.get(c) if ap.get(c) is not None else 0.0 for c in classes]
        ax.bar(np.arange(len(classes)) + k * width, vals, width=width, label=label)
    ax.set_xticks(np.arange(len(classes)) + width * (len(per_round) - 1) / 2)
    ax.set_xticklabels(classes, rotation=30, ha="right")
    ax.set_ylabel("AP50")
    ax.set_ylim(0, 1)
    ax.legend(frameon=False, fontsize=8)
    return _png(fig)


def score_map_png(
    overview: np.ndarray,
    scale: float,
    windows: np.ndarray,
    scores: np.ndarray,
    states: Sequence[str],
    title: str,
) -> bytes:
    """A scene overview (h, w, 3) uint8 with chips coloured by score and outlined by state.

    ``windows``: (N, 4) [col, row, w, h] in scene pixels; ``scale``: overview px per scene px;
    ``scores``: (N,) (NaN = not scored); states: labelled (green) / selected (cyan) / other.
    """
    import matplotlib
    import matplotlib.patches as mpatches
    from matplotlib import cm, colors

    h, w = overview.shape[:2]
    fig, ax = _figure(7.0, 7.0 * h / max(w, 1) + 0.6)
    ax.imshow(overview)
    finite = scores[np.isfinite(scores)]
    norm = colors.Normalize(
        vmin=float(finite.min()) if finite.size else 0.0,
        vmax=float(finite.max()) if finite.size else 1.0,
    )
    cmap = matplotlib.colormaps["magma"]
    for win, score, state in zip(windows, scores, states, strict=True):
        x, y, ww, hh = (float(v) * scale for v in win)
        if np.isfinite(score):
            ax.add_patch(
                mpatches.Rectangle(
                    (x, y), ww, hh, facecolor=cmap(norm(score)), alpha=0.45, edgecolor="none"
                )
            )
        edge = {"labelled": "lime", "selected": "cyan"}.get(state)
        if edge:
            ax.add_patch(
                mpatches.Rectangle((x, y), ww, hh, fill=False, edgecolor=edge, linewidth=1.5)
            )
    if finite.size:
        sm = cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(sm, ax=ax, fraction=0.03, label="chip score")
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    return _png(fig)


def chip_png(pixels: np.ndarray, boxes: np.ndarray, labels: Sequence[str], title: str) -> bytes:
    """A chip (H, W, 3) uint8 with boxes (N, 4) xyxy px drawn and labelled."""
    import matplotlib.patches as mpatches

    fig, ax = _figure(3.2, 3.4)
    ax.imshow(pixels)
    for (x1, y1, x2, y2), label in zip(boxes, labels, strict=True):
        ax.add_patch(
            mpatches.Rectangle(
                (x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="yellow", linewidth=1.2
            )
        )
        ax.text(x1, y1, label, color="black", fontsize=6, backgroundcolor="yellow", va="bottom")
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    return _png(fig)
