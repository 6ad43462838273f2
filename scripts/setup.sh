#!/usr/bin/env bash
# Create .venv and install geoal with its pinned, verified dependencies (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# constraints.txt pins the torch/torchvision pair (and everything else) that was verified
# to work together here; a bare 'pip install torch' picks a CPU wheel whose version
# torchvision's compiled NMS does not load against.
.venv/bin/python -m pip install --quiet --constraint constraints.txt --editable ".[dev]"
