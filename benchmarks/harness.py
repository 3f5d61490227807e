"""Helpers shared by the benchmark scripts: timing, peak memory, text tables, and the record that
every script keeps in `benchmarks/results/<name>.json`. Benchmarks print figures; they never assert.

A results file holds the history of its runs, oldest first; each run appends one entry:

    {"name": "sorting", "format": 1, "runs": [
        {"meta": {command, date (UTC), commit, dirty, diffalg, torch, python, cpu, cores,
                  torch_threads, omp_wait_policy, omp_num_threads, device, compiled_kernel,
                  load_average, quick},
         "repeats": 3,
         "params": {...the script's settings...},
         "comparisons": {"<comparison>": {"what": ..., "size": ..., "ratio": ...}},
         "rows": [{"comparison", "case", "size_name", "size", "diffalg_s",
                   "reference", "reference_s", "ratio", ...memory and error figures}]}]}

`ratio` is defined per comparison (`comparisons[...]["ratio"]`, e.g. "reference / diffalg": how
many times faster diffalg is). Missing figures are left out of a row (never NaN). The appendix
pages (nbs/appendix/benchmarks/, through benchmarks/report.py) draw the newest full-size run of
each file (else the newest quick one) and a history of its ratios.

    python benchmarks/harness.py list                  # every results file, its runs
    python benchmarks/harness.py prune --quick         # drop the runs made with --quick
"""
import argparse
import datetime
import json
import math
import multiprocessing as mp
import numbers
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
FORMAT = 1

# results file -> the command that regenerates it at full size (run from the repository root)
FULL = {
    "distributions": "OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_distributions.py",
    "relax": "OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_relax.py --pairwise",
    "relax_train_step": "OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_relax.py --train-step",
    "sorting": "OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sorting.py --sweep "
               "--max-peer-gb 20",
    "sorting_pytorch": "DIFFALG_COMPILED=off OMP_WAIT_POLICY=PASSIVE python "
                       "benchmarks/bench_sorting.py --sweep --max-peer-gb 20",
    "sorting_values": "OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sorting.py --values-inproc",
    "rendering": "OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_rendering.py --compare",
    "logic": ("OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_logic.py --block 5 --repeats 10 "
              "--conv mnist mnist_deep cifar --conv-step"),
    "newton": "OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_newton.py --cnn",
    "cpu_effects": "OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_cpu_effects.py",
    "compile": "python benchmarks/bench_compile.py",   # inductor kernels: see the module
    "ranking_scale5": "OMP_WAIT_POLICY=PASSIVE python benchmarks/ranking_table.py --scale 5",
    "paper_ranking": "OMP_WAIT_POLICY=PASSIVE python benchmarks/paper_tables.py",
    "ranking_comparison": "OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python "
                          "benchmarks/ranking_comparison.py",
    "ddp": "OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_ddp.py",
    "smoothing": "OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_smoothing.py",
    "before_after": "python benchmarks/compare_trees.py OLD_TREE NEW_TREE",
    "ab_interleaved": "python benchmarks/ab_interleaved.py OLD_TREE NEW_TREE --rounds 6",
}


# ------------------------------------------------------------------ measuring
def median_seconds(fn, repeats=5, warmup=1):
    "Median wall time of `fn()` over `repeats` calls, after `warmup` calls."
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _child(target, args, queue):
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    target(*args)
    queue.put((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)


def peak_rss_mb(target, *args):
    """Growth of the peak resident memory (MiB) while `target(*args)` runs in a fresh process, or
    None if it failed. `target` must be a module-level function (it is pickled to the child)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(target, args, queue))
    proc.start()
    proc.join()
    return queue.get() if proc.exitcode == 0 else None


# ------------------------------------------------------------------ printing
def table(rows, columns):
    "Format a list of dicts as a fixed-width text table with the given columns."
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    lines = ["  ".join(c.rjust(widths[c]) for c in columns)]
    lines += ["  ".join(_fmt(r.get(c)).rjust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def setting():
    "One line describing the measurement setting, to print above every table."
    import torch
    return (f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
            f"cpus={os.cpu_count()}")


# ------------------------------------------------------------------ recording
def add_record_args(ap):
    "The options every script shares: where results go, and whether reference packages run."
    ap.add_argument("--results", metavar="DIR",
                    default=os.environ.get("DIFFALG_BENCH_RESULTS", str(RESULTS)),
                    help="folder of the JSON results (default benchmarks/results, or "
                         "$DIFFALG_BENCH_RESULTS)")
    ap.add_argument("--no-record", action="store_true", help="print only, write no JSON")
    ap.add_argument("--no-reference", action="store_true",
                    help="time diffalg only (skip the reference packages; the Newton "
                         "benchmark keeps its plain-loss baseline)")
    return ap


def _git(*args, cwd):
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model():
    "The CPU's model name (/proc/cpuinfo), else what `platform` knows."
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Model", "Hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


KERNEL_PROBE = """
import os
try:
    from diffalg.sorting import compiled_library, compiled_pass_error
except ImportError:
    from diffalg.sorting_compiled import compiled_library, compiled_pass_error
mode = os.environ.get("DIFFALG_COMPILED", "auto").strip().lower() or "auto"
if mode in ("off", "0", "false", "no"):
    print("off (DIFFALG_COMPILED=" + os.environ["DIFFALG_COMPILED"] + ")")
elif compiled_library() is not None:
    print("on")
else:
    print("not available: " + str(compiled_pass_error()))
"""


def compiled_kernel():
    "Whether diffalg's compiled sorting kernel is on here (asked in a fresh process)."
    out = subprocess.run([sys.executable, "-c", KERNEL_PROBE], capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    return lines[-1] if out.returncode == 0 and lines else "unknown (probe failed)"


def command_line():
    "The command that ran, with the environment settings that change the figures."
    env = [f"{k}={os.environ[k]}" for k in ("DIFFALG_COMPILED", "OMP_NUM_THREADS",
                                            "OMP_WAIT_POLICY") if k in os.environ]
    script = Path(sys.argv[0]).resolve()
    shown = (f"benchmarks/{script.name}" if script.parent == HERE else sys.argv[0])
    return " ".join(env + ["python", shown] + [shlex.quote(a) for a in sys.argv[1:]])


def metadata(quick=False, device="cpu"):
    "Where and how a run was measured: machine, versions, commit, thread settings."
    import torch
    import diffalg
    tree = Path(diffalg.__file__).resolve().parent
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", cwd=tree)
    if device == "cpu":
        dev = cpu_model()
    else:
        dev = torch.cuda.get_device_name(torch.device(device))
    return {"command": command_line(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
            "commit": _git("rev-parse", "--short=12", "HEAD", cwd=tree),
            "dirty": bool(status) if status is not None else None,
            "diffalg": str(tree.parent), "torch": torch.__version__,
            "python": platform.python_version(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
            "device": dev, "compiled_kernel": compiled_kernel(),
            "load_average": [round(os.getloadavg()[0], 2)], "quick": bool(quick)}


def clean(value):
    "A JSON-safe copy: NaN and infinities become None, tuples lists, numbers plain floats."
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return value if math.isfinite(value) else None


def load(name, folder=RESULTS):
    "The record of `name` ({'name', 'format', 'runs'}); an empty one when the file is missing."
    path = Path(folder) / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"name": name, "format": FORMAT, "runs": []}


def save(data, folder=RESULTS):
    path = (Path(folder) / f"{data['name']}.json").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(clean(data), indent=1) + "\n")
    os.replace(tmp, path)
    return path


class Run:
    """One run of a script, appended to `results/<name>.json`; `add(rows)` writes the file again,
    so a long run that is interrupted keeps what it finished (`complete` is False until `close`)."""

    def __init__(self, name, args, params=None, comparisons=None, repeats=None, device="cpu"):
        self.name, self.folder = name, getattr(args, "results", RESULTS)
        self.off = getattr(args, "no_record", False)
        self.run = {"meta": metadata(getattr(args, "quick", False), device), "repeats": repeats,
                    "params": params or {}, "comparisons": comparisons or {}, "rows": [],
                    "complete": False}
        self.index = None

    def resume(self):
        "Continue the last run of the file if it is unfinished and ran the same command; its rows."
        runs = load(self.name, self.folder)["runs"]
        if runs and not runs[-1].get("complete") and \
                runs[-1]["meta"].get("command") == self.run["meta"]["command"]:
            self.index, self.run["rows"] = len(runs) - 1, runs[-1]["rows"]
        return self.run["rows"]

    def add(self, rows, complete=False):
        self.run["rows"].extend(rows)
        self.run["complete"] = complete
        self.run["meta"]["load_average"] = self.run["meta"]["load_average"][:1] + [
            round(os.getloadavg()[0], 2)]
        if self.off:
            return None
        data = load(self.name, self.folder)
        if self.index is None:
            data["runs"].append(self.run)
            self.index = len(data["runs"]) - 1
        else:
            data["runs"][self.index] = self.run
        return save(data, self.folder)

    def close(self, rows=()):
        if not rows and not self.run["rows"]:
            print("nothing was measured: no run recorded")
            return None
        path = self.add(list(rows), complete=True)
        if path is not None:
            shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            print(f"recorded in {shown} (run {self.index + 1} of its history)")
        return path


def record(name, rows, args, **kw):
    "Append one complete run with `rows` to results/<name>.json (see `Run` for the options)."
    return Run(name, args, **kw).close(rows)


def main():
    ap = argparse.ArgumentParser(description="List or prune the recorded benchmark results.")
    ap.add_argument("action", choices=["list", "prune"])
    ap.add_argument("--quick", action="store_true", help="prune: drop the runs made with --quick")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args()
    for path in sorted(Path(args.results).glob("*.json")):
        data = json.loads(path.read_text())
        if args.action == "prune" and args.quick:
            data["runs"] = [r for r in data["runs"] if not r["meta"].get("quick")]
            save(data, args.results)
        print(f"{path.name}: {len(data['runs'])} runs")
        for r in data["runs"]:
            m = r["meta"]
            print(f"  {m.get('date', '?')}  {len(r['rows']):3d} rows  {m.get('command', '')}")


if __name__ == "__main__":
    main()
