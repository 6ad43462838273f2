"""Wires the steps together: the only package that calls across stages.

Each function takes an open :class:`~geoal.project.Project`, calls the pure and
I/O functions of one or more stages and writes the results to the store. The
CLI is a thin layer over these. ``catalog``: tile, status, chip map;
``scoring``: score chips with a detector.
"""
