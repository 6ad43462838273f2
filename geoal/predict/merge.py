"""Merge detections of overlapping chips into one object each: pure functions over arrays.

Detections of a whole scene are one ``(N, 6)`` array ``[x1, y1, x2, y2, score, class]``
in scene pixels (SAHI's layout). Candidate pairs come from an STRtree, so merging
scales to hundreds of thousands of boxes. Three methods, as in SAHI's
``postprocess/combine.py``, all class-aware:

- ``nms``: keep the highest-scoring box of each matching group, drop the rest;
- ``greedy-nmm``: the highest-scoring remaining box absorbs every remaining box that
  matches *it*; then, as in SAHI's ``GreedyNMMPostprocess``, the absorbed boxes are
  confirmed against the growing merged box in score order: one that still matches it
  widens it to their union, one that no longer does is suppressed (dropped, as NMS
  would) without widening it. The score is the group's best. The confirmation keeps a
  narrow keeper (an object's sliver at a chip edge) from chaining the boxes of two
  neighbouring objects into one box spanning both;
- ``nmm``: transitive: boxes connected by a chain of matches merge into one box, the
  union of them all (geoal's own variant: SAHI's NMM claims by score dominance and
  groups differently).

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
_UNION = {"nms": None, "greedy-nmm": "confirmed", "nmm": "all"}


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
    order = _order(dets)
    ranks = np.empty(len(dets), dtype=np.int64)
    ranks[order] = np.arange(len(dets))
    rank = ranks.tolist().__getitem__  # members follow their keeper in score order
    taken = np.zeros(len(dets), dtype=bool)
    groups = []
    for k in order.tolist():
        if taken[k]:
            continue
        members = [k, *sorted((m for m in neighbours.get(k, ()) if not taken[m]), key=rank)]
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


def _match(a: list[float], b: list[float], metric: str) -> float:
    """IoU or IoS of two xyxy boxes (plain floats: called once per merged box)."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(
        0.0, min(a[3], b[3]) - max(a[1], b[1])
    )
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    denom = area_a + area_b - inter if metric == "iou" else min(area_a, area_b)
    return inter / denom if denom > 0 else 0.0


def _confirmed_union(boxes: list[list[float]], metric: str, threshold: float) -> list[float]:
    """SAHI's merge step: grow the first box by each next one that still matches the union.

    ``boxes``: the group's xyxy boxes, the keeper first, the rest by descending score.
    """
    union = list(boxes[0])
    for box in boxes[1:]:
        if _match(union, box, metric) >= threshold:
            union = [
                min(union[0], box[0]),
                min(union[1], box[1]),
                max(union[2], box[2]),
                max(union[3], box[3]),
            ]
    return union


def _combine(
    dets: np.ndarray,
    groups: list[list[int]],
    union: str | None,
    metric: str = "ios",
    threshold: float = 0.5,
) -> np.ndarray:
    """One row per group: the best box's row, its box widened by ``union``.

    ``union``: None (keep the best box), "all" (union of the group) or "confirmed"
    (union of the members that still match it as it grows, SAHI's greedy NMM).
    """
    out = np.empty((len(groups), dets.shape[1]), dtype=np.float64)
    for g, members in enumerate(groups):
        best = dets[members[0]]  # groups list their best box first
        out[g] = best
        if union is None or len(members) == 1:
            continue
        if union == "confirmed":
            out[g, :4] = _confirmed_union(dets[members, :4].tolist(), metric, threshold)
        else:
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
    detection the indices of the input rows it stands for (the ones that widened its
    box and the ones suppressed into it). One pass by default; ``greedy-nmm`` and
    ``nms`` then give exactly SAHI's class-aware GREEDYNMM and NMS. ``until_stable=True``
    repeats until no pair matches.
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
        merged = _combine(current, groups, _UNION[method], metric, threshold)
        members = [sorted(m for k in g for m in members[k]) for g in groups]
        changed = len(groups) < len(current)
        current = merged
        if method == "nms" or not changed or not until_stable:
            break
    order = _order(current)
    return current[order], [members[k] for k in order.tolist()]
