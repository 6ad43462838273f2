"""Value objects of a selection: the candidate pool, the budget, the constraints, the result."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from geoal.errors import SelectionError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class SelectionPool:
    """N candidate chips; every array is optional but those given must agree on N.

    - ``scores``: (N,) float, chip uncertainty, higher = more worth labelling, NaN = not scored.
    - ``embeddings``: (N, D) float, stored as C-contiguous float32.
    - ``bounds``: (N, 4) float64 footprint [minx, miny, maxx, maxy] in the scene's CRS units.
    - ``groups``: (N,) int scene id; chips are compared spatially only within one id, so
      scenes in different CRSs (or the same CRS) never conflict. None = one scene.
    - ``expected_objects``: (N,) float >= 0, expected boxes per chip (cost of the objects budget).
    - ``labelled_embeddings``: (L, D) float, chips labelled in earlier rounds (seed k-center).
    - ``objectness``: (N,) float in [0, 1], how object-like the chip's most object-like
      anchors are, below any detection threshold (``geoal.uncertainty.objectness``); what
      ``adaptive`` ranks by while the model is weak. NaN = not scored; None = none known.
    - ``quality``: how well the scoring model fits the labelled chips, 0-1
      (``geoal.uncertainty.model_quality``); None = unknown (no model yet). Read by
      ``adaptive``'s schedule.
    """

    scores: FloatArray | None = None
    embeddings: npt.NDArray[np.float32] | None = None
    bounds: FloatArray | None = None
    groups: IntArray | None = None
    expected_objects: FloatArray | None = None
    labelled_embeddings: npt.NDArray[np.float32] | None = None
    quality: float | None = None
    objectness: FloatArray | None = None
    n: int = field(init=False)

    def __post_init__(self) -> None:
        sizes: dict[str, int] = {}
        if self.scores is not None:
            scores = _array(self.scores, np.float64, 1, "scores")
            if np.isinf(scores).any():
                raise SelectionError("scores must be finite or NaN (= not scored), got inf")
            object.__setattr__(self, "scores", scores)
            sizes["scores"] = len(scores)
        if self.embeddings is not None:
            emb = _finite(_array(self.embeddings, np.float32, 2, "embeddings"), "embeddings")
            object.__setattr__(self, "embeddings", emb)
            sizes["embeddings"] = len(emb)
        if self.bounds is not None:
            bounds = _finite(_array(self.bounds, np.float64, 2, "bounds"), "bounds")
            if bounds.shape[1] != 4:
                raise SelectionError(f"bounds must be (N, 4), got shape {bounds.shape}")
            if (bounds[:, 2] < bounds[:, 0]).any() or (bounds[:, 3] < bounds[:, 1]).any():
                raise SelectionError("bounds must be [minx, miny, maxx, maxy] with min <= max")
            object.__setattr__(self, "bounds", bounds)
            sizes["bounds"] = len(bounds)
        if self.groups is not None:
            raw = np.asarray(self.groups)
            if raw.dtype.kind not in "iub":
                raise SelectionError(f"groups must be integer scene ids, got dtype {raw.dtype}")
            groups = _array(raw, np.int64, 1, "groups")
            object.__setattr__(self, "groups", groups)
            sizes["groups"] = len(groups)
        if self.expected_objects is not None:
            eo = _array(self.expected_objects, np.float64, 1, "expected_objects")
            eo = _finite(eo, "expected_objects")
            if (eo < 0).any():
                raise SelectionError("expected_objects must be >= 0")
            object.__setattr__(self, "expected_objects", eo)
            sizes["expected_objects"] = len(eo)
        if self.objectness is not None:
            ob = _array(self.objectness, np.float64, 1, "objectness")
            known = ob[~np.isnan(ob)]
            if (known < 0).any() or (known > 1).any():
                raise SelectionError("objectness must be in [0, 1] or NaN (= not scored)")
            object.__setattr__(self, "objectness", ob)
            sizes["objectness"] = len(ob)
        if self.labelled_embeddings is not None:
            lab = _array(self.labelled_embeddings, np.float32, 2, "labelled_embeddings")
            lab = _finite(lab, "labelled_embeddings")
            if self.embeddings is not None and lab.shape[1] != self.embeddings.shape[1]:
                raise SelectionError(
                    f"labelled_embeddings have D={lab.shape[1]} but embeddings have "
                    f"D={self.embeddings.shape[1]}: both must come from the same model"
                )
            object.__setattr__(self, "labelled_embeddings", lab)
        if self.quality is not None and not 0.0 <= float(self.quality) <= 1.0:
            raise SelectionError(f"quality must be in [0, 1] or None, got {self.quality!r}")
        if not sizes:
            raise SelectionError("a SelectionPool needs at least one of scores/embeddings/bounds")
        if len(set(sizes.values())) > 1:
            raise SelectionError(f"pool arrays disagree on N: {sizes}")
        object.__setattr__(self, "n", next(iter(sizes.values())))


@dataclass(frozen=True)
class Budget:
    """Either ``k`` chips, or ``max_objects`` expected objects (annotators pay per box).

    Under ``max_objects`` a chip costs ``max(expected_objects, min_cost)``, so a chip with no
    expected object still costs ``min_cost`` and the number of chips stays finite. Chips are
    taken in strategy order; one that does not fit the remaining budget is skipped (a cheaper
    later one may still fit), and the total never exceeds ``max_objects``.
    """

    k: int | None = None
    max_objects: float | None = None
    min_cost: float = 1.0

    def __post_init__(self) -> None:
        if (self.k is None) == (self.max_objects is None):
            raise SelectionError("give exactly one budget: k (chips) or max_objects (objects)")
        if self.k is not None and (isinstance(self.k, bool) or int(self.k) != self.k or self.k < 1):
            raise SelectionError(f"budget k must be a positive integer, got {self.k!r}")
        mo = self.max_objects
        if mo is not None and not (mo > 0 and np.isfinite(mo)):
            raise SelectionError(f"budget max_objects must be > 0, got {self.max_objects!r}")
        if not (self.min_cost > 0 and np.isfinite(self.min_cost)):
            raise SelectionError(f"budget min_cost must be > 0, got {self.min_cost!r}")


@dataclass(frozen=True)
class Constraints:
    """Constraints every strategy honours; None switches one off.

    - ``min_distance``: CRS units. Two selected chips of one group must not overlap (positive
      area in common) and their box-to-box gap must be >= ``min_distance``. Touching edges
      (gap 0) are allowed when ``min_distance == 0``. Needs ``pool.bounds``.
    - ``max_share``: (0, 1]. Under a ``k`` budget no group takes more than
      ``max(1, ceil(max_share * k))`` chips. Under a ``max_objects`` budget no group spends more
      than ``max_share * max_objects`` of it, except that every group may take one chip.
    """

    min_distance: float | None = None
    max_share: float | None = None

    def __post_init__(self) -> None:
        d = self.min_distance
        if d is not None and not (d >= 0 and np.isfinite(d)):
            raise SelectionError(f"min_distance must be >= 0 CRS units, got {d!r}")
        s = self.max_share
        if s is not None and not (0 < s <= 1):
            raise SelectionError(f"max_share must be in (0, 1], got {s!r}")


@dataclass(frozen=True, eq=False)
class Selection:
    """The chips a strategy picked.

    - ``indices``: (n,) int64 into the pool, in selection order.
    - ``reasons``: (n,) float64 why each was picked: its score (uncertainty, hybrid), its
      distance to the nearest already-selected or labelled chip in embedding units (coreset;
      NaN for a random first pick), NaN (random).
    - ``cost``: total expected objects charged (``min_cost`` applied); NaN without them.
    - ``complete``: True when the budget is met: k chips, or (``max_objects``) chips are left
      and none fits what is left of the budget. False when the pool ran out or the
      constraints refused chips that would have fitted.
    - ``note``: why it is incomplete, or which fallback was used; "" otherwise.
    """

    indices: IntArray
    reasons: FloatArray
    cost: float
    complete: bool
    note: str = ""

    def __len__(self) -> int:
        return len(self.indices)


def _array(x: npt.ArrayLike, dtype: type, ndim: int, name: str) -> np.ndarray:
    arr: np.ndarray = np.ascontiguousarray(x, dtype=dtype)
    if arr.ndim != ndim:
        raise SelectionError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def _finite(arr: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(arr).all():
        raise SelectionError(f"{name} must be finite (no NaN or inf)")
    return arr
