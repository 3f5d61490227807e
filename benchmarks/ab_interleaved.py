"""Before and after, finely interleaved: representative cases of every benchmark, each timed in a
short child process in the OLD tree and in the NEW one, alternating (old, new, new, old, ...) for
--rounds rounds; per case the minimum over rounds of each child's median.

    .venv/bin/python benchmarks/ab_interleaved.py /work/base . --rounds 6
    .venv/bin/python benchmarks/ab_interleaved.py /work/base . --only rendering --rounds 10

Why: benchmarks/compare_trees.py alternates the trees script by script, minutes apart, so a
change in the machine's load between two runs reads as a change of the code. Here the two trees
alternate every few seconds, so load hits both alike, and the minimum over rounds drops the slow
outliers. Each child imports diffalg from its tree (new chapter subpackages, else the flat
modules of before the layout change), builds its inputs, warms up, and times `repeats` calls of
one forward + backward (or one inference) on one thread unless the case says otherwise.
Per case: the wall and CPU medians (each the minimum over rounds of the children's medians) and
the best single call of all rounds; ratios are new / old. Nothing is asserted. The table is
recorded in benchmarks/results/ab_interleaved.json (--no-record to skip).
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import Run, add_record_args, table  # noqa: E402

SORT = ("try:\n    from diffalg.sorting import RelaxedSort, soft_sort, get_sorting_network\n"
        "except ImportError:\n    from diffalg.sorting import RelaxedSort, soft_sort, "
        "get_sorting_network\n")
RENDER = ("from diffalg.rendering import Camera, camera_position, icosphere, render_silhouette, "
          "render_rgb\nv, f = icosphere(3)\n")
LOGIC = ("from diffalg.logic import GroupSum, LogicLayer\ntry:\n    from diffalg.logic import "
         "LogicCircuit\nexcept ImportError:\n    from diffalg.logic_compiled import LogicCircuit\n"
         "net = torch.nn.Sequential(LogicLayer(784, 8000), *[LogicLayer(8000, 8000) for _ in "
         "range(5)], GroupSum(10, 10.0)).eval()\ncircuit = LogicCircuit.from_model(net)\n"
         "xb = torch.rand(65536, 784) > 0.5\n")
NEWTON = ("from diffalg.newton import fisher_newton_loss, hessian_newton_loss\n"
          "from diffalg.sorting import sort_loss\nvalues = torch.randn(B, m)\n"
          "f = lambda v: sort_loss(v, values, steepness=10.0, distribution='logistic', "
          "reduction='none')\ny = torch.randn(B, m)\n")


def step_case(name, n):
    return ("from diffalg.distributions import relaxed_step\n"
            f"x = torch.randn({n}, requires_grad=True)\n",
            f"x.grad = None\nrelaxed_step(x, 4.0, {name!r}).sum().backward()")


def sort_case(kind, net, n, B, k=5):
    setup = SORT + f"net = get_sorting_network({net!r}, {n})\nx0 = torch.randn({B}, {n})\n"
    op = {"perm": "RelaxedSort(x, net, 10.0, 'cauchy').permutation",
          "values": "soft_sort(x, net, 10.0, 'cauchy')",
          "topk": f"RelaxedSort(x, net, 10.0, 'cauchy').topk({k})"}[kind]
    return setup, f"x = x0.clone().requires_grad_()\nout = {op}\nout.sum().backward()"


def render_case(mode, B, res):
    setup = RENDER + (f"eye = camera_position(4.0, torch.linspace(10.0, 40.0, {B}), "
                      f"torch.linspace(20.0, 200.0, {B}))\ncolors = torch.full_like(v, 0.7)\n")
    op = (f"render_silhouette(vv, f, Camera(eye), {res}, tau=1e-4, squared=True)"
          if mode == "silhouette" else
          f"render_rgb(vv, f, Camera(eye), {res}, colors=colors, tau=1e-4, squared=True, "
          "gamma=1e-4)")
    return setup, f"vv = v.clone().requires_grad_()\n{op}.sum().backward()"


def newton_case(variant, B, m):
    call = {"fisher": "fisher_newton_loss(yy, f, tikhonov=0.1)",
            "hessian cg": "hessian_newton_loss(yy, f, tikhonov=1.0, method='cg', cg_max_iter=10)",
            "hessian exact": "hessian_newton_loss(yy, f, tikhonov=1.0, method='exact')"}[variant]
    return f"B, m = {B}, {m}\n" + NEWTON, f"yy = y.clone().requires_grad_()\n{call}.backward()"


# name -> (group, setup code, timed code, repeats, environment)
CASES = {}
for dist, n in (("logistic", 10_000), ("reciprocal", 10_000), ("optimal", 10_000),
                ("gaussian", 100_000), ("logistic", 1_000_000)):
    CASES[f"relaxed_step {dist} {n:,}"] = ("distributions", *step_case(dist, n), 30, {})
for n in (5, 16, 32):
    CASES[f"bubble_sort n={n} B=100"] = (
        "relax", "try:\n    from diffalg.relax import bubble_sort\nexcept ImportError:\n"
        f"    from diffalg.relax_algorithms import bubble_sort\nx0 = torch.randn(100, {n})\n",
        "x = x0.clone().requires_grad_()\nbubble_sort(x, steepness=8.0, epsilon=1e-5)[2].sum()"
        ".backward()", 20, {})
for kind, net, n, B in (("perm", "bitonic", 64, 8), ("perm", "bitonic", 256, 8),
                        ("perm", "bitonic", 256, 32), ("perm", "odd_even", 256, 32),
                        ("values", "bitonic", 128, 128), ("values", "bitonic", 1000, 128),
                        ("topk", "bitonic", 1024, 32)):
    CASES[f"{kind} {net} n={n} B={B}"] = ("sorting", *sort_case(kind, net, n, B), 10, {})
for kind, net, n, B in (("perm", "bitonic", 64, 8), ("perm", "bitonic", 1024, 8),
                        ("topk", "bitonic", 1024, 32)):
    CASES[f"{kind} {net} n={n} B={B}, PyTorch pass"] = (
        "sorting_pytorch", *sort_case(kind, net, n, B), 5, {"DIFFALG_COMPILED": "off"})
for mode, B, res in (("silhouette", 1, 128), ("silhouette", 1, 256), ("silhouette", 8, 256),
                     ("rgb", 1, 256)):
    CASES[f"icosphere {mode} B={B} {res}px"] = ("rendering", *render_case(mode, B, res), 5, {})
CASES["packed inference, 48,000 gates, 65,536 images"] = (
    "logic", LOGIC, "circuit.packed(xb)", 5, {"THREADS": "2"})
for variant, B, m in (("hessian cg", 64, 8), ("fisher", 256, 8), ("hessian exact", 64, 4)):
    CASES[f"Newton {variant} sort_loss B={B} m={m}"] = ("newton", *newton_case(variant, B, m),
                                                        10, {})

CHILD = r"""
import json, statistics, sys, time
import torch
torch.set_num_threads(int(sys.argv[3]))
torch.manual_seed(0)
setup, stmt, repeats = sys.argv[1], sys.argv[2], int(sys.argv[4])
exec(setup)
for _ in range(2):
    exec(stmt)
wall, cpu = [], []
for _ in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    exec(stmt)
    wall.append(time.perf_counter() - t); cpu.append(time.process_time() - c)
print(json.dumps({"wall": statistics.median(wall), "cpu": statistics.median(cpu),
                  "best": min(wall)}))
"""


def child(tree, setup, stmt, repeats, env):
    threads = env.get("THREADS", "1")
    full = {**os.environ, "OMP_NUM_THREADS": threads, "OMP_WAIT_POLICY": "PASSIVE",
            **{k: v for k, v in env.items() if k != "THREADS"}}
    out = subprocess.run([str(Path(tree) / ".venv" / "bin" / "python"), "-c", CHILD, setup, stmt,
                          threads, str(repeats)], cwd=tree, capture_output=True, text=True,
                         env=full, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{tree}: {out.stderr[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", help="checkout before the change (with its .venv)")
    ap.add_argument("new", help="checkout after the change (with its .venv)")
    ap.add_argument("--rounds", type=int, default=6, help="alternations of the two trees")
    ap.add_argument("--only", nargs="+", metavar="GROUP", help="groups to run (default all)")
    ap.add_argument("--threshold", type=float, default=1.10, help="flag new / old above this")
    args = add_record_args(ap).parse_args()
    trees = {"old": str(Path(args.old).resolve()), "new": str(Path(args.new).resolve())}
    names = [n for n, c in CASES.items() if not args.only or c[0] in args.only]
    run = Run("ab_interleaved", args, repeats=args.rounds,
              params={"old": trees["old"], "new": trees["new"], "rounds": args.rounds,
                      "threshold": args.threshold},
              comparisons={g: {"what": f"diffalg's time, {g} cases", "ratio": "new / old"}
                           for g in dict.fromkeys(CASES[n][0] for n in names)})
    rows = []
    for name in names:
        group, setup, stmt, repeats, env = CASES[name]
        got = {"old": [], "new": []}
        for r in range(args.rounds):
            for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
                got[side].append(child(trees[side], setup, stmt, repeats, env))
        w = {s: min(x["wall"] for x in v) for s, v in got.items()}
        c = {s: min(x["cpu"] for x in v) for s, v in got.items()}
        b = {s: min(x["best"] for x in v) for s, v in got.items()}
        ratio = w["new"] / w["old"]
        rows.append({"comparison": group, "case": name, "old_s": w["old"], "new_s": w["new"],
                     "ratio": ratio, "old_cpu_s": c["old"], "new_cpu_s": c["new"],
                     "cpu_ratio": c["new"] / c["old"], "best_ratio": b["new"] / b["old"],
                     "flag": "slower" if ratio > args.threshold else ""})
        print(f"{group:16s} {name:48s} {w['old']:.4g} {w['new']:.4g} {ratio:5.2f} "
              f"(cpu {c['new'] / c['old']:.2f}, best {b['new'] / b['old']:.2f}) "
              f"{rows[-1]['flag']}", flush=True)
        run.add(rows[-1:])
    print(table(rows, ["comparison", "case", "old_s", "new_s", "ratio", "cpu_ratio", "best_ratio",
                       "flag"]))
    run.close()


if __name__ == "__main__":
    main()
