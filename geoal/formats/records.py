"""Plain records the formats read and write: a chip's boxes, an import's report.

With chips (:class:`geoal.raster.chip.Chip`), every ``to_*`` / ``from_*`` function takes
and returns these, so the formats never touch the database or open a raster.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, eq=False)
class Boxes:
    """The boxes of one chip: ``xyxy`` (N, 4) float64 [x1, y1, x2, y2] in chip pixels,
    ``cls`` (N,) int64 class index, ``score`` (N,) float64 confidence or None for labels.

    Arrays are copied and made read-only, so a Boxes is a value.
    """

    xyxy: npt.NDArray[np.float64]
    cls: npt.NDArray[np.int64]
    score: npt.NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        xyxy = np.array(self.xyxy, dtype=np.float64)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (N, 4), got {xyxy.shape}")
        cls = np.array(self.cls, dtype=np.int64).reshape(-1)
        if cls.shape != (len(xyxy),):
            raise ValueError(f"cls must have shape ({len(xyxy)},), got {cls.shape}")
        arrays = [xyxy, cls]
        score = None
        if self.score is not None:
            score = np.array(self.score, dtype=np.float64).reshape(-1)
            if score.shape != (len(xyxy),):
                raise ValueError(f"score must have shape ({len(xyxy)},), got {score.shape}")
            arrays.append(score)
        for a in arrays:
            a.setflags(write=False)
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "cls", cls)
        object.__setattr__(self, "score", score)

    def __len__(self) -> int:
        return len(self.xyxy)

    @classmethod
    def empty(cls) -> Boxes:
        """No boxes: a labelled negative when stored as a chip's labels."""
        return cls(np.zeros((0, 4)), np.zeros(0, dtype=np.int64))

    @property
    def is_prediction(self) -> bool:
        """True when the boxes carry confidences (model output), False for labels."""
        return self.score is not None


@dataclass(frozen=True)
class Problem:
    """One thing wrong in an imported file: which file, where in it, and what."""

    source: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.where}: {self.message}"


@dataclass(frozen=True)
class ImportResult:
    """What an import found: labels per chip (empty Boxes = labelled negative) and problems.

    ``duplicates`` lists chips that more than one entry of the file labelled (the last won).
    A chip absent from ``labels`` is unlabelled. The caller decides whether any problem
    refuses the whole import. ``notes`` are worth telling but refuse nothing (a feature of
    a whole-scene label file that lies outside the chips being labelled).

    ``predictions`` lists the boxes that carry a model's marker (COCO ``score``, a GeoJSON
    ``kind: prediction`` or confidence, a Label Studio prediction taken on request): they
    are in ``labels`` too, and the caller refuses them unless the user accepts predictions.
    ``unreviewed`` counts chips that only a model's predictions cover (left unlabelled),
    ``uncovered`` the chips offered that the file does not cover (left alone), and ``info``
    holds one-line facts for the report (which property named the classes).
    """

    labels: dict[int, Boxes]
    problems: list[Problem] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    predictions: list[Problem] = field(default_factory=list)
    unreviewed: int = 0
    uncovered: list[int] = field(default_factory=list)
    info: list[str] = field(default_factory=list)

    @property
    def n_boxes(self) -> int:
        """Boxes over all labelled chips."""
        return sum(len(b) for b in self.labels.values())
