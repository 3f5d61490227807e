"""Two CPU effects behind the sorting benchmarks' numbers, measured directly.

1. Waking the intra-op thread pool: the time of one small operation on 1 and on all threads, by size
   (PyTorch splits vectorised transcendental functions such as atan between threads from about 2,000
   elements, other operations from about 32,000). Run it with and without OMP_WAIT_POLICY=PASSIVE.
2. Subnormal numbers: a batched matrix product of an odd-even relaxed permutation matrix (n = 256,
   B = 32, steepness 10, Gaussian inputs) with itself, against random matrices of the same shape, on
   all threads, and on one thread with torch.set_flush_denormal(True).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_cpu_effects.py
"""
import os
import time

import torch


def best_us(f, repeats=200, rounds=5):
    "Minimum over rounds of the mean time of `repeats` calls, in microseconds."
    for _ in range(10):
        f()
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(repeats):
            f()
        out.append((time.perf_counter() - t) / repeats * 1e6)
    return min(out)


def main():
    threads = torch.get_num_threads()
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, torch {torch.__version__}, {threads} threads")
    print("\n1. one operation, microseconds (1 thread / all threads)")
    print(f"{'elements':>9s} " + " ".join(f"{name:>17s}" for name in ("atan", "sigmoid", "a - b")))
    for n in (1024, 4096, 16384, 65536, 262144, 1048576):
        a, b = torch.randn(n), torch.randn(n)
        cells = []
        for f in (lambda: torch.atan(a), lambda: torch.sigmoid(a), lambda: a - b):
            torch.set_num_threads(1)
            one = best_us(f)
            torch.set_num_threads(threads)
            cells.append(f"{one:7.1f} / {best_us(f):7.1f}")
        print(f"{n:9d} " + " ".join(f"{c:>17s}" for c in cells))

    print("\n2. batched 256 x 256 x 256 products, B = 32, milliseconds")
    from diffalg.sorting.relaxed import soft_permutation
    torch.manual_seed(0)
    P = soft_permutation(torch.randn(32, 256), "odd_even", 10.0)
    tiny = torch.finfo(torch.float32).tiny
    print(f"odd-even P: {100 * ((P != 0) & (P.abs() < tiny)).float().mean().item():.2f}% subnormal entries")
    R = torch.rand_like(P)
    for name, M in (("random matrices", R), ("odd-even P", P)):
        print(f"{name:16s} all threads {best_us(lambda: torch.bmm(M, M), 3, 3) / 1e3:7.2f}", end="")
        torch.set_num_threads(1)
        print(f"   1 thread {best_us(lambda: torch.bmm(M, M), 3, 3) / 1e3:7.2f}", end="")
        torch.set_flush_denormal(True)
        print(f"   1 thread, subnormals flushed {best_us(lambda: torch.bmm(M, M), 3, 3) / 1e3:7.2f}")
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
