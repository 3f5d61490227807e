"""Forward+backward time and peak memory of diffalg.sorting against diffsort / difftopk / torchsort.

Each (case, side) runs in a fresh subprocess (so that max RSS is that side's peak); the two sides of a
case run one after the other under the same load, and the table reports medians and ratios.
Set OMP_WAIT_POLICY=PASSIVE on a shared machine. Outputs of both sides are compared (max abs difference).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sorting.py --quick
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sorting.py            # the issue's sizes (slow: diffsort takes minutes)
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sorting.py --only "perm odd_even n=256" --max-peer-gb 9   # one case
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sorting.py --values-inproc --threads 1   # values paths interleaved in one process
    DIFFALG_COMPILED=off OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sorting.py --quick   # diffalg without its compiled kernel (PyTorch only)
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sorting.py --only "perm odd_even n=256" --flush-denormal   # torch.set_flush_denormal(True) on both sides
"""
import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, statistics, sys, time
import torch
torch.manual_seed(0)
case = json.loads(sys.argv[1])
side, kind, net, n, batch, k, repeats = case["side"], case["kind"], case["net"], case["n"], case["batch"], case.get("k"), case["repeats"]
if case.get("flush"):
    torch.set_flush_denormal(True)   # subnormal numbers as zero, on the main thread (both sides alike)
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
x0 = torch.randn(batch, n)

def run_ours():
    from diffalg.sorting.relaxed import RelaxedSort, soft_sort
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
        out = difftopk.DiffTopkNet(net, n, k, sparse=False, steepness=10.0, distribution="cauchy")(x)[1]
    out.backward(torch.ones_like(out) / out.numel() + 0 * out)
    return out.detach(), x.grad

fn = run_ours if side == "diffalg" else run_peer
times = []
for _ in range(repeats):
    t = time.perf_counter()
    out, grad = fn()
    times.append(time.perf_counter() - t)
res = {"median_s": statistics.median(times), "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
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
from diffalg.sorting.relaxed import soft_sort, _network_values, get_sorting_network
from diffalg.sorting._kernel import compiled_pass, compiled_library
from diffalg.distributions import get_distribution
try:
    import torchsort
except ImportError:
    torchsort = None
torch.manual_seed(0)
print(f"torch threads {torch.get_num_threads()}; float32, steepness 10, cauchy; forward + backward; min over {args['rounds']} rounds of the median of {args['repeats']}; "
      f"compiled kernel {'on' if compiled_library() is not None else 'NOT available'} (soft_sort uses it by default)")
print(f"{'case':28s} {'side':26s} {'time ms':>9s} {'vs torchsort':>12s} {'max|diff| vs layer path':>24s}")
for net, n, batch in args["cases"]:
    x = torch.randn(batch, n, requires_grad=True)
    g = torch.randn(batch, n)
    network, dist = get_sorting_network(net, n), get_distribution("cauchy")
    def torch_pass():
        with compiled_pass("off"):
            return soft_sort(x, net, 10.0, "cauchy")
    sides = {"diffalg soft_sort": lambda: soft_sort(x, net, 10.0, "cauchy"),
             "diffalg, PyTorch pass": torch_pass,
             "diffalg layer path (old)": lambda: _network_values(x, network, 10.0, dist, stack=False)[0]}
    if torchsort is not None:
        sides["torchsort.soft_sort"] = lambda: torchsort.soft_sort(x, regularization_strength=0.1)
    def once(f):
        t = time.perf_counter()
        f().backward(g)
        return time.perf_counter() - t
    best = {k: float("inf") for k in sides}
    for f in sides.values():
        once(f)
    for _ in range(args["rounds"]):                      # interleaved, so that every side sees the same load
        for k, f in sides.items():
            best[k] = min(best[k], statistics.median(once(f) for _ in range(args["repeats"])))
    with torch.no_grad():
        diff = (sides["diffalg soft_sort"]() - sides["diffalg layer path (old)"]()).abs().max().item()
    for k, v in best.items():
        ratio = f"{v / best['torchsort.soft_sort']:11.2f}x" if torchsort is not None else ""
        d = f"{diff:24.1e}" if k == "diffalg soft_sort" else ""
        print(f"{net + ' n=' + str(n) + ' B=' + str(batch):28s} {k:26s} {1e3 * v:9.2f} {ratio:>12s} {d}", flush=True)
"""


def values_inproc(args):
    "The values-only paths (new in-place, old layer by layer, torchsort) interleaved in one process."
    cases = [["bitonic", 1000, 128], ["bitonic", 128, 128], ["odd_even", 128, 128]]
    if not args.quick:
        cases += [["bitonic", 4096, 32], ["odd_even", 1000, 16]]
    spec = {"threads": args.threads, "cases": cases, "rounds": 3, "repeats": 5}
    subprocess.run([sys.executable, "-c", INPROC, json.dumps(spec)], env={**os.environ})


def run_case(case, timeout):
    try:
        p = subprocess.run([sys.executable, "-c", CHILD, json.dumps(case)], capture_output=True, text=True, timeout=timeout,
                           env={**os.environ})
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {timeout}s"}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[6:])
    return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1][:80]}


def kernel_built():
    "Whether diffalg's compiled kernel builds in this environment (it is used unless DIFFALG_COMPILED=off)."
    code = "import diffalg.sorting._kernel as sc; print(sc.compiled_library() is not None)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "True"


def have(module):
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (minutes, for a shared machine)")
    ap.add_argument("--sweep", action="store_true", help="also time bitonic at n = 8..1024, batch 8")
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--plot", metavar="PNG", help="with --sweep: save a log-log plot of time vs n (bitonic, batch 8) to this file")
    ap.add_argument("--max-peer-gb", type=float, default=6.0, help="skip a peer case whose dense matrices would need more (estimate)")
    ap.add_argument("--only", metavar="TEXT", action="append", help="run only the cases whose name contains TEXT (repeatable), e.g. 'perm odd_even n=256'")
    ap.add_argument("--values-inproc", action="store_true", help="only the values-only paths, side by side in one process")
    ap.add_argument("--threads", type=int, default=0, help="with --values-inproc: torch threads (0 = default)")
    ap.add_argument("--json", metavar="PATH", help="also write every measurement (and the machine's load) to this JSON file")
    ap.add_argument("--flush-denormal", action="store_true", help="torch.set_flush_denormal(True) in every case's process (both sides)")
    args = ap.parse_args()
    if args.values_inproc:
        return values_inproc(args)
    if args.quick:
        cases = [("perm", "bitonic", 256, 32, None), ("perm", "odd_even", 128, 32, None), ("perm", "bitonic", 512, 8, None),
                 ("values", "bitonic", 1000, 128, None), ("values", "bitonic", 128, 128, None), ("topk", "bitonic", 256, 32, 5)]
    else:
        cases = [("perm", "bitonic", 1024, 8, None), ("perm", "odd_even", 256, 32, None), ("perm", "bitonic", 256, 32, None),
                 ("values", "bitonic", 1000, 128, None), ("values", "bitonic", 128, 128, None), ("topk", "bitonic", 1024, 32, 5)]
    if args.sweep:
        cases += [("perm", "bitonic", n, 8, None) for n in (8, 16, 32, 64, 128, 256, 512)]
    peers = {"perm": ["diffsort"], "values": ["diffsort", "torchsort"], "topk": ["difftopk"]}
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, torch threads default; float32, steepness 10, cauchy; "
          f"diffalg's compiled kernel: {os.environ.get('DIFFALG_COMPILED', 'auto')} (built: {kernel_built()}); "
          + ("subnormals flushed (torch.set_flush_denormal); " if args.flush_denormal else "")
          + f"time = forward + backward, median; peak = max RSS of a fresh process (MB), base = RSS after import")
    header = f"{'case':34s} {'side':10s} {'time s':>9s} {'peak MB':>9s} {'base MB':>8s} {'speedup':>8s} {'mem ratio':>9s} {'max|diff|':>10s}"
    print(header)
    print("-" * len(header))
    sweep, records = {}, []
    load_before = os.getloadavg()
    for kind, net, n, batch, k in cases:
        name = f"{kind} {net} n={n} B={batch}" + (f" k={k}" if k else "")
        if args.only and not any(text in name for text in args.only):
            continue
        big = n * n * batch > 2 ** 24 and kind != "values"
        mine = run_case({"side": "diffalg", "kind": kind, "net": net, "n": n, "batch": batch, "k": k, "repeats": 3,
                         "flush": args.flush_denormal}, args.timeout)
        records.append({"case": name, "kind": kind, "net": net, "n": n, "batch": batch, "k": k, "side": "diffalg", **mine})
        if kind == "perm" and net == "bitonic" and batch == 8:
            sweep.setdefault("diffalg", {})[n] = mine.get("median_s")
        print(f"{name:34s} {'diffalg':10s} {mine.get('median_s', float('nan')):9.4f} {mine.get('peak_mb', float('nan')):9.0f} {mine.get('base_mb', float('nan')):8.0f}", mine.get("error", ""), flush=True)
        for peer in peers[kind]:
            if not have(peer):
                print(f"{name:34s} {peer:10s} (not installed)")
                continue
            depth = n if net == "odd_even" else (n - 1).bit_length() * ((n - 1).bit_length() + 1) // 2
            est_gb = 4 * n * n * batch * depth * 3 / 1e9 if peer == "diffsort" else 0.0
            if est_gb > args.max_peer_gb:
                print(f"{name:34s} {peer:10s} (skipped: dense matrices need ~{est_gb:.0f} GB > --max-peer-gb {args.max_peer_gb:g})")
                continue
            res = run_case({"side": peer, "kind": kind, "net": net, "n": n, "batch": batch, "k": k,
                            "repeats": 1 if big else 3, "compare": peer != "torchsort", "flush": args.flush_denormal}, args.timeout)
            records.append({"case": name, "kind": kind, "net": net, "n": n, "batch": batch, "k": k, "side": peer, **res})
            if "error" in res:
                print(f"{name:34s} {peer:10s} {res['error']}")
                continue
            if kind == "perm" and net == "bitonic" and batch == 8:
                sweep.setdefault(peer, {})[n] = res["median_s"]
            speed = res["median_s"] / mine["median_s"]
            mem = (res["peak_mb"] - res["base_mb"]) / max(mine["peak_mb"] - mine["base_mb"], 1.0)
            diff = res.get("max_abs_diff")
            print(f"{name:34s} {peer:10s} {res['median_s']:9.4f} {res['peak_mb']:9.0f} {res['base_mb']:8.0f} {speed:7.1f}x {mem:8.1f}x "
                  f"{'' if diff is None else f'{diff:10.1e}'}", flush=True)
    if args.json:
        import datetime
        import json
        with open(args.json, "w") as f:
            json.dump({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
                       "command": "python benchmarks/bench_sorting.py " + " ".join(sys.argv[1:]),
                       "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"), "torch": __import__("importlib.metadata").metadata.version("torch"),
                       "flush_denormal": args.flush_denormal, "diffalg_compiled": os.environ.get("DIFFALG_COMPILED", "auto"),
                       "compiled_kernel_built": kernel_built(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
                       "records": records}, f, indent=1)
        print(f"measurements written to {args.json}")
    if args.plot and sweep:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for side, pts in sweep.items():
            ns = sorted(n for n, v in pts.items() if v)
            ax.loglog(ns, [pts[n] for n in ns], marker="o", label=side)
        ax.set(xlabel="n", ylabel="forward + backward (s)", title="relaxed permutation, bitonic, batch 8")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"plot saved to {args.plot}")


if __name__ == "__main__":
    main()
