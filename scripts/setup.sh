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
.venv/bin/python -m pip install --quiet --constraint constraints.txt --editable ".[dev,ray]"
# Label Studio, the annotation server of `geoal labelstudio` and of its integration test, in its
# own virtualenv so that its pinned dependencies never meet geoal's (skipped when installed).
LABEL_STUDIO_VERSION=1.23.2
if ! .venv-labelstudio/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('label-studio') != '$LABEL_STUDIO_VERSION')" 2>/dev/null; then
  "$PYTHON" -m venv .venv-labelstudio
  .venv-labelstudio/bin/python -m pip install --quiet --upgrade pip
  .venv-labelstudio/bin/python -m pip install --quiet "label-studio==$LABEL_STUDIO_VERSION"
fi
