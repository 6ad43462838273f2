"""Builders shared by the geoal.detect tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ("car", "ship", "plane")
CHIP = 128  # pixels: anchors 16*16 + 8*8 + 4*4 = 336, fast on 2 CPU cores

# The documented numpy operation of each view, written independently of views.py.
NUMPY_OPS = {
    "identity": lambda a: a,
    "hflip": np.fliplr,
    "vflip": np.flipud,
    "rot90": lambda a: np.rot90(a, 1),
    "rot180": lambda a: np.rot90(a, 2),
    "rot270": lambda a: np.rot90(a, 3),
    "transpose": lambda a: a.swapaxes(0, 1),
    "antitranspose": lambda a: np.rot90(a, 2).swapaxes(0, 1),
}
# Where the continuous pixel point (x, y) of a chip of side s lands, as documented.
POINT_MAPS = {
    "identity": lambda x, y, s: (x, y),
    "hflip": lambda x, y, s: (s - x, y),
    "vflip": lambda x, y, s: (x, s - y),
    "rot90": lambda x, y, s: (y, s - x),
    "rot180": lambda x, y, s: (s - x, s - y),
    "rot270": lambda x, y, s: (s - y, x),
    "transpose": lambda x, y, s: (y, x),
    "antitranspose": lambda x, y, s: (s - y, s - x),
}


def make_checkpoint(path: Path, classes: tuple[str, ...], seed: int = 0) -> Path:
    """Save a random yolov8n for ``classes`` whose outputs depend on the input.

    A freshly initialised YOLO's activations shrink layer by layer (feature maps
    with std ~1e-9), so its scores hardly depend on the image. Calibrating the
    BatchNorm running statistics on chips like ``make_chips``'s (a data-dependent
    init) keeps unit-scale activations; damped output layers then give class
    scores spread over (0, 1) and boxes a few strides wide.
    """
    import torch
    from ultralytics.nn.tasks import DetectionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DetectionModel("yolov8n.yaml", nc=len(classes), verbose=False)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None  # cumulative average over the calibration batches
        model.train()
        with torch.no_grad():
            for seed in (100, 101):
                chips = torch.from_numpy(make_chips(4, seed=seed)).permute(0, 3, 1, 2)
                model(chips.float() / 255)
    model.eval()
    head = model.model[-1]
    for branch in head.cv3:  # class logits around 0, rarely saturated
        branch[-1].weight.data.mul_(0.3)
        branch[-1].bias.data.zero_()
    bins = torch.arange(head.reg_max, dtype=torch.float32).repeat(4)
    for branch in head.cv2:  # box sides of a few strides, not the whole chip
        branch[-1].weight.data.mul_(0.3)
        branch[-1].bias.data.copy_(-0.7 * bins)
    model.names = dict(enumerate(classes))
    torch.save({"model": model, "train_args": {}}, path)
    return path


def make_chips(n: int, size: int = CHIP, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8 RGB chips: random rectangles on smooth noise, asymmetric."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    chips = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        base = (
            60 + 40 * np.sin(6 * x + 3 * y * y + i)[..., None] + rng.normal(0, 8, (size, size, 3))
        )
        for _ in range(6):
            x0, y0 = rng.integers(0, size - 16, 2)
            w, h = rng.integers(6, 40, 2)
            base[y0 : y0 + h, x0 : x0 + w] = rng.integers(0, 256, 3)
        chips[i] = np.clip(base, 0, 255).astype(np.uint8)
    return chips
