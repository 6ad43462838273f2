"""Shard files: a small SQLite file per ``geoal score --shard I/N`` job.

A shard file holds the store's own ``chip_scores`` and ``detections`` tables
(:func:`geoal.store.scores.scores_ddl`, filled by the same inserts), a ``meta`` table
(what run made it) and the fingerprints of the scenes it read. It has no ``chips`` table:
foreign keys stay off, chip ids are the project's. One job writes a shard file, so its
transactions are sqlite3's own (``with file.conn:`` commits, or rolls back on an error).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from geoal.errors import ConfigError
from geoal.store import convert_json_scores
from geoal.store.scores import scores_ddl

_SHARD_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS scenes (id INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL)",
)


@contextmanager
def open_shard_file(path: Path, hint: str = "") -> Iterator[ShardFile]:
    """The shard file at ``path`` (made on first write), closed on exit.

    ``hint`` ends the message of the ConfigError raised for a file that is not a shard file.
    """
    conn = sqlite3.connect(str(path))
    try:
        yield ShardFile(conn, Path(path), hint)
    finally:
        conn.close()


@dataclass(frozen=True)
class ShardFile:
    """An open shard file: its connection and typed queries (writes inside ``with conn:``)."""

    conn: sqlite3.Connection
    path: Path
    hint: str = ""

    def _not_a_shard(self, exc: sqlite3.DatabaseError) -> ConfigError:
        return ConfigError(f"{self.path}: not a geoal shard file ({exc}){self.hint}")

    def create(self) -> None:
        """Create the tables if missing; upgrade a file of an earlier geoal (:meth:`upgrade`)."""
        try:
            self.conn.execute("PRAGMA synchronous=NORMAL")
            for statement in (*_SHARD_TABLES, *scores_ddl()):
                self.conn.execute(statement)
            self.upgrade()
        except sqlite3.DatabaseError as exc:
            raise self._not_a_shard(exc) from None

    def upgrade(self) -> None:
        """Give a shard file of an earlier geoal the store's form: the ``backend`` column
        (NULL: torch) and chip scores as arrays (:func:`geoal.store.convert_json_scores`)."""
        try:
            columns = {row[1] for row in self.conn.execute("PRAGMA table_info(chip_scores)")}
            if "backend" in columns and "scores" not in columns:
                return
            with self.conn:
                self.conn.execute("BEGIN")
                if "backend" not in columns:
                    self.conn.execute("ALTER TABLE chip_scores ADD COLUMN backend TEXT")
                if "scores" in columns:
                    convert_json_scores(self.conn)
        except (sqlite3.DatabaseError, ValueError) as exc:
            raise ConfigError(
                f"{self.path}: a shard file of an earlier geoal that cannot be upgraded ({exc}); "
                "score its chips again"
            ) from None

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
