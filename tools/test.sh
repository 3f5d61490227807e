#!/usr/bin/env bash
# The whole test suite: the package's tests, then every notebook executed top to bottom (a cell that
# raises, e.g. a failing assert in a test cell, fails it). Extra arguments go to pytest (e.g. -x).
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/env.sh
echo "== pytest tests/"
python -m pytest tests/ -q -p no:cacheprovider -rs "$@"
echo "== the notebooks: executing every notebook in nbs/ (tools/run_notebooks.py)"
python tools/run_notebooks.py --jobs "${NB_JOBS:-1}" nbs/
