"""Tests of the notebook tests' runner (tools/run_notebooks.py): a notebook whose cell raises fails
the run loudly (exit 1, the traceback printed) and stores nothing; a passing one is cached with
the stamp of the tree, which tools/book.sh reads to skip executing it a second time.
Run: python -m pytest .ci/tests -q"""
import json
import subprocess
import sys
from pathlib import Path

import nbformat

RUNNER = Path(__file__).resolve().parents[2] / "tools" / "run_notebooks.py"


def notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python",
                                 "name": "python3"}
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


def run(*args):
    return subprocess.run([sys.executable, str(RUNNER), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_failing_cell_fails_the_run(tmp_path):
    good = notebook(tmp_path / "good.ipynb", "x = 1 + 1", "assert x == 2")
    bad = notebook(tmp_path / "bad.ipynb", "y = 3", "assert y == 4, 'y is not 4'")
    cache = tmp_path / "cache"
    out = run(good, bad, "--cache", cache)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAILED" in out.stdout and "bad.ipynb" in out.stdout
    assert "y is not 4" in out.stdout                   # the traceback is shown
    assert not (cache / "diffalg_tree_stamp.json").exists()
    assert run("--stamp-matches", "--cache", cache).returncode == 1


def test_passing_notebooks_are_cached_with_the_stamp(tmp_path):
    nb = notebook(tmp_path / "nb.ipynb", "import os\nprint(os.getcwd())")
    cache = tmp_path / "cache"
    out = run(nb, "--cache", cache)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 notebooks passed, 0 failed" in out.stdout
    assert json.loads((cache / "diffalg_tree_stamp.json").read_text())["tree"]
    assert run("--stamp-matches", "--cache", cache).returncode == 0
    assert run("--stamp-matches", "--cache", tmp_path / "elsewhere").returncode == 1
    from jupyter_cache import get_cache
    record = get_cache(str(cache)).match_cache_notebook(nbformat.read(nb, as_version=4))
    executed = get_cache(str(cache)).get_cache_bundle(record.pk).nb
    assert executed.cells[0].outputs[0]["text"].strip() == str(tmp_path)   # ran in its folder


def test_notebooks_that_measure_time_run_alone(tmp_path):
    "With --jobs 2, the untimed notebooks share the pool and the timed ones run after, alone."
    timed = notebook(tmp_path / "a_timed.ipynb", "import time\nt0 = time.perf_counter()")
    plain = [notebook(tmp_path / f"b{i}.ipynb", f"x = {i}") for i in range(2)]
    out = run(timed, *plain, "--jobs", "2", "--no-cache")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 2 at a time, then 1 that measure time one at a time" in out.stdout
    order = [line.split()[-1] for line in out.stdout.splitlines() if line.startswith("ok")]
    assert [Path(p).name for p in order] == ["b0.ipynb", "b1.ipynb", "a_timed.ipynb"]
