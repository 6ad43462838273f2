"""``python -m geoal.cli``: the same as the ``geoal`` command."""

from geoal.cli import main

main()
