"""The sorting chapter's ranking-supervision table at a larger budget than the chapter's default.

Runs the training function of `nbs/03_sorting/04_ranking_supervision.ipynb` (its code cells are
executed from the notebook, so the settings are exactly the chapter's) for every method and set
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

import nbformat

sys.path.insert(0, str(Path(__file__).parent))
from harness import Run, add_record_args  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "nbs" / "03_sorting" / "05_ranking_supervision.ipynb"


def chapter_namespace(scale):
    "Execute the notebook's definitions (imports, data, `train_ranking`) with SCALE = scale."
    nb = nbformat.read(NOTEBOOK, as_version=4)
    ns = {}
    for cell in nb.cells:
        src = cell.source
        if cell.cell_type != "code" or src.startswith("#| default_exp"):
            continue
        if src.startswith("SCALE = "):
            src = src.replace(src.splitlines()[0], f"SCALE = {scale}", 1)
        if "def train_ranking" in src or "#| export" in src or src.startswith(f"SCALE = {scale}"):
            exec(compile(src, str(NOTEBOOK), "exec"), ns)
    return ns


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
    ns = chapter_namespace(args.scale)
    name = f"ranking_scale{args.scale}" + ("_quick" if args.quick else "")
    what = "accuracy of the sorting chapter's ranking experiment, 1,000 held-out sets per n"
    run = Run(name, args, repeats=1, comparisons={"ranking supervision": {"what": what,
                                                                         "size": "n"}},
              params={"scale": args.scale, "steps": ns["STEPS"], "batch": ns["BATCH"],
                      "lr": ns["LR"], "channels": ns["CHANNELS"]})
    have = {(r["method"], r["n"], r["distribution"]) for r in run.resume()}
    for method, n, steepness, distribution in todo:
        if (method, n, distribution) in have:
            continue
        model, _, seconds = ns["train_ranking"](method, n, steepness, distribution)
        sets = ns["evaluation_sets"](ns["test_numbers"], n, n_sets=1000)
        em, ew = ns["evaluate_ranking"](model, sets)
        run.add([{"comparison": "ranking supervision", "case": f"{method} n={n} {distribution}",
                  "size_name": "n", "size": n, "method": method, "distribution": distribution,
                  "steepness": steepness, "exact_match": em, "elementwise": ew,
                  "seconds": seconds}])
        print(f"{method:10s} n={n:2d} {distribution:12s} exact match {em:.3f} "
              f"element-wise {ew:.3f} ({seconds:.0f} s)", flush=True)
    run.close()


if __name__ == "__main__":
    main()
