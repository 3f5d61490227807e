#!/usr/bin/env bash
# The whole test suite: the package's tests, then every notebook executed top to bottom (a cell that
# raises, e.g. a failing assert in a test cell, fails it). Extra arguments go to pytest (e.g. -x).
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/env.sh
# Two pytest workers (pytest-xdist) of one thread each use two cores better than one process of two
# threads: most tests are many small operations. PYTEST_WORKERS=auto takes every core, 0 none.
# --durations: the log names the slowest tests.
WORKERS=${PYTEST_WORKERS:-2}
echo "== pytest tests/ ($WORKERS workers)"
if [ "$WORKERS" = 0 ]; then
  python -m pytest tests/ -q -p no:cacheprovider -rs --durations=15 "$@"
else
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} python -m pytest tests/ -q -p no:cacheprovider -rs \
    --durations=15 -n "$WORKERS" "$@"
fi
# Two notebooks at a time: most run on one thread (small tensors), so two kernels use two cores
# almost twice as well; a cell that measures time pauses the other kernel while it runs
# (tools/run_notebooks.py).
echo "== the notebooks: executing every notebook in nbs/ (tools/run_notebooks.py)"
python tools/run_notebooks.py --jobs "${NB_JOBS:-2}" nbs/
