"""Push a round to a real Label Studio server, annotate through its API as the UI does, pull.

Annotations are posted the way the labelling UI stores them: the prediction's regions
copied with ``origin`` "prediction" / "prediction-changed", new regions "manual", the
prediction as ``parent_prediction``, skips as ``was_cancelled``.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from geoal.cli import main
from geoal.formats import labelstudio_config
from geoal.labelstudio import Client
from geoal.labelstudio.sync import linked_project
from geoal.project import open_project
from geoal.store.rounds import RoundRecord, chips_of_round, round_record
from geoal.store.states import RoundState

pytestmark = pytest.mark.slow


def run(*args: str, ok: bool = True, token: str | None = None):
    env = {"LABEL_STUDIO_API_KEY": token, "LABEL_STUDIO_TOKEN": None}
    result = CliRunner().invoke(main, list(args), catch_exceptions=False, env=env)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def q(proj: Path, sql: str, *params: Any) -> list[tuple]:
    conn = sqlite3.connect(proj / "geoal.db")
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def stored_round(proj: Path, round_id: int) -> tuple[RoundRecord, list[int]]:
    """A round as the store has it, and its chip ids in selection order."""
    with open_project(proj) as p:
        record, chips = round_record(p.store, round_id), chips_of_round(p.store, round_id)
    assert record is not None
    return record, chips


def ls_project_id(proj: Path, url: str) -> int:
    with open_project(proj) as p:
        link = linked_project(p, url)
    assert link is not None
    return int(link["project"])


def tasks_by_chip(client: Client, pid: int) -> dict[int, dict[str, Any]]:
    """Every task of the project in full (with its predictions), by chip id."""
    out = {}
    for t in client.export_tasks(pid):
        out[t["data"]["chip_id"]] = client.json("GET", f"/api/tasks/{t['id']}")
    return out


def submit(client: Client, task: dict[str, Any], result: list[dict], **extra: Any) -> dict:
    """POST an annotation as the labelling UI does on Submit (or Skip, was_cancelled=True)."""
    pred = task["predictions"][0]["id"] if task.get("predictions") else None
    body = {
        "result": result,
        "lead_time": 4.2,
        "parent_prediction": pred,
        "parent_annotation": None,
        "started_at": datetime.now(UTC).isoformat(),
        "project": str(task["project"]),
        **extra,
    }
    return client.json(
        "POST",
        f"/api/tasks/{task['id']}/annotations/",
        params={"project": task["project"]},
        json=body,
    )


def from_prediction(task: dict[str, Any], k: int) -> dict[str, Any]:
    """Region k of the task's prediction as the UI copies it into a new annotation."""
    region = copy.deepcopy(task["predictions"][0]["result"][k])
    region.pop("score", None)
    region["origin"] = "prediction"
    return region


def manual_box(x: float, y: float, w: float, h: float, label: str) -> dict[str, Any]:
    """A region drawn by hand (percent of a 64 x 64 image)."""
    return {
        "original_width": 64,
        "original_height": 64,
        "image_rotation": 0,
        "value": {
            "x": x,
            "y": y,
            "width": w,
            "height": h,
            "rotation": 0,
            "rectanglelabels": [label],
        },
        "id": f"m{x:g}{y:g}",
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "origin": "manual",
    }


def stored_labels(proj: Path, chip_id: int) -> list[tuple[int, float, float, float, float]]:
    return q(
        proj, "SELECT class_id, x1, y1, x2, y2 FROM labels WHERE chip_id = ? ORDER BY id", chip_id
    )


def assert_boxes(got: list[tuple], want: list[tuple]) -> None:
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want, strict=True):
        assert g[0] == w[0], (got, want)
        assert max(abs(a - b) for a, b in zip(g[1:], w[1:], strict=True)) < 1e-6, (got, want)


def test_push_annotate_pull(label_studio, round_project: Path, tmp_path: Path) -> None:
    url, proj = label_studio.url, round_project
    out = run("-p", str(proj), "labelstudio", "push", "--url", url, token=label_studio.token).output
    assert "4 tasks added (8 predicted boxes), 0 already there" in out
    assert label_studio.token not in out
    pid = ls_project_id(proj, url)
    client = Client(url, label_studio.token)
    info = client.json("GET", f"/api/projects/{pid}")
    assert info["label_config"].strip() == labelstudio_config(["ship", "tank"]).strip()

    # the same tasks as `geoal export --format labelstudio`, images served by Label Studio
    run("-p", str(proj), "export", "--format", "labelstudio", "--out", str(tmp_path / "ex"), "-q")
    exported = {
        t["data"]["chip_id"]: t
        for t in json.loads((tmp_path / "ex" / "round1_labelstudio.json").read_text())
    }
    tasks = tasks_by_chip(client, pid)
    round1, round1_chips = stored_round(proj, 1)
    model = round1.model_hash
    assert sorted(tasks) == sorted(exported) == sorted(round1_chips)
    for cid, task in tasks.items():
        want = exported[cid]
        image = want["data"].pop("image")
        assert {k: task["data"][k] for k in want["data"]} == want["data"]
        assert task["data"]["image"].startswith("/data/upload/")
        (pred,) = task["predictions"]
        assert pred["model_version"] == model
        assert pred["result"] == want["predictions"][0]["result"]
        served = client.request("GET", task["data"]["image"])
        assert served.content == (tmp_path / "ex" / image).read_bytes()

    again = run("-p", str(proj), "labelstudio", "push", "--url", url, token=label_studio.token)
    assert "0 tasks added (0 predicted boxes), 4 already there" in again.output
    assert len(client.export_tasks(pid)) == 4

    a, b, c, d = (tasks[k] for k in sorted(tasks))
    moved = from_prediction(a, 0)  # ship (4, 6, 20, 30): moved 10 % (6.4 px) right
    moved["value"]["x"] += 10.0
    moved["origin"] = "prediction-changed"
    # the tank prediction is deleted, a new tank is drawn
    submit(client, a, [moved, manual_box(50.0, 50.0, 25.0, 12.5, "tank")])
    submit(client, b, [])  # submitted with no box: a labelled negative
    submit(client, c, [], was_cancelled=True)  # skipped
    # d stays open

    # pulled with the legacy token given as a flag: never echoed
    out = run(
        "-p", str(proj), "labelstudio", "pull", "--url", url, "--token", label_studio.legacy_token
    ).output
    assert label_studio.legacy_token not in out
    assert "4 tasks, 1 open, 1 skipped; imported 2 chips (2 boxes, 1 labelled negatives" in out
    ids = [t["data"]["chip_id"] for t in (a, b, c, d)]
    assert [r[0] for r in q(proj, "SELECT chip_id FROM labelled_chips ORDER BY chip_id")] == sorted(
        ids[:2]
    )
    assert_boxes(
        stored_labels(proj, ids[0]), [(0, 10.4, 6.0, 26.4, 30.0), (1, 32.0, 32.0, 48.0, 40.0)]
    )
    assert stored_labels(proj, ids[1]) == []
    assert stored_round(proj, 1)[0].state is RoundState.OPEN

    # pulling again changes nothing
    before = q(proj, "SELECT * FROM labels ORDER BY id"), q(proj, "SELECT * FROM imports")
    out = run("-p", str(proj), "labelstudio", "pull", "--url", url, token=label_studio.token).output
    assert "nothing new since import 1; nothing changed" in out
    assert (q(proj, "SELECT * FROM labels ORDER BY id"), q(proj, "SELECT * FROM imports")) == before

    # the open task is done, the skipped one is labelled after all: the round is labelled
    submit(client, d, [from_prediction(d, 1)])  # the tank prediction accepted as it is
    submit(client, c, [manual_box(0.0, 0.0, 100.0, 100.0, "ship")])
    out = run("-p", str(proj), "labelstudio", "pull", "--url", url, token=label_studio.token).output
    # the two chips labelled before are unchanged: only the two new ones are written
    assert "imported 2 chips (2 boxes, 0 labelled negatives, 0 relabelled, 2 unchanged)" in out
    assert_boxes(
        stored_labels(proj, ids[0]), [(0, 10.4, 6.0, 26.4, 30.0), (1, 32.0, 32.0, 48.0, 40.0)]
    )
    assert_boxes(stored_labels(proj, ids[2]), [(0, 0.0, 0.0, 64.0, 64.0)])
    assert_boxes(stored_labels(proj, ids[3]), [(1, 30.0, 32.0, 60.0, 63.5)])
    assert stored_round(proj, 1)[0].state is RoundState.LABELLED
    client.close()


def test_errors_leave_nothing_half_done(label_studio, round_project: Path) -> None:
    url, proj = label_studio.url, round_project
    run("-p", str(proj), "labelstudio", "push", "--url", url, token=label_studio.token)
    pid = ls_project_id(proj, url)

    # a wrong token (legacy-looking or a forged personal access token): named, never shown
    good = label_studio.token
    forged = good[: good.rindex(".")] + ".c2lnbmF0dXJlLW5vdC12YWxpZA"
    for bad in ("0123456789abcdef0123456789abcdef01234567", forged):
        res = run("-p", str(proj), "labelstudio", "pull", "--url", url, ok=False, token=bad)
        assert res.exit_code == 1
        assert f"token rejected by {url}" in res.output
        assert bad not in res.output and good not in res.output

    # a server that is down
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
    res = run("-p", str(proj), "labelstudio", "pull", "--url", down, ok=False, token=good)
    assert res.exit_code == 1 and f"cannot reach Label Studio at {down}" in res.output

    # a class renamed in Label Studio: the pull reports it and imports nothing
    client = Client(url, good)
    client.json(
        "PATCH",
        f"/api/projects/{pid}",
        json={"label_config": labelstudio_config(["ship", "vessel"])},
    )
    tasks = tasks_by_chip(client, pid)
    a, b, c, _ = (tasks[k] for k in sorted(tasks))
    ann = submit(client, a, [manual_box(10.0, 10.0, 20.0, 20.0, "vessel")])
    submit(client, b, [from_prediction(b, 0)])
    res = run("-p", str(proj), "labelstudio", "pull", "--url", url, ok=False, token=good)
    assert res.exit_code == 1
    assert "unknown label 'vessel': not one of ['ship', 'tank']" in res.output
    assert (
        "box labels ['ship', 'vessel'] but the geoal project's classes are ['ship', 'tank']"
        in res.output
    )
    assert "nothing imported" in res.output
    assert q(proj, "SELECT COUNT(*) FROM labelled_chips") == [(0,)]
    assert q(proj, "SELECT COUNT(*) FROM imports") == [(0,)]
    res = run("-p", str(proj), "labelstudio", "push", "--url", url, ok=False, token=good)
    assert res.exit_code == 1 and "nothing pushed" in res.output

    # fixed in Label Studio; one task deleted there: its chip stays unlabelled and is reported
    fixed = manual_box(10.0, 10.0, 20.0, 20.0, "tank")
    client.json("PATCH", f"/api/annotations/{ann['id']}", json={"result": [fixed]})
    client.json(
        "PATCH", f"/api/projects/{pid}", json={"label_config": labelstudio_config(["ship", "tank"])}
    )
    client.request("DELETE", f"/api/tasks/{c['id']}/")
    res = run("-p", str(proj), "labelstudio", "pull", "--url", url, token=good)
    assert "3 tasks, 1 open, 0 skipped; imported 2 chips (2 boxes" in res.output
    chip_c = c["data"]["chip_id"]
    assert (
        f"1 pushed chip(s) have no task any more (deleted in Label Studio?) and stay unlabelled: {chip_c}"
        in res.output
    )
    assert_boxes(stored_labels(proj, a["data"]["chip_id"]), [(1, 6.4, 6.4, 19.2, 19.2)])
    assert q(proj, "SELECT COUNT(*) FROM labelled_chips WHERE chip_id = ?", chip_c) == [(0,)]

    # pushing again gives the chip its task back
    res = run("-p", str(proj), "labelstudio", "push", "--url", url, token=good)
    assert "1 tasks added (2 predicted boxes), 3 already there" in res.output
    client.close()
