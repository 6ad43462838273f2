"""The ``geoal`` command line: thin commands that parse, open the project, call one function, print.

Errors of geoal's own type become one line on stderr and a non-zero exit code.
Commands live by stage: ``scenes`` (init, tile, status, map, demo), ``rounds``
(score, select, rounds, export, import, labelstudio) and ``models`` (train,
evaluate, report, simulate, predict, merge-shards); importing this package
registers them on :func:`main` (and imports nothing heavy).
"""

from geoal.cli import models, rounds, scenes  # noqa: F401  (registers the commands)
from geoal.cli.base import main

__all__ = ["main"]
