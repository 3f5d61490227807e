#!/usr/bin/env bash
# Build the browsable book: executes every chapter notebook against the installed package,
# with Sphinx warnings (and failing cells) as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
. .venv/bin/activate
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
unset MPLBACKEND   # let the Jupyter kernel use its inline backend, or the figures are lost
rm -rf _build/html _build/jupyter_execute _build/.doctrees
jupyter-book build . -W -n --keep-going
echo "== the book is at $(pwd)/_build/html/index.html"
