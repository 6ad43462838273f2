"""geoal.select: pure selection strategies over score and embedding arrays, explicit rng.

pool = SelectionPool(scores=s, embeddings=e, bounds=b, groups=g)
sel = get_strategy("hybrid")(pool, Budget(k=50), np.random.default_rng(0),
                             Constraints(min_distance=0.0, max_share=0.5))
sel.indices  # (n,) int64 into the pool, in selection order
"""

from geoal.select.balance import balance_factors, class_weights
from geoal.select.constraints import boxes_conflict
from geoal.select.features import IMAGE_STATS_DIM, image_stats_embedding
from geoal.select.pool import Budget, Constraints, Selection, SelectionPool
from geoal.select.strategies import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    STRATEGY_INFO,
    Strategy,
    StrategyInfo,
    get_strategy,
    list_strategies,
    select_coreset,
    select_hybrid,
    select_random,
    select_uncertainty,
    strategy_info,
    strategy_score,
)

__all__ = [
    "DEFAULT_STRATEGY",
    "IMAGE_STATS_DIM",
    "STRATEGIES",
    "STRATEGY_INFO",
    "Budget",
    "Constraints",
    "Selection",
    "SelectionPool",
    "Strategy",
    "StrategyInfo",
    "balance_factors",
    "boxes_conflict",
    "class_weights",
    "get_strategy",
    "image_stats_embedding",
    "list_strategies",
    "select_coreset",
    "select_hybrid",
    "select_random",
    "select_uncertainty",
    "strategy_info",
    "strategy_score",
]
