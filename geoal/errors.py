"""geoal's own exceptions: every error a user can hit is one of these.

The CLI turns them into one line on stderr and a non-zero exit code, never a
traceback. Messages name the file or value at fault and what to do about it.
"""

from __future__ import annotations


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
