"""``geoal train`` output: one progress bar, not ultralytics' wall of text (-q: no bar)."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import train_tiny

pytestmark = pytest.mark.slow


def test_training_shows_one_progress_bar(
    tiny_dataset: Path, classes: tuple[str, ...], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    train_tiny(tiny_dataset, classes, tmp_path, progress=True)
    out, err = capfd.readouterr()
    text = out + err
    # none of ultralytics' banner, model summary, epoch tables or colours (worse in a log file)
    for wall in ("Ultralytics", "Starting training", "epochs completed", "Validating", "\x1b["):
        assert wall not in text, wall
    assert "training: 100%" in err and "mAP50=" in err
