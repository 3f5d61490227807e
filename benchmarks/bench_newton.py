"""Runtime overhead of the Newton losses (diffalg.newton) against the plain loss they wrap: median
forward+backward time of one batch for the plain loss, the empirical-Fisher Newton loss and the
Hessian Newton loss (exact, conjugate gradients, finite differences), at a few batch sizes B and
output sizes m, for three losses of scores (B, m): a pairwise logistic ranking loss (O(m^2) work,
shallow graph), the book's relaxed odd-even sorting network with logistic swaps
(diffalg.sorting.sort_loss: m layers, a hand-written backward without double backward, so only the
finite-difference Hessian applies to it unless diffalg.sorting gains double backward) and NeuralSort
(diffalg.sorting's baseline, plain torch). With --cnn, the time of one forward+backward pass of
diffalg.ranking.NumberScorer on the B*m images of a ranking batch is printed too, to put the
overhead in context. All cases run in one process, the variants of a case timed in interleaved
rounds (a shared machine's load then hits them alike). Records benchmarks/results/newton.json.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_newton.py --cnn       # a few minutes
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_newton.py --quick     # seconds
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from harness import Run, add_record_args, median_seconds, setting, table  # noqa: E402

from diffalg.newton import fisher_newton_loss, hessian_newton_loss  # noqa: E402
from diffalg.sorting import permutation_targets, sort_loss  # noqa: E402
try:                                  # the chapter subpackage
    from diffalg.sorting import neuralsort_permutation  # noqa: E402
except ImportError:                   # the earlier flat modules
    from diffalg.sorting_baselines import neuralsort_permutation  # noqa: E402


def pairwise_logistic(y, values):
    "sum_{i,j: v_i < v_j} softplus(y_i - y_j) per sample (B,)."
    want = (values[:, :, None] < values[:, None, :]).to(y.dtype)
    return (torch.nn.functional.softplus(y[:, :, None] - y[:, None, :]) * want).sum((1, 2))


def sorting_network(y, values):
    "diffalg.sorting.sort_loss: relaxed odd-even network, logistic swaps, steepness 10, BCE (B,)."
    return sort_loss(y, values, steepness=10.0, distribution="logistic", reduction="none")


def neuralsort(y, values):
    "Cross-entropy of NeuralSort's relaxed permutation (tau 1) against the true one, (B,)."
    Q = permutation_targets(values).to(y.dtype)
    log_p = neuralsort_permutation(y, tau=1.0).clamp_min(1e-12).log()
    return -(Q * log_p).sum((-2, -1)) / y.shape[-1]


def step(variant, loss, y, values):
    f = lambda v: loss(v, values)

    def run():
        y_ = y.detach().requires_grad_(True)
        if variant == "plain":
            out = f(y_).mean()
        elif variant == "fisher":
            out = fisher_newton_loss(y_, f, tikhonov=0.1)
        elif variant == "hessian exact":
            out = hessian_newton_loss(y_, f, tikhonov=1.0, method="exact")
        elif variant == "hessian fd":
            out = hessian_newton_loss(y_, f, tikhonov=1.0, method="finite_difference")
        else:
            out = hessian_newton_loss(y_, f, tikhonov=1.0, method="cg", cg_max_iter=10)
        out.backward()
    return run


def supported(fn):
    """Whether a variant runs on this loss (the exact/CG Hessian need double backward; CG may give a
    non-finite step)."""
    try:
        fn()
        return True
    except (RuntimeError, ValueError):
        return False


def interleaved_medians(fns, repeats):
    "Median seconds of each fn, timed in interleaved rounds (other processes' load hits all alike)."
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def cnn_step(B, m):
    from diffalg.ranking import NumberScorer
    torch.manual_seed(0)
    net = NumberScorer()
    images = torch.randn(B, m, 1, 8, 32)
    net(images[:1])  # materialize the lazy layer

    def run():
        net.zero_grad()
        net(images).sum().backward()
    return run


VARIANTS = ["plain", "fisher", "hessian exact", "hessian cg", "hessian fd"]
NAMES = {"fisher": "Fisher", "hessian exact": "Hessian, exact", "hessian cg": "Hessian, CG",
         "hessian fd": "Hessian, finite differences"}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed rounds per case (default 7, 3 with --quick)")
    ap.add_argument("--quick", action="store_true", help="fewer sizes, 3 repeats")
    ap.add_argument("--cnn", action="store_true", help="also time NumberScorer on the B*m images")
    args = add_record_args(ap).parse_args()
    sizes = {"pairwise logistic": [(64, 4), (64, 16), (256, 16), (64, 64), (16, 256)],
             "sorting network": [(64, 4), (64, 8), (256, 8), (64, 16), (64, 32)],
             "NeuralSort": [(64, 4), (64, 8), (256, 8), (64, 16), (64, 32)]}
    if args.quick:
        sizes = {k: v[:3] for k, v in sizes.items()}
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    losses = {"pairwise logistic": pairwise_logistic, "sorting network": sorting_network,
              "NeuralSort": neuralsort}
    what = (f"forward + backward of one batch, float32, median of {args.repeats}, the variants "
            "interleaved; tikhonov 0.1 (Fisher) / 1.0 (Hessian), CG capped at 10 iterations")
    run = Run("newton", args, repeats=args.repeats,
              comparisons={f"{name}: {NAMES[v]}": {"what": what, "size": "B*m",
                                                   "ratio": "diffalg / reference"}
                           for name in sizes for v in VARIANTS[1:]})
    torch.manual_seed(0)
    rows, printed = [], []
    for name, cases in sizes.items():
        for B, m in cases:
            y, values = torch.randn(B, m), torch.randn(B, m)
            fns = {v: step(v, losses[name], y, values) for v in VARIANTS}
            fns = {v: fn for v, fn in fns.items() if supported(fn)}
            times = interleaved_medians(fns, args.repeats)
            shown = {"loss": name, "B": B, "m": m, "plain ms": 1e3 * times["plain"]}
            cnn = 1e3 * median_seconds(cnn_step(B, m), args.repeats) if args.cnn else None
            for v in VARIANTS[1:]:
                shown[f"{v} / plain"] = times[v] / times["plain"] if v in times else "n/a"
                row = {"comparison": f"{name}: {NAMES[v]}", "case": f"{name} B={B} m={m}",
                       "size_name": "B*m", "size": B * m, "B": B, "m": m,
                       "reference": "plain loss", "reference_s": times["plain"],
                       "cnn_s": cnn and cnn / 1e3}
                if v in times:
                    row.update(diffalg_s=times[v], ratio=times[v] / times["plain"])
                else:
                    row["diffalg_note"] = "fails (no double backward, or a non-finite step)"
                rows.append(row)
            shown["CNN ms"] = cnn
            printed.append(shown)
    print(f"forward+backward of one batch, float32, median of {args.repeats}; tikhonov 0.1 "
          "(Fisher) / 1.0 (Hessian), CG capped at 10 iterations, fd = finite-difference Hessian; "
          "n/a: failed (no double backward, or a non-finite step: seen for CG in float32 on the "
          f"saturated sorting-network loss, whose gradients can reach 1e10); {setting()}")
    cols = ["loss", "B", "m", "plain ms"] + [f"{v} / plain" for v in VARIANTS[1:]]
    print(table(printed, cols + (["CNN ms"] if args.cnn else [])))
    run.close(rows)


if __name__ == "__main__":
    main()
