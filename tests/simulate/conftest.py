"""Fixtures for geoal.simulate: a few real NWPU VHR-10 images, and the simulate command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

POOL_IMAGES = 12
TEST_IMAGES = 6
# Two rounds (3 then 6 images) of two strategies, one seed, tiny and fast.
SIM_ARGS = [
    "--strategies", "random,hybrid",
    "--seeds", "0",
    "--budgets", "0.25,0.5",
    "--epochs", "1",
    "--imgsz", "128",
    "--batch", "4",
    "--init", "yolov8n.yaml",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    """ultralytics' trainer changes torch's thread count; undo it after each test."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def nwpu(shared_data: Path) -> Path:
    return shared_data / "nwpu-vhr10"


def _subset(nwpu: Path, split: str, n: int, target: Path) -> Path:
    coco: dict[str, Any] = json.loads((nwpu / "annotations" / f"{split}.json").read_text())
    images = coco["images"][:n]
    keep = {im["id"] for im in images}
    anns = [a for a in coco["annotations"] if a["image_id"] in keep]
    target.write_text(json.dumps({**coco, "images": images, "annotations": anns}))
    return target


@pytest.fixture(scope="session")
def tiny_sets(nwpu: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """COCO files of the first 12 NWPU train images (pool) and 6 test images (evaluation)."""
    folder = tmp_path_factory.mktemp("coco")
    return {
        "data": _subset(nwpu, "train", POOL_IMAGES, folder / "pool.json"),
        "test": _subset(nwpu, "test", TEST_IMAGES, folder / "test.json"),
        "images": nwpu / "images",
    }


def simulate_command(sets: dict[str, Path], out: Path, *extra: str) -> list[str]:
    """``geoal simulate`` on the tiny sets, as a subprocess command line."""
    return [
        sys.executable, "-m", "geoal.cli", "simulate", "--quiet",
        "--data", str(sets["data"]),
        "--images", str(sets["images"]),
        "--test-data", str(sets["test"]),
        "--out", str(out),
        *SIM_ARGS,
        *extra,
    ]  # fmt: skip


def subprocess_env() -> dict[str, str]:
    """The test session's environment (offline ultralytics, temporary settings) for a child."""
    return {**os.environ, "YOLO_OFFLINE": "1", "MPLBACKEND": "Agg"}


@pytest.fixture(scope="session")
def sim() -> Any:
    """(simulate_command, subprocess_env) for tests that run the command themselves."""
    return simulate_command, subprocess_env


@pytest.fixture(scope="session")
def reference(tiny_sets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of one uninterrupted ``geoal simulate`` run (with the ceiling)."""
    out = tmp_path_factory.mktemp("reference") / "sim"
    done = subprocess.run(
        simulate_command(tiny_sets, out, "--full-pool", "--full-epochs", "1"),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out
