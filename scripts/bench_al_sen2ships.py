"""Label efficiency in the survey regime: sen2ships (rare small ships in large Sentinel-2 scenes).

The 13 port scenes of ``../shared/data/sen2ships`` (uint16, 10 m, EPSG:3857) and their 325
ship boxes are tiled as ``geoal tile`` does and split by scene (``geoal simulate --scenes
--labels --split scene``): a quarter of the chips, whole scenes, is the fixed test set, never
selected from or trained on; the rest is the pool. Most chips hold no ship. Each strategy
and seed starts from the same random 2 % of the pool; every round trains afresh from the same
start model (``--start init``), with at least ``min_iterations`` optimiser steps so the small
first rounds are not under-trained, evaluates mAP50 and recall on the test scenes, scores the
pool, selects and reveals.

Why these sizes: ships are 3-40 px, median about 7 px. Chips of 128 px are small enough that
most hold no ship (the sparse regime: about one chip in eight holds one), and the model sees
them at ``imgsz`` (192 px on the cpu profile: 1.5x, a median ship of about 10 px, above the
8 px stride of YOLO's finest level; 384 px on the gpu profile: 3x). Upsampling costs
compute, not labels.

Start model: the only ship detector reachable offline, ``ship_detector_mcp/weights/best.pt``
of the PyPI package ``ship-detector-mcp`` (a YOLO11s fine-tuned from COCO for one class,
boat; its file only):

    pip download --no-deps ship-detector-mcp -d runs/shipdet
    (cd runs/shipdet && unzip -o -q ship_detector_mcp-*.whl)

It finds nothing in these scenes as it is (test mAP50 0.000 at 192-256 px): what it brings is
COCO features, not Sentinel-2 ships.

    python scripts/bench_al_sen2ships.py --out runs/al_s2            # resumable
    python scripts/bench_al_sen2ships.py --out runs/al_s2 --summarise-only

The last stdout line is one JSON object: the label-efficiency record of the default strategy
against random (``geoal.simulate.efficiency``), also written to
``docs/results/label_efficiency.json`` under ``benchmarks.sen2ships`` with ``--record``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_al_nwpu import launch, machine, strategy_groups, write_record

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sen2ships"
DEFAULT_INIT = "runs/shipdet/ship_detector_mcp/weights/best.pt"
DOCS = ROOT / "docs"

PROFILES: dict[str, dict[str, Any]] = {
    "cpu": {
        "chip_size": 128,
        "imgsz": 192,
        "epochs": 10,
        "min_iterations": 60,
        "batch": 8,
        "views": 1,
        "device": "cpu",
        "budgets": "0.02,0.04,0.06,0.08,0.10,0.15,0.20",
        "workers": 2,
    },
    "gpu": {
        "chip_size": 128,
        "imgsz": 384,
        "epochs": 30,
        "min_iterations": 300,
        "batch": 16,
        "views": 2,
        "device": "cuda:0",
        "budgets": "0.02,0.04,0.06,0.08,0.10,0.15,0.20",
        "workers": 1,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/al_s2"))
    parser.add_argument("--init", default=DEFAULT_INIT, help="local .pt or a model .yaml")
    parser.add_argument("--strategies", default="random,adaptive")
    parser.add_argument("--default", default="adaptive", help="the arm recorded as the default")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=None, help="override the profile's")
    parser.add_argument(
        "--budgets", default=None, help="override the profile's (e.g. summarise the first five)"
    )
    parser.add_argument("--workers", type=int, default=None, help="parallel simulate processes")
    parser.add_argument(
        "--per-seed",
        action="store_true",
        help="one process per strategy and seed (all run at once, one thread each)",
    )
    parser.add_argument("--summarise-only", action="store_true", help="summarise what exists")
    parser.add_argument(
        "--record", action="store_true", help="write docs/results/label_efficiency.json"
    )
    args = parser.parse_args()
    prof = dict(PROFILES[args.profile])
    if args.epochs:
        prof["epochs"] = args.epochs
    if args.budgets:
        prof["budgets"] = args.budgets
    started = time.perf_counter()
    dataset = prepare(args.out, prof)
    if not args.summarise_only:
        if args.init.endswith(".pt") and not Path(args.init).is_file():
            sys.exit(
                f"bench_al_sen2ships: init checkpoint {args.init} not found. Fetch it with\n"
                "  pip download --no-deps ship-detector-mcp -d runs/shipdet && "
                "(cd runs/shipdet && unzip -o -q ship_detector_mcp-*.whl)"
            )
        run(args, prof, dataset)
    summary = summarise(args, prof, dataset)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    figures = curves(args.out, dataset, DOCS if args.record else args.out)
    summary["figures"] = [str(f) for f in figures]
    if args.record:
        write_record("sen2ships", summary)
    print(json.dumps(summary))


def prepare(out: Path, prof: dict[str, Any]) -> Any:
    """Tile, label and split once (reused when the inputs are the same)."""
    from geoal.simulate.geo import GeoSource, prepare_geo_dataset

    source = GeoSource(
        scenes=(str(DATA / "scenes"),),
        labels=(DATA / "ships.geojson",),
        size=prof["chip_size"],
        split="scene",
        test_fraction=0.25,
        split_seed=0,
    )
    return prepare_geo_dataset(source, out / "dataset")


def simulate_command(
    args: argparse.Namespace, prof: dict[str, Any], dataset: Any, strategies: str, seeds: str
) -> list[str]:
    """The ``geoal simulate`` command line of one worker."""
    opts = {
        "data": dataset.pool_json,
        "images": dataset.images,
        "test-data": dataset.test_json,
        "out": args.out,
        "strategies": strategies,
        "seeds": seeds,
        "budgets": prof["budgets"],
        "epochs": prof["epochs"],
        "min-iterations": prof["min_iterations"],
        "imgsz": prof["imgsz"],
        "batch": prof["batch"],
        "views": prof["views"],
        "device": prof["device"],
        "start": "init",
        "init": args.init,
    }
    command = [sys.executable, "-m", "geoal.cli", "simulate", "--quiet"]
    for key, value in opts.items():
        command += [f"--{key}", str(value)]
    return command


def run(args: argparse.Namespace, prof: dict[str, Any], dataset: Any) -> None:
    """One worker process per strategy (round-robin when there are more strategies)."""
    if args.per_seed:
        commands = [
            simulate_command(args, prof, dataset, strategy, seed)
            for strategy in args.strategies.split(",")
            for seed in args.seeds.split(",")
        ]
    else:
        groups = strategy_groups(args.strategies, args.workers or prof["workers"])
        commands = [
            simulate_command(args, prof, dataset, ",".join(group), args.seeds) for group in groups
        ]
    launch(commands, args.out, "bench_al_sen2ships")


def curves(out: Path, dataset: Any, folder: Path) -> list[Path]:
    """Learning curves with chips and with ship boxes as the cost (mean, min-max band)."""
    from geoal.simulate.report import plot_learning_curves, summarise
    from geoal.simulate.state import read_rows

    rows = read_rows(out / "results.csv")
    summary = summarise(rows, dataset.summary["pool_chips"], dataset.summary["pool_boxes"])
    paths = []
    for unit in ("images", "boxes"):
        what = "chips" if unit == "images" else "ship boxes"
        paths.append(
            plot_learning_curves(
                summary,
                folder / f"al_sen2ships_{unit}.png",
                x_key=f"n_{unit}_mean",
                title=f"sen2ships, cpu profile: test mAP50 against labelled {what}",
            )
        )
    return paths


def summarise(args: argparse.Namespace, prof: dict[str, Any], dataset: Any) -> dict[str, Any]:
    """The label-efficiency record of ``--default`` against random from results.csv."""
    from geoal.simulate.efficiency import efficiency_record
    from geoal.simulate.state import read_rows

    rows = read_rows(args.out / "results.csv")
    seeds = [int(s) for s in args.seeds.split(",")]
    budgets = [float(b) for b in prof["budgets"].split(",")]
    rec = efficiency_record(rows, args.default, seeds, budgets, args.profile)
    rec["settings"] = {k: v for k, v in prof.items() if k != "workers"}
    rec["settings"]["init"] = args.init
    rec["settings"]["start"] = "init"
    rec["data"] = {
        k: dataset.summary[k]
        for k in ("pool_chips", "pool_boxes", "test_chips", "test_boxes")
        if k in dataset.summary
    }
    rec["compute_seconds"] = round(sum(r["seconds"] for r in rows), 1)
    rec["machine"] = machine()
    return rec


if __name__ == "__main__":
    main()
