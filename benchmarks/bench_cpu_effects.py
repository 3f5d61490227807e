"""Two CPU effects behind the sorting benchmarks' numbers, measured directly.

1. Waking the intra-op thread pool: the time of one small operation on 1 and on all threads, by size
   (PyTorch splits vectorised transcendental functions such as atan between threads from about
   2,000 elements, other operations from about 32,000). Run it with and without
   OMP_WAIT_POLICY=PASSIVE.
2. Subnormal numbers: a batched matrix product of an odd-even relaxed permutation matrix (n = 256,
   B = 32, steepness 10, Gaussian inputs, made by diffalg's PyTorch pass: the compiled kernel
   flushes subnormals to zero) with itself, against random matrices of the same shape,
   on all threads, on one thread, and on one thread with torch.set_flush_denormal(True).

Records benchmarks/results/cpu_effects.json.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_cpu_effects.py           # about a minute
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_cpu_effects.py --quick   # seconds
"""
import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from harness import Run, add_record_args  # noqa: E402

from diffalg.sorting import soft_permutation  # noqa: E402
try:
    from diffalg.sorting import compiled_pass  # noqa: E402
except ImportError:                            # the earlier flat modules
    from diffalg.sorting_compiled import compiled_pass  # noqa: E402

OPS = {"atan": lambda a, b: torch.atan(a), "sigmoid": lambda a, b: torch.sigmoid(a),
       "a - b": lambda a, b: a - b}


def best_s(f, repeats=200, rounds=5):
    "Minimum over rounds of the mean time of `repeats` calls, in seconds."
    for _ in range(10):
        f()
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(repeats):
            f()
        out.append((time.perf_counter() - t) / repeats)
    return min(out)


def thread_wakeup(sizes, repeats, threads):
    "Rows of part 1: one operation on 1 thread and on all threads, by size."
    rows = []
    print("\n1. one operation, microseconds (1 thread / all threads)")
    print(f"{'elements':>9s} " + " ".join(f"{name:>17s}" for name in OPS))
    for n in sizes:
        a, b = torch.randn(n), torch.randn(n)
        cells = []
        for name, op in OPS.items():
            torch.set_num_threads(1)
            one = best_s(lambda: op(a, b), repeats)
            torch.set_num_threads(threads)
            every = best_s(lambda: op(a, b), repeats)
            cells.append(f"{1e6 * one:7.1f} / {1e6 * every:7.1f}")
            rows.append({"comparison": f"{name}: 1 thread against {threads}", "case": f"{name} {n}",
                         "size_name": "elements", "size": n, "one_thread_s": one,
                         "all_threads_s": every, "ratio": one / every})
        print(f"{n:9d} " + " ".join(f"{c:>17s}" for c in cells))
    return rows


def subnormals(threads, repeats):
    "Rows of part 2: batched products of an odd-even P and of random matrices."
    torch.manual_seed(0)
    with compiled_pass("off"):       # the compiled kernel flushes subnormals; PyTorch keeps them
        P = soft_permutation(torch.randn(32, 256), "odd_even", 10.0)
    tiny = torch.finfo(torch.float32).tiny
    share = ((P != 0) & (P.abs() < tiny)).float().mean().item()
    print(f"\n2. batched 256 x 256 x 256 products, B = 32, milliseconds; odd-even P: "
          f"{100 * share:.2f}% subnormal entries")
    R = torch.rand_like(P)
    rows = []
    for name, M in (("random matrices", R), ("odd-even P", P)):
        every = best_s(lambda: torch.bmm(M, M), repeats, 3)
        torch.set_num_threads(1)
        one = best_s(lambda: torch.bmm(M, M), repeats, 3)
        torch.set_flush_denormal(True)
        flushed = best_s(lambda: torch.bmm(M, M), repeats, 3)
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)
        print(f"{name:16s} all threads {1e3 * every:7.2f}   1 thread {1e3 * one:7.2f}   "
              f"1 thread, subnormals flushed {1e3 * flushed:7.2f}")
        rows.append({"comparison": "batched product with subnormal entries", "case": name,
                     "size_name": "n", "size": 256, "batch": 32, "all_threads_s": every,
                     "one_thread_s": one, "flushed_s": flushed,
                     "subnormal_share": share if name == "odd-even P" else 0.0})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="three sizes, fewer repeats")
    args = add_record_args(ap).parse_args()
    threads = torch.get_num_threads()
    sizes = [1024, 16384, 262144] if args.quick else [1024, 4096, 16384, 65536, 262144, 1048576]
    repeats = 50 if args.quick else 200
    what = f"minimum over 5 rounds of the mean of {repeats} calls"
    comparisons = {f"{name}: 1 thread against {threads}": {"what": what, "size": "elements",
                                                           "ratio": "1 thread / all threads"}
                   for name in OPS}
    comparisons["batched product with subnormal entries"] = {
        "what": "torch.bmm(M, M), M of shape (32, 256, 256); minimum over 3 rounds of the mean "
                "of 3", "size": "n", "ratio": "time / time of random matrices"}
    run = Run("cpu_effects", args, repeats=repeats, comparisons=comparisons)
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, "
          f"torch {torch.__version__}, {threads} threads")
    rows = thread_wakeup(sizes, repeats, threads)
    product = subnormals(threads, 1 if args.quick else 3)
    for r in product:
        r["ratio"] = r["all_threads_s"] / product[0]["all_threads_s"]
    run.close(rows + product)


if __name__ == "__main__":
    main()
