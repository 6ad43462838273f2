"""Resumable state and results rows, the summary's arithmetic, the config's checks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from geoal.errors import ConfigError
from geoal.simulate import COLUMNS, RunState, SimConfig, labels_to_match, read_rows, summarise
from geoal.simulate.state import append_row, load_state, save_state


def _row(strategy: str, seed: int, r: int, n: int, m: float) -> dict[str, object]:
    return {
        "strategy": strategy,
        "seed": seed,
        "round": r,
        "n_images": n,
        "n_boxes": 3 * n,
        "mAP50": m,
        "mAP50-95": m / 2,
        "seconds": 1.5,
    }


def test_rows_append_and_a_cut_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    append_row(path, _row("random", 0, 0, 10, 0.25))
    with path.open("a") as f:
        f.write("random,0,1,2")  # a kill mid-line
    append_row(path, _row("random", 0, 1, 20, math.nan))
    rows = read_rows(path)
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert [(r["round"], r["n_images"]) for r in rows] == [(0, 10), (1, 20)]
    assert rows[0]["mAP50"] == 0.25 and math.isnan(rows[1]["mAP50"])


def test_state_round_trip_restores_the_generator(tmp_path: Path) -> None:
    rng = np.random.default_rng([3, 7])
    rng.random(5)
    state = RunState("hybrid", 3, [5, 1, 9], dict(rng.bit_generator.state), round=2)
    path = tmp_path / "state" / "hybrid_3.json"
    save_state(path, state)
    loaded = load_state(path)
    assert loaded is not None and loaded.labelled == [5, 1, 9] and loaded.round == 2
    assert loaded.generator().random(4).tolist() == rng.random(4).tolist()
    assert load_state(tmp_path / "none.json") is None
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="delete it to restart"):
        load_state(path)


def test_summary_and_labels_to_match() -> None:
    rows = [
        _row("random", s, r, n, m)
        for s in (0, 1)
        for r, (n, m) in enumerate([(10, 0.2), (20, 0.3), (40, 0.4)])
    ] + [
        _row("hybrid", s, r, n, m)
        for s in (0, 1)
        for r, (n, m) in enumerate([(10, 0.2), (20, 0.5)])
    ]
    rows.append(_row("full", 0, 0, 100, 0.6))
    summary = summarise(rows, 100, 300)
    assert summary["random_final_mAP50"] == pytest.approx(0.4)
    assert summary["strategies"]["random"]["labels_to_match_random_final"] == pytest.approx(0.4)
    # hybrid reaches 0.4 two thirds of the way from 10 to 20 images: 16.67 of 100
    assert summary["strategies"]["hybrid"]["labels_to_match_random_final"] == pytest.approx(
        0.1667, abs=1e-4
    )
    assert summary["ceiling"]["mAP50"] == 0.6
    assert labels_to_match([0.1, 0.2], [0.1, 0.2], 0.3) is None
    assert labels_to_match([0.1, 0.2], [0.5, 0.6], 0.3) == 0.1


def test_config_refuses_bad_values(tmp_path: Path) -> None:
    base = {"data": tmp_path / "a.json", "images": tmp_path, "test_data": tmp_path / "b.json"}
    with pytest.raises(ConfigError, match="unknown"):
        SimConfig(**base, out=tmp_path, strategies=("random", "magic"))
    with pytest.raises(ConfigError, match="increasing"):
        SimConfig(**base, out=tmp_path, budgets=(0.2, 0.1))
    with pytest.raises(ConfigError, match="imgsz"):
        SimConfig(**base, out=tmp_path, imgsz=100)
    cfg = SimConfig(**base, out=tmp_path, epochs=3, budgets=(0.1, 0.2))
    assert cfg.ceiling_epochs == 6


def test_random_rounds_warm_up_without_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from geoal.simulate import loop
    from geoal.simulate.data import Pool
    from geoal.simulate.state import RunState

    base = {"data": tmp_path / "a.json", "images": tmp_path, "test_data": tmp_path / "b.json"}
    with pytest.raises(ConfigError, match="random-rounds"):
        SimConfig(**base, out=tmp_path, random_rounds=-1)
    assert "random_rounds" not in SimConfig(**base, out=tmp_path).experiment_key()
    cfg = SimConfig(**base, out=tmp_path, random_rounds=1, budgets=(0.2, 0.4, 0.6))
    assert cfg.experiment_key()["random_rounds"] == 1
    n = 10
    pool = Pool(
        image_ids=np.arange(100, 100 + n),
        images=[np.zeros((32, 32, 3), np.uint8)] * n,
        boxes=[np.zeros((1, 4))] * n,
        cls=[np.zeros(1, np.int64)] * n,
        classes=("a",),
        imgsz=32,
    )
    exp = loop.Experiment(cfg, pool, {}, {"a": 1}, np.array([2, 4, 6]), "yolov8n.yaml")
    scored: list[int] = []

    def fake_score(*args: object) -> object:
        scored.append(1)
        raise RuntimeError("scored")

    monkeypatch.setattr(loop, "score_pool", fake_score)
    state = RunState("hybrid", 0, [100, 101], {}, weights="w.pt", trained=True)
    rng = np.random.default_rng(0)
    loop._select_next(exp, state, np.array([0, 1]), rng)  # round 0 -> 1: random, no model
    assert not scored and state.round == 1 and len(state.labelled) == 4
    state.trained = True
    with pytest.raises(RuntimeError, match="scored"):  # round 1 -> 2: the strategy's own
        loop._select_next(exp, state, np.array([0, 1, 2, 3]), rng)
