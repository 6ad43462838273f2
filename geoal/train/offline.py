"""Keep an ultralytics training run off the network: its font and its AMP check.

ultralytics downloads two things while training, whatever ``YOLO_OFFLINE`` says:

- ``Arial.ttf`` (``Arial.Unicode.ttf`` for non-ASCII class names): every dataset
  check calls ``check_font``, which looks in ultralytics' settings folder, then
  among matplotlib's known fonts, then asks the network. ``install_font`` puts
  the DejaVu Sans that ships with matplotlib there under that name, so the look
  up ends in the settings folder and the plots (labels drawn on images) work.
- ``yolo26n.pt``, for the mixed precision (AMP) check of a CUDA run: ultralytics
  compares fp32 and fp16 predictions of that model on its bundled ``bus.jpg``.
  ``local_amp_weights`` points ultralytics' weights folder, for the run, at a
  folder holding the run's own starting model under that name, so the check
  runs on a model that is already on disk. On the CPU AMP is off (``amp=False``)
  and there is no check.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

_AMP_WEIGHTS_NAME = "yolo26n.pt"  # the name ultralytics' check_amp loads from WEIGHTS_DIR


def install_font(classes: Sequence[str]) -> Path | None:
    """Copy matplotlib's DejaVuSans.ttf to where ultralytics looks for its Arial font.

    Returns the font's path, or None when the settings folder is not writable
    (ultralytics would then try to download the font, and go on without it).
    """
    import matplotlib
    from ultralytics.utils import USER_CONFIG_DIR
    from ultralytics.utils.checks import is_ascii

    name = "Arial.ttf" if is_ascii(list(classes)) else "Arial.Unicode.ttf"
    target = Path(USER_CONFIG_DIR) / name
    if target.is_file():
        return target
    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy then rename: a concurrent run never sees half a font file.
        with (
            source.open("rb") as font,
            tempfile.NamedTemporaryFile(dir=target.parent, suffix=".ttf", delete=False) as tmp,
        ):
            shutil.copyfileobj(font, tmp)
        os.replace(tmp.name, target)
    except OSError:
        return None
    return target


@contextmanager
def local_amp_weights(init: Path, classes: Sequence[str], folder: Path) -> Iterator[None]:
    """Within the block, ultralytics' AMP check loads ``init`` (a .pt or .yaml) from ``folder``.

    A .pt is linked (or copied) there; a .yaml is built for ``classes`` and saved.
    ultralytics' weights folder is restored on exit and ``folder`` removed.
    """
    import ultralytics.utils

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / _AMP_WEIGHTS_NAME
    target.unlink(missing_ok=True)
    if init.suffix.lower() == ".pt":
        try:
            target.symlink_to(init.resolve())
        except OSError:
            shutil.copyfile(init, target)
    else:
        _save_yaml_model(init, classes, target)
    saved = ultralytics.utils.WEIGHTS_DIR
    ultralytics.utils.WEIGHTS_DIR = folder  # check_amp imports the name at call time
    try:
        yield
    finally:
        ultralytics.utils.WEIGHTS_DIR = saved
        shutil.rmtree(folder, ignore_errors=True)


def _save_yaml_model(spec: Path, classes: Sequence[str], target: Path) -> None:
    import torch
    from ultralytics.nn.tasks import DetectionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = DetectionModel(str(spec), nc=len(classes), verbose=False)
    model.names = dict(enumerate(classes))
    torch.save({"model": model, "train_args": {}}, target)
