#!/usr/bin/env bash
# Build the browsable book: executes every chapter notebook against the installed package,
# with Sphinx warnings (and failing cells) as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/env.sh
rm -rf _build/html _build/jupyter_execute _build/.doctrees
jupyter-book build . -W -n --keep-going
echo "== the book is at $(pwd)/_build/html/index.html"
