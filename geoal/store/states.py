"""Round states, said once: the values stored in ``rounds.state``."""

from __future__ import annotations

from enum import StrEnum


class RoundState(StrEnum):
    """Where a selection round stands.

    - ``OPEN``: selected, waiting for labels (at most one round is open at a time).
    - ``LABELLED``: its labels were imported.
    - ``CANCELLED``: given up; its chips are candidates again.
    """

    OPEN = "open"
    LABELLED = "labelled"
    CANCELLED = "cancelled"
