"""A project folder: its config (``geoal.yaml``), its store (``geoal.db``), its lock.

Readers (``geoal status``, ``geoal map``) open the store at any time: SQLite WAL
lets them read while a writer works. Commands that write take the project's
write lock first, so two writers never interleave their steps; the second gets
a clear message naming the holder instead of waiting or corrupting anything.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from geoal.closing import Closing
from geoal.config import (
    ProjectConfig,
    config_from_dict,
    default_dict,
    load_config,
    parse_classes,
    write_config,
)
from geoal.errors import ProjectError, ProjectLockedError
from geoal.store import Store, relative_model_path

CONFIG_NAME = "geoal.yaml"
STORE_NAME = "geoal.db"
LOCK_NAME = ".geoal.lock"

_HEADER = (
    "# geoal project config. Every key is documented in geoal's configs/default.yaml.\n"
    "# Classes are in the model's order: never reorder them once a model is trained.\n"
)


@dataclass
class Project(Closing):
    """An open project: root folder, validated config and store connection."""

    root: Path
    config: ProjectConfig
    store: Store

    @property
    def models_dir(self) -> Path:
        """Where trained model weights are kept."""
        return self.root / "models"

    def stored_model_path(self, path: str | Path) -> str:
        """A model path as the store keeps it: relative to the project when the file is inside it."""
        text = str(path)
        if "://" in text or not Path(text).exists():
            return text  # an architecture name ("yolov8n.yaml") or a URL
        return relative_model_path(self.root, str(Path(text).resolve()))

    def model_file(self, stored: str) -> str:
        """A stored model path made usable: a relative one lies in the project folder."""
        path = Path(stored)
        if "://" in stored or path.is_absolute():
            return stored
        local = self.root / path
        if local.exists() or path.suffix.lower() == ".pt":
            return str(local.resolve())
        return stored  # an architecture name such as "yolov8n.yaml"

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    @contextmanager
    def write_lock(self, command: str) -> Iterator[None]:
        """Hold the project's write lock for the duration; refuse if another process holds it."""
        path = self.root / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                raise ProjectLockedError(
                    f"{self.root}: project is locked by {holder}; wait for it to finish "
                    f"(or stop it) and run the command again"
                ) from None
            os.ftruncate(fd, 0)
            info = {"pid": os.getpid(), "command": command, "since": time.strftime("%H:%M:%S")}
            os.write(fd, json.dumps(info).encode())
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or "{}")
        return f"'geoal {info['command']}' (pid {info['pid']}, since {info['since']})"
    except (ValueError, KeyError, OSError):
        return "another geoal process"


def init_project(
    root: Path, classes: str | list[str], *, profile: str | None = None, name: str | None = None
) -> Project:
    """Create a project folder with its config and an empty store; returns it open."""
    root = Path(root)
    parsed = parse_classes(classes)
    if (root / CONFIG_NAME).exists() or (root / STORE_NAME).exists():
        raise ProjectError(f"{root}: already a geoal project (found {CONFIG_NAME} or {STORE_NAME})")
    if root.exists() and not root.is_dir():
        raise ProjectError(f"{root}: exists and is not a folder")
    data = default_dict(profile)
    data["classes"] = list(parsed)
    data["name"] = name or root.resolve().name
    cfg = config_from_dict(data, f"{root / CONFIG_NAME}")
    root.mkdir(parents=True, exist_ok=True)
    write_config(cfg, root / CONFIG_NAME, _HEADER)
    store = Store(root / STORE_NAME)
    with store.transaction():
        store.set_meta("classes", json.dumps(list(parsed)))
        store.set_meta("created_with", "geoal")
    return Project(root=root, config=cfg, store=store)


def open_project(root: Path | None = None) -> Project:
    """Open the project in ``root`` (default: the current folder)."""
    root = Path(root) if root is not None else Path.cwd()
    cfg_path = root / CONFIG_NAME
    if not cfg_path.is_file() or not (root / STORE_NAME).is_file():
        raise ProjectError(
            f"{root}: not a geoal project (no {CONFIG_NAME} and {STORE_NAME}); "
            f"create one with 'geoal init {root} --classes ...' or pass --project DIR"
        )
    wal = root / (STORE_NAME + "-wal")
    if (root / STORE_NAME).stat().st_size == 0 and not (wal.is_file() and wal.stat().st_size):
        # SQLite would silently make an empty store of it: a truncated copy, a full disk
        raise ProjectError(
            f"{root / STORE_NAME}: the store is empty (0 bytes), so the project's scenes, rounds "
            "and labels are not in it; restore geoal.db from a backup, or start a new project "
            "with 'geoal init'"
        )
    cfg = load_config(cfg_path)
    if not cfg.classes:
        raise ProjectError(f"{cfg_path}: 'classes' is empty; list the project's object classes")
    store = Store(root / STORE_NAME)
    stored = store.get_meta("classes")
    if stored is not None and tuple(json.loads(stored)) != cfg.classes:
        store.close()
        raise ProjectError(
            f"{cfg_path}: classes {list(cfg.classes)} differ from the store's "
            f"{json.loads(stored)}; "
            "classes cannot be changed once a project exists (restore them in geoal.yaml)"
        )
    return Project(root=root, config=cfg, store=store)
