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
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
python -c "import diffalg, torch; print(f'== diffalg {diffalg.__version__}, torch {torch.__version__}')"
