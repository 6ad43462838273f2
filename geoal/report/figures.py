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
    rows: Sequence[Mapping[str, Any]],
    x: str = "n_images",
    y: str = "mAP50",
    *,
    xlabel: str = "labelled images",
    ylabel: str | None = None,
) -> bytes:
    """Mean and min-max band of ``y`` over seeds against ``x``, one line per strategy.

    ``rows``: dicts with strategy, seed, ``x`` and ``y`` (simulate's results.csv, or
    one row per trained model with strategy 'project'). ``y`` is a 0-1 metric: the axis
    spans 0-1 so that curves of different reports compare at a glance.
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
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or y)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return _png(fig)


def class_ap_png(
    per_round: Sequence[tuple[str, Mapping[str, float | None]]], classes: Sequence[str] = ()
) -> bytes:
    """Grouped bars: AP50 per class (x) for each model/round (bars), each bar with its value.

    A class without ground truth in the evaluation (AP None) is marked "n/a", not drawn as 0.
    ``classes`` fixes the order (default: sorted names).
    """
    fig, ax = _figure(7.0, 3.8)
    names = list(classes) or sorted({c for _, ap in per_round for c in ap})
    width = 0.8 / max(1, len(per_round))
    small = 7 if len(per_round) * len(names) <= 24 else 5
    for k, (label, ap) in enumerate(per_round):
        xs = np.arange(len(names)) + k * width
        vals = [ap.get(c) for c in names]
        heights = [v if v is not None else 0.0 for v in vals]
        ax.bar(xs, heights, width=width, label=label)
        for x, v in zip(xs, vals, strict=True):
            text = "n/a" if v is None else f"{v:.2f}"
            ax.text(x, (v or 0.0) + 0.015, text, ha="center", va="bottom", fontsize=small)
    ax.set_xticks(np.arange(len(names)) + width * (len(per_round) - 1) / 2)
    ax.set_xticklabels(
        names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center"
    )
    ax.set_ylabel("AP50 (held-out)")
    ax.set_ylim(0, 1.08)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def score_scale(scores: np.ndarray, min_range: float = 1e-3) -> tuple[np.ndarray, str]:
    """Chip scores (N,) (NaN = not scored) as the values to colour, and what they are.

    Scores whose spread is below ``min_range`` (a model that sees nothing anywhere gives
    scores like 1e-13) would stretch noise over the whole colour scale: they are shown
    as percentiles (0-100, the rank among the scored chips; ties share one) instead, and
    the label says so. Otherwise the scores are shown as they are.
    """
    out = np.full(scores.shape, np.nan)
    ok = np.isfinite(scores)
    if not ok.any():
        return out, "chip score"
    finite = scores[ok]
    if float(finite.max() - finite.min()) >= min_range:
        out[ok] = finite
        return out, "chip score"
    if finite.size == 1 or float(finite.max() - finite.min()) == 0.0:
        out[ok] = 50.0
    else:
        ranks = np.searchsorted(np.sort(finite), finite, side="left")  # ties: the lowest rank
        out[ok] = 100.0 * ranks / (finite.size - 1)
    return out, "chip score percentile (scores nearly equal: rank among scored chips)"


def score_raster(
    shape: tuple[int, int], scale: float, windows: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """(h, w) float raster of chip values over an overview; NaN where no chip is scored.

    ``windows``: (N, 4) [col, row, w, h] in scene pixels; ``scale``: overview px per scene
    px; ``values``: (N,). Where chips overlap, a pixel takes the highest value of the
    chips covering it, so overlaps are painted once (never darker than either chip).
    """
    out = np.full(shape, np.nan)
    order = np.argsort(np.where(np.isfinite(values), values, -np.inf), kind="stable")
    for i in order:
        if not np.isfinite(values[i]):
            continue
        col, row, w, h = (float(v) * scale for v in windows[i])
        r0, c0 = max(0, int(np.floor(row))), max(0, int(np.floor(col)))
        r1, c1 = min(shape[0], int(np.ceil(row + h))), min(shape[1], int(np.ceil(col + w)))
        out[r0:r1, c0:c1] = values[i]
    return out


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
    The colours follow :func:`score_scale` and :func:`score_raster`; the higher a chip's
    value, the more opaque its fill.
    """
    import matplotlib
    import matplotlib.patches as mpatches
    from matplotlib import cm, colors

    h, w = overview.shape[:2]
    fig, ax = _figure(7.0, 7.0 * h / max(w, 1) + 0.6)
    ax.imshow(overview)
    values, label = score_scale(np.asarray(scores, dtype=float))
    finite = values[np.isfinite(values)]
    cmap = matplotlib.colormaps["magma"]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        norm = (
            colors.Normalize(vmin=lo, vmax=hi) if hi > lo else colors.Normalize(lo - 0.5, hi + 0.5)
        )
        raster = score_raster((h, w), scale, np.asarray(windows), values)
        level = np.clip(norm(np.nan_to_num(raster, nan=lo)), 0.0, 1.0)
        rgba = cmap(level)
        # low scores stay see-through, so the scene shows where the model is calm
        rgba[..., 3] = np.where(np.isfinite(raster), 0.15 + 0.6 * level, 0.0)
        ax.imshow(rgba, interpolation="nearest")
        sm = cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(sm, ax=ax, fraction=0.03, label=label)
    for win, state in zip(windows, states, strict=True):
        edge = {"labelled": "lime", "selected": "cyan"}.get(state)
        if edge:
            x, y, ww, hh = (float(v) * scale for v in win)
            ax.add_patch(
                mpatches.Rectangle((x, y), ww, hh, fill=False, edgecolor=edge, linewidth=1.2)
            )
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    return _png(fig)


def chip_png(
    pixels: np.ndarray,
    boxes: np.ndarray,
    labels: Sequence[str],
    title: str,
    truth: np.ndarray | None = None,
) -> bytes:
    """A chip (H, W, 3) uint8 with detections (N, 4) xyxy px in yellow, labelled ``labels``.

    ``truth``: (M, 4) xyxy px of the known (human or ground-truth) boxes, drawn in green
    without text underneath the detections.
    """
    import matplotlib.patches as mpatches

    fig, ax = _figure(3.2, 3.4)
    ax.imshow(pixels)
    for x1, y1, x2, y2 in np.zeros((0, 4)) if truth is None else truth:
        ax.add_patch(
            mpatches.Rectangle(
                (x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="lime", linewidth=1.6
            )
        )
    for (x1, y1, x2, y2), label in zip(boxes, labels, strict=True):
        ax.add_patch(
            mpatches.Rectangle(
                (x1, y1),
                x2 - x1,
                y2 - y1,
                fill=False,
                edgecolor="yellow",
                linewidth=1.2,
                linestyle="--",
            )
        )
        if label:
            ax.text(
                x1,
                y1 - 1,
                label,
                color="black",
                fontsize=7,
                va="bottom",
                bbox={"facecolor": "yellow", "alpha": 0.75, "pad": 1, "edgecolor": "none"},
                clip_on=True,
            )
    ax.set_xlim(-0.5, pixels.shape[1] - 0.5)
    ax.set_ylim(pixels.shape[0] - 0.5, -0.5)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    return _png(fig)
