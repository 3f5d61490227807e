"""The notebook tests: execute every notebook of the book top to bottom and fail if a cell raises.

    python tools/run_notebooks.py                 # every notebook under nbs/, one at a time
    python tools/run_notebooks.py nbs/05_logic    # a chapter (folders or .ipynb files)
    python tools/run_notebooks.py --jobs 2        # two kernels at once (timed notebooks alone)

Each notebook runs in a fresh Jupyter kernel with its own folder as working directory, exactly as
the book build runs it (nbclient, through jupyter-cache's executor, the one MyST-NB uses). A failing
cell fails the run: its traceback is printed and the exit status is 1 (every notebook is still run,
so one report names every failure). The `assert`s in the notebooks' test cells are the checks.

With `--jobs N` (tools/test.sh uses 2), N notebooks run at once, except those that measure time
(a code cell that calls `perf_counter`, `process_time`, `timeit` or `time.time`): their figures
(speed-ups, throughputs, races of equal seconds) must not share the CPU with another notebook, so
they run afterwards, one at a time.

The executed notebooks are kept in the book's execution cache (`_build/.jupyter_cache`) with a
stamp of the tree they ran on (every file git sees, and the installed packages). `tools/book.sh`
then builds from that cache when the stamp still matches, instead of executing every chapter a
second time; on any other tree it clears the cache and executes everything itself.
"""
import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
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


TIMED = re.compile(r"perf_counter|process_time|timeit|time\.time\(")


def measures_time(path: Path) -> bool:
    "Whether a code cell of the notebook reads a clock (then it runs alone, see the docstring)."
    cells = json.loads(path.read_text())["cells"]
    return any(TIMED.search("".join(c["source"])) for c in cells if c["cell_type"] == "code")


def execute(path: str, timeout: int):
    "Run one notebook in its folder: (path, seconds, executed notebook as JSON, error or None)."
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution
    sys.path.insert(0, str(ROOT / "tools"))
    import sphinx_kernels                        # the same encrypted kernels as the book build
    sphinx_kernels.setup(None)
    nb = nbformat.read(path, as_version=4)
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout,
                                 allow_errors=False, meta_override=True)
    err = None if result.err is None else (result.exc_string or repr(result.err))
    return path, result.time, nbformat.writes(nb), err


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
    alone = [p for p in todo if args.jobs > 1 and measures_time(p)]
    shared = [p for p in todo if p not in alone]
    print(f"== executing {len(todo)} notebooks: {len(shared)} {args.jobs} at a time, then "
          f"{len(alone)} that measure time one at a time", flush=True)
    failed, start = [], time.perf_counter()
    for group, workers in ((shared, args.jobs), (alone, 1)):
        with ProcessPoolExecutor(max_workers=workers) as pool:
            jobs = [pool.submit(execute, str(p), args.timeout) for p in group]
            for job in jobs:
                path, seconds, text, err = job.result()
                rel = os.path.relpath(path, ROOT)
                print(f"{'FAILED' if err else 'ok':6s} {seconds:7.1f} s  {rel}", flush=True)
                if err:
                    failed.append(rel)
                    print(err, flush=True)
                elif cache is not None:
                    nb = nbformat.reads(text, as_version=4)
                    cache.cache_notebook_bundle(CacheBundleIn(nb, path, data={
                        "execution_seconds": seconds}), check_validity=False, overwrite=True)
    total = time.perf_counter() - start
    print(f"== {len(todo) - len(failed)} notebooks passed, {len(failed)} failed in {total:.0f} s")
    if failed:
        print("FAILED:\n  " + "\n  ".join(failed))
        return 1
    if cache is not None and stamp == tree_stamp():   # nothing changed while the notebooks ran
        (cache_dir / STAMP).write_text(json.dumps({"tree": stamp}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
