"""Before and after: diffalg's times in two checkouts, side by side, case by case.

    .venv/bin/python benchmarks/compare_trees.py OLD NEW             # quick sizes, minutes
    .venv/bin/python benchmarks/compare_trees.py OLD NEW --full      # full sizes, an hour or more
    .venv/bin/python benchmarks/compare_trees.py /work/base . --only sorting relax --rounds 3

OLD and NEW are two checkouts of the project, each with its own virtual environment in `.venv/`
(made by `bash tools/setup.sh`) in which diffalg is installed editable from that checkout.

How it works. The benchmark scripts of THIS checkout (the folder of this file) run in both trees:
each script imports diffalg from the chapter subpackages (`diffalg.sorting`, `diffalg.logic`...)
and falls back to the earlier flat modules (`diffalg.sorting_compiled`, `diffalg.logic_compiled`,
`diffalg.relax_algorithms`, `diffalg.sorting_baselines`), so the same measuring code times both
versions of the library. A script runs with the tree's own Python (`TREE/.venv/bin/python`) and
the tree as its working folder (so that `import diffalg` finds that tree's package; this is
checked before anything is timed), with `--no-reference` (the reference packages do not change
between the trees) and `--results` pointing into a scratch folder, so the recorded history in
benchmarks/results/ is left alone. Data files the scripts read (the teapot mesh) come from this
checkout, for both trees. The two trees alternate benchmark by benchmark, OLD first in odd rounds
and NEW first in even ones, so that a change in the machine's load hits both alike.

For every case the figure compared is diffalg's time (`diffalg_s` of the row: each script's own
median), the minimum over the rounds; the table prints old s, new s and new / old, and marks the
cases where new / old exceeds --threshold. Nothing is asserted: a shared machine moves single
times by 20-50%, so read a flagged case as "measure again", and rerun it with --only and more
--rounds. The comparison is recorded in benchmarks/results/before_after.json (the appendix draws
it).
Not compared: bench_cpu_effects.py (it times PyTorch, not diffalg) and ranking_table.py (training
accuracy, not speed).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import Run, add_record_args, load, table  # noqa: E402

# results name, script, arguments at full size, environment; --quick is added unless --full
SUITE = [
    ("distributions", "bench_distributions.py", [], {}),
    ("relax", "bench_relax.py", ["--pairwise"], {}),
    ("relax_train_step", "bench_relax.py", ["--train-step"], {}),
    ("sorting", "bench_sorting.py", ["--sweep"], {}),
    ("sorting_pytorch", "bench_sorting.py", ["--sweep"], {"DIFFALG_COMPILED": "off"}),
    ("sorting_values", "bench_sorting.py", ["--values-inproc"], {}),
    ("rendering", "bench_rendering.py", [], {}),
    ("logic", "bench_logic.py", ["--block", "5", "--repeats", "10"], {}),
    ("newton", "bench_newton.py", [], {}),
]
PROBE = "import diffalg, os; print(os.path.realpath(diffalg.__file__))"


def tree_info(tree):
    "The tree's Python, and the commit of the tree (checking that its diffalg is its own)."
    tree = Path(tree).resolve()
    python = tree / ".venv" / "bin" / "python"
    if not python.exists():
        sys.exit(f"{python} is missing: run `bash tools/setup.sh` in {tree} first")
    found = subprocess.run([str(python), "-c", PROBE], cwd=tree, capture_output=True, text=True)
    where = Path(found.stdout.strip() or "/")
    if found.returncode != 0 or tree not in where.parents:
        sys.exit(f"in {tree}, `import diffalg` gives {where or found.stderr[-300:]}, not the "
                 "tree's own package")
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=tree,
                            capture_output=True, text=True).stdout.strip()
    return {"path": str(tree), "python": str(python), "commit": commit}


def run_one(info, script, args, env, folder, timeout):
    "Run one benchmark script in one tree; its results land in `folder`. Returns seconds taken."
    cmd = [info["python"], str(HERE / script), *args, "--no-reference", "--results", str(folder)]
    full_env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
                **env}
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, cwd=info["path"], env=full_env, capture_output=True,
                             text=True, timeout=timeout)
        if out.returncode != 0:
            print(f"    failed in {info['path']}: {(out.stderr.strip() or 'no output')[-600:]}")
    except subprocess.TimeoutExpired:
        print(f"    timed out after {timeout} s in {info['path']}")
    return time.perf_counter() - t0


def best_times(folders, name):
    "(comparison, case) -> (row of the first round, min of diffalg_s over the rounds)."
    best = {}
    for folder in folders:
        runs = load(name, folder)["runs"]
        for row in (runs[-1]["rows"] if runs else []):
            if row.get("diffalg_s") is None:
                continue
            key = (row["comparison"], row["case"])
            first, t = best.get(key, (row, float("inf")))
            best[key] = (first, min(t, row["diffalg_s"]))
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", help="checkout before the change (with its .venv)")
    ap.add_argument("new", help="checkout after the change (with its .venv)")
    ap.add_argument("--full", action="store_true", help="full sizes instead of --quick")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each benchmark in each tree")
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="only these benchmarks (" + ", ".join(s[0] for s in SUITE) + ")")
    ap.add_argument("--threshold", type=float, default=1.10, help="flag new / old above this")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per script run")
    ap.add_argument("--scratch", help="folder for the per-round results (default: a new one)")
    args = add_record_args(ap).parse_args()
    args.quick = not args.full
    trees = {"old": tree_info(args.old), "new": tree_info(args.new)}
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="compare_trees_"))
    print(f"old: {trees['old']['path']} ({trees['old']['commit']})\n"
          f"new: {trees['new']['path']} ({trees['new']['commit']})\n"
          f"per-round results in {scratch}; {'full' if args.full else 'quick'} sizes, "
          f"{args.rounds} round(s), the minimum over rounds of each script's median")
    comparisons, rows = {}, []
    run = Run("before_after", args, repeats=args.rounds,
              params={"old": trees["old"], "new": trees["new"], "full": args.full,
                      "rounds": args.rounds, "threshold": args.threshold})
    for name, script, full_args, env in SUITE:
        if args.only and name not in args.only:
            continue
        cli = full_args + ([] if args.full else ["--quick"])
        print(f"\n== {name}: python benchmarks/{script} {' '.join(cli)}"
              + "".join(f" ({k}={v})" for k, v in env.items()), flush=True)
        folders = {side: [] for side in trees}
        for r in range(args.rounds):
            for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
                folder = scratch / side / f"round{r + 1}"
                folders[side].append(folder)
                took = run_one(trees[side], script, cli, env, folder, args.timeout)
                print(f"    round {r + 1}, {side}: {took:.0f} s", flush=True)
        old, new = best_times(folders["old"], name), best_times(folders["new"], name)
        comparisons[name] = {"what": f"diffalg's time in benchmarks/{script} {' '.join(cli)}",
                             "ratio": "new / old"}
        part = []
        for key in [k for k in old if k in new]:
            first = old[key][0]
            case = key[1] if key[1].startswith(key[0]) else f"{key[0]}: {key[1]}"
            row = {"comparison": name, "case": case,
                   "size_name": first.get("size_name"), "size": first.get("size"),
                   "old_s": old[key][1], "new_s": new[key][1], "ratio": new[key][1] / old[key][1]}
            row["flag"] = "slower" if row["ratio"] > args.threshold else ""
            part.append(row)
        missing = sorted(set(old) ^ set(new))
        if missing:
            print(f"    cases measured in one tree only: {', '.join(c for _, c in missing)}")
        shown = [dict(r, case=r["case"].split(": ", 1)[1] if len(set(k[0] for k in old)) == 1
                      else r["case"]) for r in part]
        print(table(shown, ["case", "old_s", "new_s", "ratio", "flag"]) if part else
              "    no case measured in both trees")
        rows += part
    run.run["comparisons"] = comparisons
    slower = [r for r in rows if r["ratio"] > args.threshold]
    print(f"\n{len(rows)} cases; {len(slower)} with new / old above {args.threshold:g}"
          + "".join(f"\n    {r['comparison']} | {r['case']}: {r['ratio']:.2f}" for r in slower))
    run.close(rows)
    print(json.dumps({"cases": len(rows), "slower": len(slower)}))


if __name__ == "__main__":
    main()
