"""Merge detections of overlapping chips into one object each: pure functions over arrays.

Detections of a whole scene are one ``(N, 6)`` array ``[x1, y1, x2, y2, score, class]``
in scene pixels (SAHI's layout). Candidate pairs come from an STRtree, so merging
scales to hundreds of thousands of boxes. Three methods, as in SAHI's
``postprocess/combine.py``, all class-aware:

- ``nms``: keep the highest-scoring box of each matching group, drop the rest;
- ``greedy-nmm``: the highest-scoring remaining box absorbs every remaining box that
  matches *it*; the merged box is the union of the group, its score the group's best;
- ``nmm``: transitive: boxes connected by a chain of matches merge into one.

Matching is ``iou`` (intersection over union) or ``ios`` (intersection over the
smaller box, which catches an object cut by a chip edge: its partial box lies
inside the whole one). Ties are broken by coordinates, so the result does not
depend on the input order (symmetric).

Idempotence: ``nms`` is idempotent. The NMM variants make one pass, as SAHI does:
on detections of distinct objects (each seen whole or cut by a few chips) matched by
IoS (the default) merging the result again changes nothing. With IoU, or on dense,
chained boxes, a merged union can match a neighbour again; ``until_stable=True``
repeats until no pair matches (idempotent always), at the price of merged boxes that
can snowball across touching objects, which is why it is not the default.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MERGE_METHODS = ("nms", "greedy-nmm", "nmm")
MATCH_METRICS = ("iou", "ios")


def _order(dets: np.ndarray) -> np.ndarray:
    """Indices by descending score, ties by class and coordinates (input-order free)."""
    return np.lexsort((dets[:, 3], dets[:, 2], dets[:, 1], dets[:, 0], dets[:, 5], -dets[:, 4]))


def candidate_pairs(
    boxes: np.ndarray, metric: str, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j), i < j, of (N, 4) xyxy boxes whose ``metric`` is >= ``threshold``."""
    import shapely

    if metric not in MATCH_METRICS:
        raise ValueError(f"match metric must be one of {', '.join(MATCH_METRICS)}, got {metric!r}")
    if len(boxes) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    geoms = shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3])
    tree = shapely.STRtree(geoms)
    i, j = tree.query(geoms, predicate="intersects")
    keep = i < j
    i, j = i[keep], j[keep]
    ix = np.clip(
        np.minimum(boxes[i, 2], boxes[j, 2]) - np.maximum(boxes[i, 0], boxes[j, 0]), 0, None
    )
    iy = np.clip(
        np.minimum(boxes[i, 3], boxes[j, 3]) - np.maximum(boxes[i, 1], boxes[j, 1]), 0, None
    )
    inter = ix * iy
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    denom = area[i] + area[j] - inter if metric == "iou" else np.minimum(area[i], area[j])
    value = np.divide(inter, denom, out=np.zeros_like(inter), where=denom > 0)
    ok = value >= threshold
    return i[ok].astype(np.int64), j[ok].astype(np.int64)


def _groups_greedy(dets: np.ndarray, i: np.ndarray, j: np.ndarray) -> list[list[int]]:
    neighbours: dict[int, set[int]] = {}
    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        if dets[a, 5] == dets[b, 5]:
            neighbours.setdefault(a, set()).add(b)
            neighbours.setdefault(b, set()).add(a)
    taken = np.zeros(len(dets), dtype=bool)
    groups = []
    for k in _order(dets).tolist():
        if taken[k]:
            continue
        members = [k, *sorted(m for m in neighbours.get(k, ()) if not taken[m])]
        taken[members] = True
        groups.append(members)
    return groups


def _groups_transitive(dets: np.ndarray, i: np.ndarray, j: np.ndarray) -> list[list[int]]:
    parent = np.arange(len(dets))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return x

    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        if dets[a, 5] == dets[b, 5]:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for k in _order(dets).tolist():
        groups.setdefault(find(k), []).append(k)
    return list(groups.values())


def _combine(dets: np.ndarray, groups: list[list[int]], union: bool) -> np.ndarray:
    out = np.empty((len(groups), dets.shape[1]), dtype=np.float64)
    for g, members in enumerate(groups):
        best = dets[members[0]]  # groups list their best box first
        out[g] = best
        if union and len(members) > 1:
            sub = dets[members]
            out[g, 0:2] = sub[:, 0:2].min(axis=0)
            out[g, 2:4] = sub[:, 2:4].max(axis=0)
    return out


def merge_detections(
    dets: np.ndarray,
    method: str = "greedy-nmm",
    metric: str = "ios",
    threshold: float = 0.5,
    *,
    until_stable: bool = False,
) -> tuple[np.ndarray, list[list[int]]]:
    """Merge (N, 6+) [x1, y1, x2, y2, score, class, ...] detections; extra columns follow the best box.

    Returns the merged (M, 6+) array, sorted by descending score, and for each merged
    detection the indices of the input rows it stands for. One pass by default,
    exactly SAHI's algorithm; ``until_stable=True`` repeats until no pair matches.
    """
    if method not in MERGE_METHODS:
        raise ValueError(f"merge method must be one of {', '.join(MERGE_METHODS)}, got {method!r}")
    dets = np.asarray(dets, dtype=np.float64)
    if dets.size == 0:
        return np.zeros((0, max(6, dets.shape[-1] if dets.ndim == 2 else 6))), []
    if dets.ndim != 2 or dets.shape[1] < 6:
        raise ValueError(
            f"detections must be (N, 6+) [x1, y1, x2, y2, score, class], got {dets.shape}"
        )
    members: list[list[int]] = [[k] for k in range(len(dets))]
    grouping: Callable[[np.ndarray, np.ndarray, np.ndarray], list[list[int]]] = (
        _groups_transitive if method == "nmm" else _groups_greedy
    )
    current = dets
    while True:
        i, j = candidate_pairs(current[:, :4], metric, threshold)
        groups = grouping(current, i, j)
        merged = _combine(current, groups, union=method != "nms")
        members = [sorted(m for k in g for m in members[k]) for g in groups]
        changed = len(groups) < len(current)
        current = merged
        if method == "nms" or not changed or not until_stable:
            break
    order = _order(current)
    return current[order], [members[k] for k in order.tolist()]
