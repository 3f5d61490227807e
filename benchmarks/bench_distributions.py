"""Forward+backward time of `relaxed_step` for every distribution, next to the plain PyTorch
expression of the same CDF (no checks, no dispatch), in one process, at several sizes; plus the
peak memory of one diffalg call at the largest size in a fresh process. Prints a table of medians
and records it in benchmarks/results/distributions.json.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_distributions.py            # about a minute
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_distributions.py --quick    # seconds
    python benchmarks/bench_distributions.py --sizes 1000 1000000 --repeats 50
"""
import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from harness import Run, add_record_args, median_seconds, peak_rss_mb, setting, table  # noqa: E402

from diffalg.distributions import distribution_names, relaxed_step  # noqa: E402

PLAIN = {  # the same relaxed step written directly in PyTorch
    "logistic": lambda x, b: torch.sigmoid(b * x),
    "logistic_art": lambda x, b: torch.sigmoid(b * x / (x.abs() + 1e-10) ** 0.25),
    "gaussian": lambda x, b: 0.5 * (1 + torch.erf(b * x / math.sqrt(2))),
    "cauchy": lambda x, b: torch.atan(b * x) / math.pi + 0.5,
    "reciprocal": lambda x, b: 0.5 * (b * x / (2 + (b * x).abs()) + 1),
    "uniform": lambda x, b: (b * x + 0.5).clamp(0, 1),
    "laplace": lambda x, b: torch.where(x < 0, 0.5 * torch.exp(-(b * x).abs()),
                                        1 - 0.5 * torch.exp(-(b * x).abs())),
}
COMPARISON = "relaxed_step against the plain PyTorch expression"


def fwd_bwd(fn, x):
    def run():
        x.grad = None
        fn(x).sum().backward()
    return run


def one_call(name, size):
    x = torch.randn(size, requires_grad=True)
    relaxed_step(x, 4.0, name).sum().backward()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="10^3 to 10^5 elements, 5 repeats")
    args = add_record_args(ap).parse_args()
    if args.quick:
        args.sizes, args.repeats = [1_000, 10_000, 100_000], 5
    what = (f"forward + backward of relaxed_step (steepness 4) on float32 vectors, median of "
            f"{args.repeats}, one process")
    run = Run("distributions", args, repeats=args.repeats, params={"sizes": args.sizes},
              comparisons={COMPARISON: {"what": what, "size": "elements",
                                        "ratio": "diffalg / reference"}})
    rows = []
    for size in args.sizes:
        x = torch.randn(size, requires_grad=True)
        for name in distribution_names():
            t = median_seconds(fwd_bwd(lambda v: relaxed_step(v, 4.0, name), x), args.repeats)
            row = {"comparison": COMPARISON, "case": f"{name} {size:,}", "size_name": "elements",
                   "size": size, "distribution": name, "diffalg_s": t}
            if name in PLAIN and not args.no_reference:
                p = median_seconds(fwd_bwd(lambda v: PLAIN[name](v, 4.0), x), args.repeats)
                row.update(reference="plain PyTorch", reference_s=p, ratio=t / p)
            if size == max(args.sizes):
                row["diffalg_mb"] = peak_rss_mb(one_call, name, size)
            rows.append(row)
    print(f"relaxed_step forward+backward, float32, median of {args.repeats}; {setting()}")
    shown = [dict(r, **{"diffalg ms": 1e3 * r["diffalg_s"], "plain ms":
                        1e3 * r["reference_s"] if "reference_s" in r else None,
                        "diffalg / plain": r.get("ratio"), "peak MiB": r.get("diffalg_mb")})
             for r in rows]
    print(table(shown, ["distribution", "size", "diffalg ms", "plain ms", "diffalg / plain",
                        "peak MiB"]))
    run.close(rows)


if __name__ == "__main__":
    main()
