#!/usr/bin/env bash
# Open the chapters in JupyterLab: makes (or checks) .venv as the other two commands do
# (tools/setup.sh via tools/env.sh), installs JupyterLab into it if it is missing, then starts
# `jupyter lab nbs/`. Extra arguments go to jupyter lab (e.g. --no-browser --port 8890).
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/env.sh
if ! python -c "import jupyterlab" 2>/dev/null; then
  echo "== installing JupyterLab into .venv"
  # (minus this machine's harmless "Location ... is ignored" warnings, as in tools/setup.sh)
  { PIP_DISABLE_PIP_VERSION_CHECK=1 python -m pip install -q jupyterlab 2>&1 1>&3 \
      | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2; } 3>&1
fi
# Jupyter refuses to run as root unless told; containers often run as root
root_flag=(); [ "$(id -u)" = 0 ] && root_flag=(--allow-root)
exec jupyter lab nbs/ "${root_flag[@]}" "$@"
