"""Training augmentation for overhead imagery: the knobs, and how they reach ultralytics.

Seen from above, a scene has no "up": an object looks the same flipped or turned
by 90 degrees. ultralytics flips (``fliplr``, ``flipud``) but does not turn by
90 degrees, so a rotation is added through ultralytics' own hook for custom
albumentations transforms (the ``augmentations`` training argument): an
``albumentations.RandomRotate90`` that turns the image and its boxes by a random
multiple of 90 degrees. ultralytics applies it after mosaic / affine and before
its flips, on the square training image, to image and boxes together (it is a
spatial transform, so ultralytics passes the boxes through it), and seeds it
from torch, so a run is reproducible. With ``rot90=1`` and both flips at 0.5 the
8 symmetries of the square are equally likely.

Mosaic is off by default: the active-learning rounds train on a few hundred
chips for a few epochs, where mosaic's cut-up composites are a large share of
what the model sees and unlike the whole chips it will score (ultralytics
itself turns mosaic off for the last ``close_mosaic`` epochs for this reason).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from geoal.errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation knobs of a training run (probabilities are 0-1; gains as in ultralytics).

    Attributes:
        fliplr: probability of a left-right flip.
        flipud: probability of an up-down flip.
        rot90: probability of turning by a random multiple of 90 degrees (0, 90,
            180 or 270, equally likely, so a quarter of these are no turn).
        mosaic: probability of a 4-image mosaic.
        close_mosaic: train the last this many epochs without mosaic.
        scale: random zoom gain (+/- fraction).
        translate: random shift (+/- fraction of the image).
        degrees: random rotation by up to +/- this many degrees (boxes grow: keep 0).
        hsv_h: hue gain (fraction).
        hsv_s: saturation gain (fraction).
        hsv_v: value (brightness) gain (fraction).
        mixup: probability of mixing two images.
    """

    fliplr: float = 0.5
    flipud: float = 0.5
    rot90: float = 1.0
    mosaic: float = 0.0
    close_mosaic: int = 0
    scale: float = 0.25
    translate: float = 0.1
    degrees: float = 0.0
    hsv_h: float = 0.015
    hsv_s: float = 0.5
    hsv_v: float = 0.3
    mixup: float = 0.0

    def __post_init__(self) -> None:
        for name in ("fliplr", "flipud", "rot90", "mosaic", "mixup", "hsv_h", "hsv_s", "hsv_v"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"augment.{name} must be in [0, 1], got {value}")
        if not 0.0 <= self.translate <= 1.0:
            raise ConfigError(f"augment.translate must be in [0, 1], got {self.translate}")
        if not 0.0 <= self.scale < 1.0:
            raise ConfigError(f"augment.scale must be in [0, 1), got {self.scale}")
        if not 0.0 <= self.degrees <= 180.0:
            raise ConfigError(f"augment.degrees must be in [0, 180], got {self.degrees}")
        if self.close_mosaic < 0:
            raise ConfigError(f"augment.close_mosaic must be >= 0, got {self.close_mosaic}")


def ultralytics_augment_args(config: AugmentConfig) -> dict[str, Any]:
    """ultralytics training arguments for ``config``, the 90-degree turn included."""
    args = asdict(config)
    rot90 = args.pop("rot90")
    args["augmentations"] = rot90_transforms(rot90)
    return args


def rot90_transforms(p: float) -> list[Any]:
    """The albumentations transforms that turn image and boxes by k * 90 degrees with prob ``p``.

    They replace ultralytics' default albumentations (1 % blur, CLAHE, grey),
    which an empty list turns off as well.
    """
    # albumentations asks PyPI for a newer version on import unless told not to.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A

    return [A.RandomRotate90(p=p)] if p > 0 else []
