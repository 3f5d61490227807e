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


def window(log, name, seconds):
    """A cell that appends (name, start, end) of its own run to the file `log` (datetime's clock,
    which the runner does not look for: the untimed cells below may read it)."""
    return (f"import json, time\nfrom datetime import datetime\n"
            f"start = datetime.now().timestamp()\ntime.sleep({seconds})\n"
            f"with open({str(log)!r}, 'a') as f:\n"
            f"    f.write(json.dumps([{name!r}, start, datetime.now().timestamp()]) + '\\n')")


def ticks(log, name, seconds):
    "A cell that appends (name, time) to `log` every 10 ms for `seconds`, busy in between."
    return (f"from datetime import datetime\nend = datetime.now().timestamp() + {seconds}\n"
            f"while (now := datetime.now().timestamp()) < end:\n"
            f"    with open({str(log)!r}, 'a') as f:\n"
            f"        f.write(json.dumps([{name!r}, now, now]) + '\\n')\n"
            f"    while datetime.now().timestamp() < now + 0.01:\n        pass")


def test_timed_cells_pause_the_other_kernels_and_the_rest_share(tmp_path):
    """With --jobs 2, a `timed` cell pauses the other kernel in the middle of its cell (no tick of
    it while the timed cell runs, ticks before and after) and does not wait for that cell to end;
    untimed cells run side by side."""
    log = tmp_path / "log.jsonl"
    a = notebook(tmp_path / "a.ipynb", window(log, "a0", 2.0), window(log, "a_timed", 1.5),
                 window(log, "a2", 0.2))
    nb = nbformat.read(a, as_version=4)
    nb.cells[1].metadata["tags"] = ["timed"]
    nbformat.write(nb, a)
    b = notebook(tmp_path / "b.ipynb", "import json", ticks(log, "b", 6.0))
    out = run(a, b, "--jobs", "2", "--no-cache")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "(1 s of it alone)" in out.stdout or "(2 s of it alone)" in out.stdout, out.stdout
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    spans = {name: (t0, t1) for name, t0, t1 in rows if name != "b"}
    b_ticks = [t for name, t, _ in rows if name == "b"]
    start, end = spans["a_timed"]
    assert not [t for t in b_ticks if start < t < end], (start, end)      # paused while timed
    assert min(b_ticks) < start and max(b_ticks) > end                    # one cell, paused
    assert any(spans["a0"][0] < t < spans["a0"][1] for t in b_ticks)     # untimed cells share
    assert spans["a_timed"][0] < max(b_ticks) - 1.0     # the timed cell did not wait for b's


def test_untagged_clock_cells_are_refused(tmp_path):
    "A cell that reads a clock, directly or through a function of the notebook, must be tagged."
    nb = notebook(tmp_path / "nb.ipynb", "import time",
                  "def best(f):\n    t = time.perf_counter()\n    f()\n"
                  "    return time.perf_counter() - t",
                  "def twice(f):\n    return 2 * best(f)",
                  "x = twice(lambda: None)", "y = 1", "t0 = time.process_time()")
    out = run(nb, "--jobs", "2", "--no-cache")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "cell 3 reads a clock (through twice)" in out.stdout, out.stdout
    assert "cell 5 reads a clock but is not tagged `timed`" in out.stdout
    assert "cell 1" not in out.stdout and "cell 4" not in out.stdout   # a def; no clock
    assert "nothing was run" in out.stdout


def test_cells_showing_a_time_the_package_measures_must_be_tagged(tmp_path):
    """A package function that reads a clock is found through the package's own calls and
    imports (not through a method or an argument of the same name); a cell that calls it must be
    tagged if it, or a later cell reading what it bound, shows a measured time."""
    sys.path.insert(0, str(RUNNER.parent))
    import run_notebooks as rn
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .runner import run\n")
    (pkg / "runner.py").write_text(
        "import time\n"
        "def train():\n    t = time.perf_counter()\n    return time.perf_counter() - t\n"
        "def run():\n    return {'seconds': train(), 'metrics': 1}\n")
    (pkg / "other.py").write_text(
        "def launch(run):\n    return run()\n"              # an argument named run
        "def fit(model):\n    return model.train()\n")     # a method named train
    clocks = rn.package_clocks(pkg)
    assert clocks["pkg.runner"] == {"train", "run"} and clocks["pkg"] == {"run"}
    assert clocks["pkg.other"] == set()
    tagged = nbformat.v4.new_code_cell("x = run()\nx['train_seconds']")
    tagged.metadata["tags"] = ["timed"]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in (
        "from pkg import run\nimport pkg.other as o",    # 0
        "r = run()",                                      # 1: its seconds are read in cell 2
        "print(r['seconds'])",                            # 2
        "q = run()\nprint(q['metrics'])",                 # 3: no time shown
        "def helper():\n    return run()",                # 4
        "h = helper()['seconds']",                        # 5: through the notebook's function
        "if __name__ == '__main__':\n    run()['seconds']",   # 6: never runs here
        "o.fit(None)\nseconds = 1")] + [tagged] + [      # 7: not a clock; 8: tagged
        nbformat.v4.new_code_cell("import pkg.runner as rr\nt = rr.run()['seconds']")]  # 9
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    found = rn.package_clock_cells(path, clocks)
    assert [line.split()[1] for line in found] == ["1", "5", "9"], found
    assert "through run, shown in cell 2" in found[0] and "through helper" in found[1]
    assert "through rr.run" in found[2]
