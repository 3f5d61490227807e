#!/usr/bin/env bash
# Build the browsable book: executes every chapter notebook against the installed package (or takes
# the outputs tools/test.sh just produced on the same tree: tools/run_notebooks.py),
# with Sphinx warnings (and failing cells) as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/env.sh
rm -rf _build/html _build/jupyter_execute _build/.doctrees
# Reuse the notebooks that tools/run_notebooks.py executed only if they ran on exactly this tree.
if python tools/run_notebooks.py --stamp-matches; then
  echo "== the notebook tests executed every chapter on this tree: the book uses their outputs"
else
  rm -rf _build/.jupyter_cache
  echo "== executing every chapter"
fi
jupyter-book build . -W -n --keep-going
echo "== the book is at $(pwd)/_build/html/index.html"
