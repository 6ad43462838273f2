"""Label-efficiency simulation: replay active learning on a fully labelled data set.

The pool's labels are hidden; for each (strategy, seed), round 0 is a random set,
then each round trains (``geoal.train``), evaluates on a fixed test set, scores the
unlabelled pool as ``geoal score`` does (``geoal.detect.stream``),
selects with ``geoal.select`` and lets the oracle reveal the chosen labels.
Results are a tidy ``results.csv`` (one row per round, appended as it goes), a
``summary.json`` and ``learning_curves.png``; a killed run resumes where it stopped.

    cfg = SimConfig(data=..., images=..., test_data=..., out=..., strategies=("random", "hybrid"))
    summary = run_simulation(cfg)

Importing this package imports neither torch nor ultralytics.
"""

from geoal.simulate.acquire import Features, acquire, budget_targets, buy_until, initial_set
from geoal.simulate.config import DEFAULT_BUDGETS, SimConfig
from geoal.simulate.loop import open_experiment, run_arm, run_ceiling, run_simulation
from geoal.simulate.model import prepare_init
from geoal.simulate.report import labels_to_match, plot_learning_curves, summarise, write_report
from geoal.simulate.state import COLUMNS, RunState, load_state, read_rows

__all__ = [
    "COLUMNS",
    "DEFAULT_BUDGETS",
    "Features",
    "RunState",
    "SimConfig",
    "acquire",
    "budget_targets",
    "buy_until",
    "initial_set",
    "labels_to_match",
    "load_state",
    "open_experiment",
    "plot_learning_curves",
    "prepare_init",
    "read_rows",
    "run_arm",
    "run_ceiling",
    "run_simulation",
    "summarise",
    "write_report",
]
