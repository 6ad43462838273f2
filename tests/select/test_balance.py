"""Class-balance weights and per-chip factors (geoal.select.balance)."""

from __future__ import annotations

import numpy as np
import pytest

from geoal.select import balance_factors, class_weights


def test_balanced_counts_give_unit_weights() -> None:
    np.testing.assert_allclose(class_weights([5, 5, 5]), [1.0, 1.0, 1.0])


def test_rare_classes_weigh_more_and_weights_average_one() -> None:
    w = class_weights([0, 9, 99])
    assert w[0] > w[1] > w[2]
    assert w.mean() == pytest.approx(1.0)
    # 1 / (n + 1): 1, 0.1, 0.01, normalised to mean 1
    np.testing.assert_allclose(w / w[0], [1.0, 0.1, 0.01])


def test_factors_are_confidence_weighted_means_per_chip() -> None:
    w = np.array([2.0, 0.5])
    f = balance_factors([0, 0, 2], [0, 1, 1], [0.5, 0.5, 0.9], w, n_chips=4)
    np.testing.assert_allclose(f, [1.25, 1.0, 0.5, 1.0])  # chips 1 and 3: no detections -> 1


def test_factors_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="one length"):
        balance_factors([0], [0, 1], [0.5], [1.0, 1.0], 1)
    with pytest.raises(ValueError, match="class indices"):
        balance_factors([0], [3], [0.5], [1.0, 1.0], 1)
    with pytest.raises(ValueError, match="chip_index"):
        balance_factors([2], [0], [0.5], [1.0, 1.0], 2)
    with pytest.raises(ValueError, match="non-empty"):
        class_weights([])
    with pytest.raises(ValueError, match=">= 0"):
        class_weights([-1, 2])
