#!/usr/bin/env bash
# Start a local Label Studio for `geoal labelstudio push/pull` (installed by scripts/setup.sh
# in .venv-labelstudio), offline: no version check, analytics or error reporting.
#   LABEL_STUDIO_PORT  (default 8080)
#   LABEL_STUDIO_HOST  address to listen on (default 127.0.0.1; 0.0.0.0 lets other machines in)
#   LABEL_STUDIO_DATA  its database and uploaded images (default ~/.geoal-label-studio)
# Other arguments go to `label-studio start` (e.g. --username me@lab --password ...).
set -euo pipefail
cd "$(dirname "$0")/.."
LS=.venv-labelstudio/bin/label-studio
if [ ! -x "$LS" ]; then
  echo "Label Studio is not installed in .venv-labelstudio: run bash scripts/setup.sh" >&2
  exit 1
fi
export LATEST_VERSION_CHECK=false COLLECT_ANALYTICS=false SENTRY_DSN= FRONTEND_SENTRY_DSN=
exec "$LS" start --no-browser \
  --internal-host "${LABEL_STUDIO_HOST:-127.0.0.1}" \
  --port "${LABEL_STUDIO_PORT:-8080}" \
  --data-dir "${LABEL_STUDIO_DATA:-$HOME/.geoal-label-studio}" \
  "$@"
