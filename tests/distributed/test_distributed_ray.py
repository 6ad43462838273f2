"""The Ray engine on a local Ray instance (2 CPUs): same results as the local engine, a killed
worker, an interrupted driver, whole-scene prediction, a worker that cannot load the model."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

from geoal.distributed import RayOptions, score_project_ray
from geoal.pipeline.scoring import ScoreOptions, score_project
from geoal.project import open_project

from .conftest import assert_complete, assert_same_results, make_project, run_cli, scored_ids

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray instance for this module (2 CPUs, no dashboard); its GCS address."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic 16-bit scene of 8 x 6 chips of 64 px."""
    from geoal.synthetic import SceneSpec, write_scene

    path = tmp_path_factory.mktemp("scene") / "scene.tif"
    write_scene(path, SceneSpec(width=64 * 8, height=64 * 6, dtype="uint16", objects=20, seed=5))
    return path


def _opts(**kwargs: object) -> ScoreOptions:
    return ScoreOptions(
        **{"model": "yolov8n.yaml", "views": 2, "batch": 4, "conf": 0.001, **kwargs}
    )  # type: ignore[arg-type]


def _actor_pids(name: str) -> list[int]:
    """Processes of this test's Ray (descendants of this process) running actor ``name``."""
    return [
        p.pid
        for p in psutil.Process(os.getpid()).children(recursive=True)
        if p.is_running() and p.name().startswith(f"ray::{name}")
    ]


def _wait_for(condition, timeout: float = 180.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def test_same_results_as_local_engine(ray_address: str, tmp_path: Path, shared_data: Path) -> None:
    real = shared_data / "geotiff" / "pan_50cm_uint16.tif"
    local = make_project(tmp_path / "local", [real], overlap=0.1)
    shutil.copytree(local, tmp_path / "ray")
    with open_project(local) as project:
        assert score_project(project, _opts(limit=32), progress=False).scored == 32
    with open_project(tmp_path / "ray") as project:
        report = score_project_ray(
            project, _opts(limit=32), RayOptions(batches_per_task=2), progress=False
        )
    assert (report.scored, report.skipped) == (32, 0)
    assert_complete(tmp_path / "ray", 32)
    assert_same_results(local, tmp_path / "ray")
    # the CLI path, joining the running cluster: resumes from the 32 already scored
    out = run_cli(
        "-p",
        str(tmp_path / "ray"),
        "score",
        "--model",
        "yolov8n.yaml",
        "--engine",
        "ray",
        "--batch",
        "4",
        "--limit",
        "4",
        "--address",
        ray_address,
        "-q",
    )
    assert "scored 4 chips" in out.output and "32 already scored" in out.output


def test_a_killed_worker_is_restarted_and_every_chip_scored_once(
    ray_address: str, tmp_path: Path, scene: Path
) -> None:
    proj = make_project(tmp_path / "p", [scene])
    outcome: dict[str, object] = {}

    def drive() -> None:
        with open_project(proj) as project:
            try:
                outcome["report"] = score_project_ray(
                    project, _opts(), RayOptions(batches_per_task=1), progress=False
                )
            except BaseException as exc:  # handed to the test thread
                outcome["error"] = exc

    driver = threading.Thread(target=drive)
    driver.start()
    _wait_for(lambda: len(scored_ids(proj)) >= 8)
    victims = _actor_pids("ChipScorer")
    assert victims
    os.kill(victims[0], signal.SIGKILL)
    at_kill = len(scored_ids(proj))
    driver.join(timeout=300)
    assert not driver.is_alive() and "error" not in outcome, outcome.get("error")
    assert at_kill < 48, "the kill landed mid-run"
    assert outcome["report"].scored == 48  # type: ignore[attr-defined]
    assert_complete(proj, 48)


def test_an_interrupted_driver_resumes(ray_address: str, tmp_path: Path, scene: Path) -> None:
    proj = make_project(tmp_path / "p", [scene])
    cmd = [sys.executable, "-m", "geoal.cli", "-p", str(proj), "score", "--engine", "ray",
           "--model", "yolov8n.yaml", "--address", ray_address, "--batch", "2", "-q"]  # fmt: skip
    # --batch 2: tasks of 4 batches = 8 chips, so the kill lands between writes
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: len(scored_ids(proj)) >= 8)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    partial = len(scored_ids(proj))
    assert 8 <= partial < 48, "the kill landed mid-run"
    out = run_cli(
        "-p", str(proj), "score", "--engine", "ray", "--model", "yolov8n.yaml", "--batch", "2", "-q"
    )
    assert f"scored {48 - partial} chips" in out.output
    assert f"{partial} already scored" in out.output
    assert_complete(proj, 48)


def test_predict_same_objects_as_local(ray_address: str, tmp_path: Path, scene: Path) -> None:
    from ultralytics import YOLO

    from geoal.distributed import predict_scenes_ray
    from geoal.predict.scene import PredictOptions, predict_scenes

    opts = PredictOptions(
        model="yolov8n.yaml", conf=0.002, size=64, overlap=0.25, batch=4, imgsz=64
    )
    classes = ("tree", "building")
    local = predict_scenes([str(scene)], opts, classes, progress=False)
    remote = predict_scenes_ray(
        [str(scene)], opts, RayOptions(batches_per_task=2), classes, progress=False
    )
    assert not local.errors and not remote.errors
    (a,), (b,) = local.scenes, remote.scenes
    assert a.chips == b.chips and a.raw_detections == b.raw_detections > 0
    np.testing.assert_allclose(a.objects, b.objects, atol=1e-3)
    # the CLI: a .pt (its own classes), a missing scene reported, the other written
    pt = tmp_path / "m.pt"
    YOLO("yolov8n.yaml").save(pt)
    out = tmp_path / "objects.gpkg"
    result = run_cli("predict", str(scene), str(tmp_path / "missing.tif"), "--model", str(pt),
                     "--engine", "ray", "--size", "64", "--overlap", "0", "--conf", "0.01",
                     "--out", str(out),
                     "-q", ok=False)  # fmt: skip
    assert result.exit_code == 1 and "missing.tif" in result.output
    assert out.exists() and "48 chips" in result.output


def test_a_worker_without_the_same_model_is_refused(ray_address: str) -> None:
    import ray

    from geoal.distributed.cluster import WorkerPool, forwarded_env, plan_actors
    from geoal.distributed.worker import ChipScorer, ModelSpec, ScoreParams
    from geoal.errors import GeoalError

    spec = ModelSpec("yolov8n.yaml", ("tree", "building"), 64, model_hash="0" * 64)
    params = ScoreParams(views=1, conf=0.1, iou=0.7, top_k=3, batch=4, readers=1)
    opts = RayOptions(workers=1, start_timeout_s=120)
    pool = WorkerPool(
        ray,
        ChipScorer,
        (spec, params, forwarded_env()),
        plan_actors(ray.cluster_resources(), opts),
        opts,
    )
    try:
        with pytest.raises(GeoalError, match="every node must see the same model file"):
            list(pool.run("score", [object()]))
    finally:
        pool.close()
