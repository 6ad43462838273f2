"""From results.csv to summary.json and learning_curves.png (mean over seeds, min-max band)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from geoal.simulate.state import read_rows, write_json_atomic

CEILING = "full"
CONTROL = "random"


def summarise(rows: list[dict[str, Any]], n_pool: int, n_pool_boxes: int) -> dict[str, Any]:
    """Per strategy and round: mean / std / min / max over seeds; the ceiling; labels to match.

    ``labels_to_match_random_final``: the fraction of the pool's images a strategy needed to
    reach the random arm's final mean mAP50, by linear interpolation on its mean curve
    (None if it never does, or without a random arm).
    """
    by_arm: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for row in rows:
        if row["strategy"] != CEILING:
            by_arm.setdefault(row["strategy"], {}).setdefault(row["round"], []).append(row)
    arms: dict[str, Any] = {}
    for name, rounds in sorted(by_arm.items()):
        arms[name] = {"rounds": [_round_stats(r, rounds[r]) for r in sorted(rounds)]}
    target = arms[CONTROL]["rounds"][-1]["mAP50_mean"] if CONTROL in arms else None
    for arm in arms.values():
        x = [r["n_images_mean"] / n_pool for r in arm["rounds"]]
        y = [r["mAP50_mean"] for r in arm["rounds"]]
        arm["labels_to_match_random_final"] = (
            None if target is None else labels_to_match(x, y, target)
        )
    ceiling = [r for r in rows if r["strategy"] == CEILING]
    return {
        "pool_images": n_pool,
        "pool_boxes": n_pool_boxes,
        "strategies": arms,
        "random_final_mAP50": target,
        "ceiling": (
            {k: ceiling[-1][k] for k in ("n_images", "n_boxes", "mAP50", "mAP50-95", "seconds")}
            if ceiling
            else None
        ),
        "seconds": round(sum(r["seconds"] for r in rows), 1),
    }


def labels_to_match(x: list[float], y: list[float], target: float) -> float | None:
    """The first x at which the piecewise-linear curve (x, y) reaches ``target``; None if never."""
    for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
        if yi >= target:
            if i == 0 or yi == y[i - 1]:
                return round(float(xi), 4)
            t = (target - y[i - 1]) / (yi - y[i - 1])
            return round(float(x[i - 1] + t * (xi - x[i - 1])), 4)
    return None


def write_report(out: Path, n_pool: int, n_pool_boxes: int, unit: str = "images") -> dict[str, Any]:
    """Summarise ``out/results.csv`` into ``out/summary.json`` and ``out/learning_curves.png``."""
    rows = read_rows(out / "results.csv")
    summary = summarise(rows, n_pool, n_pool_boxes)
    summary["budget_unit"] = unit
    write_json_atomic(out / "summary.json", summary)
    if rows:
        plot_learning_curves(summary, out / "learning_curves.png", x_key=f"n_{unit}_mean")
    return summary


def plot_learning_curves(
    summary: dict[str, Any], path: Path, *, x_key: str = "n_images_mean", title: str | None = None
) -> Path:
    """mAP50 against labels: mean line and min-max band over seeds per strategy.

    The random control arm is black and dashed; the ceiling a dotted horizontal line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = iter(["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for name, arm in summary["strategies"].items():
        rounds = arm["rounds"]
        x = np.array([r[x_key] for r in rounds])
        mean = np.array([r["mAP50_mean"] for r in rounds])
        low = np.array([r["mAP50_min"] for r in rounds])
        high = np.array([r["mAP50_max"] for r in rounds])
        seeds = max(r["n_seeds"] for r in rounds)
        control = name == CONTROL
        colour = "black" if control else next(colours)
        label = f"{name} ({seeds} seed{'s' * (seeds > 1)})" + (" - control" if control else "")
        ax.plot(x, mean, "--" if control else "-", marker="o", ms=4, color=colour, label=label)
        ax.fill_between(x, low, high, color=colour, alpha=0.12 if control else 0.2, lw=0)
    if summary.get("ceiling"):
        ceiling = summary["ceiling"]
        ax.axhline(
            ceiling["mAP50"],
            color="grey",
            ls=":",
            label=f"full pool ({ceiling['n_images']} images): {ceiling['mAP50']:.3f}",
        )
    unit = "boxes" if "boxes" in x_key else "images"
    ax.set_xlabel(f"labelled {unit} (pool: {summary[f'pool_{unit}']})")
    ax.set_ylabel("test mAP50")
    ax.set_title(title or "Label efficiency: mean over seeds, band = min-max")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _round_stats(r: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    def stat(key: str) -> dict[str, float]:
        v = np.array([row[key] for row in rows], dtype=np.float64)
        return {
            f"{key}_mean": _num(v.mean()),
            f"{key}_std": _num(v.std()),
            f"{key}_min": _num(v.min()),
            f"{key}_max": _num(v.max()),
        }

    return {
        "round": r,
        "n_seeds": len(rows),
        "seeds": sorted(row["seed"] for row in rows),
        "n_images_mean": float(np.mean([row["n_images"] for row in rows])),
        "n_boxes_mean": float(np.mean([row["n_boxes"] for row in rows])),
        **stat("mAP50"),
        **stat("mAP50-95"),
    }


def _num(value: float) -> float:
    return round(float(value), 5) if math.isfinite(value) else math.nan
