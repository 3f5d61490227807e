"""Forward+backward time and peak memory of diffalg.rendering on CPU, one thread.

Each case runs in a fresh subprocess (so `ru_maxrss` is that case's peak resident memory) and
reports the median of repeats. Cases: silhouette and RGB, 64/128/256 pixels, batch 1 and 8, for a
642-vertex/1,280-face icosphere and the Utah teapot (2,464 faces, tests/data/teapot.obj, skipped
when absent), plus a scaling sweep over faces. Records benchmarks/results/rendering.json.

PyTorch3D has no CPU wheels here, so it is not re-measured: its figures (CPU soft silhouette of
the teapot, forward+backward, one thread, 10 faces per pixel, measured for this project on the
same kind of 2-core machine) are quoted as the reference, and marked so in the record.
Cameras: fov 30 degrees at distance 4 from the unit-normalized mesh (it fills most of the frame);
soft silhouette as in SoftRas/PyTorch3D: logistic of the squared distance, tau = sigma = 1e-4,
probabilistic aggregation, faces beyond coverage 1e-4 skipped.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_rendering.py --compare     # a few minutes
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_rendering.py --quick       # seconds

`--compare` also checks "the same image": the teapot silhouettes of the timed configuration
against benchmarks/pytorch3d_formula.py, a dense float64 NumPy rendering of PyTorch3D's documented
soft silhouette (K = 10 and 50 nearest faces per pixel, as in the quoted timings, and no K limit),
recording the largest and mean pixel differences.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import Run, add_record_args  # noqa: E402

TEAPOT = HERE.parent / "tests" / "data" / "teapot.obj"
PYTORCH3D_S = {64: 0.28, 128: 1.1, 256: 4.2}   # teapot soft silhouette fwd+bwd, one thread, K=10
QUOTED = "PyTorch3D (quoted, K = 10)"
RATIO = "reference / diffalg CPU seconds"

CHILD = r"""
import json, os, resource, statistics, sys, time
import torch
torch.set_num_threads(1)
from diffalg.rendering import Camera, camera_position, icosphere, load_mesh
from diffalg.rendering import render_rgb, render_silhouette
cfg = json.loads(sys.argv[1])
if cfg["mesh"] == "teapot":
    v, f = load_mesh(cfg["path"])
else:
    v, f = icosphere(cfg["subdivisions"])
B, res = cfg["batch"], cfg["res"]
eye = camera_position(4.0, torch.linspace(10.0, 40.0, B), torch.linspace(20.0, 200.0, B))
colors = torch.full_like(v, 0.7)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
def step():
    vv = v.clone().requires_grad_()
    cam = Camera(eye)
    if cfg["mode"] == "silhouette":    # SoftRas/PyTorch3D's soft silhouette
        img = render_silhouette(vv, f, cam, res, tau=1e-4, squared=True)
    elif cfg["mode"] == "cauchy":      # worst case: heavy tails, every face reaches every pixel
        img = render_silhouette(vv, f, cam, res, tau=0.01, distribution="cauchy")
    else:
        img = render_rgb(vv, f, cam, res, colors=colors, tau=1e-4, squared=True, gamma=1e-4)
    img.sum().backward()
    return float(img.detach().mean())
step()
times, cpu = [], []
for _ in range(cfg["repeats"]):
    t, c = time.perf_counter(), time.process_time()
    mean = step()
    times.append(time.perf_counter() - t); cpu.append(time.process_time() - c)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"median_s": statistics.median(times), "cpu_s": statistics.median(cpu),
                  "peak_mb": peak / 1024, "extra_mb": (peak - base) / 1024,
                  "faces": int(f.shape[0]), "coverage": mean}))
"""


def run_case(cfg):
    env = dict(os.environ, OMP_NUM_THREADS="1",
               OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True,
                         text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def case_row(comparison, size_name, size, r, B=1):
    "A row of the record from a case's measurements (diffalg_s: wall seconds, cpu seconds too)."
    return {"comparison": comparison, "case": f"{comparison}, {size_name} {size}",
            "size_name": size_name, "size": size, "batch": B, "faces": r["faces"],
            "diffalg_s": r["median_s"], "diffalg_cpu_s": r["cpu_s"], "diffalg_mb": r["extra_mb"],
            "peak_mb": r["peak_mb"], "coverage": r["coverage"]}


def compare_with_pytorch3d_formula(sizes):
    "Rows: largest and mean |ours - PyTorch3D formula| on the timed teapot silhouette."
    import numpy as np
    import torch
    from pytorch3d_formula import soft_silhouette
    from diffalg.rendering import Camera, camera_position, load_mesh, render_silhouette
    v, f = load_mesh(str(TEAPOT))
    cam = Camera(camera_position(4.0, torch.tensor([10.0]), torch.tensor([20.0])))
    xy, depth = cam.project(v)
    tri_xy, tri_depth = xy[0][f].double().numpy(), depth[0][f].double().numpy()
    print("\nsame image? teapot soft silhouette (sigma = tau = 1e-4) vs the PyTorch3D formula, "
          "dense float64 NumPy")
    print(f"{'size':>4s} {'K':>5s} {'max |diff|':>10s} {'mean |diff|':>11s} "
          f"{'pixels > 1e-3':>13s} {'coverage':>8s}")
    rows = []
    for res in sizes:
        ours = render_silhouette(v, f, cam, res, tau=1e-4, squared=True)[0].double().numpy()
        for K in (10, 50, None):
            ref = soft_silhouette(tri_xy, tri_depth, res, res, sigma=1e-4, faces_per_pixel=K)
            d = np.abs(ours - ref)
            over = int((d > 1e-3).sum())
            print(f"{res:4d} {str(K or 'all'):>5s} {d.max():10.2e} {d.mean():11.2e} {over:13d} "
                  f"{ref.mean():8.4f}", flush=True)
            rows.append({"comparison": "same image as the PyTorch3D formula",
                         "case": f"{res} x {res}, K = {K or 'all'}", "size_name": "image size",
                         "size": res, "faces_per_pixel": K or "all", "max_abs_diff": d.max(),
                         "mean_abs_diff": d.mean(), "pixels_over_1e-3": over,
                         "pixels": res * res, "coverage": ref.mean()})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batch 1, 64 and 128 pixels, 3 repeats")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--compare", action="store_true",
                    help="compare the teapot images with the PyTorch3D formula")
    args = add_record_args(ap).parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    sizes = [64, 128] if args.quick else [64, 128, 256]
    batches = [1] if args.quick else [1, 8]
    meshes = [("icosphere", {"subdivisions": 3})]
    if TEAPOT.exists():
        meshes.append(("teapot", {"path": str(TEAPOT)}))
    else:
        print(f"the teapot mesh is not in this checkout ({TEAPOT}): its cases are skipped")
    what = ("forward + backward, one thread, median of "
            f"{repeats} in a fresh process; diffalg_s wall-clock, diffalg_cpu_s CPU seconds")
    run = Run("rendering", args, repeats=repeats, params={"sizes": sizes, "batches": batches})
    comparisons = run.run["comparisons"]
    print(f"CPU, one thread, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')}, "
          f"median of {repeats}; speed-up = quoted PyTorch3D seconds / our CPU seconds")
    print(f"{'mesh':10s} {'faces':>5s} {'mode':10s} {'B':>2s} {'size':>4s} {'wall s':>8s} "
          f"{'cpu s':>8s} {'peak MB':>8s} {'+MB':>7s} {'PyTorch3D s':>11s} {'speed-up':>8s}")
    for mesh, extra in meshes:
        for mode in ("silhouette", "rgb"):
            for B in batches:
                comparison = f"{mesh} {mode}, batch {B}"
                comparisons[comparison] = {"what": what, "size": "image size", "ratio": RATIO}
                for res in sizes:
                    r = run_case(dict(mesh=mesh, mode=mode, batch=B, res=res, repeats=repeats,
                                      **extra))
                    row = case_row(comparison, "image size", res, r, B)
                    p3d = PYTORCH3D_S.get(res) if (mesh, mode, B) == ("teapot", "silhouette", 1) \
                        else None
                    if p3d:
                        row.update(reference=QUOTED, reference_s=p3d, reference_measured=False,
                                   ratio=p3d / r["cpu_s"])
                    speed = f"{row['ratio']:.1f}x" if p3d else ""
                    print(f"{mesh:10s} {r['faces']:5d} {mode:10s} {B:2d} {res:4d} "
                          f"{r['median_s']:8.3f} {r['cpu_s']:8.3f} {r['peak_mb']:8.0f} "
                          f"{r['extra_mb']:7.0f} {p3d or '':>11} {speed:>8s}", flush=True)
                    run.add([row])
    if not args.quick:
        comparison = "worst case: Cauchy coverage, icosphere"
        comparisons[comparison] = {"what": what + "; tau = 0.01, every face reaches every pixel",
                                   "size": "image size"}
        r = run_case(dict(mesh="icosphere", subdivisions=3, mode="cauchy", batch=1, res=256,
                          repeats=1))
        print(f"\nworst case for memory (Cauchy coverage, tau 0.01, 1,280 faces, 256 x 256): "
              f"wall {r['median_s']:.3f} s, cpu {r['cpu_s']:.3f} s, peak {r['peak_mb']:.0f} MB")
        run.add([case_row(comparison, "image size", 256, r)])
    print("\nscaling: icosphere silhouette, batch 1, cpu seconds (time vs faces and pixels)")
    print(f"{'faces':>6s} " + " ".join(f"{s:>8d}" for s in sizes))
    for sub in ([1, 2, 3] if args.quick else [1, 2, 3, 4]):
        cells = []
        for s in sizes:
            comparison = f"icosphere silhouette against faces, {s} x {s}"
            comparisons[comparison] = {"what": what, "size": "faces"}
            r = run_case(dict(mesh="icosphere", subdivisions=sub, mode="silhouette", batch=1,
                              res=s, repeats=repeats))
            run.add([case_row(comparison, "faces", r["faces"], r)])
            cells.append(f"{r['cpu_s']:8.3f}")
        print(f"{20 * 4 ** sub:6d} " + " ".join(cells), flush=True)
    if args.compare and TEAPOT.exists():
        comparisons["same image as the PyTorch3D formula"] = {
            "what": "teapot soft silhouette (tau = sigma = 1e-4), diffalg float32 against the "
                    "formula in float64", "size": "image size"}
        run.add(compare_with_pytorch3d_formula(sizes))
    run.close()


if __name__ == "__main__":
    main()
