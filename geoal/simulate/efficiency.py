"""Label efficiency of a strategy against random, per seed: ALC, paired differences, objects found.

Pure functions over the rows of ``results.csv`` (``geoal.simulate.state.read_rows``). The
record of one benchmark (``efficiency_record``) is what ``docs/results/label_efficiency.json``
holds for it:

- ``map50``: per seed, per round, test mAP50 (rounds = budgets; round 0 is the shared random
  start, the same labelled set for every strategy of a seed);
- ``alc``: per seed, the area under the mAP50 curve over the labelled fraction of the pool,
  from the first budget to the last, divided by that range: the mean mAP50 over the budget
  range, in [0, 1];
- ``labels_to_reach_random_final``: the labelled images the strategy's mean curve needs to
  reach random's final mean mAP50 (linear interpolation), as a fraction of random's final
  labelled images; None if it never does;
- ``objects_per_labelled_chip``: per round, the true boxes per labelled image, mean over
  seeds (cumulative), and ``objects_per_acquired_chip_first_two``: the boxes per image bought
  in acquisitions 1 and 2 (after the shared start), mean over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from geoal.simulate.report import labels_to_match


def curves(
    rows: Sequence[dict[str, Any]], strategy: str, seeds: Sequence[int], key: str
) -> np.ndarray:
    """(S, R) values of ``key`` per seed and round; NaN where a round is missing."""
    mine = [r for r in rows if r["strategy"] == strategy and r["seed"] in seeds]
    n_rounds = 1 + max((r["round"] for r in mine), default=-1)
    out = np.full((len(seeds), n_rounds), np.nan)
    where = {s: i for i, s in enumerate(seeds)}
    for r in mine:
        out[where[r["seed"]], r["round"]] = float(r[key])
    return out


def alc(fractions: Sequence[float], values: Sequence[float]) -> float:
    """Area under the piecewise-linear curve over [fractions[0], fractions[-1]], / that range."""
    x = np.asarray(fractions, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if len(x) < 2 or x[-1] <= x[0]:
        raise ValueError("alc needs at least two increasing fractions")
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def efficiency_record(
    rows: Sequence[dict[str, Any]],
    strategy: str,
    seeds: Sequence[int],
    budgets: Sequence[float],
    profile: str,
    control: str = "random",
) -> dict[str, Any]:
    """The benchmark record of ``strategy`` against ``control`` (see the module docstring).

    Only seeds whose every round exists for both arms count (a run still going is left out);
    rounds past the last budget (a run extended to larger budgets) are not part of it.
    """
    rows = [r for r in rows if r["round"] < len(budgets)]
    both = [
        s
        for s in seeds
        if np.isfinite(curves(rows, strategy, [s], "mAP50")).sum() == len(budgets)
        and np.isfinite(curves(rows, control, [s], "mAP50")).sum() == len(budgets)
    ]
    record: dict[str, Any] = {
        "default_strategy": strategy,
        "seeds": both,
        "budgets": list(budgets),
        "profile": profile,
    }
    alcs: dict[str, list[float]] = {}
    for name, arm in ((control, "random"), (strategy, "default")):
        m = curves(rows, name, both, "mAP50")
        record[arm] = {
            "map50": np.round(m, 4).tolist(),
            "recall": np.round(curves(rows, name, both, "recall"), 4).tolist(),
            "n_images": curves(rows, name, both, "n_images").astype(int).tolist(),
            "n_boxes": curves(rows, name, both, "n_boxes").astype(int).tolist(),
        }
        alcs[arm] = [round(alc(budgets, m[i]), 4) for i in range(len(both))]
    record["alc"] = alcs
    diff = np.array(alcs["default"]) - np.array(alcs["random"])
    record["alc_paired_difference"] = {
        "per_seed": np.round(diff, 4).tolist(),
        "mean": round(float(diff.mean()), 4) if len(diff) else None,
        "std": round(float(diff.std(ddof=1)), 4) if len(diff) > 1 else None,
    }
    rnd = np.array(record["random"]["map50"])
    dft = np.array(record["default"]["map50"])
    record["map50_paired_difference_mean"] = (
        np.round((dft - rnd).mean(axis=0), 4).tolist() if len(both) else []
    )
    record["labels_to_reach_random_final"] = _labels_to_reach(record)
    record["objects_per_labelled_chip"] = {
        arm: _per_chip(record[arm]["n_boxes"], record[arm]["n_images"])
        for arm in ("random", "default")
    }
    record["objects_per_acquired_chip_first_two"] = {
        arm: _first_two(record[arm]["n_boxes"], record[arm]["n_images"])
        for arm in ("random", "default")
    }
    return record


def _labels_to_reach(record: dict[str, Any]) -> float | None:
    if not record["seeds"]:
        return None
    rnd_images = np.mean(record["random"]["n_images"], axis=0)
    target = float(np.mean(record["random"]["map50"], axis=0)[-1])
    x = np.mean(record["default"]["n_images"], axis=0) / rnd_images[-1]
    y = np.mean(record["default"]["map50"], axis=0)
    return labels_to_match(x.tolist(), y.tolist(), target)


def _per_chip(boxes: list[list[int]], images: list[list[int]]) -> list[float]:
    if not boxes:
        return []
    ratio = np.asarray(boxes, dtype=np.float64) / np.asarray(images, dtype=np.float64)
    return np.round(ratio.mean(axis=0), 4).tolist()


def _first_two(boxes: list[list[int]], images: list[list[int]]) -> float | None:
    b = np.asarray(boxes, dtype=np.float64)
    n = np.asarray(images, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] < 3:
        return None
    return round(float(((b[:, 2] - b[:, 0]) / (n[:, 2] - n[:, 0])).mean()), 4)
