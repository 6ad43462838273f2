"""The annotation tests read a project's store through its typed queries, never raw SQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from geoal.store import Store
from geoal.store import labels as label_store

T = TypeVar("T")


def read(proj: Path, query: Callable[..., T], *args: object) -> T:
    """``query(conn, *args)`` on the project's store."""
    with Store(proj / "geoal.db") as store:
        return query(store.conn, *args)


def labelled_boxes(proj: Path) -> dict[int, np.ndarray]:
    """Each labelled chip's labels: (K, 5) [x1, y1, x2, y2, class_id] in chip pixels (K = 0: a
    negative), chips in id order, labels in the order they were stored."""
    with Store(proj / "geoal.db") as store:
        conn = store.conn
        return label_store.label_arrays(conn, label_store.labelled_chip_ids(conn))


def labelled_scene_names(proj: Path) -> list[str]:
    """The scenes holding a labelled chip, in the order they were added."""
    with Store(proj / "geoal.db") as store:
        conn = store.conn
        chips = label_store.chip_rows(conn, label_store.labelled_chip_ids(conn))
        scene_ids = {c.scene_id for c in chips}
        return [s.name for s in store.scenes() if s.id in scene_ids]
