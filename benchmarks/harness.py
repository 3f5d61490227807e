"""Small helpers shared by the benchmark scripts: median wall time of repeats, peak memory of a
case run in a fresh process, and a plain-text table. Benchmarks print figures; they never assert."""
import multiprocessing as mp
import os
import resource
import statistics
import time


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
    """Growth of the peak resident memory (MiB) while `target(*args)` runs in a fresh process.
    `target` must be a module-level function (it is pickled to the child)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(target, args, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        return float("nan")
    return queue.get()


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
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def setting():
    "One line describing the measurement setting, to print above every table."
    import torch
    return (f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, cpus={os.cpu_count()}")
