"""Before and after, finely interleaved: every case of every benchmark script, timed in the OLD
tree and in the NEW one, alternating (old, new, new, old, ...) for --rounds rounds; per case the
minimum over rounds of each side's median.

    .venv/bin/python benchmarks/ab_interleaved.py /work/base . --rounds 6     # about 40 minutes
    .venv/bin/python benchmarks/ab_interleaved.py /work/base . --only rendering --rounds 10
    .venv/bin/python benchmarks/ab_interleaved.py /work/base . --recheck --rounds 12
    .venv/bin/python benchmarks/ab_interleaved.py /work/base . --recheck --fresh --rounds 20

Why: benchmarks/compare_trees.py alternates the trees script by script, minutes apart, so a
change in the machine's load between two runs reads as a change of the code. Here each tree runs
one long-lived server process (its own .venv, its own diffalg: the chapter subpackages, else the
flat modules of before the layout change), and the two servers take turns case by case, a second
or so each, so load hits both alike; the minimum over rounds drops the slow outliers. The cases
are those of the benchmark scripts (bench_distributions, bench_relax, bench_sorting and its
PyTorch pass and values runs, bench_rendering, bench_logic, bench_newton) at their full sizes,
with the same timed operation (one forward + backward, one training step or one inference). A
case's inputs are built once per server; each request warms up, then times `repeats` calls
(chosen on the first request so that a request takes about --budget seconds, 3 to 25 calls).
Per case: the wall and CPU medians (each the minimum over rounds) and the best single call of all
rounds; ratios are new / old. Nothing is asserted. `--recheck` measures the flagged cases of the
last recorded run again (more rounds), recorded as a run of its own; `--fresh` starts new
processes every round, so that one process's memory layout cannot favour one tree. The table is
recorded in benchmarks/results/ab_interleaved.json (--no-record to skip).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import Run, _git, add_record_args, load, table  # noqa: E402
from ab_cases import CASES  # noqa: E402

SERVER = r"""
import gc, json, statistics, sys, time, traceback
import torch
spaces = {}
for line in sys.stdin:
    req = json.loads(line)
    try:
        if req["setup"] not in spaces:
            spaces.clear()
            gc.collect()
            torch.manual_seed(0)
            ns = {"torch": torch}
            exec(req["setup"], ns)
            spaces[req["setup"]] = ns
        ns = spaces[req["setup"]]
        torch.set_num_threads(req["threads"])
        code = compile(req["stmt"], "<case>", "exec")
        t = time.perf_counter()
        exec(code, ns)
        warm = time.perf_counter() - t
        repeats = req["repeats"] or max(3, min(25, round(req["budget"] / max(warm, 1e-6))))
        if warm < 0.3:
            exec(code, ns)
        gc.collect()
        wall, cpu = [], []
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            exec(code, ns)
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        out = {"wall": statistics.median(wall), "cpu": statistics.median(cpu), "best": min(wall),
               "repeats": repeats}
    except Exception:
        out = {"error": traceback.format_exc()[-2000:]}
    print("RESULT " + json.dumps(out), flush=True)
"""


class Server:
    "One long-lived python of a tree's .venv, with extra environment variables."

    def __init__(self, tree, env):
        full = {**os.environ, "OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE", **env}
        self.log = tempfile.NamedTemporaryFile("w+", prefix="ab_server_", suffix=".log",
                                               delete=False)
        self.tree = tree
        self.proc = subprocess.Popen([str(Path(tree) / ".venv" / "bin" / "python"), "-u", "-c",
                                      SERVER], cwd=tree, env=full, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log)

    def time(self, setup, stmt, threads, repeats, budget):
        req = {"setup": setup, "stmt": stmt, "threads": threads, "repeats": repeats,
               "budget": budget}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                out = json.loads(line[7:])
                if "error" in out:
                    raise RuntimeError(f"{self.tree}: {out['error']}")
                return out
        raise RuntimeError(f"{self.tree}: the server stopped (log: {self.log.name})")

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", help="checkout before the change (with its .venv)")
    ap.add_argument("new", help="checkout after the change (with its .venv)")
    ap.add_argument("--rounds", type=int, default=6, help="alternations of the two trees")
    ap.add_argument("--budget", type=float, default=0.4, help="seconds per timed request")
    ap.add_argument("--only", nargs="+", metavar="GROUP", help="groups to run (default all)")
    ap.add_argument("--threshold", type=float, default=1.10, help="flag new / old above this")
    ap.add_argument("--fresh", action="store_true",
                    help="start both processes anew every round (one import per round): each "
                         "round draws a new memory layout, which one process per tree fixes "
                         "for the whole run")
    ap.add_argument("--recheck", action="store_true",
                    help="measure again only the cases flagged in the last recorded run that was "
                         "not itself a recheck (recorded as a recheck run)")
    args = add_record_args(ap).parse_args()
    trees = {"old": str(Path(args.old).resolve()), "new": str(Path(args.new).resolve())}
    names = [n for n, c in CASES.items() if not args.only or c[0] in args.only]
    if args.recheck:
        main_runs = [r for r in load("ab_interleaved")["runs"] if not r["params"].get("recheck")]
        if not main_runs:
            raise SystemExit("--recheck: no recorded run to recheck")
        flagged = {r["case"] for r in main_runs[-1]["rows"] if r.get("flag")}
        names = [n for n in names if n in flagged]
    run = Run("ab_interleaved", args, repeats=args.rounds,
              params={"old": trees["old"], "new": trees["new"], "rounds": args.rounds,
                      "budget_s": args.budget, "threshold": args.threshold,
                      "recheck": args.recheck, "fresh": args.fresh,
                      "old_commit": _git("rev-parse", "--short", "HEAD", cwd=trees["old"]),
                      "new_commit": _git("rev-parse", "--short", "HEAD", cwd=trees["new"])},
              comparisons={g: {"what": f"diffalg's time, {g} cases", "ratio": "new / old"}
                           for g in dict.fromkeys(CASES[n][0] for n in names)})
    servers, rows = {}, []
    try:
        for name in names:
            group, setup, stmt, threads, env = CASES[name]
            key = tuple(sorted(env.items()))
            for side in trees:
                if (side, key) not in servers:
                    servers[side, key] = Server(trees[side], env)
            got, repeats = {"old": [], "new": []}, None
            for r in range(args.rounds):
                if args.fresh and r:          # new processes: a new memory layout each round
                    for side in trees:
                        servers[side, key].close()
                        servers[side, key] = Server(trees[side], env)
                for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    out = servers[side, key].time(setup, stmt, threads, repeats, args.budget)
                    repeats = out["repeats"]
                    got[side].append(out)
            w = {s: min(x["wall"] for x in v) for s, v in got.items()}
            c = {s: min(x["cpu"] for x in v) for s, v in got.items()}
            b = {s: min(x["best"] for x in v) for s, v in got.items()}
            ratio = w["new"] / w["old"]
            rows.append({"comparison": group, "case": name, "old_s": w["old"],
                         "new_s": w["new"], "ratio": ratio, "old_cpu_s": c["old"],
                         "new_cpu_s": c["new"], "cpu_ratio": c["new"] / c["old"],
                         "best_ratio": b["new"] / b["old"], "repeats": repeats,
                         "threads": threads, "load": os.getloadavg()[0],
                         "flag": "slower" if ratio > args.threshold else ""})
            print(f"{group:16s} {name:58s} {w['old']:.4g} {w['new']:.4g} {ratio:5.2f} "
                  f"(cpu {c['new'] / c['old']:.2f}, best {b['new'] / b['old']:.2f}, load "
                  f"{rows[-1]['load']:.2f}) {rows[-1]['flag']}", flush=True)
            run.add(rows[-1:])
    finally:
        for s in servers.values():
            s.close()
    print(table(rows, ["comparison", "case", "old_s", "new_s", "ratio", "cpu_ratio", "best_ratio",
                       "flag"]))
    run.close()


if __name__ == "__main__":
    main()
