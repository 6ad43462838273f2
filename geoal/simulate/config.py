"""The settings of a label-efficiency simulation, checked once (a frozen dataclass)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from geoal.errors import ConfigError
from geoal.train.augment import AugmentConfig

BudgetUnit = Literal["images", "boxes"]
StartFrom = Literal["previous", "init"]

DEFAULT_BUDGETS = (0.05, 0.10, 0.15, 0.20, 0.30)


@dataclass(frozen=True)
class SimConfig:
    """What to simulate: the pool, the test set, the arms, the budgets and the training recipe.

    Attributes:
        data: COCO JSON of the pool; its labels are hidden and revealed by the oracle.
        images: folder of the pool's image files (COCO ``file_name`` is relative to it).
        test_data: COCO JSON of the fixed test set (evaluation only, never selected from).
        test_images: folder of the test images; None = ``images``.
        out: output folder (results.csv, summary.json, learning_curves.png, state/).
        strategies: names in ``geoal.select.STRATEGIES``; "random" is the control arm.
        seeds: one run per (strategy, seed); round 0 of a seed is the same for every strategy.
        budgets: cumulative labelled fractions of the pool (of its images, or of its boxes with
            ``budget_unit="boxes"``), one per round, strictly increasing, in (0, 1].
        budget_unit: "images": round r holds exactly round(budgets[r] * pool images) images;
            "boxes": images are bought until their true box count reaches the round's target.
        epochs: training epochs per round (at least; see ``min_iterations``).
        min_iterations: a round trains at least this many optimiser steps: its epochs are
            ``max(epochs, ceil(min_iterations * batch / labelled images))``, so the first,
            small rounds are not under-trained (0 = ``epochs`` always).
        full_epochs: epochs of the full-pool ceiling; None = epochs * len(budgets).
        imgsz: training and inference size in pixels (long side; a multiple of 32).
        batch: training batch size.
        device: "cpu" or "cuda:N".
        backend: runtime of the pool's scoring (torch, openvino, onnxruntime; None = auto, see
            ``geoal.detect.backends``); not part of the experiment key (results agree).
        init: model to start from: a .yaml architecture or a local .pt (other classes are fine:
            its weights are carried over under a new head, see ``geoal.simulate.model``).
        start: "previous" fine-tunes each round from the previous round's weights (cheaper);
            "init" trains every round afresh from ``init``.
        views: label-preserving views when scoring the pool (as ``geoal score --views``).
        aggregation: chip score to rank by (a key of ``ChipScores.scores``: miaod, max, ...).
        top_k: k of the top-k aggregations.
        conf: minimum confidence of the detections kept when scoring (expected counts).
        val_images: at most this many labelled images form ultralytics' val split (they are
            trained on too: the split only picks the best epoch; the test set is the judge).
        random_rounds: the first this many acquisitions of every arm are random (a warm-up
            before the strategy takes over; 0 = the strategy chooses from round 1 on).
        class_balance: multiply each image's score by the mean inverse-frequency weight of its
            detections' classes among the labels so far (``geoal.select.balance``).
        full_pool: also train once on the whole pool, the ceiling (row strategy "full").
        augment: training augmentation.
    """

    data: Path
    images: Path
    test_data: Path
    out: Path
    test_images: Path | None = None
    strategies: tuple[str, ...] = ("random", "adaptive")
    seeds: tuple[int, ...] = (0, 1, 2)
    budgets: tuple[float, ...] = DEFAULT_BUDGETS
    budget_unit: BudgetUnit = "images"
    epochs: int = 10
    min_iterations: int = 0
    full_epochs: int | None = None
    imgsz: int = 640
    batch: int = 16
    device: str = "cpu"
    backend: str | None = None
    init: str = "yolov8n.yaml"
    start: StartFrom = "previous"
    views: int = 2
    aggregation: str = "miaod"
    top_k: int = 3
    conf: float = 0.05
    val_images: int = 16
    class_balance: bool = False
    random_rounds: int = 0
    full_pool: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        from geoal.select import list_strategies

        for name in ("data", "images", "test_data", "out"):
            object.__setattr__(self, name, Path(getattr(self, name)).expanduser())
        if self.test_images is not None:
            object.__setattr__(self, "test_images", Path(self.test_images).expanduser())
        object.__setattr__(self, "strategies", tuple(self.strategies))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "budgets", tuple(float(b) for b in self.budgets))
        unknown = [s for s in self.strategies if s not in list_strategies()]
        if unknown or not self.strategies:
            raise ConfigError(
                f"--strategies: unknown {unknown or 'none given'}; valid: {', '.join(list_strategies())}"
            )
        if len(set(self.strategies)) != len(self.strategies) or "full" in self.strategies:
            raise ConfigError(f"--strategies must be distinct, got {list(self.strategies)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds must be distinct integers, got {list(self.seeds)}")
        b = self.budgets
        if not b or any(not 0 < x <= 1 for x in b) or any(y <= x for x, y in pairwise(b)):
            raise ConfigError(
                f"--budgets must be increasing cumulative fractions of the pool in (0, 1], got {list(b)}"
            )
        if self.budget_unit not in ("images", "boxes"):
            raise ConfigError(f"--budget-unit must be images or boxes, got {self.budget_unit!r}")
        if self.start not in ("previous", "init"):
            raise ConfigError(f"--start must be previous or init, got {self.start!r}")
        if self.epochs < 1 or (self.full_epochs is not None and self.full_epochs < 1):
            raise ConfigError(f"epochs must be >= 1, got {self.epochs} / {self.full_epochs}")
        if self.imgsz < 32 or self.imgsz % 32:
            raise ConfigError(f"--imgsz must be a positive multiple of 32, got {self.imgsz}")
        if self.min_iterations < 0:
            raise ConfigError(f"--min-iterations must be >= 0, got {self.min_iterations}")
        if self.random_rounds < 0:
            raise ConfigError(f"--random-rounds must be >= 0, got {self.random_rounds}")
        if self.batch < 1 or self.val_images < 1 or self.top_k < 1 or not 1 <= self.views <= 8:
            raise ConfigError("batch, val_images and top_k must be >= 1, views in 1-8")

    def epochs_for(self, n_images: int) -> int:
        """Epochs of a round that trains on ``n_images`` labelled images."""
        if not self.min_iterations or n_images < 1:
            return self.epochs
        return max(self.epochs, -(-self.min_iterations * self.batch // n_images))

    @property
    def ceiling_epochs(self) -> int:
        """Epochs of the full-pool ceiling run."""
        return self.full_epochs or self.epochs * len(self.budgets)

    def experiment_key(self) -> dict[str, Any]:
        """The settings that make results comparable; a resumed run must match them."""
        keep = ("budgets", "budget_unit", "epochs", "imgsz", "batch", "init", "start", "views")
        key = {k: getattr(self, k) for k in keep}
        key["nbs"] = self.batch  # one optimiser step per batch (older folders: nbs 64)
        key.update(
            data=str(self.data.resolve()),
            test_data=str(self.test_data.resolve()),
            aggregation=self.aggregation,
            top_k=self.top_k,
            conf=self.conf,
            val_images=self.val_images,
            augment=asdict(self.augment),
        )
        if self.class_balance:  # absent when off: older output folders stay resumable
            key["class_balance"] = True
        if self.random_rounds:
            key["random_rounds"] = self.random_rounds
        if self.min_iterations:
            key["min_iterations"] = self.min_iterations
        return {k: list(v) if isinstance(v, tuple) else v for k, v in key.items()}
