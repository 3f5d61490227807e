"""The notebook tests: execute every notebook of the book top to bottom and fail if a cell raises.

    python tools/run_notebooks.py                 # every notebook under nbs/, one at a time
    python tools/run_notebooks.py nbs/05_logic    # a chapter (folders or .ipynb files)
    python tools/run_notebooks.py --jobs 2        # two kernels at once (`timed` cells alone)

Each notebook runs in a fresh Jupyter kernel with its own folder as working directory, as the book
build runs it (nbclient, with the settings of jupyter-cache's executor, which MyST-NB uses; the
pausing of timed cells below and longer waits for a paused kernel are the only additions). A
failing cell fails the run: its traceback is printed and the exit status is 1 (every notebook is
still run, so one report names every failure). The `assert`s in the notebooks' test cells are the
checks.

With `--jobs N` (tools/test.sh uses 2), N notebooks run at once. Figures that measure time
(speed-ups, throughputs, races of equal seconds) must not share the CPU, so a cell tagged `timed`
runs alone: it pauses the other notebooks' kernels (SIGSTOP to their process groups) for as long as
it runs, and timed cells take turns (`Pauser` below). A timed cell used to wait instead until the
cells running in the other kernels had finished, which could leave a core idle for minutes beside a
long training cell. Every cell that reads a clock (`perf_counter`, `process_time`, `thread_time`,
`timeit`, `time.time`, `time.monotonic`), directly or through a function the notebook defines, must
carry the tag: the runner refuses a notebook with an untagged one before it runs anything. A clock
read inside the package (e.g. the runner's `train_seconds`) counts too: a cell that calls a
function of the package that reads a clock (found in the package's source, through its own
calls and imports, or through a function the notebook defines) must carry the tag if it names a
measured time (a key or name about seconds) or binds a name whose measured time a later cell
reads (`records[...]["seconds"]`). An untimed cell must not rely on wall time (a timeout, a
race against the clock): it may be paused. Keep timed cells short: a race of equal seconds times
each method's step alone (`diffalg.experiments.seconds_per_step`, tagged) and then trains for
the steps that fit, untagged (chapter 7).

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
import signal
import subprocess
import sys
import tempfile
import threading
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


def _code_trees(cells) -> dict:
    "Cell index -> the parsed code of each code cell (cells that do not parse are left out)."
    trees = {}
    for i, c in enumerate(cells):
        if c["cell_type"] == "code":
            try:
                trees[i] = ast.parse(_code(c))
            except SyntaxError:
                pass
    return trees


def _statements(tree) -> list:
    "A cell's top-level statements that do something when it runs (no def, class or import)."
    return [st for st in tree.body if not isinstance(
        st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom))]


def _tagged(cell) -> bool:
    return TAG in cell.get("metadata", {}).get("tags", [])


def untagged_clock_cells(path: Path) -> list[str]:
    """The cells that read a clock when they run, directly or through a function defined in the
    notebook, but are not tagged `timed` (one line each: 'cell N: ...')."""
    cells = json.loads(path.read_text())["cells"]
    trees = _code_trees(cells)
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
    for i, tree in trees.items():
        if _tagged(cells[i]):
            continue
        run = _statements(tree)
        via = sorted(set().union(*(called(st) & clocks for st in run))) if run else []
        if via or any(TIMED.search(ast.unparse(st)) for st in run):
            through = f" (through {', '.join(via)})" if via else ""
            found.append(f"cell {i} reads a clock{through} but is not tagged `{TAG}`")
    return found


def _module_of(level: int, name: str | None, here: str) -> str:
    "The dotted module of `from <level dots><name> import ...` written in module `here`."
    if not level:
        return name or ""
    parts = here.split(".")[:-level]
    return ".".join(parts + ([name] if name else []))


def package_clocks(package: Path = ROOT / "diffalg") -> dict[str, set[str]]:
    """Module -> names of its functions that read a clock: directly, by a plain call of such a
    function of the same module, or imported from a module where the name reads one (a method
    call such as `model.train()` is not followed; an argument named `run` is not `run`)."""
    mods = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        here = name if rel.name != "__init__" else name + ".__init__"
        mods[name] = (ast.parse(path.read_text()), here)
    clocks = {m: set() for m in mods}
    while True:
        grew = False
        for m, (tree, here) in mods.items():
            defs = {n.name: n for n in tree.body
                    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
            found = {d for d, n in defs.items() if TIMED.search(ast.unparse(n)) or any(
                isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
                and c.func.id in clocks[m] and c.func.id not in _params(n)
                for c in ast.walk(n))}
            for n in ast.walk(tree):
                if isinstance(n, ast.ImportFrom):
                    src = _module_of(n.level, n.module, here)
                    found |= {a.asname or a.name for a in n.names if a.name in clocks.get(src, ())}
            if found - clocks[m]:
                clocks[m] |= found
                grew = True
        if not grew:
            return clocks


def _params(fn) -> set[str]:
    a = fn.args
    return {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg] if x}


SECONDS = re.compile(r"second|_ms\b|ms_per")     # a key or name that holds a measured time


def _bound(statement) -> set[str]:
    "Names a top-level statement binds (assignment, for, with) that a later cell may read."
    return {n.id for n in ast.walk(statement) if isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Store)}


def _times_read(tree) -> set[str]:
    """Names whose measured time a cell reads: `x["seconds"]`, `x[...]["train_seconds"]`,
    `x.seconds` (the names in the indexed or dotted expression)."""
    out = set()
    for n in ast.walk(tree):
        key = n.slice.value if isinstance(n, ast.Subscript) and isinstance(
            n.slice, ast.Constant) else n.attr if isinstance(n, ast.Attribute) else None
        if isinstance(key, str) and SECONDS.search(key):
            out |= {m.id for m in ast.walk(n.value) if isinstance(m, ast.Name)}
    return out


def _runs(statement) -> bool:
    "False for a statement that never runs in a notebook: `if __name__ == '__main__' ...`."
    return not (isinstance(statement, ast.If) and "__name__" in ast.unparse(statement.test))


def package_clock_cells(path: Path, clocks: dict[str, set[str]]) -> list[str]:
    """The untagged cells that call a clock-reading function of the package (imported by name,
    through a module imported from it, or through a function the notebook defines) and name a
    measured time (a key, name or attribute about seconds), or bind a name whose measured time
    a later cell reads (`records[...]["seconds"]`): 'cell N: ...' lines."""
    cells = json.loads(path.read_text())["cells"]
    trees = _code_trees(cells)
    names, modules = set(), {}            # clock-reading functions by name; alias -> module
    for tree in trees.values():
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and n.module and not n.level:
                for a in n.names:
                    full = f"{n.module}.{a.name}"
                    if full in clocks:
                        modules[a.asname or a.name] = full
                    elif a.name in clocks.get(n.module, ()):
                        names.add(a.asname or a.name)
            elif isinstance(n, ast.Import):
                modules.update({a.asname: a.name for a in n.names if a.asname})

    def via(node) -> set[str]:
        out = set()
        for c in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            f = c.func
            if isinstance(f, ast.Name) and f.id in names:
                out.add(f.id)
            elif isinstance(f, ast.Attribute) and f.attr in clocks.get(
                    modules.get(ast.unparse(f.value), ast.unparse(f.value)), ()):
                out.add(ast.unparse(f))
        return out

    defs = {n.name: n for t in trees.values() for n in ast.walk(t)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    while True:                          # the notebook's own functions that call such a one
        more = {d for d, n in defs.items() if d not in names and via(n)}
        if not more:
            break
        names |= more
    words = {i: {n.value for n in ast.walk(t) if isinstance(n, ast.Constant)
                 and isinstance(n.value, str)} | {n.attr for n in ast.walk(t)
                                                   if isinstance(n, ast.Attribute)}
             | {n.id for n in ast.walk(t) if isinstance(n, ast.Name)} for i, t in trees.items()}
    timed = lambda i: any(SECONDS.search(w) for w in words[i])                  # noqa: E731
    found = []
    for i, tree in trees.items():
        if _tagged(cells[i]):
            continue
        run = [st for st in _statements(tree) if _runs(st)]
        calls = set().union(*(via(st) for st in run)) if run else set()
        if not calls:
            continue
        bound = set().union(*(_bound(st) for st in run))
        later = [j for j in trees if j > i and bound & _times_read(trees[j])]
        if timed(i) or later:
            shown = f", shown in cell {later[0]}" if later and not timed(i) else ""
            found.append(f"cell {i} measures a time in the package (through "
                         f"{', '.join(sorted(calls))}{shown}) but is not tagged `{TAG}`")
    return found


class Pauser:
    """Timed cells run alone by pausing the kernels of the other notebooks, not by waiting for
    them. Every runner process records its kernel's process group (the kernel and whatever it
    started) in `folder/kernels/`. A timed cell takes `folder/timed` (timed cells take turns) and
    `folder/registry` (no kernel starts meanwhile), stops every other recorded group (SIGSTOP),
    runs, and lets them go on (SIGCONT): an untimed cell is paused where it is, never cut short
    or rerun, and never delays a timed cell. The locks are `flock`s, which a killed process
    frees. A pause ends after `max_pause` seconds even if the timed cell has not (a paused
    kernel might hold a lock the timed cell waits for, e.g. a compiler cache's)."""

    def __init__(self, folder, max_pause: float = 300.0):
        self.folder, self.max_pause = Path(folder), max_pause
        (self.folder / "kernels").mkdir(exist_ok=True)
        self.mine = self.folder / "kernels" / str(os.getpid())

    @contextmanager
    def _flock(self, name):
        with open(self.folder / name, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield                                          # closing the file releases it

    @contextmanager
    def registering(self):
        "Start a kernel inside this block, then `register` it: no timed cell runs meanwhile."
        with self._flock("registry"):
            yield

    def register(self, pgid):
        self.mine.write_text(str(pgid))

    def unregister(self):
        with self._flock("registry"):
            self.mine.unlink(missing_ok=True)

    @staticmethod
    def _signal(groups, sig):
        for g in groups:
            try:
                os.killpg(g, sig)
            except ProcessLookupError:                     # that kernel has just exited
                pass

    @contextmanager
    def alone(self):
        with self._flock("timed"), self._flock("registry"):
            others = [int(f.read_text()) for f in (self.folder / "kernels").iterdir()
                      if f != self.mine and f.read_text().strip()]
            self._signal(others, signal.SIGSTOP)
            resume = threading.Timer(self.max_pause, self._signal, (others, signal.SIGCONT))
            resume.start()
            try:
                yield
            finally:
                resume.cancel()
                self._signal(others, signal.SIGCONT)


def execute(path: str, timeout: int, lock_folder=None):
    """Run one notebook in its folder, its timed cells pausing the other kernels when lock_folder
    is given: (path, seconds, executed notebook as JSON, error or None, seconds of timed cells)."""
    import traceback

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError
    sys.path.insert(0, str(ROOT / "tools"))
    import sphinx_kernels                        # the same encrypted kernels as the book build
    sphinx_kernels.setup(None)
    pauser = Pauser(lock_folder) if lock_folder else None
    alone = []

    class Client(NotebookClient):
        # Between cells nothing else runs in this process: the locks may block the event loop.
        async def async_start_new_kernel(self, **kwargs):
            with pauser.registering() if pauser else nullcontext():
                await super().async_start_new_kernel(**kwargs)
                if pauser:
                    pauser.register(self.km.provisioner.pgid)

        async def _async_cleanup_kernel(self):
            if pauser:
                pauser.unregister()
            await super()._async_cleanup_kernel()

        async def async_execute_cell(self, cell, cell_index, *args, **kwargs):
            timed = cell.cell_type == "code" and TAG in cell.metadata.get("tags", [])
            with pauser.alone() if pauser and timed else nullcontext():
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
        # A kernel paused by another notebook's timed cell may be late to start or to send
        # a cell's last messages: longer waits than nbclient's defaults (60 s and 4 s).
        Client(nb, timeout=timeout, allow_errors=False, record_timing=False,
               startup_timeout=600, iopub_timeout=600,
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
    clocks = package_clocks()
    untagged = {p: untagged_clock_cells(p) + package_clock_cells(p, clocks) for p in todo}
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
