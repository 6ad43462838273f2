"""Greedy k-center (farthest-point) selection over float32 embeddings, lazily evaluated.

Squared distances use ||a||^2 - 2 a.c + ||c||^2, so no N x N matrix is ever formed. Rows are
split into blocks of ``BLOCK_ROWS``; each block keeps an upper bound of its largest
nearest-centre distance (those distances only shrink) and catches up with the centres added
since its last update only when it may hold the farthest point. The result is the same as
updating every row after every centre, but a catch-up is one (B, D) x (D, p) matrix product
instead of p passes over all N rows, which is what bounds the eager version's speed.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt

from geoal.select.constraints import Picker

F32 = npt.NDArray[np.float32]
BLOCK_ROWS = 512
_BLOCK_FLOATS = 1 << 24  # seed distances are computed about this many floats at a time


def k_center(
    x: F32,
    cand: npt.NDArray[np.int64],
    picker: Picker,
    rng: np.random.Generator,
    seeds: F32 | None,
    first: Literal["random", "top"],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Greedy k-center over candidates ``x`` (M, D), whose pool indices are ``cand`` (M,).

    Each step offers the picker the candidate farthest from all centres so far (``seeds``
    (L, D), then the picks); a refused candidate is masked out for good. Without seeds the
    first centre is a random candidate (``first="random"``) or the first one ``cand`` lists
    that the picker admits (``"top"``). Returns the picked pool indices (n,) and each one's
    Euclidean distance to its nearest earlier centre (n,), NaN for a seedless first pick.
    """
    sq = np.einsum("ij,ij->i", x, x)
    seeded = seeds is not None and len(seeds) > 0
    # Squared distance to the nearest centre applied so far; -inf = picked or refused.
    near = np.full(len(x), np.inf, dtype=np.float32)
    if seeds is not None and seeded:
        near = _nearest_sq(x, sq, seeds)
    lazy = _Blocks(x, sq, near)
    picked: list[int] = []
    dist: list[float] = []
    while not picker.done:
        if seeded or picked:
            j = lazy.farthest()
        else:
            live = np.flatnonzero(near > -np.inf)
            if len(live) == 0:
                break
            j = int(live[rng.integers(len(live))] if first == "random" else live[0])
        if j < 0:
            break
        reach = float(near[j])
        lazy.mask(j)
        if picker.try_add(int(cand[j])):
            picked.append(int(cand[j]))
            dist.append(math.sqrt(max(reach, 0.0)) if math.isfinite(reach) else math.nan)
            lazy.add_centre(j)
    return np.asarray(picked, dtype=np.int64), np.asarray(dist, dtype=np.float64)


class _Blocks:
    """Row blocks of ``x`` that apply new centres to ``near`` only when they must."""

    def __init__(self, x: F32, sq: F32, near: F32):
        self.x, self.sq, self.near = x, sq, near
        starts = np.arange(0, len(x), BLOCK_ROWS)
        self.top = np.maximum.reduceat(near, starts) if len(x) else np.empty(0, np.float32)
        self.applied = np.zeros(len(starts), dtype=np.int64)  # centres applied per block
        self.centres = np.empty((16, x.shape[1]), dtype=np.float32)
        self.centre_sq = np.empty(16, dtype=np.float32)
        self.n = 0

    def add_centre(self, j: int) -> None:
        if self.n == len(self.centres):
            self.centres = np.concatenate([self.centres, np.empty_like(self.centres)])
            self.centre_sq = np.concatenate([self.centre_sq, np.empty_like(self.centre_sq)])
        self.centres[self.n], self.centre_sq[self.n] = self.x[j], self.sq[j]
        self.n += 1

    def mask(self, j: int) -> None:
        self.near[j] = -np.inf
        b = j // BLOCK_ROWS
        self.top[b] = self.near[b * BLOCK_ROWS : (b + 1) * BLOCK_ROWS].max()

    def farthest(self) -> int:
        """Row whose distance to its nearest centre is largest, or -1 when all are masked."""
        while len(self.top):
            b = int(np.argmax(self.top))
            if self.top[b] == -np.inf:
                return -1
            rows = slice(b * BLOCK_ROWS, (b + 1) * BLOCK_ROWS)
            if self.applied[b] == self.n:
                # Up to date, and its maximum beats every other block's upper bound.
                return b * BLOCK_ROWS + int(np.argmax(self.near[rows]))
            new = slice(int(self.applied[b]), self.n)
            d2 = self.x[rows] @ (-2.0 * self.centres[new].T)
            d2 += self.sq[rows, None]
            d2 += self.centre_sq[None, new]
            np.minimum(self.near[rows], d2.min(axis=1), out=self.near[rows])
            self.applied[b] = self.n
            self.top[b] = self.near[rows].max()
        return -1


def _nearest_sq(x: F32, sq: F32, seeds: F32) -> F32:
    """(M,) squared distance from each row of ``x`` (M, D) to its nearest row of ``seeds``."""
    near = np.full(len(x), np.inf, dtype=np.float32)
    step = max(1, _BLOCK_FLOATS // max(len(x), 1))
    for s in range(0, len(seeds), step):
        block = seeds[s : s + step]
        d2 = x @ (-2.0 * block.T)
        d2 += sq[:, None]
        d2 += np.einsum("ij,ij->i", block, block)[None, :]
        np.minimum(near, d2.min(axis=1), out=near)
    return near
