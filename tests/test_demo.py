"""geoal demo: two arms from one start, one line per arm per round, summary.json, the report."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from geoal.cli import main
from geoal.config import default_dict
from geoal.demo import DEMO_MARK, DemoOptions, comparison, run_demo

TINY = DemoOptions(
    width=512,
    height=512,
    objects=30,
    clusters=2,
    test_side=256,
    seed_chips=5,
    round_chips=3,
    rounds=1,
    start_epochs=1,
    epochs=1,
)


def test_demo_runs_two_arms_from_one_start(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / DEMO_MARK).write_text("x")
    (out / "stale.txt").write_text("x")  # a previous demo is replaced
    lines = list(run_demo(out, progress=False, options=TINY))
    printed = capfd.readouterr()
    assert "no labels found" not in printed.out + printed.err  # an empty val chip is expected
    assert not (out / "stale.txt").exists()
    summary = json.loads((out / "summary.json").read_text())
    arms = summary["arms"]
    assert set(arms) == {"geoal", "random"}
    assert arms["geoal"]["strategy"] == default_dict()["select"]["strategy"]
    assert arms["random"]["strategy"] == "random"
    for arm in arms.values():
        rounds = arm["rounds"]
        assert [r["round"] for r in rounds] == [0, 1]
        assert [r["labelled_chips"] for r in rounds] == [5, 8]
        assert rounds[0]["objects_found"] <= rounds[1]["objects_found"] <= 30
        assert all(0.0 <= r["mAP50"] <= 1.0 for r in rounds)
    assert arms["geoal"]["rounds"][0] == arms["random"]["rounds"][0]  # the same start
    for name, arm in arms.items():  # one printed line per arm per round, with its figures
        for r in arm["rounds"]:
            line = next(
                x for x in lines if x.startswith(f"round {r['round']}  {name}") and " labelled" in x
            )
            assert f"{r['labelled_chips']} labelled chips" in line
            assert f"{r['objects_found']} objects found" in line
            assert f"mAP50 {r['mAP50']:.3f}" in line
    assert summary["comparison"] in lines
    assert (out / "chips.gpkg").is_file()

    page = (out / "report.html").read_text()
    assert "Compared strategies" in page and "Per-class AP50" in page
    assert "not evaluated yet" not in page  # every model was evaluated on the test scene
    pngs = [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]
    assert len(pngs) >= 4 + TINY.round_chips  # 2 curves, AP, score map, gallery
    for png in pngs:  # no empty frame
        pix = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
        assert pix.std() > 5


def test_comparison_says_who_won() -> None:
    def summary(geoal: float, random: float) -> dict:
        row = {"labelled_chips": 40, "objects_found": 10, "mAP50": 0.0}
        return {
            "scene": {"objects": 50},
            "arms": {
                "geoal": {"strategy": "hybrid", "rounds": [{**row, "mAP50": geoal}]},
                "random": {"strategy": "random", "rounds": [{**row, "mAP50": random}]},
            },
        }

    assert "a higher held-out mAP50 (+0.200) than random" in comparison(summary(0.6, 0.4))
    assert "a lower held-out mAP50 (-0.200) than random" in comparison(summary(0.4, 0.6))
    assert "about the same held-out mAP50 as random" in comparison(summary(0.51, 0.5))


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "other")])
    assert result.exit_code == 1 and "not a previous demo" in result.output
    assert (tmp_path / "other" / "keep.txt").exists()
