"""Forward+backward time of `relaxed_step` for every distribution, next to the plain PyTorch
expression of the same CDF (no checks, no dispatch), in one process; plus the peak memory of
one diffalg call in a fresh process. Prints a table of medians.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_distributions.py [--size N] [--repeats R] [--quick]
"""
import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from harness import median_seconds, peak_rss_mb, setting, table  # noqa: E402

from diffalg.distributions import distribution_names, relaxed_step  # noqa: E402

PLAIN = {  # the same relaxed step written directly in PyTorch
    "logistic": lambda x, b: torch.sigmoid(b * x),
    "logistic_art": lambda x, b: torch.sigmoid(b * x / (x.abs() + 1e-10) ** 0.25),
    "gaussian": lambda x, b: 0.5 * (1 + torch.erf(b * x / math.sqrt(2))),
    "cauchy": lambda x, b: torch.atan(b * x) / math.pi + 0.5,
    "reciprocal": lambda x, b: 0.5 * (b * x / (2 + (b * x).abs()) + 1),
    "uniform": lambda x, b: (b * x + 0.5).clamp(0, 1),
    "laplace": lambda x, b: torch.where(x < 0, 0.5 * torch.exp(-(b * x).abs()), 1 - 0.5 * torch.exp(-(b * x).abs())),
}


def fwd_bwd(fn, x):
    def run():
        x.grad = None
        fn(x).sum().backward()
    return run


def one_call(name, size):
    x = torch.randn(size, requires_grad=True)
    relaxed_step(x, 4.0, name).sum().backward()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="10^5 elements, 5 repeats")
    args = ap.parse_args()
    if args.quick:
        args.size, args.repeats = 100_000, 5
    x = torch.randn(args.size, requires_grad=True)
    rows = []
    for name in distribution_names():
        t = median_seconds(fwd_bwd(lambda v: relaxed_step(v, 4.0, name), x), args.repeats)
        p = median_seconds(fwd_bwd(lambda v: PLAIN[name](v, 4.0), x), args.repeats) if name in PLAIN else None
        rows.append({"distribution": name, "diffalg ms": 1e3 * t, "plain ms": p and 1e3 * p,
                     "ratio": p and t / p, "peak MiB": peak_rss_mb(one_call, name, args.size)})
    print(f"relaxed_step forward+backward on {args.size:,} float32 elements, median of {args.repeats}; {setting()}")
    print(table(rows, ["distribution", "diffalg ms", "plain ms", "ratio", "peak MiB"]))


if __name__ == "__main__":
    main()
