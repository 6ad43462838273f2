"""Budget, per-scene quota and spatial constraint, checked one candidate at a time.

Strategies propose candidates in their own order and ask a ``Picker`` whether each may join.
Every check is monotone (once a candidate is refused it stays refused as the selection grows),
so a refused candidate can be dropped for good: ranked strategies skip it, greedy ones mask it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt

from geoal.errors import SelectionError
from geoal.select.pool import Budget, Constraints, SelectionPool

Cell = tuple[int, int, int]  # (group, column, row) of a grid cell


def boxes_conflict(a: npt.ArrayLike, b: npt.ArrayLike, min_distance: float) -> bool:
    """Whether boxes a, b ([minx, miny, maxx, maxy], CRS units) may not both be selected.

    They conflict when they overlap with positive area, or when their gap (Euclidean distance
    between the rectangles) is below ``min_distance``; touching edges alone do not conflict.
    """
    box_a = [float(v) for v in np.asarray(a)]
    box_b = [float(v) for v in np.asarray(b)]
    return _conflict(box_a, box_b, min_distance)


def _conflict(a: Sequence[float], b: Sequence[float], min_distance: float) -> bool:
    """:func:`boxes_conflict` on plain [minx, miny, maxx, maxy] sequences (the hot loop's)."""
    ax0, ay0, ax1, ay1 = a
    bx0, by0, bx1, by1 = b
    # Signed gaps: negative when the intervals overlap.
    dx = max(ax0 - bx1, bx0 - ax1)
    dy = max(ay0 - by1, by0 - ay1)
    if dx < 0 and dy < 0:
        return True
    return min_distance > 0 and math.hypot(max(dx, 0.0), max(dy, 0.0)) < min_distance


class SpatialIndex:
    """Selected boxes bucketed on a per-group square grid, so a check touches a few cells.

    The cell side of a group is max(median chip side, min_distance, largest side / 64): a query
    box grown by ``min_distance`` spans at most 4 x 4 cells for typical chips, whatever the
    CRS's units.
    """

    def __init__(
        self, bounds: npt.NDArray[np.float64], groups: npt.NDArray[np.int64], min_distance: float
    ):
        self._boxes: list[list[float]] = bounds.tolist()
        self._groups: list[int] = groups.tolist()
        self._d = float(min_distance)
        self._cell = _cell_sizes(bounds, groups, self._d)
        self._cells: defaultdict[Cell, list[int]] = defaultdict(list)

    def _keys(self, g: int, x0: float, y0: float, x1: float, y1: float) -> list[Cell]:
        c = self._cell[g]
        i0, i1 = math.floor(x0 / c), math.floor(x1 / c)
        j0, j1 = math.floor(y0 / c), math.floor(y1 / c)
        return [(g, i, j) for i in range(i0, i1 + 1) for j in range(j0, j1 + 1)]

    def conflicts(self, i: int) -> bool:
        """Whether chip ``i`` conflicts with any chip added so far."""
        g, box, d = self._groups[i], self._boxes[i], self._d
        x0, y0, x1, y1 = box
        seen: set[int] = set()
        for key in self._keys(g, x0 - d, y0 - d, x1 + d, y1 + d):
            for j in self._cells.get(key, ()):
                if j in seen:
                    continue
                seen.add(j)
                if _conflict(box, self._boxes[j], d):
                    return True
        return False

    def add(self, i: int) -> None:
        """Record chip ``i`` as selected."""
        for key in self._keys(self._groups[i], *self._boxes[i]):
            self._cells[key].append(i)


def _cell_sizes(
    bounds: npt.NDArray[np.float64], groups: npt.NDArray[np.int64], d: float
) -> dict[int, float]:
    side = np.maximum(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1])
    order = np.argsort(groups, kind="stable")
    ids, starts = np.unique(groups[order], return_index=True)
    sizes: dict[int, float] = {}
    for g, part in zip(ids.tolist(), np.split(side[order], starts[1:]), strict=True):
        # The largest box spans at most ~64 cells a side, however uneven the sizes.
        c = max(float(np.median(part)), d, float(part.max()) / 64)
        sizes[g] = c if c > 0 else 1.0  # points with d == 0: any positive cell works
    return sizes


class Picker:
    """Admits candidates one at a time while the budget and constraints allow.

    Under a ``k`` budget each chip costs 1 of a capacity of k; under ``max_objects`` it costs
    ``max(expected_objects, min_cost)`` of a capacity of ``max_objects``.
    """

    def __init__(self, pool: SelectionPool, budget: Budget, constraints: Constraints | None):
        c = constraints or Constraints()
        self.budget = budget
        self.constraints = c
        self.spent = 0.0
        self.refused = {"budget": 0, "spatial": 0, "quota": 0}
        # Cheapest chip a constraint refused: if it would fit what is left, the budget is unmet.
        self.min_blocked_cost = math.inf
        self.groups = pool.groups if pool.groups is not None else np.zeros(pool.n, np.int64)
        self.costs: npt.NDArray[np.float64]
        if budget.k is not None:
            self.capacity, self._unit = float(budget.k), 1.0
            self.costs = np.ones(pool.n)
        else:
            if pool.expected_objects is None:
                raise SelectionError("a max_objects budget needs pool.expected_objects")
            self.capacity, self._unit = float(budget.max_objects or 0.0), budget.min_cost
            self.costs = np.maximum(pool.expected_objects, budget.min_cost)
        self.spatial: SpatialIndex | None = None
        if c.min_distance is not None:
            if pool.bounds is None:
                raise SelectionError("the spatial constraint (min_distance) needs pool.bounds")
            self.spatial = SpatialIndex(pool.bounds, self.groups, c.min_distance)
        self._taken: dict[int, float] = {}
        self._quota = math.inf
        if c.max_share is not None:
            self._quota = c.max_share * self.capacity
            if budget.k is not None:
                # The epsilon keeps ceil(0.3 * 10) at 3, not 4.
                self._quota = max(1, math.ceil(self._quota - 1e-9))

    @contextmanager
    def capped(self, capacity: float) -> Iterator[None]:
        """Within the block the budget is ``min(capacity, the budget)``; restored after."""
        full = self.capacity
        self.capacity = min(full, capacity)
        try:
            yield
        finally:
            self.capacity = full

    @property
    def done(self) -> bool:
        """Whether no further chip can fit: k chips, or less than ``min_cost`` left."""
        return self.capacity - self.spent < self._unit

    def try_add(self, i: int) -> bool:
        """Admit chip ``i`` if the budget and the constraints allow; False refuses it for good."""
        cost = float(self.costs[i])
        if self.spent + cost > self.capacity:
            self.refused["budget"] += 1
            return False
        g = int(self.groups[i])
        taken = self._taken.get(g, 0.0)
        # A group's first chip is always within its quota.
        if taken > 0 and taken + cost > self._quota + 1e-9:
            return self._refuse("quota", cost)
        if self.spatial is not None:
            if self.spatial.conflicts(i):
                return self._refuse("spatial", cost)
            self.spatial.add(i)
        self._taken[g] = taken + cost
        self.spent += cost
        return True

    def _refuse(self, reason: str, cost: float) -> bool:
        self.refused[reason] += 1
        self.min_blocked_cost = min(self.min_blocked_cost, cost)
        return False
