#!/usr/bin/env bash
# The whole test suite: the package's tests, then every notebook executed and validated with nbval.
# Extra arguments go to both pytest runs (e.g. -x).
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/env.sh
echo "== pytest tests/"
python -m pytest tests/ -q -p no:cacheprovider -rs "$@"
echo "== nbval: executing every notebook in nbs/"
python -m pytest --nbval-lax --nbval-sanitize-with tools/nbval_sanitize.cfg nbs/ -q -p no:cacheprovider "$@"
