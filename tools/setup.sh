#!/usr/bin/env bash
# Create .venv (once) and install diffalg with everything the book and the tests need.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# The CPU build of torch first: an unpinned torch resolves to a multi-GB CUDA build.
# Users who already have a (CUDA) torch in this venv keep it.
quiet_pip() {  # pip, minus this machine's harmless "Location ... is ignored" warnings
  { python -m pip install -q "$@" 2>&1 1>&3 | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2; } 3>&1
}
python -c "import torch" 2>/dev/null || quiet_pip "torch==2.13.0"
quiet_pip -e ".[dev]"
python -c "import diffalg, torch; print(f'== diffalg {diffalg.__version__}, torch {torch.__version__}')"
