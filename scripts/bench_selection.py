"""Time coreset, hybrid and typiclust selection against random selection on one synthetic pool.

The pool: N chips with random float32 embeddings (N, D) and random scores, laid out as
overlapping 256 m chips (stride 192 m) on the grids of a few scenes. Hybrid runs with the
spatial constraint on (min_distance 0: selected chips may not overlap). Each timing is the
best of ``--repeat`` runs. The last stdout line is one JSON object with the timings in
seconds, their ratios to random, the BLAS thread setting and the machine's load average
(timings on a busy shared machine are noisy; OPENBLAS_NUM_THREADS=1 steadies them).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable

import numpy as np

from geoal.select import (
    Budget,
    Constraints,
    Selection,
    SelectionPool,
    select_coreset,
    select_hybrid,
    select_random,
)
from geoal.select.strategies import select_typiclust

CHIP_M = 256.0  # chip side in CRS metres
STRIDE_M = 192.0  # 25 % overlap between neighbouring chips


def make_pool(n: int, d: int, scenes: int, rng: np.random.Generator) -> SelectionPool:
    """A synthetic pool of ``n`` chips spread evenly over ``scenes`` square chip grids."""
    groups = np.arange(n, dtype=np.int64) % scenes
    slot = np.arange(n) // scenes  # position of the chip in its scene's grid
    side = math.ceil(math.sqrt(math.ceil(n / scenes)))
    minx = 500_000.0 + (slot % side) * STRIDE_M
    miny = 4_000_000.0 + (slot // side) * STRIDE_M
    bounds = np.stack([minx, miny, minx + CHIP_M, miny + CHIP_M], axis=1)
    return SelectionPool(
        scores=rng.random(n),
        embeddings=rng.standard_normal((n, d), dtype=np.float32),
        bounds=bounds,
        groups=groups,
    )


def timed(run: Callable[[], Selection], repeat: int) -> tuple[float, Selection]:
    """Best wall seconds of ``repeat`` calls of ``run``, and its result."""
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="chips in the pool")
    parser.add_argument("--k", type=int, default=1_000, help="chips to select")
    parser.add_argument("--d", type=int, default=256, help="embedding dimension")
    parser.add_argument("--scenes", type=int, default=4, help="scenes (groups) in the pool")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and strategies")
    parser.add_argument("--repeat", type=int, default=3, help="runs per strategy (best kept)")
    parser.add_argument("--quick", action="store_true", help="a 20,000-chip pool, one run each")
    args = parser.parse_args()
    n = 20_000 if args.quick else args.n
    repeat = 1 if args.quick else max(1, args.repeat)

    pool = make_pool(n, args.d, args.scenes, np.random.default_rng(args.seed))
    budget = Budget(k=args.k)
    spatial = Constraints(min_distance=0.0)
    seed = args.seed
    random_s, rnd = timed(lambda: select_random(pool, budget, np.random.default_rng(seed)), repeat)
    coreset_s, cor = timed(
        lambda: select_coreset(pool, budget, np.random.default_rng(seed)), repeat
    )
    hybrid_s, hyb = timed(
        lambda: select_hybrid(pool, budget, np.random.default_rng(seed), spatial), repeat
    )
    typiclust_s, typ = timed(
        lambda: select_typiclust(pool, budget, np.random.default_rng(seed)), repeat
    )
    for name, sel, s in [
        ("random", rnd, random_s),
        ("coreset", cor, coreset_s),
        ("typiclust", typ, typiclust_s),
    ]:
        print(f"{name:8s} {s:8.3f} s  {len(sel)} chips")
    print(f"hybrid   {hybrid_s:8.3f} s  {len(hyb)} chips (spatial constraint on) {hyb.note}")
    print(
        json.dumps(
            {
                "n": n,
                "k": args.k,
                "d": args.d,
                "scenes": args.scenes,
                "random_s": round(random_s, 4),
                "coreset_s": round(coreset_s, 4),
                "hybrid_s": round(hybrid_s, 4),
                "typiclust_s": round(typiclust_s, 4),
                "coreset_vs_random": round(coreset_s / random_s, 1),
                "hybrid_vs_random": round(hybrid_s / random_s, 1),
                "hybrid_selected": len(hyb),
                "hybrid_complete": hyb.complete,
                "repeat": repeat,
                "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
                "load_avg_1min": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
