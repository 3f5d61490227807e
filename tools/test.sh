#!/usr/bin/env bash
# The whole test suite: the package's tests, then every notebook executed and validated with nbval.
# Extra arguments go to both pytest runs (e.g. -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
. .venv/bin/activate
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
unset MPLBACKEND   # let the Jupyter kernel use its inline backend, or the figures are lost
echo "== pytest tests/"
python -m pytest tests/ -q -p no:cacheprovider -rs "$@"
echo "== nbval: executing every notebook in nbs/"
python -m pytest --nbval-lax --nbval-sanitize-with tools/nbval_sanitize.cfg nbs/ -q -p no:cacheprovider "$@"
