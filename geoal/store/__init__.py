"""The project's SQLite store: schema, migrations and typed queries.

One file (``geoal.db``) holds all state: scenes, chips, models, detections,
scores, rounds and labels. WAL journaling lets readers (``geoal status``) run
while a writer works; every multi-row write runs in one transaction, so a killed
process leaves either all of a step or none of it. The schema version lives in
``PRAGMA user_version``; :data:`MIGRATIONS` upgrades older stores in place.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from geoal.errors import ProjectError, ProjectLockedError, environment_problem
from geoal.hashing import sha256_file
from geoal.raster.scene import Scene
from geoal.store.arrays import encode_scores, names_id
from geoal.store.states import RoundState

# Each entry upgrades the store from version i to i + 1: an SQL script, or a function
# of the connection and the project folder (inside the migration's transaction).
# Never edit a released entry: append a new one.
Migration = str | Callable[[sqlite3.Connection, Path], None]


def _relative_model_paths(conn: sqlite3.Connection, root: Path) -> None:
    """v1 -> v2: model paths inside the project become relative to it (moved or copied projects).

    A path inside the project folder is made relative. A path elsewhere whose file name
    is in this project's ``models/`` with the same content (the project was moved or
    copied, and the path still names the old place) becomes ``models/NAME``: a copied
    project then uses its own copy, never the original's.
    """
    for model_id, model_hash, path in conn.execute("SELECT id, hash, path FROM models").fetchall():
        stored = relative_model_path(root, path)
        if stored == path and Path(path).is_absolute():
            local = root / "models" / Path(path).name
            if local.is_file() and sha256_file(local) == model_hash:
                stored = f"models/{local.name}"
        if stored != path:
            conn.execute("UPDATE models SET path = ? WHERE id = ?", (stored, model_id))


# v4's chip_scores: the JSON ``scores`` column became ``score_names`` + ``score_values``
# (geoal.store.arrays); the names lists live once in ``score_names``.
_SCORE_NAMES_V4 = """
    CREATE TABLE IF NOT EXISTS score_names (
        id INTEGER PRIMARY KEY,
        names TEXT NOT NULL UNIQUE          -- JSON list: the order of a row's score_values
    )
"""
_CHIP_SCORES_V4 = """
    CREATE TABLE chip_scores (
        chip_id INTEGER NOT NULL REFERENCES chips(id) ON DELETE CASCADE,
        model_hash TEXT NOT NULL,
        views INTEGER NOT NULL,
        n_detections INTEGER NOT NULL,
        expected_count REAL NOT NULL,
        score_names INTEGER NOT NULL REFERENCES score_names(id),
        score_values BLOB NOT NULL,         -- float64 little-endian, one per name
        embedding BLOB,                     -- float32 little-endian
        scored_at TEXT NOT NULL DEFAULT (datetime('now')),
        backend TEXT,                       -- torch, openvino, onnxruntime; NULL = torch
        PRIMARY KEY (chip_id, model_hash)
    )
"""
_V3_COLUMNS = (
    "chip_id, model_hash, views, n_detections, expected_count, embedding, scored_at, backend"
)


def convert_json_scores(conn: sqlite3.Connection, chunk: int = 20_000) -> None:
    """v3 -> v4: ``chip_scores`` rows' JSON scores become names ids and float64 values.

    Rebuilds the table (rows, rowids and values kept; the JSON parsed once here) inside
    the caller's transaction. Also upgrades shard files (:mod:`geoal.store.shards`).
    """
    conn.execute(_SCORE_NAMES_V4)
    conn.execute("ALTER TABLE chip_scores RENAME TO chip_scores_v3")
    conn.execute(_CHIP_SCORES_V4)
    ids: dict[tuple[str, ...], int] = {}
    last = -1
    while rows := conn.execute(
        f"SELECT rowid, {_V3_COLUMNS}, scores FROM chip_scores_v3 WHERE rowid > ? "
        "ORDER BY rowid LIMIT ?",
        (last, chunk),
    ).fetchall():
        out = []
        for row in rows:
            names, values = encode_scores(json.loads(row[-1]))
            if names not in ids:
                ids[names] = names_id(conn, names)
            out.append((*row[:-1], ids[names], values))
        conn.executemany(
            f"INSERT INTO chip_scores (rowid, {_V3_COLUMNS}, score_names, score_values) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            out,
        )
        last = rows[-1][0]
    conn.execute("DROP TABLE chip_scores_v3")


def _score_arrays(conn: sqlite3.Connection, root: Path) -> None:
    """v3 -> v4: chip scores stored as arrays (:func:`convert_json_scores`)."""
    convert_json_scores(conn)


MIGRATIONS: tuple[Migration, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE scenes (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,          -- absolute path or GDAL URL as given
        name TEXT NOT NULL,
        fingerprint TEXT NOT NULL UNIQUE,   -- content hash: same file at two paths is one scene
        driver TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        band_count INTEGER NOT NULL,
        dtype TEXT NOT NULL,
        crs TEXT,                           -- WKT, NULL = pixel coordinates
        transform TEXT NOT NULL,            -- JSON [a, b, c, d, e, f] (affine, pixel -> CRS)
        nodata REAL,
        bands TEXT NOT NULL,                -- JSON list of 3 1-based band indexes shown as RGB
        stretch TEXT,                       -- JSON [[lo, hi], ...] per shown band, NULL = none
        chip_size INTEGER NOT NULL,
        overlap REAL NOT NULL,
        added_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE chips (
        id INTEGER PRIMARY KEY,
        scene_id INTEGER NOT NULL REFERENCES scenes(id) ON DELETE CASCADE,
        col_off INTEGER NOT NULL,
        row_off INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        valid_fraction REAL NOT NULL,
        UNIQUE (scene_id, col_off, row_off, width, height)
    );
    CREATE INDEX chips_scene ON chips(scene_id);
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        path TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'trained',  -- trained (by geoal train) | external (given)
        parent_hash TEXT,
        round_id INTEGER,
        classes TEXT NOT NULL,              -- JSON list
        metrics TEXT,                       -- JSON
        created_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    -- One row per chip scored by a model: the "done" marker, written in the same
    -- transaction as the chip's detections and scores (resume = skip these).
    CREATE TABLE chip_scores (
        chip_id INTEGER NOT NULL REFERENCES chips(id) ON DELETE CASCADE,
        model_hash TEXT NOT NULL,
        views INTEGER NOT NULL,
        n_detections INTEGER NOT NULL,
        expected_count REAL NOT NULL,
        scores TEXT NOT NULL,               -- JSON {aggregation: value}
        embedding BLOB,                     -- float32 little-endian
        scored_at TEXT NOT NULL DEFAULT (datetime('now')),
        PRIMARY KEY (chip_id, model_hash)
    );
    CREATE TABLE detections (
        id INTEGER PRIMARY KEY,
        chip_id INTEGER NOT NULL REFERENCES chips(id) ON DELETE CASCADE,
        model_hash TEXT NOT NULL,
        x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,  -- chip pixels
        class_id INTEGER NOT NULL,
        confidence REAL NOT NULL,
        probs BLOB NOT NULL,                -- float32 class-score vector
        uncertainty TEXT NOT NULL           -- JSON {measure: value}
    );
    CREATE INDEX detections_chip ON detections(chip_id, model_hash);
    CREATE TABLE rounds (
        id INTEGER PRIMARY KEY,
        status TEXT NOT NULL DEFAULT 'open',   -- open | cancelled | labelled
        strategy TEXT NOT NULL,
        model_hash TEXT,
        seed INTEGER,
        budget TEXT NOT NULL,               -- JSON {"chips": k} or {"objects": n}
        params TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE round_chips (
        round_id INTEGER NOT NULL REFERENCES rounds(id) ON DELETE CASCADE,
        chip_id INTEGER NOT NULL REFERENCES chips(id) ON DELETE CASCADE,
        rank INTEGER NOT NULL,
        score REAL,
        reason TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (round_id, chip_id)
    );
    CREATE TABLE imports (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        format TEXT NOT NULL,
        n_chips INTEGER NOT NULL,
        n_boxes INTEGER NOT NULL,
        created_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    -- A chip with a row here is labelled; zero boxes = a labelled negative.
    CREATE TABLE labelled_chips (
        chip_id INTEGER PRIMARY KEY REFERENCES chips(id) ON DELETE CASCADE,
        import_id INTEGER REFERENCES imports(id),
        labelled_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE labels (
        id INTEGER PRIMARY KEY,
        chip_id INTEGER NOT NULL REFERENCES labelled_chips(chip_id) ON DELETE CASCADE,
        class_id INTEGER NOT NULL,
        x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL  -- chip pixels
    );
    CREATE INDEX labels_chip ON labels(chip_id);
    """,
    # v2: model paths inside the project relative to it (a moved or copied project finds its own)
    _relative_model_paths,
    # v3: the runtime that scored each chip (torch, openvino, onnxruntime); NULL = torch,
    # the only one before v3.
    """
    ALTER TABLE chip_scores ADD COLUMN backend TEXT;
    """,
    # v4: chip scores as float64 values + a names id instead of JSON text (read as arrays)
    _score_arrays,
)

SCHEMA_VERSION = len(MIGRATIONS)


SceneRecord = Scene  # the scene value is geoal.raster.scene.Scene; the store only encodes it

_SCENE_JSON = ("transform", "bands", "stretch")  # scene columns stored as JSON text


def scene_from_row(row: sqlite3.Row) -> Scene:
    """A :class:`Scene` from a ``scenes`` row (JSON text for transform, bands, stretch)."""
    v = dict(row)
    stretch = json.loads(v["stretch"]) if v["stretch"] else None
    return Scene(
        id=v["id"],
        path=v["path"],
        name=v["name"],
        fingerprint=v["fingerprint"],
        driver=v["driver"],
        width=v["width"],
        height=v["height"],
        band_count=v["band_count"],
        dtype=v["dtype"],
        crs=v["crs"],
        transform=tuple(json.loads(v["transform"])),
        nodata=v["nodata"],
        bands=tuple(json.loads(v["bands"])),
        stretch=tuple(tuple(b) for b in stretch) if stretch else None,
        chip_size=v["chip_size"],
        overlap=v["overlap"],
    )


def scene_values(scene: Scene) -> dict[str, Any]:
    """The ``scenes`` column values of a scene, id left out (the store gives it)."""
    values = {k: v for k, v in dataclasses.asdict(scene).items() if k != "id"}
    for key in _SCENE_JSON:
        if values[key] is not None:
            values[key] = json.dumps([list(v) if isinstance(v, tuple) else v for v in values[key]])
    return values


class Store:
    """A connection to one project's SQLite file, with typed queries.

    Use :meth:`transaction` for every write; reads can run at any time.
    """

    def __init__(self, path: Path, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        try:
            self.conn = sqlite3.connect(
                str(self.path), timeout=timeout_s, isolation_level=None, check_same_thread=False
            )
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            problem = environment_problem(exc)  # a folder that is not writable, a full disk
            if problem is not None:
                raise ProjectError(f"{self.path}: {problem}") from None
            raise ProjectError(f"{self.path}: not a usable geoal store ({exc})") from None

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def version(self) -> int:
        """The schema version of the open store."""
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.version
        if version > SCHEMA_VERSION:
            raise ProjectError(
                f"{self.path}: store schema v{version} is newer than this geoal "
                f"(v{SCHEMA_VERSION}); upgrade geoal"
            )
        for target in range(version, SCHEMA_VERSION):
            step = MIGRATIONS[target]
            with self.transaction():
                if isinstance(step, str):
                    for statement in _statements(step):
                        self.conn.execute(statement)
                else:
                    step(self.conn, self.path.resolve().parent)
                self.conn.execute(f"PRAGMA user_version = {target + 1}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise ProjectLockedError(
                    f"{self.path}: the store is busy (another geoal process is writing); retry"
                ) from None
            raise
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    # -- meta ---------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A value of the ``meta`` table."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a ``meta`` value (call inside a transaction)."""
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- scenes and chips ---------------------------------------------------

    def scenes(self) -> list[SceneRecord]:
        """All scenes, in the order they were added."""
        rows = self.conn.execute("SELECT * FROM scenes ORDER BY id").fetchall()
        return [scene_from_row(r) for r in rows]

    def scene(self, scene_id: int) -> SceneRecord:
        """One scene by id."""
        row = self.conn.execute("SELECT * FROM scenes WHERE id = ?", (scene_id,)).fetchone()
        if row is None:
            raise ProjectError(f"{self.path}: no scene with id {scene_id}")
        return scene_from_row(row)

    def find_scene(self, path: str, fingerprint: str | None = None) -> SceneRecord | None:
        """The scene stored under this path or with this content, if any."""
        row = self.conn.execute(
            "SELECT * FROM scenes WHERE path = ? OR fingerprint = ?", (path, fingerprint)
        ).fetchone()
        return None if row is None else scene_from_row(row)

    def insert_scene(self, scene: Scene, chips: np.ndarray, valid: np.ndarray) -> int:
        """Insert a scene (its ``id`` is not used) and its chip grid in one transaction.

        Returns the scene id.

        ``chips``: (N, 4) int [col_off, row_off, width, height] in scene pixels;
        ``valid``: (N,) float valid-pixel fraction of each chip, 0-1.
        """
        values = scene_values(scene)
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self.transaction() as conn:
            cur = conn.execute(
                f"INSERT INTO scenes ({cols}) VALUES ({marks})", tuple(values.values())
            )
            scene_id = int(cur.lastrowid or 0)
            conn.executemany(
                "INSERT INTO chips (scene_id, col_off, row_off, width, height, valid_fraction) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (scene_id, int(c[0]), int(c[1]), int(c[2]), int(c[3]), float(v))
                    for c, v in zip(chips, valid, strict=True)
                ],
            )
        return scene_id

    def move_scene(self, scene_id: int, path: str) -> None:
        """Record that a scene's file is now at ``path`` (same content: chips stay as tiled)."""
        with self.transaction() as conn:
            conn.execute("UPDATE scenes SET path = ? WHERE id = ?", (path, scene_id))

    def chip_windows(self, scene_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Chip ids (N,) and windows (N, 4) [col_off, row_off, width, height] of a scene."""
        rows = self.conn.execute(
            "SELECT id, col_off, row_off, width, height FROM chips WHERE scene_id = ? ORDER BY id",
            (scene_id,),
        ).fetchall()
        arr = np.asarray([tuple(r) for r in rows], dtype=np.int64).reshape(-1, 5)
        return arr[:, 0], arr[:, 1:]

    def chip(self, chip_id: int) -> sqlite3.Row:
        """One chip row by id."""
        row = self.conn.execute("SELECT * FROM chips WHERE id = ?", (chip_id,)).fetchone()
        if row is None:
            raise ProjectError(f"{self.path}: no chip with id {chip_id}")
        return row

    # -- models ---------------------------------------------------------------

    def register_model(
        self,
        model_hash: str,
        path: str,
        classes: Sequence[str],
        *,
        kind: str = "trained",
        parent_hash: str | None = None,
        round_id: int | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        """Record a model (idempotent: a known hash keeps its row, metrics are updated)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO models (hash, path, kind, parent_hash, round_id, classes, metrics) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(hash) DO UPDATE SET "
                "metrics = COALESCE(excluded.metrics, models.metrics)",
                (
                    model_hash,
                    path,
                    kind,
                    parent_hash,
                    round_id,
                    json.dumps(list(classes)),
                    None if metrics is None else json.dumps(metrics),
                ),
            )

    def latest_model(self, kind: str = "trained") -> sqlite3.Row | None:
        """The most recently registered model of ``kind``, or None."""
        return self.conn.execute(
            "SELECT * FROM models WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,)
        ).fetchone()

    # -- summaries ----------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Project-wide counts for ``geoal status``."""
        q = self.conn.execute
        live = (RoundState.CANCELLED.value,)  # rounds that were not cancelled
        return {
            "scenes": q("SELECT COUNT(*) FROM scenes").fetchone()[0],
            "chips": q("SELECT COUNT(*) FROM chips").fetchone()[0],
            "scored": q("SELECT COUNT(DISTINCT chip_id) FROM chip_scores").fetchone()[0],
            "selected": q(
                "SELECT COUNT(DISTINCT rc.chip_id) FROM round_chips rc "
                "JOIN rounds r ON r.id = rc.round_id WHERE r.status != ?",
                live,
            ).fetchone()[0],
            "labelled": q("SELECT COUNT(*) FROM labelled_chips").fetchone()[0],
            "labels": q("SELECT COUNT(*) FROM labels").fetchone()[0],
            "rounds": q("SELECT COUNT(*) FROM rounds WHERE status != ?", live).fetchone()[0],
            "models": q("SELECT COUNT(*) FROM models").fetchone()[0],
        }

    def scene_summaries(self) -> list[dict[str, Any]]:
        """Per-scene rows for ``geoal status``: size, dtype, CRS name, chip counts."""
        rows = self.conn.execute(
            """
            SELECT s.id, s.name, s.path, s.width, s.height, s.band_count, s.dtype, s.crs,
                   COUNT(c.id) AS chips,
                   COUNT(DISTINCT cs.chip_id) AS scored,
                   COUNT(DISTINCT lc.chip_id) AS labelled
            FROM scenes s
            LEFT JOIN chips c ON c.scene_id = s.id
            LEFT JOIN chip_scores cs ON cs.chip_id = c.id
            LEFT JOIN labelled_chips lc ON lc.chip_id = c.id
            GROUP BY s.id ORDER BY s.id
            """
        ).fetchall()
        return [dict(r) for r in rows]


def relative_model_path(root: Path, path: str) -> str:
    """How a model path is stored: relative (POSIX) when the file lies inside ``root``, else as is.

    Architecture names ("yolov8n.yaml") and files outside the project keep their form.
    """
    candidate = Path(path)
    if not candidate.is_absolute():
        return path
    try:
        return candidate.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path


def _statements(script: str) -> Sequence[str]:
    """Split a migration script into statements (no semicolons inside our SQL strings)."""
    lines = [ln.split("--", 1)[0] for ln in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
