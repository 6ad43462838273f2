"""Selection rounds over a real store: strategies, constraints, cold start, cancel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geoal.cli import main
from geoal.errors import SelectionError
from geoal.pipeline.rounds import SelectOptions, cancel_round, list_rounds, select_round
from geoal.project import open_project
from geoal.store import Store
from geoal.store.arrays import encode_scores
from geoal.store.candidates import candidate_scores
from geoal.store.models import scored_model_hashes
from geoal.store.rounds import chips_of_round, round_chips, round_record
from geoal.store.scores import ScoreRecord, insert_records


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def chip_ids(store: Store) -> list[int]:
    """Every chip id of the project, ascending."""
    return sorted(int(c) for s in store.scenes() for c in store.chip_windows(s.id)[0])


def fake_scores(proj_dir: Path, seed: int = 0, miaod: float | None = None) -> None:
    """Give every chip stored scores and embeddings as if a model had scored it
    (``miaod``: every chip that score alone)."""
    rng = np.random.default_rng(seed)
    with open_project(proj_dir) as p, p.store.transaction() as conn:
        ids = chip_ids(p.store)
        records = []
        for _ in ids:
            s = float(rng.random())
            scores = {"miaod": s, "max": s / 2} if miaod is None else {"miaod": miaod}
            expected = float(rng.integers(0, 6))
            embedding = rng.random(16).astype("<f4").tobytes()
            records.append(ScoreRecord(*encode_scores(scores), expected, embedding, None, ()))
        insert_records(conn, "abc123", 2, ids, records)


@pytest.fixture
def proj(tmp_path: Path, make_raster) -> Path:
    run("init", str(tmp_path / "p"), "--classes", "ship,tank")
    a, _ = make_raster(width=640, height=640)
    b, _ = make_raster(width=640, height=640, seed=3, origin=(600_000.0, 4_000_000.0))
    run("-p", str(tmp_path / "p"), "tile", str(a), str(b), "--size", "64", "--overlap", "0.5", "-q")
    return tmp_path / "p"


def test_cold_start_and_scored_strategies(proj: Path) -> None:
    with open_project(proj) as p:
        with pytest.raises(SelectionError, match="cold-start with --strategy random"):
            select_round(p, SelectOptions(strategy="hybrid", budget=5))
        r = select_round(p, SelectOptions(strategy="coreset", budget=5))
        assert len(r.chips) == 5 and r.model_hash is None
        r = select_round(p, SelectOptions(strategy="typiclust", budget=4))
        assert len(r.chips) == 4 and r.model_hash is None
    fake_scores(proj)
    with open_project(proj) as p:
        for strategy in ("random", "uncertainty", "coreset", "hybrid", "typiclust"):
            r = select_round(p, SelectOptions(strategy=strategy, budget=6, seed=1))
            assert len(r.chips) == 6
        rounds = list_rounds(p)
        chosen = [c for rd in rounds for c in chips_of_round(p.store, rd["id"])]
        assert len(chosen) == len(set(chosen)), "a chip in an open round is not selected again"


def test_uncertainty_picks_top_scores_without_overlap(proj: Path) -> None:
    fake_scores(proj)
    with open_project(proj) as p:
        r = select_round(p, SelectOptions(strategy="uncertainty", budget=10, min_distance=0.0))
        chips = [p.store.chip(c) for c in chips_of_round(p.store, r.round_id)]
        rows = [(c["scene_id"], c["col_off"], c["row_off"], c["width"]) for c in chips]
        for i, a in enumerate(rows):
            for b in rows[i + 1 :]:
                if a[0] == b[0]:
                    overlap = (
                        min(a[1] + 64, b[1] + 64) - max(a[1], b[1]) > 0
                        and min(a[2] + 64, b[2] + 64) - max(a[2], b[2]) > 0
                    )
                    assert not overlap
        scores = round_chips(p.store, r.round_id).scores.tolist()
        assert scores == sorted(scores, reverse=True)


def test_objects_budget_quota_and_cancel(proj: Path) -> None:
    fake_scores(proj)
    with open_project(proj) as p:
        r = select_round(
            p,
            SelectOptions(strategy="uncertainty", budget=None, budget_objects=20.0, max_share=0.5),
        )
        chosen = np.array(sorted(r.chips))
        expected = candidate_scores(p.store, "abc123", "miaod", chosen).expected
        assert np.maximum(expected, 1.0).sum() <= 20.0
        before = p.store.counts()["selected"]
        assert cancel_round(p, r.round_id) == len(r.chips)
        assert p.store.counts()["selected"] == before - len(r.chips)
        with pytest.raises(SelectionError, match="only an open round"):
            cancel_round(p, r.round_id)


def test_cli_select_and_rounds(proj: Path) -> None:
    bad = run("-p", str(proj), "select", "-k", "3", "-s", "nope", ok=False)
    assert "valid names: adaptive, coreset, hybrid, random, typiclust, uncertainty" in bad.output
    out = run("-p", str(proj), "select", "-k", "3", "-s", "random", "--seed", "4").output
    assert "round 1: 3 chips selected by random" in out
    rounds = json.loads(run("-p", str(proj), "rounds", "--json").output)
    assert rounds[0]["chips"] == 3 and rounds[0]["status"] == "open" and rounds[0]["seed"] == 4
    assert "cancelled" in run("-p", str(proj), "rounds", "--cancel", "1").output


def test_class_balance_prefers_chips_of_classes_rare_among_the_labels(proj: Path) -> None:
    fake_scores(proj, miaod=0.5)  # every chip scores the same
    with open_project(proj) as p, p.store.transaction() as conn:
        ids = chip_ids(p.store)
        # even chips see ships (class 0), odd chips tanks (1)
        for cid in ids[1:]:
            conn.execute(
                "INSERT INTO detections (chip_id, model_hash, x1, y1, x2, y2, class_id, "
                "confidence, probs, uncertainty) VALUES (?, 'abc123', 1, 1, 9, 9, ?, 0.8, ?, '{}')",
                (cid, cid % 2, np.zeros(2, "<f4").tobytes()),
            )
        # chip ids[0] is labelled with ten ships and no tank
        conn.execute("INSERT INTO labelled_chips (chip_id) VALUES (?)", (ids[0],))
        conn.executemany(
            "INSERT INTO labels (chip_id, class_id, x1, y1, x2, y2) VALUES (?, 0, 1, 1, 5, 5)",
            [(ids[0],)] * 10,
        )
    with open_project(proj) as p:
        r = select_round(
            p,
            SelectOptions(strategy="uncertainty", budget=6, min_distance=None, class_balance=True),
        )
        assert all(c % 2 == 1 for c in r.chips), "tank chips first: no tank is labelled yet"
        record = round_record(p.store, r.round_id)
        assert record is not None and record.params["class_balance"] is True
        cancel_round(p, r.round_id)
        plain = select_round(p, SelectOptions(strategy="uncertainty", budget=6, min_distance=None))
        assert any(c % 2 == 0 for c in plain.chips)  # without it, ties fall either way
    run("-p", str(proj), "select", "-s", "uncertainty", "-k", "3", "--class-balance")


def test_class_balance_needs_scores(proj: Path) -> None:
    with open_project(proj) as p, pytest.raises(SelectionError, match="run 'geoal score' first"):
        select_round(p, SelectOptions(strategy="random", budget=3, class_balance=True))


def _detection(conn, chip: int, cls: int, conf: float, probs: list[float]) -> None:
    conn.execute(
        "INSERT INTO detections (chip_id, model_hash, x1, y1, x2, y2, class_id, confidence, "
        "probs, uncertainty) VALUES (?, 'abc123', 10, 10, 30, 30, ?, ?, ?, '{}')",
        (chip, cls, conf, np.asarray(probs, dtype="<f4").tobytes()),
    )


def test_adaptive_starts_cold_with_typiclust_then_ranks_by_calibrated_doubt(proj: Path) -> None:
    with open_project(proj) as p:
        r = select_round(p, SelectOptions(strategy="adaptive", budget=4))
        assert len(r.chips) == 4 and r.model_hash is None
        assert "adaptive starts with typiclust" in r.note
        cancel_round(p, r.round_id)
    fake_scores(proj)
    with open_project(proj) as p, p.store.transaction() as conn:
        ids = chip_ids(p.store)
        labelled, hard, easy = ids[0], ids[10], ids[20]
        # a labelled chip whose one 'ship' the model finds at 0.9: ships are easy, tanks unknown
        conn.execute("INSERT INTO labelled_chips (chip_id) VALUES (?)", (labelled,))
        conn.execute(
            "INSERT INTO labels (chip_id, class_id, x1, y1, x2, y2) VALUES (?, 0, 10, 10, 30, 30)",
            (labelled,),
        )
        _detection(conn, labelled, 0, 0.9, [0.9, 0.0])
        _detection(conn, hard, 1, 0.5, [0.1, 0.5])  # a doubtful tank
        _detection(conn, easy, 0, 0.5, [0.5, 0.1])  # an equally doubtful ship
    with open_project(proj) as p:
        from geoal.pipeline.rounds import calibrated_pool, candidate_pool

        cand, pool = candidate_pool(p, "abc123", "miaod", False)
        pool = calibrated_pool(p, "abc123", cand, pool)
        assert pool.quality == pytest.approx(0.9, abs=1e-6)
        where = {int(c): i for i, c in enumerate(cand)}
        assert labelled not in where
        assert pool.scores[where[hard]] == pytest.approx(2.0)
        assert pool.scores[where[easy]] == pytest.approx(1.1, abs=1e-6)
        # the two doubtful chips are the only ones the ranking puts above zero
        r = select_round(p, SelectOptions(strategy="adaptive", budget=2))
        assert sorted(r.chips) == [hard, easy] and "2 by scores" in r.note


def test_a_weak_model_ranks_the_stored_objectness_of_each_chip(proj: Path) -> None:
    """Survey case: no detections, faint objectness on a few chips; adaptive buys those."""
    with open_project(proj) as p, p.store.transaction() as conn:
        ids = chip_ids(p.store)
        rng = np.random.default_rng(0)
        faint = set(ids[3:200:6])  # 33 chips where the model's anchors stand out a little
        records = []
        for cid in ids:
            ob = 0.03 if cid in faint else float(rng.uniform(0, 0.005))
            scores = {"miaod": float(rng.random()), "objectness": ob}
            emb = rng.random(16).astype("<f4").tobytes()
            records.append(ScoreRecord(*encode_scores(scores), 0.0, emb, None, ()))
        insert_records(conn, "abc123", 1, ids, records)
    with open_project(proj) as p:
        from geoal.pipeline.rounds import candidate_pool

        cand, pool = candidate_pool(p, "abc123", "miaod", False)
        assert pool.objectness is not None and len(pool.objectness) == len(cand)
        r = select_round(p, SelectOptions(strategy="adaptive", budget=5))
        assert "4 by weak model: objectness" in r.note, r.note
        assert len(set(r.chips) & faint) >= 4


def test_no_scoring_or_ranking_by_untrained_weights_unless_asked(proj: Path) -> None:
    refused = run("-p", str(proj), "score", "-q", ok=False)
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "no trained model yet: run 'geoal train' first, or select with a cold-start" in (
        refused.output
    )
    assert len(refused.output.strip().splitlines()) == 1
    assert not run("-p", str(proj), "rounds", "--json").output.strip("[]\n")
    # asked for explicitly: random weights score, but do not rank chips by default
    out = run("-p", str(proj), "score", "--model", "yolov8n.yaml", "--views", "1",
              "--limit", "4", "-q").output  # fmt: skip
    assert "scored 4 chips" in out
    untrained = run("-p", str(proj), "select", "-s", "uncertainty", "-k", "2", ok=False)
    assert untrained.exit_code == 1 and "untrained model" in untrained.output
    assert "--model" in untrained.output
    with open_project(proj) as p:
        (model_hash,) = scored_model_hashes(p.store)
        cold = select_round(p, SelectOptions(strategy="random", budget=2))
        assert cold.model_hash is None and "were not used" in cold.note
        asked = select_round(
            p, SelectOptions(strategy="uncertainty", budget=2, model_hash=model_hash[:8])
        )
        assert asked.model_hash == model_hash
