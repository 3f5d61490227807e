"""Forward+backward time and peak memory of diffalg.rendering on CPU, one thread.

Each case runs in a fresh subprocess (so `ru_maxrss` is that case's peak resident memory) and reports
the median of repeats. Cases: silhouette and RGB, 64/128/256 pixels, batch 1 and 8, for a
642-vertex/1,280-face icosphere and the Utah teapot (2,464 faces, ../shared/data/meshes/teapot.obj,
skipped when absent), plus a scaling sweep over faces. The PyTorch3D figures below were measured on
this project's machines (CPU soft silhouette of the teapot, forward+backward, one thread, 10 faces per
pixel); PyTorch3D itself is not installed here (no CPU wheels), so they are quoted, not re-measured.
Cameras: fov 30 degrees at distance 4 from the unit-normalized mesh (it fills most of the frame);
soft silhouette as in SoftRas/PyTorch3D: logistic of the squared distance, tau = sigma = 1e-4,
probabilistic aggregation, faces beyond coverage 1e-4 skipped.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_rendering.py [--quick] [--compare]

`--compare` also checks "the same image": the teapot silhouettes of the timed configuration against
benchmarks/pytorch3d_formula.py, a dense float64 NumPy rendering of PyTorch3D's documented soft
silhouette (K = 10 and 50 nearest faces per pixel, as in the quoted timings, and no K limit), printing the largest and mean pixel
differences.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TEAPOT = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "meshes", "teapot.obj"))
PYTORCH3D_S = {64: 0.28, 128: 1.1, 256: 4.2}   # teapot soft silhouette fwd+bwd, one thread (from the issue)

CHILD = r"""
import json, os, resource, statistics, sys, time
import torch
torch.set_num_threads(1)
from diffalg.rendering.raster import Camera, camera_position, icosphere, load_mesh, render_rgb, render_silhouette
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
    if cfg["mode"] == "silhouette":    # SoftRas/PyTorch3D's soft silhouette: sigmoid of squared distance
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
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(HERE))
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare_with_pytorch3d_formula(sizes):
    "Largest and mean |ours - PyTorch3D formula| on the teapot silhouette of the timed configuration."
    import numpy as np
    import torch
    sys.path.insert(0, HERE)
    from pytorch3d_formula import soft_silhouette
    from diffalg.rendering.raster import Camera, camera_position, load_mesh, render_silhouette
    v, f = load_mesh(TEAPOT)
    cam = Camera(camera_position(4.0, torch.tensor([10.0]), torch.tensor([20.0])))
    xy, depth = cam.project(v)
    tri_xy, tri_depth = xy[0][f].double().numpy(), depth[0][f].double().numpy()
    print("\nsame image? teapot soft silhouette (sigma = tau = 1e-4) vs the PyTorch3D formula, dense float64 NumPy")
    print(f"{'size':>4s} {'K':>5s} {'max |diff|':>10s} {'mean |diff|':>11s} {'pixels > 1e-3':>13s} {'coverage':>8s}")
    for res in sizes:
        ours = render_silhouette(v, f, cam, res, tau=1e-4, squared=True)[0].double().numpy()
        for K in (10, 50, None):
            ref = soft_silhouette(tri_xy, tri_depth, res, res, sigma=1e-4, faces_per_pixel=K)
            d = np.abs(ours - ref)
            print(f"{res:4d} {str(K or 'all'):>5s} {d.max():10.2e} {d.mean():11.2e} {int((d > 1e-3).sum()):13d} "
                  f"{ref.mean():8.4f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batch 1 only, 64 and 128 pixels, fewer repeats")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--compare", action="store_true", help="compare the teapot images with the PyTorch3D formula")
    args = ap.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    sizes = [64, 128] if args.quick else [64, 128, 256]
    batches = [1] if args.quick else [1, 8]
    meshes = [("icosphere", {"subdivisions": 3})]
    if os.path.exists(TEAPOT):
        meshes.append(("teapot", {"path": TEAPOT}))
    else:
        print(f"(teapot not found at {TEAPOT}: skipped)")
    print(f"CPU, torch.set_num_threads(1), OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')}, "
          f"median of {repeats}; shared machine: compare ratios, not absolute times")
    print("wall: median wall-clock seconds; cpu: median CPU seconds of the process (one thread, so on an idle")
    print("machine cpu ~ wall; on a loaded one cpu is the fairer figure); speed-up = PyTorch3D seconds / our cpu seconds")
    print(f"{'mesh':10s} {'faces':>5s} {'mode':10s} {'B':>2s} {'size':>4s} {'wall s':>8s} {'cpu s':>8s} {'cpu/img':>8s} "
          f"{'peak MB':>8s} {'+MB':>7s} {'PyTorch3D s':>11s} {'speed-up':>8s}")
    rows = []
    for mesh, extra in meshes:
        for mode in ("silhouette", "rgb"):
            for B in batches:
                for res in sizes:
                    r = run_case(dict(mesh=mesh, mode=mode, batch=B, res=res, repeats=repeats, **extra))
                    p3d = PYTORCH3D_S.get(res) if (mesh == "teapot" and mode == "silhouette" and B == 1) else None
                    ratio = f"{p3d / r['cpu_s']:.1f}x" if p3d else ""
                    print(f"{mesh:10s} {r['faces']:5d} {mode:10s} {B:2d} {res:4d} {r['median_s']:8.3f} {r['cpu_s']:8.3f} "
                          f"{r['cpu_s'] / B:8.3f} {r['peak_mb']:8.0f} {r['extra_mb']:7.0f} "
                          f"{(str(p3d) if p3d else ''):>11s} {ratio:>8s}", flush=True)
                    rows.append((mesh, mode, B, res, r))
    if not args.quick:
        print("\nworst case for memory: Cauchy coverage (tau=0.01, eps=1e-4) reaches every pixel from every face")
        r = run_case(dict(mesh="icosphere", subdivisions=3, mode="cauchy", batch=1, res=256, repeats=1))
        print(f"icosphere   1280 cauchy      1  256 wall {r['median_s']:.3f} s, cpu {r['cpu_s']:.3f} s, "
              f"peak {r['peak_mb']:.0f} MB (+{r['extra_mb']:.0f} MB)",
              flush=True)
    print("\nscaling: icosphere silhouette, batch 1, cpu seconds (time vs faces and pixels)")
    print(f"{'faces':>6s} " + " ".join(f"{s:>8d}" for s in sizes))
    for sub in ([1, 2, 3] if args.quick else [1, 2, 3, 4]):
        ts = [run_case(dict(mesh="icosphere", subdivisions=sub, mode="silhouette", batch=1, res=s, repeats=repeats))
              for s in sizes]
        print(f"{20 * 4 ** sub:6d} " + " ".join(f"{t['cpu_s']:8.3f}" for t in ts), flush=True)
    if args.compare and os.path.exists(TEAPOT):
        compare_with_pytorch3d_formula(sizes)


if __name__ == "__main__":
    main()
