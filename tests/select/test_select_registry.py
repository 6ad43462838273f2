"""The strategy registry: names, look-up, and the error that lists the valid names."""

from __future__ import annotations

import numpy as np
import pytest

from geoal.errors import GeoalError, SelectionError
from geoal.select import (
    STRATEGIES,
    Budget,
    SelectionPool,
    get_strategy,
    list_strategies,
    select_hybrid,
)


def test_list_strategies_is_sorted_and_complete() -> None:
    assert list_strategies() == [
        "adaptive",
        "coreset",
        "hybrid",
        "random",
        "typiclust",
        "uncertainty",
    ]
    assert set(STRATEGIES) == set(list_strategies())


def test_get_strategy_returns_the_registered_function() -> None:
    assert get_strategy("hybrid") is select_hybrid


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(SelectionError) as info:
        get_strategy("badge")
    message = str(info.value)
    assert "'badge'" in message
    for name in list_strategies():
        assert name in message
    assert isinstance(info.value, GeoalError)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_runs_with_the_common_signature(name: str) -> None:
    rng = np.random.default_rng(0)
    pool = SelectionPool(scores=rng.random(20), embeddings=rng.random((20, 4)))
    sel = get_strategy(name)(pool, Budget(k=5), np.random.default_rng(1), None)
    assert sel.indices.dtype == np.int64
    assert sel.indices.shape == (5,) == sel.reasons.shape
    assert len(set(sel.indices.tolist())) == 5
    # adaptive says which ranking it used; the others speak only of fallbacks or shortfalls
    assert sel.complete and (sel.note == "" or sel.note.startswith(f"{name}: "))
