"""The notebook tests: execute every notebook of the book top to bottom and fail if a cell raises.

    python tools/run_notebooks.py                 # every notebook under nbs/, one at a time
    python tools/run_notebooks.py nbs/05_logic    # a chapter (folders or .ipynb files)
    python tools/run_notebooks.py --jobs 2        # two kernels at once (`timed` cells alone)

Each notebook runs in a fresh Jupyter kernel with its own folder as working directory, as the
book build runs it (nbclient, with the settings of jupyter-cache's executor, which MyST-NB uses;
the lock below is the only addition). A failing cell fails the run: its traceback is printed and
the exit status is 1 (every notebook is still run, so one report names every failure). The
`assert`s in the notebooks' test cells are the checks.

With `--jobs N` (tools/test.sh uses 2), N notebooks run at once, cell by cell. Figures that
measure time (speed-ups, throughputs, races of equal seconds) must not share the CPU, so a cell
tagged `timed` runs alone: it waits until the cells running in the other kernels have finished,
and no other cell starts until it is done (a readers-writer lock on two files; the timed cell has
priority). Every cell that reads a clock (`perf_counter`, `process_time`, `thread_time`,
`timeit`, `time.time`, `time.monotonic`), directly or through a function the notebook defines,
must carry the tag: the runner refuses a notebook with an untagged one before it runs anything.
A clock read inside the package (e.g. the runner's `train_seconds`) is not seen: tag the cells
that show such a figure. Keep timed cells short: a race of equal seconds times each method's step
alone (`diffalg.experiments.seconds_per_step`, tagged) and then trains for the steps that fit,
untagged (chapter 7).

The executed notebooks are kept in the book's execution cache (`_build/.jupyter_cache`) with a
stamp of the tree they ran on (every file git sees, and the installed packages). `tools/book.sh`
then builds from that cache when the stamp still matches, instead of executing every chapter a
second time; on any other tree it clears the cache and executes everything itself.
"""
import argparse
import ast
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager, nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "_build" / ".jupyter_cache"
STAMP = "diffalg_tree_stamp.json"


def tree_stamp() -> str:
    "A hash of every file git sees in the repository (tracked or not ignored) and the packages."
    files = subprocess.run(["git", "ls-files", "-z", "-c", "-o", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.split(b"\0")
    h = hashlib.sha256()
    for name in sorted(f for f in files if f):
        path = ROOT / name.decode()
        if path.is_file():
            h.update(name + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    h.update("\n".join(dists + [sys.version]).encode())
    return h.hexdigest()


def stamp_matches(cache: Path = CACHE) -> bool:
    path = cache / STAMP
    return path.is_file() and json.loads(path.read_text()).get("tree") == tree_stamp()


def notebooks(paths):
    out = []
    for p in paths:
        p = Path(p).resolve()
        if p.is_dir():
            out += sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts)
        elif p.suffix == ".ipynb" and p.is_file():
            out.append(p)
        else:
            raise SystemExit(f"not a notebook or folder: {p}")
    return out


TIMED = re.compile(r"perf_counter|process_time|thread_time|timeit"
                   r"|time\.(?:time|time_ns|monotonic)\(")
TAG = "timed"


def _code(cell) -> str:
    "A code cell's Python, IPython's magics and shell lines blanked out."
    lines = "".join(cell["source"]).splitlines()
    return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in lines)


def untagged_clock_cells(path: Path) -> list[str]:
    """The cells that read a clock when they run, directly or through a function defined in the
    notebook, but are not tagged `timed` (one line each: 'cell N: ...')."""
    cells = [(i, c) for i, c in enumerate(json.loads(path.read_text())["cells"])
             if c["cell_type"] == "code"]
    trees = {}
    for i, c in cells:
        try:
            trees[i] = ast.parse(_code(c))
        except SyntaxError:
            continue
    defs = {n.name: n for t in trees.values() for n in ast.walk(t)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    called = lambda node: {n.func.id for n in ast.walk(node)                    # noqa: E731
                           if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    clocks = {name for name, d in defs.items() if TIMED.search(ast.unparse(d))}
    while True:                          # a function that calls a clock-reading one reads a clock
        more = {name for name, d in defs.items() if called(d) & clocks} - clocks
        if not more:
            break
        clocks |= more
    found = []
    for i, c in cells:
        if i not in trees or TAG in c.get("metadata", {}).get("tags", []):
            continue
        run = [st for st in trees[i].body if not isinstance(
            st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom))]
        via = sorted(set().union(*(called(st) & clocks for st in run))) if run else []
        if via or any(TIMED.search(ast.unparse(st)) for st in run):
            through = f" (through {', '.join(via)})" if via else ""
            found.append(f"cell {i} reads a clock{through} but is not tagged `{TAG}`")
    return found


class CellLock:
    """The cells of the notebooks that run at once take turns through two lock files (`flock`, so
    a killed kernel's runner frees them): an untimed cell holds the room shared with the other
    untimed cells; a timed cell holds it alone. A timed cell first takes the turnstile, which
    every cell passes on its way in, so no new cell starts while it waits for the room."""

    def __init__(self, folder):
        self.turnstile, self.room = Path(folder) / "turnstile", Path(folder) / "room"

    @contextmanager
    def hold(self, alone: bool):
        with open(self.turnstile, "a") as turnstile, open(self.room, "a") as room:
            fcntl.flock(turnstile, fcntl.LOCK_EX)
            try:
                fcntl.flock(room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
            finally:
                if not alone:
                    fcntl.flock(turnstile, fcntl.LOCK_UN)
            yield                               # closing the files releases what is still held


def execute(path: str, timeout: int, lock_folder=None):
    """Run one notebook in its folder, taking turns with the other kernels' cells when lock_folder
    is given: (path, seconds, executed notebook as JSON, error or None, seconds of timed cells)."""
    import traceback

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError
    sys.path.insert(0, str(ROOT / "tools"))
    import sphinx_kernels                        # the same encrypted kernels as the book build
    sphinx_kernels.setup(None)
    lock = CellLock(lock_folder) if lock_folder else None
    alone = []

    class Client(NotebookClient):
        async def async_execute_cell(self, cell, cell_index, *args, **kwargs):
            # Between cells nothing else runs in this process: the lock may block the loop.
            timed = cell.cell_type == "code" and TAG in cell.metadata.get("tags", [])
            with lock.hold(alone=timed) if lock else nullcontext():
                start = time.perf_counter()
                try:
                    return await super().async_execute_cell(cell, cell_index, *args, **kwargs)
                finally:
                    if timed:
                        alone.append(time.perf_counter() - start)

    nb = nbformat.read(path, as_version=4)
    timeout = nb.metadata.get("execution", {}).get("timeout", timeout)
    err, start = None, time.perf_counter()
    try:
        Client(nb, timeout=timeout, allow_errors=False, record_timing=False,
               resources={"metadata": {"path": str(Path(path).parent)}}).execute()
    except (CellExecutionError, CellTimeoutError) as e:
        err = "".join(traceback.format_exception(e)) or repr(e)
    return path, time.perf_counter() - start, nbformat.writes(nb), err, sum(alone)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", default=[str(ROOT / "nbs")])
    ap.add_argument("--jobs", type=int, default=1, help="notebooks executed at once (default 1)")
    ap.add_argument("--timeout", type=int, default=1200, help="seconds per cell (default 1200)")
    ap.add_argument("--no-cache", action="store_true", help="do not store the executed notebooks")
    ap.add_argument("--cache", type=Path, default=CACHE, help=f"default {CACHE.relative_to(ROOT)}")
    ap.add_argument("--stamp-matches", action="store_true",
                    help="only say (exit status 0) whether the cache holds this tree's notebooks")
    args = ap.parse_args()
    if args.stamp_matches:
        return 0 if stamp_matches(args.cache) else 1
    cache_dir = args.cache
    todo = notebooks(args.paths)
    stamp = None if args.no_cache else tree_stamp()
    cache = None
    if not args.no_cache:
        import nbformat
        from jupyter_cache import get_cache
        from jupyter_cache.base import CacheBundleIn
        if not stamp_matches(cache_dir):   # the cache holds only notebooks run on this very tree
            shutil.rmtree(cache_dir, ignore_errors=True)
        (cache_dir / STAMP).unlink(missing_ok=True)
        cache = get_cache(str(cache_dir))
    untagged = {p: untagged_clock_cells(p) for p in todo}
    if any(untagged.values()):
        for p, found in untagged.items():
            for line in found:
                print(f"{os.path.relpath(p, ROOT)}: {line}")
        print("run_notebooks: tag these cells `timed` (see the docstring); nothing was run")
        return 2
    print(f"== executing {len(todo)} notebooks, {args.jobs} at a time (cells tagged `{TAG}` "
          "alone)", flush=True)
    failed, alone, start = [], 0.0, time.perf_counter()
    with tempfile.TemporaryDirectory() as locks, ProcessPoolExecutor(args.jobs) as pool:
        jobs = [pool.submit(execute, str(p), args.timeout, locks if args.jobs > 1 else None)
                for p in todo]
        for job in as_completed(jobs):
            path, seconds, text, err, timed = job.result()
            alone += timed
            rel = os.path.relpath(path, ROOT)
            print(f"{'FAILED' if err else 'ok':6s} {seconds:7.1f} s  {rel}"
                  f"{f'   ({timed:.0f} s of it alone)' if timed >= 0.5 else ''}", flush=True)
            if err:
                failed.append(rel)
                print(err, flush=True)
            elif cache is not None:
                nb = nbformat.reads(text, as_version=4)
                cache.cache_notebook_bundle(CacheBundleIn(nb, path, data={
                    "execution_seconds": seconds}), check_validity=False, overwrite=True)
    total = time.perf_counter() - start
    print(f"== {len(todo) - len(failed)} notebooks passed, {len(failed)} failed in {total:.0f} s "
          f"(timed cells alone: {alone:.0f} s)")
    if failed:
        print("FAILED:\n  " + "\n  ".join(failed))
        return 1
    if cache is not None and stamp == tree_stamp():   # nothing changed while the notebooks ran
        (cache_dir / STAMP).write_text(json.dumps({"tree": stamp}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
