"""Forward+backward time and peak memory of diffalg's relaxed bubble sort and shortest path, against
AlgoVision (`pip install algovision`) at equal settings when it is installed.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_relax.py [--quick] [--repeats R] [--threads T]
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_relax.py --train-step   # whole training steps of the ranking chapter

Times: median of `--repeats` runs, both implementations measured alternately in this one process.
Memory: "graph MB" is the size of the distinct tensor storages that autograd saves for the backward
pass, i.e. the memory a forward pass holds until backward (it grows with batch, n and iterations).
(Max-RSS growth of a fresh process was tried and reads 0 here: the allocations fit into memory that
importing torch already touched.) "error" is the mean absolute
difference of the relaxed output from the discrete algorithm's output (sorted values / path map).
diffalg's shortest path runs with its defaults: the tournament relaxed minimum in the Bellman-Ford rounds
and the pairwise relaxed argmin for the traceback's predecessors; `--pairwise` adds a row with the pairwise
minimum in the rounds too (the form of earlier versions).
"""
import argparse
import json
import os
import statistics
import time

import torch

from diffalg.relax.algorithms import bubble_sort, shortest_path

BETA = 8.0
EPSILON = 1e-5          # AlgoVision's default early-exit threshold of its while loops
INFTY = 1e12


# ------------------------------------------------------------------ AlgoVision programs
def algovision_bubble_sort(beta):
    from algovision import Algorithm, Input, Output, Var, VarInt, GT, IsTrue, If, While, For, Let, LetInt
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
                      Let("swapped", lambda swapped: 1.0), Let("swaps", lambda swaps: swaps + 1.0)])),
              LetInt("n", lambda n: n - 1)),
        Output("array"), Output("swaps"),
        beta=beta, epsilon=EPSILON,
    )


def _av_update(d, cost, beta):
    "One relaxed Bellman-Ford round in AlgoVision's style: softmin over the 8 neighbours of the padded d."
    B, H, W = cost.shape
    unf = torch.nn.functional.unfold(d.unsqueeze(1), kernel_size=3).transpose(-2, -1)     # (B, H*W, 9)
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
def make_case(name, impl, reference=True):
    "Returns (function running forward+backward, function returning the relaxed output's error)."
    torch.manual_seed(0)
    if name.startswith("bubble"):
        n = int(name.split("_n")[1])
        x = torch.randn(100, n)
        hard = bubble_sort(x, hard=True)[0] if reference else None
        if impl == "diffalg":
            fwd = lambda v: bubble_sort(v, steepness=BETA, epsilon=EPSILON)
        else:
            algo = algovision_bubble_sort(BETA)
            fwd = lambda v: algo(v)
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
    hard = shortest_path(cost, hard=True)[1] if reference else None
    if impl == "diffalg":
        method = "pairwise" if name.endswith("_pairwise") else "tournament"
        fwd = lambda c: shortest_path(c, steepness=BETA, n_iter=n_iter, n_trace=n_iter, method=method)[1]
    else:
        algo = algovision_shortest_path(BETA, n_iter)
        fwd = lambda c: algo(c)
    def run():
        c = cost.clone().requires_grad_()
        fwd(c).sum().backward()
    def error():
        with torch.no_grad():
            return (fwd(cost) - hard).abs().mean().item()
    return run, error


def graph_memory_mb(run):
    "MB of distinct tensor storages that autograd saves for the backward pass during one forward+backward."
    seen = {}
    def pack(t):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(seen.values()) / 2 ** 20


def median_time(run, repeats):
    run()                                    # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); run(); times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_steps(repeats, block=10):
    """A whole training step of the relaxation chapter's ranking experiment (sample 100 sets of 5 numbers,
    the 16-channel scorer, expected-swaps loss, backward, Adam), with diffalg's and with AlgoVision's
    relaxed bubble sort as the loss; the same data, CNN and optimizer, timed in alternating blocks."""
    from diffalg.data.numbers import digits_numbers
    from diffalg.ranking import NumberScorer
    train = digits_numbers("train")
    algo = algovision_bubble_sort(BETA)
    losses = {"diffalg": lambda s: bubble_sort(s, steepness=BETA, epsilon=EPSILON)[2].mean(),
              "algovision": lambda s: algo(s)[-1].mean()}
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
    ms = {impl: 1e3 * statistics.median(v) for impl, v in times.items()}
    print(f"training step of the ranking chapter (batch 100 sets of 5, 16-channel scorer, Adam), median of {repeats} "
          f"blocks of {block} steps: diffalg {ms['diffalg']:.1f} ms, AlgoVision {ms['algovision']:.1f} ms; "
          f"1,500 steps: {1.5 * ms['diffalg']:.0f} s vs {1.5 * ms['algovision']:.0f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats and only the small cases")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairwise", action="store_true", help="also time the shortest path with the pairwise minimum")
    ap.add_argument("--train-step", action="store_true",
                    help="only time whole training steps of the ranking chapter with each bubble sort as the loss (needs algovision)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.train_step:
        return train_steps(args.repeats or 5)
    repeats = args.repeats or (3 if args.quick else 7)
    cases = ["bubble_n5", "shortest_path_12x12"] if args.quick else ["bubble_n5", "bubble_n16", "bubble_n32", "shortest_path_12x12"]
    if args.pairwise:
        cases.append("shortest_path_12x12_pairwise")
    try:
        import algovision  # noqa: F401
        impls = ["diffalg", "algovision"]
    except ImportError:
        impls = ["diffalg"]
        print("algovision is not installed: measuring diffalg only (pip install algovision for the comparison)")
    print(f"torch {torch.__version__}, {args.threads} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
          f"beta={BETA}, median of {repeats}; batch 100 (bubble sort), 32 maps and 24 iterations (shortest path)")
    rows = []
    for name in cases:
        made = {impl: make_case(name, impl) for impl in impls}
        times = {impl: [] for impl in impls}
        for impl in impls:
            made[impl][0]()                   # warm-up
        for _ in range(repeats):              # alternate the implementations
            for impl in impls:
                t0 = time.perf_counter(); made[impl][0](); times[impl].append(time.perf_counter() - t0)
        row = {"case": name}
        for impl in impls:
            row[f"{impl} ms"] = 1e3 * statistics.median(times[impl])
            row[f"{impl} error"] = made[impl][1]()
            row[f"{impl} graph MB"] = graph_memory_mb(made[impl][0])
        if len(impls) == 2:
            row["speed-up"] = row["algovision ms"] / row["diffalg ms"]
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    keys = list(rows[0])
    print()
    print(" | ".join(f"{k:>16}" for k in keys))
    for row in rows:
        print(" | ".join(f"{row[k]:>16.4g}" if isinstance(row[k], float) else f"{row[k]:>16}" for k in keys))


if __name__ == "__main__":
    main()
