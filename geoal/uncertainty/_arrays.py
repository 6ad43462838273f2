"""Shape checks and name look-ups shared by the uncertainty modules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import numpy as np
import numpy.typing as npt

T = TypeVar("T")


def as_float(x: npt.ArrayLike, ndim: int, name: str) -> npt.NDArray[np.float64]:
    """``x`` as a float64 array of ``ndim`` dimensions, or ValueError naming ``name``."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def lookup(registry: Mapping[str, T], name: str, kind: str) -> T:
    """``registry[name]``, or ValueError listing the valid names."""
    try:
        return registry[name]
    except KeyError:
        valid = ", ".join(sorted(registry))
        raise ValueError(f"unknown {kind} {name!r}; valid names: {valid}") from None
