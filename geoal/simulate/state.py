"""What survives a kill: results.csv rows and one state file per (strategy, seed).

``results.csv`` is appended one whole line per round (under a file lock, flushed
and fsynced), so several processes may share an output folder. A run's state
(``state/<strategy>_<seed>.json``, replaced atomically) holds its labelled set
in acquisition order, the round it is on, whether that round's model is trained
and evaluated, where its weights are, and its random generator's state: a
resumed run makes exactly the selections an uninterrupted one makes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoal.errors import ConfigError

COLUMNS = (
    "strategy",
    "seed",
    "round",
    "n_images",
    "n_boxes",
    "mAP50",
    "mAP50-95",
    "seconds",
    "recall",
)
STATE_VERSION = 1


@dataclass
class RunState:
    """The resumable state of one (strategy, seed) run.

    Attributes:
        labelled: COCO image ids revealed so far, in acquisition order.
        round: the round being worked on (0-based).
        trained: whether this round's model is trained, evaluated and its row written.
        weights: the last trained round's checkpoint (None before round 0 is trained).
        rng: the strategy generator's ``bit_generator.state``.
        select_seconds: time spent choosing this round's images (reported in its row).
        done: all rounds finished.
    """

    strategy: str
    seed: int
    labelled: list[int]
    rng: dict[str, Any]
    round: int = 0
    trained: bool = False
    weights: str | None = None
    select_seconds: float = 0.0
    done: bool = False
    version: int = field(default=STATE_VERSION)

    def generator(self) -> np.random.Generator:
        """The strategy's generator, restored to the saved state."""
        rng = np.random.Generator(getattr(np.random, self.rng["bit_generator"])())
        rng.bit_generator.state = self.rng
        return rng


def state_path(out: Path, strategy: str, seed: int) -> Path:
    return out / "state" / f"{strategy}_{seed}.json"


def load_state(path: Path) -> RunState | None:
    """The saved state, or None when there is none yet."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"state version {data.get('version')}, expected {STATE_VERSION}")
        return RunState(**data)
    except (ValueError, TypeError) as error:
        raise ConfigError(
            f"{path}: unreadable run state ({error}); delete it to restart"
        ) from error


def save_state(path: Path, state: RunState) -> None:
    """Write ``state`` atomically (temporary file, fsync, rename)."""
    write_json_atomic(path, asdict(state))


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
        json.dump(data, tmp, indent=1)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)


@contextmanager
def _locked(path: Path) -> Iterator[Any]:
    """``path`` opened for appending under an exclusive lock (POSIX; unlocked elsewhere)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", newline="") as file:
        try:
            import fcntl

            fcntl.flock(file, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows
            pass
        yield file


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one result row (header first if the file is new), flushed to disk."""
    with _locked(path) as file:
        file.seek(0, os.SEEK_END)
        text = ""
        columns: tuple[str, ...] = COLUMNS
        if file.tell() == 0:
            text = ",".join(COLUMNS) + "\n"
        else:
            end = file.tell()
            file.seek(0)
            # A file begun by an older geoal keeps its own columns (recall came later).
            columns = tuple(file.readline().strip().split(","))
            file.seek(end - 1)
            if file.read(1) != "\n":  # a line cut by a kill: end it; read_rows skips it
                text = "\n"
        values = [_fmt(row.get(c, math.nan)) for c in columns]
        file.write(text + ",".join(values) + "\n")
        file.flush()
        os.fsync(file.fileno())


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The complete rows of results.csv, typed; cut or malformed lines are skipped."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as file:
        for raw in csv.DictReader(file):
            try:
                rows.append(
                    {
                        "strategy": str(raw["strategy"]),
                        "seed": int(raw["seed"]),
                        "round": int(raw["round"]),
                        "n_images": int(raw["n_images"]),
                        "n_boxes": int(raw["n_boxes"]),
                        "mAP50": float(raw["mAP50"]),
                        "mAP50-95": float(raw["mAP50-95"]),
                        "seconds": float(raw["seconds"]),
                        "recall": float(raw.get("recall") or "nan"),
                    }
                )
            except (KeyError, TypeError, ValueError):
                continue
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}" if abs(value) >= 1 else f"{value:.6f}"
    return str(value)
