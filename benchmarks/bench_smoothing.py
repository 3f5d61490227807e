"""Stochastic smoothing (chapter 7): the gradient variance of every variance reduction at equal
samples on the book's tasks (ranking through a hard sort, shortest paths through a plain
Bellman-Ford, camera pose through the hard rasterizer), each with the upstream gradient of its
training loss, relative to the plain score-function estimator (for ranking and paths also the
control variate from the chapter's relaxation, `loo+cv`); and the time of one smoothed
forward + backward at a few sample counts next to the closed-form relaxation of the same task.
Records benchmarks/results/smoothing.json, which nbs/07_smoothing/04_variance.ipynb reads.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_smoothing.py            # a few minutes
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_smoothing.py --quick    # under a minute
"""
import argparse
import sys
import time
from pathlib import Path

import torch
import trimesh

sys.path.insert(0, str(Path(__file__).parent))
from harness import Run, add_record_args, median_seconds, setting, table  # noqa: E402

from diffalg.experiments import run as run_experiment  # noqa: E402
from diffalg.relax import shortest_path, terrain_maps  # noqa: E402
from diffalg.rendering import load_mesh  # noqa: E402
from diffalg.smoothing import smooth  # noqa: E402
from diffalg.smoothing.ranking import hard_permutation  # noqa: E402
from diffalg.smoothing.tasks import grid_shortest_path, gradient_variance  # noqa: E402
from diffalg.smoothing.tasks import silhouette_of_pose  # noqa: E402
from diffalg.sorting import diff_sort, permutation_targets  # noqa: E402

REDUCTIONS = ["none", "loo", "antithetic", "qmc", "qmc+loo", "qmc+antithetic"]
CONTROL = "loo+cv"          # leave-one-out on f - h, h the closed-form relaxation of the task
SORT_CV_STEEPNESS, PATH_CV_STEEPNESS = 20.0, 8.0
VARIANCE = "gradient variance"
TIMING = "smoothed black box against the closed-form relaxation"
F64 = torch.float64


def path_box(z):
    return grid_shortest_path(z.clamp_min(0.1))


def relaxed_path(z):
    "The control variate of the path task: chapter 2's relaxed Bellman-Ford path, same clamp."
    return shortest_path(z.clamp_min(0.1), PATH_CV_STEEPNESS).path


def relaxed_permutation(z):
    "The control variate of the ranking task: the odd-even sorting network's relaxed matrix."
    n = z.shape[-1]
    P = diff_sort(z.reshape(-1, n), "odd_even", SORT_CV_STEEPNESS, "cauchy").permutation
    return P.reshape(*z.shape, n)


def ranking_problems(args):
    "Scores (50, 5) of a briefly trained CNN on held-out sets, and the two losses' upstream g."
    _, setup = run_experiment("ranking", {"n": 5, "steps": args.train_steps}, progress=False,
                              return_setup=True)
    images, values = setup.data["test"].sample_ranking(5, 50, torch.Generator().manual_seed(0))
    with torch.no_grad():
        scores = setup.model(images).double()
    Q = permutation_targets(values).to(F64)
    P = smooth(hard_permutation, scores, 0.1, 4096, variance_reduction="qmc",
               generator=torch.Generator().manual_seed(1))
    P = 0.98 * P + 0.01
    g_bce = (P - Q) / (P * (1 - P)) * 0.98 / Q.numel()       # d mean BCE(0.98 P + 0.01, Q) / dP
    return [("ranking, error loss", hard_permutation, scores, -Q / Q.numel() * 5, 0.1, 1,
             relaxed_permutation, None),
            ("ranking, BCE loss", hard_permutation, scores, g_bce, 0.1, 1, relaxed_permutation,
             None)]


def path_problems(args):
    """True cost maps (B, 12, 12), each map one problem (batch_dims=1); squared error to the true
    path and overlap upstream gradients."""
    _, costs, _ = terrain_maps(args.maps, seed=7)
    costs = costs.double()
    y = grid_shortest_path(costs)
    mean = smooth(path_box, costs, 1.0, 1024, variance_reduction="qmc", batch_dims=1,
                  generator=torch.Generator().manual_seed(1))
    return [("shortest paths, squared error", path_box, costs, 2 * (mean - y) / y.numel(), 1.0,
             1, relaxed_path, 2),
            ("shortest paths, overlap", path_box, costs, -y / y.numel(), 1.0, 1, relaxed_path, 2)]


def lopsided_object():
    box = trimesh.creation.box(extents=(1.2, 0.5, 0.7))
    cone = trimesh.creation.cone(radius=0.25, height=0.7, sections=10)
    cone.apply_translation((0.55, 0.2, -0.1))
    ball = trimesh.creation.icosphere(subdivisions=1, radius=0.3)
    ball.apply_translation((-0.5, 0.2, -0.45))
    return load_mesh(trimesh.util.concatenate([box, cone, ball]))


def pose_problems(args):
    "Random starting views (starts, 2) and the squared error to the target view's silhouette."
    f = silhouette_of_pose(*lopsided_object())
    gen = torch.Generator().manual_seed(1)
    starts = torch.stack([torch.empty(args.starts, dtype=F64).uniform_(-10, 60, generator=gen),
                          40 + torch.empty(args.starts, dtype=F64).uniform_(-120, 120,
                                                                           generator=gen)], -1)
    target = f(torch.tensor([25.0, 40.0], dtype=F64))
    mean = smooth(f, starts, 5.0, 256, variance_reduction="qmc",
                  generator=torch.Generator().manual_seed(1))
    return [("pose, squared error", f, starts, 2 * (mean - target) / mean.numel(), 5.0, 1, None,
             None)]


def variance_rows(args):
    rows = []
    problems = ranking_problems(args) + path_problems(args)
    if not args.no_pose:
        problems += pose_problems(args)
    for case, f, x, g, sigma, batch_dims, cv, chunk in problems:
        base = None
        for vr in REDUCTIONS + ([CONTROL] if cv is not None else []):
            t0 = time.perf_counter()
            h = cv if vr == CONTROL else None
            v = gradient_variance(f, x, g, sigma, args.samples, None if vr == "none" else
                                  vr.removesuffix("+cv"), batch_dims=batch_dims,
                                  copies=args.copies, control_variate=h,
                                  chunk=chunk if h is not None else None)
            base = v if base is None else base
            rows.append({"comparison": VARIANCE, "case": case, "reduction": vr,
                         "size_name": "samples", "size": args.samples, "sigma": sigma,
                         "variance": v, "ratio": base / v, "seconds": time.perf_counter() - t0})
            print(f"{case:32s} {vr:15s} variance {v:.4g}  plain / this {base / v:.2f}",
                  flush=True)
    return rows


def fwd_bwd(fn, x):
    def step():
        x.grad = None
        fn(x).sum().backward()
    return step


def timing_rows(args):
    rows = []
    scores = torch.randn(50, 5, requires_grad=True)
    relaxed = median_seconds(fwd_bwd(lambda s: diff_sort(s, "odd_even", 10.0, "cauchy")
                                     .permutation, scores), args.repeats)
    for S in args.sort_samples:
        t = median_seconds(fwd_bwd(lambda s: smooth(hard_permutation, s, 0.1, S), scores),
                           args.repeats)
        rows.append({"comparison": TIMING, "task": "sort, 50 sets of 5", "case": f"sort S={S}",
                     "size_name": "samples", "size": S, "diffalg_s": t,
                     "reference": "diff_sort odd_even", "reference_s": relaxed,
                     "ratio": t / relaxed})
    costs = (torch.rand(8, 12, 12) * 8 + 1).requires_grad_()
    relaxed = median_seconds(fwd_bwd(lambda c: shortest_path(c, 1.0).path, costs), args.repeats)
    for S in args.path_samples:
        t = median_seconds(fwd_bwd(lambda c: smooth(path_box, c, 1.0, S, batch_dims=1), costs),
                           args.repeats)
        rows.append({"comparison": TIMING, "task": "path, 8 maps 12 x 12", "case": f"path S={S}",
                     "size_name": "samples", "size": S, "diffalg_s": t,
                     "reference": "relax.shortest_path", "reference_s": relaxed,
                     "ratio": t / relaxed})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=64, help="samples per gradient estimate")
    ap.add_argument("--copies", type=int, default=60, help="independent estimates per variance")
    ap.add_argument("--maps", type=int, default=8, help="terrain maps of the path task")
    ap.add_argument("--starts", type=int, default=4, help="starting views of the pose task")
    ap.add_argument("--train-steps", type=int, default=150, help="CNN steps before ranking")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-pose", action="store_true", help="skip the (slowest) pose task")
    ap.add_argument("--quick", action="store_true", help="30 copies, 4 maps, 2 starts")
    args = add_record_args(ap).parse_args()
    args.sort_samples, args.path_samples = [16, 64, 256, 1024], [16, 64, 256]
    if args.quick:
        args.copies, args.maps, args.starts, args.train_steps = 30, 4, 2, 30
        args.sort_samples, args.path_samples, args.repeats = [16, 64, 256], [16, 64], 3
    torch.manual_seed(0)
    start = time.perf_counter()
    params = {k: getattr(args, k) for k in ("samples", "copies", "maps", "starts", "train_steps",
                                            "sort_samples", "path_samples")}
    params["reductions"] = REDUCTIONS + [CONTROL]
    params["control_variates"] = {"ranking": f"diff_sort odd_even cauchy, steepness "
                                             f"{SORT_CV_STEEPNESS}",
                                  "shortest paths": f"relax.shortest_path, steepness "
                                                    f"{PATH_CV_STEEPNESS}"}
    run = Run("smoothing", args, repeats=args.repeats, params=params, comparisons={
        VARIANCE: {"what": f"total variance of g^T J over {args.copies} estimates of "
                           f"{args.samples} samples each", "size": "samples",
                   "ratio": "plain / reduction"},
        TIMING: {"what": "forward + backward, float32, median", "size": "samples",
                 "ratio": "smoothed / relaxed"}})
    rows = variance_rows(args)
    run.add(rows)
    timing = timing_rows(args)
    print(f"\nsmoothed forward+backward; {setting()}")
    print(table([dict(r, **{"smoothed ms": 1e3 * r["diffalg_s"],
                            "relaxed ms": 1e3 * r["reference_s"]}) for r in timing],
                ["task", "size", "smoothed ms", "relaxed ms", "ratio"]))
    run.run["params"]["seconds"] = time.perf_counter() - start
    run.close(timing)


if __name__ == "__main__":
    main()
