# Sourced by tools/test.sh and tools/book.sh (from the repository root): install if needed, enter the
# virtual environment, and set what the notebook kernels need.
bash tools/setup.sh
. .venv/bin/activate
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
unset MPLBACKEND   # let the Jupyter kernel use its inline backend, or the figures are lost
