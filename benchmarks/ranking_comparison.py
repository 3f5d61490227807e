"""The sorting chapter's comparison of every relaxation on one task, at a larger budget.

Trains the book's ranking experiment, `diffalg.experiments.run("ranking", ...)`, with the settings
of `nbs/03_sorting/09_comparison.ipynb` (150 steps per unit of its `SCALE`, batch 50, Adam at
1e-3, a 16-channel CNN, steepness 10, the 8x8 digits, seed 0) for every method of
`diffalg.experiments.ranking.comparison_methods()` and every set size, and records each result in
benchmarks/results/ranking_comparison.json as soon as it is measured (the same command run again
continues an interrupted run, skipping the settings already measured).

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python benchmarks/ranking_comparison.py  # an hour
    OMP_WAIT_POLICY=PASSIVE python benchmarks/ranking_comparison.py --quick    # two settings

`--scale S` trains 150 * S steps of batch 50; `--n 3 5 7` chooses the set sizes.
`--quick` trains two settings at scale 1 into ranking_comparison_quick.json.
"""
import argparse
import sys
from pathlib import Path

from diffalg.experiments import run as run_experiment
from diffalg.experiments.ranking import comparison_methods

sys.path.insert(0, str(Path(__file__).parent))
from harness import Run, add_record_args  # noqa: E402


def chapter_settings(scale):
    "The comparison page's config at SCALE = scale (its CHAPTER dict)."
    return {"steps": 150 * scale, "batch": 50, "lr": 1e-3, "channels": 16,
            "steepness": 10.0, "data": "digits", "seed": 0}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=5)
    ap.add_argument("--n", type=int, nargs="+", default=[3, 5, 7, 9, 15])
    ap.add_argument("--quick", action="store_true", help="scale 1, two settings (a minute)")
    args = add_record_args(ap).parse_args()
    if args.quick:
        args.scale, args.n = 1, [5]
    methods = comparison_methods()
    todo = [(label, n) for n in args.n for label in methods]
    todo = todo[:2] if args.quick else todo
    chapter = chapter_settings(args.scale)
    name = "ranking_comparison" + ("_quick" if args.quick else "")
    what = "held-out accuracy of every relaxation on the ranking task, 1,000 sets per n"
    run = Run(name, args, repeats=1, comparisons={"ranking comparison": {"what": what,
                                                                        "size": "n"}},
              params={"scale": args.scale, "n": args.n, **chapter})
    have = {(r["method"], r["size"]) for r in run.resume()}
    for label, n in todo:
        if (label, n) in have:
            continue
        record = run_experiment("ranking", {**chapter, **methods[label], "n": n})
        em, ew = record["metrics"]["exact_match"], record["metrics"]["elementwise"]
        seconds = record["seconds"]
        run.add([{"comparison": "ranking comparison", "case": f"{label} n={n}",
                  "size_name": "n", "size": n, "method": label, "config": methods[label],
                  "exact_match": em, "elementwise": ew, "seconds": seconds}])
        print(f"{label:22s} n={n:2d} exact match {em:.3f} element-wise {ew:.3f} "
              f"({seconds:.0f} s)", flush=True)
    run.close()


if __name__ == "__main__":
    main()
