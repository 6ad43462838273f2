"""The offline helpers: ultralytics' font from matplotlib, its AMP check on a local model."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoal.train.offline import install_font, local_amp_weights
from tests.offline import assert_imports_none_of


def test_importing_geoal_train_imports_no_heavy_library() -> None:
    heavy = ("torch", "ultralytics", "albumentations", "pycocotools", "cv2")
    assert_imports_none_of("import geoal.train", heavy)


def test_font_lands_where_ultralytics_looks() -> None:
    from ultralytics.utils import USER_CONFIG_DIR
    from ultralytics.utils.checks import check_font

    font = install_font(["ship", "tank"])
    assert font == Path(USER_CONFIG_DIR) / "Arial.ttf" and font.stat().st_size > 100_000
    assert install_font(["ship"]) == font  # already there: kept
    check_font.__wrapped__.cache_clear()  # ThreadingLocked around functools.lru_cache
    assert Path(check_font("Arial.ttf")) == font  # found locally: no download
    unicode_font = install_font(["navire", "réservoir"])
    assert unicode_font is not None and unicode_font.name == "Arial.Unicode.ttf"


@pytest.mark.parametrize("kind", ["yaml", "pt"])
def test_amp_check_loads_the_local_model(tmp_path: Path, kind: str) -> None:
    import torch
    import ultralytics.utils
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    classes = ("ship", "tank")
    init = Path("yolov8n.yaml")
    if kind == "pt":
        model = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
        model.names = dict(enumerate(classes))
        init = tmp_path / "start.pt"
        torch.save({"model": model, "train_args": {}}, init)
    before = ultralytics.utils.WEIGHTS_DIR
    folder = tmp_path / "amp"
    with local_amp_weights(init, classes, folder):
        weights = ultralytics.utils.WEIGHTS_DIR / "yolo26n.pt"  # what check_amp loads
        assert weights.is_file()
        assert YOLO(weights).names == dict(enumerate(classes))
    assert before == ultralytics.utils.WEIGHTS_DIR
    assert not folder.exists()
