"""The simulation loop: for each (strategy, seed), rounds of train -> evaluate -> score -> select.

A round r of a run:

1. train on the labelled set (fine-tuning the previous round's weights, or from the
   init model with ``start="init"``); the checkpoint goes to ``weights/<run>/round<r>.pt``;
2. evaluate it on the fixed test set and append the round's row to results.csv;
3. unless it is the last round, score the unlabelled pool with it, let the strategy
   choose, and let the oracle reveal the chosen images' labels.

The state file is saved after 2 and after 3, so a killed run repeats at most the
step it was in; a round whose row is already in results.csv is never recomputed.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoal.errors import ConfigError
from geoal.simulate.acquire import acquire, budget_targets, class_balanced, initial_set
from geoal.simulate.config import SimConfig
from geoal.simulate.data import Pool, check_test_set, load_pool
from geoal.simulate.model import evaluate, prepare_init, score_pool, train_round
from geoal.simulate.report import write_report
from geoal.simulate.state import (
    RunState,
    append_row,
    load_state,
    read_rows,
    save_state,
    state_path,
    write_json_atomic,
)

CEILING = "full"  # the strategy name of the full-pool row


@dataclass(frozen=True, eq=False)
class Experiment:
    """A simulation's fixed inputs, loaded once: pool, test set, budgets, starting model."""

    cfg: SimConfig
    pool: Pool
    test: dict[str, Any]
    category_ids: dict[str, int]
    targets: np.ndarray  # (R,) cumulative images, or boxes with budget_unit "boxes"
    init: str

    @property
    def results(self) -> Path:
        return self.cfg.out / "results.csv"


def run_simulation(cfg: SimConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) every (strategy, seed) and the ceiling if asked; return the summary.

    Writes ``results.csv``, ``state/``, ``summary.json`` and ``learning_curves.png``
    under ``cfg.out``.
    """
    exp = open_experiment(cfg, progress=progress)
    for strategy in cfg.strategies:
        for seed in cfg.seeds:
            run_arm(exp, strategy, seed, progress=progress)
    if cfg.full_pool:
        run_ceiling(exp, cfg.seeds[0])
    return write_report(cfg.out, len(exp.pool), int(exp.pool.box_counts.sum()), cfg.budget_unit)


def open_experiment(cfg: SimConfig, *, progress: bool = False) -> Experiment:
    """Load the pool and test set, check the output folder's settings, prepare the init model."""
    from geoal.train import load_coco

    coco = load_coco(cfg.data)
    test = load_coco(cfg.test_data)
    _check_settings(cfg)
    pool = load_pool(coco, cfg.images, cfg.imgsz, progress=progress)
    if len(pool) < 2:
        raise ConfigError(f"{cfg.data}: the pool needs at least 2 images, has {len(pool)}")
    category_ids = check_test_set(test, pool.classes, str(cfg.test_data))
    total = len(pool) if cfg.budget_unit == "images" else int(pool.box_counts.sum())
    targets = budget_targets(cfg.budgets, total, cfg.budget_unit)
    init = prepare_init(cfg.init, pool.classes, cfg.out / "weights")
    return Experiment(cfg, pool, test, category_ids, targets, init)


def run_arm(exp: Experiment, strategy: str, seed: int, *, progress: bool = True) -> RunState:
    """Run or resume one (strategy, seed) through every round; return its final state."""
    from tqdm import tqdm

    cfg, pool = exp.cfg, exp.pool
    path = state_path(cfg.out, strategy, seed)
    state = load_state(path) or _first_state(exp, strategy, seed)
    n_rounds = len(exp.targets)
    if state.done and state.round < n_rounds - 1:
        state.done = False  # the budgets were extended: go on from the last round's model
    done = {(r["strategy"], r["seed"], r["round"]) for r in read_rows(exp.results)}
    index = {int(image_id): i for i, image_id in enumerate(pool.image_ids)}
    bar = tqdm(
        total=n_rounds,
        initial=state.round + state.trained,
        desc=f"{strategy} seed {seed}",
        unit="round",
        disable=not progress,
    )
    rng = state.generator()
    with bar:
        while not state.done:
            r = state.round
            labelled = np.array([index[i] for i in state.labelled], dtype=np.int64)
            if not state.trained:
                previous = state.weights
                if (strategy, seed, r) not in done:
                    _train_and_evaluate(exp, state, labelled)
                state.weights, state.trained = str(_weights_path(cfg.out, strategy, seed, r)), True
                save_state(path, state)
                if previous and previous not in (exp.init, state.weights):
                    Path(previous).unlink(missing_ok=True)
                bar.update(1)
            if r == n_rounds - 1:
                state.done = True
            else:
                _select_next(exp, state, labelled, rng)
            save_state(path, state)
    return state


def _train_and_evaluate(exp: Experiment, state: RunState, labelled: np.ndarray) -> None:
    """Train the round's model (unless its weights are already saved), test it, write its row."""
    cfg, pool, r = exp.cfg, exp.pool, state.round
    started = time.perf_counter()
    weights = _weights_path(cfg.out, state.strategy, state.seed, r)
    if not weights.is_file():
        start = exp.init if cfg.start == "init" else state.weights or exp.init
        work = cfg.out / "work" / f"{state.strategy}_{state.seed}"
        train_round(
            cfg,
            pool,
            labelled,
            start,
            work,
            epochs=cfg.epochs_for(len(labelled)),
            seed=state.seed,
            target=weights,
        )
    metrics = evaluate(cfg, weights, exp.test, exp.category_ids, pool.classes)
    seconds = state.select_seconds + time.perf_counter() - started
    row = _row(state.strategy, state.seed, r, pool, labelled, metrics, seconds)
    append_row(exp.results, row)


def _select_next(
    exp: Experiment, state: RunState, labelled: np.ndarray, rng: np.random.Generator
) -> None:
    """Score the pool with the round's model, select, reveal: ``state`` moves to the next round."""
    cfg, pool, r = exp.cfg, exp.pool, state.round
    started = time.perf_counter()
    # The first cfg.random_rounds acquisitions of every arm are random (a warm-up).
    strategy = "random" if r < cfg.random_rounds else state.strategy
    features = (
        None if strategy == "random" else score_pool(cfg, Path(str(state.weights)), pool, labelled)
    )
    if features is not None and cfg.class_balance:
        counts = np.bincount(
            np.concatenate([pool.cls[i] for i in labelled] or [np.zeros(0, np.int64)]),
            minlength=len(pool.classes),
        )
        features = class_balanced(features, counts)
    need = int(exp.targets[r + 1]) - _spent(cfg, pool, labelled)
    picked = acquire(strategy, features, labelled, need, pool.box_counts, cfg.budget_unit, rng)
    state.labelled += [int(pool.image_ids[i]) for i in picked]
    state.rng = dict(rng.bit_generator.state)
    state.round, state.trained = r + 1, False
    state.select_seconds = time.perf_counter() - started


def run_ceiling(exp: Experiment, seed: int) -> None:
    """Train once on the whole pool from the init model (``ceiling_epochs``); one row, round 0."""
    cfg, pool = exp.cfg, exp.pool
    if any(r["strategy"] == CEILING for r in read_rows(exp.results)):
        return
    started = time.perf_counter()
    everything = np.arange(len(pool), dtype=np.int64)
    weights = _weights_path(cfg.out, CEILING, seed, 0)
    if not weights.is_file():
        work = cfg.out / "work" / CEILING
        train_round(
            cfg,
            pool,
            everything,
            exp.init,
            work,
            epochs=cfg.ceiling_epochs,
            seed=seed,
            target=weights,
        )
    metrics = evaluate(cfg, weights, exp.test, exp.category_ids, pool.classes)
    seconds = time.perf_counter() - started
    append_row(exp.results, _row(CEILING, seed, 0, pool, everything, metrics, seconds))


def _first_state(exp: Experiment, strategy: str, seed: int) -> RunState:
    """Round 0 of a run: the seed's random initial set; the strategy's own generator."""
    pool, cfg = exp.pool, exp.cfg
    first = initial_set(len(pool), int(exp.targets[0]), pool.box_counts, cfg.budget_unit, seed)
    # One generator per (strategy, seed), independent of the order runs are made in.
    rng = np.random.default_rng([seed, zlib.crc32(strategy.encode())])
    return RunState(
        strategy=strategy,
        seed=seed,
        labelled=[int(pool.image_ids[i]) for i in first],
        rng=dict(rng.bit_generator.state),
    )


def _spent(cfg: SimConfig, pool: Pool, labelled: np.ndarray) -> int:
    return len(labelled) if cfg.budget_unit == "images" else int(pool.box_counts[labelled].sum())


def _row(
    strategy: str,
    seed: int,
    r: int,
    pool: Pool,
    labelled: np.ndarray,
    metrics: tuple[float, float, float],
    seconds: float,
) -> dict[str, Any]:
    map50, map50_95, recall = metrics
    return {
        "strategy": strategy,
        "seed": seed,
        "round": r,
        "n_images": len(labelled),
        "n_boxes": int(pool.box_counts[labelled].sum()),
        "mAP50": map50,
        "mAP50-95": map50_95,
        "seconds": round(seconds, 2),
        "recall": recall,
    }


def extends(before: list[float], after: list[float]) -> bool:
    """Whether budgets ``after`` are ``before`` followed by at least one more."""
    return len(after) > len(before) and after[: len(before)] == before


def _weights_path(out: Path, strategy: str, seed: int, r: int) -> Path:
    return out / "weights" / f"{strategy}_{seed}" / f"round{r}.pt"


def _check_settings(cfg: SimConfig) -> None:
    """Record the experiment's settings in ``out/config.json``; refuse to mix in other ones.

    Budgets that extend the recorded ones (the same fractions, then larger ones) are
    accepted: every round already run is a round of the longer run, and finished arms go
    on from their last round.
    """
    path = cfg.out / "config.json"
    key = cfg.experiment_key()
    if path.is_file():
        saved = json.loads(path.read_text())
        changed = sorted(k for k in set(saved) | set(key) if saved.get(k) != key.get(k))
        if changed == ["budgets"] and extends(saved["budgets"], key["budgets"]):
            write_json_atomic(path, key)
            return
        if changed:
            raise ConfigError(
                f"{cfg.out} holds results of other settings ({', '.join(changed)} differ): "
                "give another --out, or the same settings to resume"
            )
        return
    write_json_atomic(path, key)
