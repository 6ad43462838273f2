#!/usr/bin/env bash
# Set up (if needed) and run the whole pipeline on built-in synthetic data: geoal demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export YOLO_OFFLINE=1 MPLBACKEND=Agg
.venv/bin/geoal demo "$@"
