"""TypiClust (Hacohen, Dekel & Weinshall, ICML 2022): typical points of uncovered clusters.

For small budgets, labelling the most *typical* examples of regions the labels do
not cover yet beats labelling the most uncertain ones: a weak model's uncertainty
is noise, and what a detector trained on a few dozen images needs most is the
common cases. The embeddings (labelled and candidates together) are clustered
into L + B groups by k-means (L labelled, B to select); clusters are visited in
order of fewest labelled members, then largest; from each the candidate of
highest typicality is offered (the inverse mean distance to its K nearest
neighbours in its cluster). Pure numpy, seeded.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

K_NEIGHBOURS = 20
MIN_CLUSTER = 5  # smaller clusters come last: outliers, not regions
MAX_TYPICALITY_REF = 2048  # neighbours are searched among at most this many cluster members
FIT_ROWS_PER_CLUSTER = 20  # k-means is fitted on at most this many rows per cluster
INIT_ROWS_PER_CLUSTER = 5  # k-means++ seeds from at most this many rows per cluster
_BLOCK = 4096


def kmeans(x: F32, k: int, rng: np.random.Generator, iterations: int = 20) -> tuple[I64, F32]:
    """(N,) cluster of each row of ``x`` (N, D) and the (k, D) centres; k-means++ then Lloyd.

    k is capped at N. The centres are fitted on a seeded sample of at most
    ``FIT_ROWS_PER_CLUSTER * k`` rows (all rows when fewer), then every row is assigned
    to its nearest centre: 100,000 x 256-d rows into 1,000 clusters take seconds.
    Empty clusters are re-seeded at the worst-served rows.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    k = max(1, min(int(k), n))
    if n > FIT_ROWS_PER_CLUSTER * k:
        fit = x[np.sort(rng.choice(n, FIT_ROWS_PER_CLUSTER * k, replace=False))]
        _, centres = _lloyd(fit, k, rng, iterations)
        sq = np.einsum("ij,ij->i", x, x)
        labels = np.concatenate(
            [
                _sq_dist(x[s : s + _BLOCK], sq[s : s + _BLOCK], centres).argmin(axis=1)
                for s in range(0, n, _BLOCK)
            ]
        ).astype(np.int64)
        return labels, centres
    return _lloyd(x, k, rng, iterations)


def _lloyd(x: F32, k: int, rng: np.random.Generator, iterations: int) -> tuple[I64, F32]:
    """k-means++ seeding (on at most ``INIT_ROWS_PER_CLUSTER * k`` of the rows, it is
    sequential) and Lloyd iterations on all rows of ``x`` (N, D), k <= N."""
    n = len(x)
    sq = np.einsum("ij,ij->i", x, x)
    m = min(n, INIT_ROWS_PER_CLUSTER * k)
    seed_rows = np.sort(rng.choice(n, m, replace=False)) if m < n else np.arange(n)
    xs, sqs = x[seed_rows], sq[seed_rows]
    centres = np.empty((k, x.shape[1]), dtype=np.float32)
    centres[0] = xs[rng.integers(m)]
    near = _sq_dist(xs, sqs, centres[:1])[:, 0]
    for c in range(1, k):
        total = float(near.sum())
        j = int(rng.choice(m, p=near / total)) if total > 0 else int(rng.integers(m))
        centres[c] = xs[j]
        step = sqs - 2.0 * (xs @ centres[c]) + float(centres[c] @ centres[c])
        np.minimum(near, np.maximum(step, 0.0), out=near)
    labels = np.zeros(n, dtype=np.int64)
    for it in range(iterations):
        d = _sq_dist(x, sq, centres)
        new = d.argmin(axis=1).astype(np.int64)
        if it and np.array_equal(new, labels):
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        order = np.argsort(labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        full = counts > 0
        sums = np.zeros(centres.shape, dtype=np.float64)
        sums[full] = np.add.reduceat(x[order].astype(np.float64), starts[full], axis=0)
        centres[full] = (sums[full] / counts[full, None]).astype(np.float32)
        if not full.all():  # re-seed empty clusters at the worst-served rows
            worst = np.argsort(-d[np.arange(n), labels])[: int((~full).sum())]
            centres[~full] = x[worst]
    return labels, centres


def typicality(x: F32, rng: np.random.Generator, k: int = K_NEIGHBOURS) -> npt.NDArray[np.float64]:
    """(N,) inverse mean Euclidean distance of each row of ``x`` (N, D) to its k nearest rows.

    Neighbours are searched among at most ``MAX_TYPICALITY_REF`` rows (a seeded sample)
    so a huge cluster costs O(N * MAX_TYPICALITY_REF). A single row gets typicality 0.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if n < 2:
        return np.zeros(n)
    ref_idx = (
        np.arange(n)
        if n <= MAX_TYPICALITY_REF
        else rng.choice(n, MAX_TYPICALITY_REF, replace=False)
    )
    ref = x[ref_idx]
    kk = min(k, len(ref) - 1)
    out = np.empty(n)
    sq, ref_sq = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", ref, ref)
    for start in range(0, n, _BLOCK):
        d2 = sq[start : start + _BLOCK, None] - 2.0 * (x[start : start + _BLOCK] @ ref.T)
        d2 += ref_sq[None, :]
        d = np.sqrt(np.maximum(d2, 0.0))
        rows = np.arange(start, min(start + _BLOCK, n))
        self_hit = np.isin(rows, ref_idx)
        # drop each row's zero distance to itself (the smallest), then average the next kk
        part = np.partition(d, kk, axis=1)[:, : kk + 1]
        part.sort(axis=1)
        mean = np.where(self_hit, part[:, 1 : kk + 1].mean(axis=1), part[:, :kk].mean(axis=1))
        out[start : start + _BLOCK] = 1.0 / np.maximum(mean, 1e-12)
    return out


def typiclust_order(
    embeddings: F32,
    labelled: F32 | None,
    budget: int,
    rng: np.random.Generator,
) -> tuple[I64, npt.NDArray[np.float64]]:
    """Candidate indices (M,) in TypiClust order, and each one's typicality (M,).

    ``embeddings`` (M, D) are the candidates, ``labelled`` (L, D) the labelled chips.
    Round r of the order holds the r-th most typical candidate of every cluster, the
    clusters sorted by (labelled members, size < MIN_CLUSTER, -size); so the first picks are
    the most typical candidates of the largest uncovered clusters. Every candidate appears.
    """
    cand = np.ascontiguousarray(embeddings, dtype=np.float32)
    lab = (
        np.zeros((0, cand.shape[1]), dtype=np.float32)
        if labelled is None
        else np.ascontiguousarray(labelled, dtype=np.float32)
    )
    m = len(cand)
    if m == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    both = np.concatenate([cand, lab]) if len(lab) else cand
    clusters, _ = kmeans(both, len(lab) + max(1, budget), rng)
    cand_cl, lab_cl = clusters[:m], clusters[m:]
    n_cl = int(clusters.max()) + 1
    size = np.bincount(clusters, minlength=n_cl)
    covered = np.bincount(lab_cl, minlength=n_cl)
    typ = np.zeros(m)
    members: dict[int, I64] = {}
    for c in np.unique(cand_cl).tolist():
        rows = np.flatnonzero(clusters == c)
        t = typicality(both[rows], rng)
        in_cand = rows < m
        typ[rows[in_cand]] = t[in_cand]
        own = rows[in_cand]
        members[c] = own[np.lexsort((own, -typ[own]))]
    priority = sorted(members, key=lambda c: (covered[c], size[c] < MIN_CLUSTER, -size[c], c))
    order: list[int] = []
    depth = 0
    while len(order) < m:
        for c in priority:
            if depth < len(members[c]):
                order.append(int(members[c][depth]))
        depth += 1
    idx = np.asarray(order, dtype=np.int64)
    return idx, typ[idx]


def _sq_dist(x: F32, sq: npt.NDArray[np.float32], c: F32) -> npt.NDArray[np.float32]:
    """(N, k) squared Euclidean distances of rows of x to centres c, clipped at 0."""
    d = sq[:, None] - 2.0 * (x @ c.T) + np.einsum("ij,ij->i", c, c)[None, :]
    return np.maximum(d, 0.0).astype(np.float32, copy=False)
