"""Report figures: a colour scale that means something, overlaps painted once, readable gallery."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from geoal.formats import Boxes
from geoal.report import figures
from geoal.report.html import _shown_detections


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_tiny_scores_are_shown_as_percentiles_and_say_so() -> None:
    scores = np.array([3e-14, np.nan, 1.3e-13, 0.0, 1.3e-13])
    values, label = figures.score_scale(scores)
    assert "percentile" in label
    assert np.isnan(values[1])
    assert values[3] == 0.0 and values[2] == values[4] == 100.0 * 2 / 3  # ties share a rank
    assert 0.0 < values[0] < values[2]


def test_scores_with_a_real_spread_are_shown_as_they_are() -> None:
    scores = np.array([0.02, 0.4, np.nan, 0.9])
    values, label = figures.score_scale(scores)
    assert label == "chip score"
    np.testing.assert_array_equal(values, scores)
    assert np.isnan(figures.score_scale(np.array([np.nan]))[0]).all()


def test_overlapping_chips_are_painted_once_with_the_higher_score() -> None:
    windows = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 0, 10, 10]])
    raster = figures.score_raster((10, 40), 1.0, windows, np.array([0.7, 0.2, np.nan]))
    assert (raster[:, 0:5] == 0.7).all() and (raster[:, 5:10] == 0.7).all()  # overlap: max
    assert (raster[:, 10:15] == 0.2).all()
    assert np.isnan(raster[:, 15:]).all()  # gap and unscored chip stay clear
    half = figures.score_raster((5, 20), 0.5, windows, np.array([0.2, 0.7, 0.1]))
    assert (half[:, 2:5] == 0.7).all() and (half[:, 10:15] == 0.1).all()


def test_score_map_of_tiny_scores_is_not_blank() -> None:
    overview = np.full((60, 80, 3), 90, dtype=np.uint8)
    windows = np.array([[c, r, 40, 40] for r in (0, 20) for c in (0, 20, 40)])
    scores = np.linspace(0, 1.3e-13, len(windows))
    png = figures.score_map_png(overview, 1.0, windows, scores, ["labelled"] + ["other"] * 5, "s")
    pix = _pixels(png)
    assert len(np.unique(pix.reshape(-1, 3), axis=0)) > 50  # colours, not a flat frame


def test_gallery_draws_only_confident_detections_with_class_and_score() -> None:
    boxes = Boxes(
        xyxy=np.array([[0, 0, 5, 5], [1, 1, 6, 6], [2, 2, 9, 9], [3, 3, 7, 7]], dtype=float),
        cls=np.array([0, 1, 1, 0]),
        score=np.array([0.05, 0.9, 0.3, 0.25]),
    )
    xyxy, texts, hidden = _shown_detections(boxes, ("ship", "tank"), 0.25)
    assert texts == ["tank 0.90", "tank 0.30", "ship 0.25"] and hidden == 1
    np.testing.assert_array_equal(xyxy[0], [1, 1, 6, 6])
    assert _shown_detections(boxes, ("ship", "tank"), 0.25, limit=1)[2] == 3
    assert _shown_detections(None, ("ship",), 0.25)[2] == 0


def test_chip_draws_detections_yellow_and_labels_green() -> None:
    chip = np.full((64, 64, 3), 40, dtype=np.uint8)
    png = figures.chip_png(
        chip,
        np.array([[10.0, 10.0, 30.0, 30.0]]),
        ["ship 0.91"],
        "t",
        truth=np.array([[35.0, 35.0, 60.0, 60.0]]),
    )
    pix = _pixels(png).astype(int)
    yellow = (pix[..., 0] > 200) & (pix[..., 1] > 200) & (pix[..., 2] < 80)
    green = (pix[..., 1] > 200) & (pix[..., 0] < 80) & (pix[..., 2] < 80)
    assert yellow.sum() > 50 and green.sum() > 50


def test_class_ap_marks_classes_without_objects() -> None:
    png = figures.class_ap_png([("round 1", {"ship": 0.5, "tank": None})], ("ship", "tank"))
    assert _pixels(png).std() > 0
