"""geoal's own exceptions: every error a user can hit is one of these.

The CLI turns them into one line on stderr and a non-zero exit code, never a
traceback. Messages name the file or value at fault and what to do about it.
"""

from __future__ import annotations

import errno
import sqlite3


class GeoalError(Exception):
    """Base class for every error geoal reports to a user."""

    exit_code = 1


class ConfigError(GeoalError):
    """A config file or a command-line option has an invalid value."""

    exit_code = 2


class ProjectError(GeoalError):
    """A folder is not a geoal project, or the project's store is unusable."""


class ProjectLockedError(ProjectError):
    """Another geoal process holds the project's write lock."""


class RasterError(GeoalError):
    """A scene cannot be opened or read: missing, truncated, not a raster, bad bands."""


class ModelError(GeoalError):
    """A detector cannot be loaded, or does not match the project's classes."""


class SelectionError(GeoalError):
    """A selection strategy was misused: unknown name, impossible budget, missing scores."""


class FormatError(GeoalError):
    """An annotation file cannot be exported or imported (its report says what and where)."""


class EnvironmentProblem(GeoalError):
    """The machine refused: a folder that is not writable, a full disk, a symlink loop."""


_HINTS = {
    errno.EACCES: "permission denied: make it writable (or readable) for you, or choose another",
    errno.EPERM: "operation not permitted: check its permissions, or choose another",
    errno.EROFS: "on a read-only file system: choose another folder",
    errno.ENOSPC: "no space left on the device: free some space and run the command again "
    "(what was finished is saved)",
    errno.EDQUOT: "disk quota exceeded: free some space and run the command again",
    errno.ELOOP: "symlink loop (a link that points back to itself); fix or remove the link",
    errno.ENAMETOOLONG: "name too long",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
}


def environment_problem(exc: BaseException) -> EnvironmentProblem | None:
    """A one-line EnvironmentProblem for an OSError or SQLite error of the machine, else None.

    Covers what a user's machine does to a command (permissions, full disk, symlink
    loops, a read-only store), not geoal's bugs: anything else gives None.
    """
    if isinstance(exc, OSError) and exc.errno in _HINTS:
        where = exc.filename if exc.filename is not None else "geoal"
        return EnvironmentProblem(f"{where}: {_HINTS[exc.errno]}")
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        if "readonly" in text or "read-only" in text:
            return EnvironmentProblem(
                f"the project's store cannot be written ({text}): make the project folder and "
                "geoal.db writable for you"
            )
        if "full" in text:
            return EnvironmentProblem(f"the project's store: {_HINTS[errno.ENOSPC]}")
        if "disk I/O error" in text or "unable to open database file" in text:
            return EnvironmentProblem(
                f"the project's store cannot be written ({text}): check that the project "
                "folder is writable and its disk has space"
            )
    return None
