"""Forward+backward time of `relaxed_step` for every distribution, and of the plain PyTorch
expression of the same CDF, side by side in one process. Prints a table of medians.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_distributions.py [--size N] [--repeats R] [--quick]
"""
import argparse
import math
import os
import statistics
import time

import torch

from diffalg.distributions import distribution_names, relaxed_step

PLAIN = {  # the same relaxed step written directly in PyTorch, without diffalg's checks and dispatch
    "logistic": lambda x, b: torch.sigmoid(b * x),
    "logistic_art": lambda x, b: torch.sigmoid(b * x / (x.abs() + 1e-10) ** 0.25),
    "gaussian": lambda x, b: 0.5 * (1 + torch.erf(b * x / math.sqrt(2))),
    "cauchy": lambda x, b: torch.atan(b * x) / math.pi + 0.5,
    "reciprocal": lambda x, b: 0.5 * (b * x / (2 + (b * x).abs()) + 1),
    "uniform": lambda x, b: (b * x + 0.5).clamp(0, 1),
    "laplace": lambda x, b: torch.where(x < 0, 0.5 * torch.exp(-(b * x).abs()), 1 - 0.5 * torch.exp(-(b * x).abs())),
}


def timeit(fn, x, repeats):
    times = []
    for _ in range(repeats + 1):
        x.grad = None
        t0 = time.perf_counter()
        fn(x).sum().backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="10^5 elements, 5 repeats")
    args = ap.parse_args()
    if args.quick:
        args.size, args.repeats = 100_000, 5
    x = torch.randn(args.size, requires_grad=True)
    print(f"relaxed_step forward+backward, {args.size:,} float32 elements, median of {args.repeats}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print(f"{'distribution':14s} {'diffalg ms':>11s} {'plain ms':>9s} {'ratio':>6s}")
    for name in distribution_names():
        t = timeit(lambda v: relaxed_step(v, 4.0, name), x, args.repeats)
        if name in PLAIN:
            p = timeit(lambda v: PLAIN[name](v, 4.0), x, args.repeats)
            print(f"{name:14s} {1e3 * t:11.2f} {1e3 * p:9.2f} {t / p:6.2f}")
        else:
            print(f"{name:14s} {1e3 * t:11.2f} {'-':>9s} {'-':>6s}")


if __name__ == "__main__":
    main()
