"""The sorting chapter's ranking-supervision table at a larger budget than CI's.

Runs the training function of `nbs/03_sorting/04_ranking_supervision.ipynb` (its code cells are
executed from the notebook, so the settings are exactly the chapter's) for every method and set
size of the chapter, and writes each result to a JSON file as soon as it is measured (a run that is
interrupted keeps what it finished; a rerun skips the settings already in the file).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/ranking_table.py --scale 5 --out benchmarks/results/ranking_scale5.json

`--scale S` trains 150 * S steps of batch 50 (the chapter's `SCALE`); CI runs S = 1.
"""
import argparse
import json
import os
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "nbs" / "03_sorting" / "04_ranking_supervision.ipynb"


def chapter_namespace(scale):
    "Execute the notebook's definitions (imports, data, `train_ranking`) with SCALE = scale; return its namespace."
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ranking_scale5.json"))
    args = ap.parse_args()
    ns = chapter_namespace(args.scale)
    settings = [(m, 5, 10.0, "cauchy") for m in ("odd_even", "neuralsort", "softsort")]
    settings += [(m, n, 20.0 if n == 32 else 10.0, "cauchy") for n in (3, 7, 9, 15, 32)
                 for m in ("bitonic" if n == 32 else "odd_even", "neuralsort", "softsort")]
    settings += [("odd_even", 5, 10.0, d) for d in ("logistic_art", "reciprocal", "optimal")]
    out = Path(args.out)
    done = json.loads(out.read_text()) if out.exists() else {"scale": args.scale, "steps": ns["STEPS"], "batch": ns["BATCH"],
                                                                "lr": ns["LR"], "channels": ns["CHANNELS"], "results": []}
    have = {(r["method"], r["n"], r["distribution"]) for r in done["results"]}
    for method, n, steepness, distribution in settings:
        if (method, n, distribution) in have:
            continue
        model, _, seconds = ns["train_ranking"](method, n, steepness, distribution)
        em, ew = ns["evaluate_ranking"](model, ns["evaluation_sets"](ns["test_numbers"], n, n_sets=1000))
        done["results"].append({"method": method, "n": n, "distribution": distribution, "steepness": steepness,
                                "exact_match": em, "elementwise": ew, "seconds": seconds,
                                "finished": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "load_average": os.getloadavg()[0]})
        out.write_text(json.dumps(done, indent=1))
        print(f"{method:10s} n={n:2d} {distribution:12s} exact match {em:.3f} element-wise {ew:.3f} ({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
