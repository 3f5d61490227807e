"""The sorting chapter's ranking-supervision table at a larger budget than the chapter's default.

Trains the book's ranking experiment, `diffalg.experiments.run("ranking", ...)`, with the settings
of `nbs/03_sorting/05_ranking_supervision.ipynb` (150 steps per unit of its `SCALE`, batch 50, Adam
at 1e-3, a 16-channel CNN, steepness 10 (20 at n = 32), the 8x8 digits) for every method and set
size of the chapter, and records each result in benchmarks/results/ranking_scale<S>.json as soon
as it is measured (an interrupted run keeps what it finished; the same command run again continues
it, skipping the settings already measured).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/ranking_table.py --scale 5    # about 15 minutes
    OMP_WAIT_POLICY=PASSIVE python benchmarks/ranking_table.py --quick      # two settings, scale 1

`--scale S` trains 150 * S steps of batch 50 (the chapter's `SCALE`; its default size is S = 1).
`--quick` records in ranking_scale1_quick.json, so the chapter's table is left alone.
"""
import argparse
import sys
from pathlib import Path

from diffalg.experiments import run as run_experiment

sys.path.insert(0, str(Path(__file__).parent))
from harness import Run, add_record_args  # noqa: E402


def chapter_settings(scale):
    "The chapter's config of the ranking experiment at SCALE = scale (its CHAPTER dict)."
    return {"steps": 150 * scale, "batch": 50, "lr": 1e-3, "channels": 16,
            "steepness": 10.0, "data": "digits", "n": 5}


def settings():
    "(method, n, steepness, distribution) of every cell of the chapter's table."
    out = [(m, 5, 10.0, "cauchy") for m in ("odd_even", "neuralsort", "softsort")]
    out += [(m, n, 20.0 if n == 32 else 10.0, "cauchy") for n in (3, 7, 9, 15, 32)
            for m in ("bitonic" if n == 32 else "odd_even", "neuralsort", "softsort")]
    out += [("odd_even", 5, 10.0, d) for d in ("logistic_art", "reciprocal", "optimal")]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="scale 1, two settings (a minute)")
    args = add_record_args(ap).parse_args()
    if args.quick:
        args.scale = 1
    todo = settings()[:2] if args.quick else settings()
    chapter = chapter_settings(args.scale)
    name = f"ranking_scale{args.scale}" + ("_quick" if args.quick else "")
    what = "accuracy of the sorting chapter's ranking experiment, 1,000 held-out sets per n"
    run = Run(name, args, repeats=1, comparisons={"ranking supervision": {"what": what,
                                                                         "size": "n"}},
              params={"scale": args.scale, **{k: chapter[k] for k in
                                              ("steps", "batch", "lr", "channels")}})
    have = {(r["method"], r["size"], r["distribution"]) for r in run.resume()}
    for method, n, steepness, distribution in todo:
        if (method, n, distribution) in have:
            continue
        record = run_experiment("ranking", {**chapter, "method": method, "n": n,
                                            "steepness": steepness,
                                            "distribution": distribution})
        em, ew = record["metrics"]["exact_match"], record["metrics"]["elementwise"]
        seconds = record["seconds"]
        run.add([{"comparison": "ranking supervision", "case": f"{method} n={n} {distribution}",
                  "size_name": "n", "size": n, "method": method, "distribution": distribution,
                  "steepness": steepness, "exact_match": em, "elementwise": ew,
                  "seconds": seconds}])
        print(f"{method:10s} n={n:2d} {distribution:12s} exact match {em:.3f} "
              f"element-wise {ew:.3f} ({seconds:.0f} s)", flush=True)
    run.close()


if __name__ == "__main__":
    main()
