"""Forward+backward time and peak memory of diffalg.sorting against diffsort / difftopk / torchsort.

Each (case, side) runs in a fresh subprocess (so that max RSS is that side's peak); the two sides
of a case run one after the other under the same load, and the table reports medians and ratios
(reference time / diffalg time). Outputs of both sides are compared (max abs difference).
Results: benchmarks/results/sorting.json (sorting_pytorch.json with DIFFALG_COMPILED=off,
sorting_values.json with --values-inproc), a new run appended to each file's history.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sorting.py --quick   # minutes
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sorting.py --quick --no-reference   # seconds
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sorting.py --sweep --max-peer-gb 20
        # the full size (diffsort takes minutes and about 10 GB)
    DIFFALG_COMPILED=off OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sorting.py --sweep \\
        --max-peer-gb 20                       # diffalg without its compiled kernel (PyTorch only)
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sorting.py --values-inproc
        # the values-only paths interleaved in one process, on 1 thread and on all threads
    python benchmarks/bench_sorting.py --only "perm odd_even n=256" --flush-denormal   # one case

Imports work with the chapter subpackage (diffalg.sorting) and with the earlier flat modules
(diffalg.sorting_compiled), so that benchmarks/compare_trees.py can run it on both.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import Run, add_record_args  # noqa: E402

CHILD = r"""
import json, resource, statistics, sys, time
import torch
torch.manual_seed(0)
case = json.loads(sys.argv[1])
side, kind, net, n = case["side"], case["kind"], case["net"], case["n"]
batch, k, repeats = case["batch"], case.get("k"), case["repeats"]
if case.get("flush"):
    torch.set_flush_denormal(True)   # subnormals as zero, on the main thread (both sides alike)
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
x0 = torch.randn(batch, n)

def run_ours():
    from diffalg.sorting import RelaxedSort, soft_sort
    x = x0.clone().requires_grad_()
    if kind == "perm":
        out = RelaxedSort(x, net, 10.0, "cauchy").permutation
    elif kind == "values":
        out = soft_sort(x, net, 10.0, "cauchy")
    else:
        out = RelaxedSort(x, net, 10.0, "cauchy").topk(k).flip(-1)
    out.backward(torch.ones_like(out) / out.numel() + 0 * out)
    return out.detach(), x.grad

def run_peer():
    x = x0.clone().requires_grad_()
    if kind == "perm":
        import diffsort
        out = diffsort.DiffSortNet(net, n, steepness=10.0, distribution="cauchy")(x)[1]
    elif kind == "values" and side == "torchsort":
        import torchsort
        out = torchsort.soft_sort(x, regularization_strength=0.1)
    elif kind == "values":
        import diffsort
        out = diffsort.DiffSortNet(net, n, steepness=10.0, distribution="cauchy")(x)[0]
    else:
        import difftopk
        out = difftopk.DiffTopkNet(net, n, k, sparse=False, steepness=10.0,
                                   distribution="cauchy")(x)[1]
    out.backward(torch.ones_like(out) / out.numel() + 0 * out)
    return out.detach(), x.grad

fn = run_ours if side == "diffalg" else run_peer
times = []
for _ in range(repeats):
    t = time.perf_counter()
    out, grad = fn()
    times.append(time.perf_counter() - t)
res = {"median_s": statistics.median(times),
       "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
       "base_mb": base_rss / 1024}
if case.get("compare") and side in ("diffsort", "difftopk"):
    del times
    ref, ref_grad = out, grad
    mine, mine_grad = run_ours()
    res["max_abs_diff"] = (mine - ref).abs().max().item()
    res["max_abs_diff_grad"] = (mine_grad - ref_grad).abs().max().item()
print("RESULT" + json.dumps(res))
"""

INPROC = r"""
import json, statistics, sys, time
import torch
args = json.loads(sys.argv[1])
if args["threads"]:
    torch.set_num_threads(args["threads"])
from diffalg.distributions import get_distribution
try:                                  # the chapter subpackage
    from diffalg.sorting import soft_sort, get_sorting_network, compiled_pass, compiled_library
    from diffalg.sorting.relaxed import _network_values
except ImportError:                   # the earlier flat modules
    from diffalg.sorting import soft_sort, get_sorting_network, _network_values
    from diffalg.sorting_compiled import compiled_pass, compiled_library
try:
    import torchsort
except ImportError:
    torchsort = None
if args["no_reference"]:
    torchsort = None
torch.manual_seed(0)
threads = torch.get_num_threads()
kernel = "on" if compiled_library() is not None else "NOT available"
print(f"torch threads {threads}; float32, steepness 10, cauchy; forward + backward; min over "
      f"{args['rounds']} rounds of the median of {args['repeats']}; compiled kernel {kernel}")
print(f"{'case':24s} {'side':26s} {'time ms':>9s} {'torchsort/this':>14s} {'max|diff|':>10s}")
rows = []
for net, n, batch in args["cases"]:
    x = torch.randn(batch, n, requires_grad=True)
    g = torch.randn(batch, n)
    network, dist = get_sorting_network(net, n), get_distribution("cauchy")
    def torch_pass():
        with compiled_pass("off"):
            return soft_sort(x, net, 10.0, "cauchy")
    sides = {"diffalg soft_sort": lambda: soft_sort(x, net, 10.0, "cauchy"),
             "diffalg, PyTorch pass": torch_pass,
             "diffalg, layer by layer": lambda: _network_values(x, network, 10.0, dist,
                                                                 stack=False)[0]}
    if torchsort is not None:
        sides["torchsort"] = lambda: torchsort.soft_sort(x, regularization_strength=0.1)
    def once(f):
        t = time.perf_counter()
        f().backward(g)
        return time.perf_counter() - t
    best = {k: float("inf") for k in sides}
    for f in sides.values():
        once(f)
    for _ in range(args["rounds"]):        # interleaved: every side sees the same load
        for k, f in sides.items():
            best[k] = min(best[k], statistics.median(once(f) for _ in range(args["repeats"])))
    with torch.no_grad():
        diff = (sides["diffalg soft_sort"]() - sides["diffalg, layer by layer"]()).abs().max()
    name = f"{net} n={n} B={batch}"
    for k, v in best.items():
        ratio = f"{best['torchsort'] / v:13.2f}x" if torchsort is not None else ""
        d = f"{diff.item():10.1e}" if k == "diffalg soft_sort" else ""
        print(f"{name:24s} {k:26s} {1e3 * v:9.2f} {ratio:>14s} {d}", flush=True)
    row = {"comparison": f"sorted values, one process, {threads} thread(s)", "case": name,
           "size_name": "n", "size": n, "batch": batch, "net": net, "threads": threads,
           "diffalg_s": best["diffalg soft_sort"], "pytorch_pass_s": best["diffalg, PyTorch pass"],
           "layer_path_s": best["diffalg, layer by layer"], "max_abs_diff_layer_path": diff.item()}
    if torchsort is not None:
        row.update(reference="torchsort", reference_s=best["torchsort"],
                   ratio=best["torchsort"] / best["diffalg soft_sort"])
    rows.append(row)
print("RESULT" + json.dumps(rows))
"""

KINDS = {"perm": "relaxed permutation", "values": "sorted values", "topk": "top-k"}
PEERS = {"perm": ["diffsort"], "values": ["diffsort", "torchsort"], "topk": ["difftopk"]}
OFF = ("off", "0", "false", "no")


def values_inproc(args):
    "The values-only paths (kernel, PyTorch pass, layer by layer, torchsort) in one process."
    cases = [["bitonic", 1000, 128], ["bitonic", 128, 128], ["odd_even", 128, 128]]
    if not args.quick:
        cases += [["bitonic", 4096, 32], ["odd_even", 1000, 16]]
    rounds, repeats = (2, 3) if args.quick else (3, 5)
    what = ("forward + backward of soft_sort in one process, float32, Cauchy, steepness 10; min "
            f"over {rounds} rounds of the median of {repeats}, the sides interleaved")
    comparisons, rows = {}, []
    run = Run("sorting_values", args, repeats=repeats, params={"rounds": rounds, "cases": cases})
    for threads in ([args.threads] if args.threads else [1, 0]):
        spec = {"threads": threads, "cases": cases, "rounds": rounds, "repeats": repeats,
                "no_reference": args.no_reference}
        out = subprocess.run([sys.executable, "-c", INPROC, json.dumps(spec)], text=True,
                             stdout=subprocess.PIPE, env={**os.environ})
        for line in out.stdout.splitlines():
            if line.startswith("RESULT"):
                rows += json.loads(line[6:])
            else:
                print(line)
    for r in rows:
        comparisons[r["comparison"]] = {"what": what, "size": "n", "ratio": "reference / diffalg"}
    run.run["comparisons"] = comparisons
    run.close(rows)


def run_case(case, timeout):
    try:
        p = subprocess.run([sys.executable, "-c", CHILD, json.dumps(case)], capture_output=True,
                           text=True, timeout=timeout, env={**os.environ})
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {timeout}s"}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[6:])
    return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1][:80]}


def have(module):
    return subprocess.run([sys.executable, "-c", f"import {module}"],
                          capture_output=True).returncode == 0


def cases_for(args):
    if args.quick:
        cases = [("perm", "bitonic", 256, 32, None), ("perm", "odd_even", 128, 32, None),
                 ("perm", "bitonic", 512, 8, None), ("values", "bitonic", 1000, 128, None),
                 ("values", "bitonic", 128, 128, None), ("topk", "bitonic", 256, 32, 5)]
    else:
        cases = [("perm", "bitonic", 1024, 8, None), ("perm", "odd_even", 256, 32, None),
                 ("perm", "bitonic", 256, 32, None), ("values", "bitonic", 1000, 128, None),
                 ("values", "bitonic", 128, 128, None), ("topk", "bitonic", 1024, 32, 5)]
    if args.sweep:
        cases += [("perm", "bitonic", n, 8, None) for n in (8, 16, 32, 64, 128, 256, 512)]
    return cases


def peer_row(base, peer, res, mine, skipped=None):
    "One row of the record: diffalg's figures of the case and those of one reference."
    row = dict(base, reference=peer)
    if skipped or "error" in res:
        row["reference_note"] = skipped or res["error"]
        return row
    row.update(reference_s=res["median_s"], reference_mb=res["peak_mb"] - res["base_mb"],
               max_abs_diff=res.get("max_abs_diff"), max_abs_diff_grad=res.get("max_abs_diff_grad"))
    if "median_s" in mine:
        row["ratio"] = res["median_s"] / mine["median_s"]
        row["memory_ratio"] = row["reference_mb"] / max(base["diffalg_mb"], 1.0)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    ap.add_argument("--sweep", action="store_true",
                    help="also time bitonic permutations at n = 8..512, batch 8")
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--max-peer-gb", type=float, default=6.0,
                    help="skip a peer case whose dense matrices would need more (estimate)")
    ap.add_argument("--only", metavar="TEXT", action="append",
                    help="run only the cases whose name contains TEXT (repeatable)")
    ap.add_argument("--values-inproc", action="store_true",
                    help="only the values-only paths, side by side in one process")
    ap.add_argument("--threads", type=int, default=0,
                    help="with --values-inproc: torch threads (default: 1, then all)")
    ap.add_argument("--flush-denormal", action="store_true",
                    help="torch.set_flush_denormal(True) in every case's process (both sides)")
    args = add_record_args(ap).parse_args()
    if args.values_inproc:
        return values_inproc(args)
    compiled = os.environ.get("DIFFALG_COMPILED", "auto").strip().lower()
    name = "sorting_pytorch" if compiled in OFF else "sorting"
    repeats = 3
    what = ("forward + backward, float32, Cauchy, steepness 10; median of 3 in a fresh process "
            "per side" + ("; subnormals flushed" if args.flush_denormal else ""))
    run = Run(name, args, repeats=repeats, params={"flush_denormal": args.flush_denormal,
                                                   "max_peer_gb": args.max_peer_gb})
    print(f"{run.run['meta']['command']}\ncompiled kernel: {run.run['meta']['compiled_kernel']}; "
          f"{what}; peak = max RSS growth of the side's process (MB)")
    header = (f"{'case':34s} {'side':10s} {'time s':>9s} {'peak MB':>9s} {'speed-up':>8s} "
              f"{'mem ratio':>9s} {'max|diff|':>10s}")
    print(header + "\n" + "-" * len(header))
    for kind, net, n, batch, k in cases_for(args):
        case = f"{kind} {net} n={n} B={batch}" + (f" k={k}" if k else "")
        if args.only and not any(text in case for text in args.only):
            continue
        comparison = f"{KINDS[kind]}, {net}, batch {batch}" + (f", k={k}" if k else "")
        run.run["comparisons"][comparison] = {"what": what, "size": "n",
                                              "ratio": "reference / diffalg"}
        spec = {"kind": kind, "net": net, "n": n, "batch": batch, "k": k,
                "flush": args.flush_denormal}
        mine = run_case({**spec, "side": "diffalg", "repeats": repeats}, args.timeout)
        base = {"comparison": comparison, "case": case, "size_name": "n", "size": n,
                "batch": batch, "net": net, "k": k, "diffalg_s": mine.get("median_s"),
                "diffalg_mb": mine["peak_mb"] - mine["base_mb"] if "peak_mb" in mine else None}
        if "error" in mine:
            base["diffalg_note"] = mine["error"]
        print(f"{case:34s} {'diffalg':10s} {mine.get('median_s', 0):9.4f} "
              f"{base['diffalg_mb'] or 0:9.0f}", mine.get("error", ""), flush=True)
        rows = []
        for peer in ([] if args.no_reference else PEERS[kind]):
            bits = (n - 1).bit_length()
            depth = n if net == "odd_even" else bits * (bits + 1) // 2
            est_gb = 4 * n * n * batch * depth * 3 / 1e9 if peer == "diffsort" else 0.0
            if not have(peer):
                res, skipped = {}, "not installed"
            elif est_gb > args.max_peer_gb:
                res, skipped = {}, f"skipped: needs ~{est_gb:.0f} GB > --max-peer-gb"
            else:
                big = n * n * batch > 2 ** 24 and kind != "values"
                res, skipped = run_case({**spec, "side": peer, "repeats": 1 if big else 3,
                                         "compare": peer != "torchsort"}, args.timeout), None
            row = peer_row(base, peer, res, mine, skipped)
            rows.append(row)
            if "reference_s" not in row:
                print(f"{case:34s} {peer:10s} ({row['reference_note']})")
                continue
            diff = row.get("max_abs_diff")
            print(f"{case:34s} {peer:10s} {row['reference_s']:9.4f} {row['reference_mb']:9.0f} "
                  f"{row.get('ratio', 0):7.1f}x {row.get('memory_ratio', 0):8.1f}x "
                  f"{'' if diff is None else f'{diff:10.1e}'}", flush=True)
        run.add(rows or [base])
    run.close()


if __name__ == "__main__":
    main()
