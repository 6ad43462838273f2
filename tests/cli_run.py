"""Run the ``geoal`` command line in-process, as the CLI tests do."""

from __future__ import annotations

from click.testing import CliRunner, Result

from geoal.cli import main


def run(*args: str, ok: bool = True) -> Result:
    """``geoal ARGS``; with ``ok`` (the default) the exit code must be 0."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result
