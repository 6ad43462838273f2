"""Shard files: a small SQLite file per ``geoal score --shard I/N`` job.

A shard file holds the store's own ``chip_scores`` and ``detections`` tables
(:func:`geoal.store.scores.scores_ddl`, filled by the same inserts), a ``meta`` table
(what run made it) and the fingerprints of the scenes it read. It has no ``chips`` table:
foreign keys stay off, chip ids are the project's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from geoal.errors import ConfigError, ProjectLockedError
from geoal.store.scores import scores_ddl

_SHARD_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS scenes (id INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL)",
)


@contextmanager
def transaction(conn: sqlite3.Connection, path: Path) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT on ``conn`` (the file ``path``), rolled back on any exception."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            raise ProjectLockedError(
                f"{path}: the file is busy (another geoal process is writing); retry"
            ) from None
        raise
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class ShardFile:
    """An open shard file. ``hint`` ends the message of the ConfigError for a file that is not one."""

    def __init__(self, path: Path, hint: str = "") -> None:
        self.path = Path(path)
        self.hint = hint
        self.conn = sqlite3.connect(str(self.path), isolation_level=None)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> ShardFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction on the shard file."""
        return transaction(self.conn, self.path)

    def _not_a_shard(self, exc: sqlite3.DatabaseError) -> ConfigError:
        return ConfigError(f"{self.path}: not a geoal shard file ({exc}){self.hint}")

    def create(self) -> None:
        """Create the tables if missing; give a file of an earlier geoal the ``backend`` column."""
        try:
            self.conn.execute("PRAGMA synchronous=NORMAL")
            for statement in (*_SHARD_TABLES, *scores_ddl()):
                self.conn.execute(statement)
            self.upgrade()
        except sqlite3.DatabaseError as exc:
            raise self._not_a_shard(exc) from None

    def upgrade(self) -> None:
        """Add the ``backend`` column (NULL: torch) to a shard file of an earlier geoal."""
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(chip_scores)")}
        if "backend" not in columns:
            self.conn.execute("ALTER TABLE chip_scores ADD COLUMN backend TEXT")

    def meta(self) -> dict[str, str]:
        """The ``meta`` table: what run wrote the file ({} for a new file)."""
        try:
            return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise self._not_a_shard(exc) from None

    def set_meta(self, values: Mapping[str, str]) -> None:
        """Set ``meta`` values (inside a transaction)."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items())
        )

    def scene_fingerprints(self) -> dict[int, str]:
        """The content fingerprint of every scene the shard read, by scene id."""
        return dict(self.conn.execute("SELECT id, fingerprint FROM scenes").fetchall())

    def set_scene_fingerprints(self, fingerprints: Mapping[int, str]) -> None:
        """Record the scenes' fingerprints (inside a transaction)."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO scenes (id, fingerprint) VALUES (?, ?)",
            list(fingerprints.items()),
        )
