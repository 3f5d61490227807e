"""Forward+backward time and memory of diffalg's relaxed bubble sort and shortest path, against
AlgoVision (`pip install algovision`) at equal settings when it is installed. Records
benchmarks/results/relax.json (relax_train_step.json with --train-step).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_relax.py --pairwise      # about a minute
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_relax.py --quick         # seconds
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_relax.py --train-step    # whole training steps

Times: median of `--repeats` runs, both implementations measured alternately in this one process.
Memory: "graph MB" is the size of the distinct tensor storages that autograd saves for the
backward pass, i.e. the memory a forward pass holds until backward (it grows with batch, n and
iterations; the growth of a fresh process's peak RSS reads 0 here: the allocations fit into memory
that importing torch already touched). "error" is the mean absolute difference of the relaxed
output from the discrete algorithm's output (sorted values / path map). diffalg's shortest path
runs with its defaults: the tournament relaxed minimum in the Bellman-Ford rounds and the pairwise
relaxed argmin for the traceback's predecessors; `--pairwise` adds a row with the pairwise minimum
in the rounds too.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from harness import Run, add_record_args, table  # noqa: E402

try:                                  # the chapter subpackage
    from diffalg.relax import bubble_sort, shortest_path
except ImportError:                   # the earlier flat modules
    from diffalg.relax_algorithms import bubble_sort, shortest_path

BETA = 8.0
EPSILON = 1e-5          # AlgoVision's default early-exit threshold of its while loops
INFTY = 1e12


# ------------------------------------------------------------------ AlgoVision programs
def algovision_bubble_sort(beta):
    from algovision import Algorithm, Input, Output, Var, VarInt, GT, IsTrue, If, While, For
    from algovision import Let, LetInt
    return Algorithm(
        Input("array"),
        Var("a", torch.tensor(0.0)), Var("b", torch.tensor(0.0)),
        Var("swapped", torch.tensor(1.0)), Var("swaps", torch.tensor(0.0)),
        VarInt("j", 0), VarInt("n", lambda array: array.shape[1] - 1),
        While(IsTrue("swapped"),
              Let("swapped", 0),
              For("i", "n",
                  LetInt("j", lambda i: i + 1),
                  Let("a", "array", ["i"]), Let("b", "array", ["j"]),
                  If(GT("a", "b"), if_true=[
                      Let("array", [lambda i: i + 1], "a"), Let("array", ["i"], "b"),
                      Let("swapped", lambda swapped: 1.0),
                      Let("swaps", lambda swaps: swaps + 1.0)])),
              LetInt("n", lambda n: n - 1)),
        Output("array"), Output("swaps"),
        beta=beta, epsilon=EPSILON,
    )


def _av_update(d, cost, beta):
    "One relaxed Bellman-Ford round in AlgoVision's style: softmin over the 8 neighbours of d."
    B, H, W = cost.shape
    unf = torch.nn.functional.unfold(d.unsqueeze(1), kernel_size=3).transpose(-2, -1)  # (B, HW, 9)
    unf = torch.cat([unf[..., :4], unf[..., 5:]], -1).view(B, H, W, 8)
    weights = torch.softmax(-beta * unf, -1)
    new = torch.nn.functional.pad((weights * unf).sum(-1) + cost, (1, 1, 1, 1), value=INFTY)
    return new, weights


def _av_next(trace, pred):
    flow = torch.nn.functional.pad(trace.unsqueeze(-1) * pred, (0, 0, 1, 1, 1, 1))
    dirs = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
    H, W = trace.shape[-2:]
    return sum(flow[:, 1 - dy:1 - dy + H, 1 - dx:1 - dx + W, k] for k, (dy, dx) in enumerate(dirs))


def algovision_shortest_path(beta, n_iter):
    from algovision import Algorithm, Input, Output, Var, For, Let
    return Algorithm(
        Input("cost"),
        Var("d", lambda cost: torch.full((cost.shape[1] + 2, cost.shape[2] + 2), INFTY)),
        Var("pred", lambda cost: torch.zeros(cost.shape[1], cost.shape[2], 8)),
        Var("trace", lambda cost: torch.zeros(cost.shape[1], cost.shape[2])),
        Var("path", lambda cost: torch.zeros(cost.shape[1], cost.shape[2])),
        Let("d", [1, 1], 0.0),
        Let("trace", [-1, -1], 1.0),
        For("it", n_iter,
            Let(["d", "pred"], lambda d, cost: _av_update(d, cost, beta)),
            Let("d", [1, 1], 0.0)),
        For("tb", n_iter,
            Let("path", lambda path, trace: path + trace - path * trace),
            Let("trace", lambda trace, pred: _av_next(trace, pred))),
        Output("path"),
        beta=beta,
    )


# ------------------------------------------------------------------ cases
def make_case(name, impl):
    "Returns (function running forward+backward, function returning the relaxed output's error)."
    torch.manual_seed(0)
    if name.startswith("bubble"):
        n = int(name.split("_n")[1])
        x = torch.randn(100, n)
        hard = bubble_sort(x, hard=True)[0]
        if impl == "diffalg":
            fwd = lambda v: bubble_sort(v, steepness=BETA, epsilon=EPSILON)  # noqa: E731
        else:
            algo = algovision_bubble_sort(BETA)
            fwd = lambda v: algo(v)  # noqa: E731

        def run():
            v = x.clone().requires_grad_()
            s = fwd(v)
            (s[0].sum() + s[-1].sum()).backward()

        def error():
            with torch.no_grad():
                return (fwd(x)[0] - hard).abs().mean().item()
        return run, error
    size, n_iter = 12, 24
    cost = torch.rand(32, size, size) * 9 + 1
    hard = shortest_path(cost, hard=True)[1]
    if impl == "diffalg":
        method = "pairwise" if name.endswith("_pairwise") else "tournament"
        fwd = lambda c: shortest_path(c, steepness=BETA, n_iter=n_iter, n_trace=n_iter,  # noqa
                                      method=method)[1]
    else:
        algo = algovision_shortest_path(BETA, n_iter)
        fwd = lambda c: algo(c)  # noqa: E731

    def run():
        c = cost.clone().requires_grad_()
        fwd(c).sum().backward()

    def error():
        with torch.no_grad():
            return (fwd(cost) - hard).abs().mean().item()
    return run, error


def graph_memory_mb(run):
    "MB of distinct tensor storages that autograd saves for the backward pass of one call."
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(seen.values()) / 2 ** 20


def train_steps(args, repeats, block=10):
    """A whole training step of the relaxation chapter's ranking experiment (sample 100 sets of 5
    numbers, the 16-channel scorer, expected-swaps loss, backward, Adam), with diffalg's and with
    AlgoVision's relaxed bubble sort as the loss; the same data, CNN and optimizer, timed in
    alternating blocks."""
    from diffalg.data import digits_numbers
    from diffalg.ranking import NumberScorer
    train = digits_numbers("train")
    losses = {"diffalg": lambda s: bubble_sort(s, steepness=BETA, epsilon=EPSILON)[2].mean()}
    if not args.no_reference:
        algo = algovision_bubble_sort(BETA)
        losses["algovision"] = lambda s: algo(s)[-1].mean()
    what = (f"one training step (100 sets of 5 numbers, 16-channel scorer, expected-swaps loss, "
            f"Adam), median of {repeats} blocks of {block} steps, the two alternating")
    comparison = "ranking chapter training step"
    run = Run("relax_train_step", args, repeats=repeats, params={"block": block},
              comparisons={comparison: {"what": what, "size": "set size",
                                        "ratio": "reference / diffalg"}})
    steps = {}
    for impl, loss_fn in losses.items():
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        model = NumberScorer(channels=16)
        model(train.sample_ranking(5, 2, gen)[0])
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)

        def step(model=model, opt=opt, gen=gen, loss_fn=loss_fn):
            images, values = train.sample_ranking(5, 100, generator=gen)
            order = values.argsort(-1)
            scores = model(torch.take_along_dim(images, order[:, :, None, None, None], 1))
            loss = loss_fn(scores)
            opt.zero_grad()
            loss.backward()
            opt.step()
        steps[impl] = step
    times = {impl: [] for impl in steps}
    for impl, step in steps.items():
        for _ in range(3):
            step()
    for _ in range(repeats):
        for impl, step in steps.items():
            t0 = time.perf_counter()
            for _ in range(block):
                step()
            times[impl].append((time.perf_counter() - t0) / block)
    s = {impl: statistics.median(v) for impl, v in times.items()}
    row = {"comparison": comparison, "case": "5 numbers, batch 100", "size_name": "set size",
           "size": 5, "diffalg_s": s["diffalg"]}
    if "algovision" in s:
        row.update(reference="AlgoVision", reference_s=s["algovision"],
                   ratio=s["algovision"] / s["diffalg"])
    print(f"training step of the ranking chapter (batch 100 sets of 5, 16-channel scorer, Adam), "
          f"median of {repeats} blocks of {block} steps: "
          + ", ".join(f"{impl} {1e3 * v:.1f} ms" for impl, v in s.items()))
    run.close([row])


COMPARISONS = {"bubble": ("relaxed bubble sort, batch 100", "n"),
               "shortest_path_12x12": ("shortest path, 12 x 12, 32 maps, 24 rounds", "grid"),
               "shortest_path_12x12_pairwise": ("shortest path, pairwise minimum", "grid")}


def row_for(name, impls, times, made):
    "The record's row of one case: times, errors and graph memory of both implementations."
    key = "bubble" if name.startswith("bubble") else name
    comparison, size_name = COMPARISONS[key]
    size = int(name.split("_n")[1]) if key == "bubble" else 12
    row = {"comparison": comparison, "case": name, "size_name": size_name, "size": size}
    for impl, prefix in zip(impls, ("diffalg", "reference")):
        row[f"{prefix}_s"] = statistics.median(times[impl])
        row[f"{prefix}_error"] = made[impl][1]()
        row[f"{prefix}_graph_mb"] = graph_memory_mb(made[impl][0])
    if len(impls) == 2:
        row["reference"] = "AlgoVision"
        row["ratio"] = row["reference_s"] / row["diffalg_s"]
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats, only the small cases")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairwise", action="store_true",
                    help="also time the shortest path with the pairwise minimum")
    ap.add_argument("--train-step", action="store_true",
                    help="only time whole training steps of the ranking chapter with each "
                         "bubble sort as the loss (needs algovision)")
    args = add_record_args(ap).parse_args()
    torch.set_num_threads(args.threads)
    if args.train_step:
        return train_steps(args, args.repeats or (2 if args.quick else 5),
                           block=3 if args.quick else 10)
    repeats = args.repeats or (3 if args.quick else 7)
    cases = ["bubble_n5", "shortest_path_12x12"] if args.quick else \
        ["bubble_n5", "bubble_n16", "bubble_n32", "shortest_path_12x12"]
    if args.pairwise:
        cases.append("shortest_path_12x12_pairwise")
    impls = ["diffalg"]
    try:
        import algovision  # noqa: F401
        impls += [] if args.no_reference else ["algovision"]
    except ImportError:
        print("algovision is not installed: measuring diffalg only (pip install algovision)")
    what = (f"forward + backward, logistic, steepness {BETA}, {args.threads} threads, median of "
            f"{repeats}, the implementations alternated in one process")
    comparisons = {c: {"what": what, "size": s, "ratio": "reference / diffalg"}
                   for c, s in COMPARISONS.values()}
    run = Run("relax", args, repeats=repeats, comparisons=comparisons,
              params={"beta": BETA, "threads": args.threads})
    print(f"{run.run['meta']['command']}: {what}")
    rows = []
    for name in cases:
        made = {impl: make_case(name, impl) for impl in impls}
        times = {impl: [] for impl in impls}
        for impl in impls:
            made[impl][0]()                   # warm-up
        for _ in range(repeats):              # alternate the implementations
            for impl in impls:
                t0 = time.perf_counter()
                made[impl][0]()
                times[impl].append(time.perf_counter() - t0)
        rows.append(row_for(name, impls, times, made))
        run.add(rows[-1:])
    shown = [dict(r, **{k.replace("_s", " ms"): 1e3 * v for k, v in r.items()
                        if k.endswith("_s")}) for r in rows]
    cols = ["case", "diffalg ms", "reference ms", "ratio", "diffalg_error", "reference_error",
            "diffalg_graph_mb", "reference_graph_mb"]
    print(table(shown, cols))
    run.close()


if __name__ == "__main__":
    main()
