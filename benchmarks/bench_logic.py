"""Logic gate networks: training-step time and peak memory of diffalg.logic against difflogic's
Python implementation (or, when difflogic cannot be imported, a plain 16-gate PyTorch reference
written the same way) at several widths, and discrete inference throughput of a 6-layer circuit:
the compiled C path timed on the circuit alone (input packed beforehand, as in the paper's figure)
and from a bool tensor (packing included), and the bit-packed PyTorch path from a bool tensor;
with `--conv`, the compiled C path of the chapter's convolutional models (images/s on one core);
with `--conv-step`, the training step of a logic tree convolution against its plain PyTorch form.
Records benchmarks/results/logic.json.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_logic.py --block 5 --repeats 10   # minutes
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_logic.py --quick                  # seconds
    python benchmarks/bench_logic.py --difflogic-src DIR      # against difflogic's Python layer
    python benchmarks/bench_logic.py --conv mnist cifar   # also the convolutional circuits' C path
    python benchmarks/bench_logic.py --conv-step    # also a tree convolution's training step

difflogic (Petersen et al.) needs a CUDA build to install; its Python implementation does not use
CUDA, so `--difflogic-src DIR` (a folder holding the `difflogic/` package sources of
github.com/Felix-Petersen/difflogic) loads it with a stub for the missing `difflogic_cuda`
extension and runs it with `implementation='python'` on the CPU. Its forward prints two lines per
call (a bug in that version); they are swallowed. Never imported by diffalg itself.
"""
import argparse
import contextlib
import io
import os
import statistics
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from harness import Run, add_record_args, setting, table  # noqa: E402

try:                                  # the chapter subpackage
    from diffalg.logic import GroupSum, LogicCircuit, LogicLayer, compile_circuit
except ImportError:                   # the earlier flat modules
    from diffalg.logic import GroupSum, LogicLayer
    from diffalg.logic_compiled import LogicCircuit, compile_circuit
try:                                  # convolutional circuits (diffalg.logic.lowering)
    from diffalg.logic import BitsToImage, hardware_circuit, logic_tree_net
    from diffalg.logic import LogicTreeConv2d, reference_tree_conv
except ImportError:
    hardware_circuit = None

IN_DIM = 784
REFERENCE = "16-gate PyTorch layer (this file)"


def load_difflogic(src=None):
    "Import difflogic (installed, or from folder `src` with a stub CUDA extension), else None."
    try:
        import difflogic  # noqa: F401
        return difflogic
    except Exception:
        pass
    if not src or not (Path(src) / "difflogic" / "difflogic.py").exists():
        return None
    sys.modules.setdefault("difflogic_cuda", types.ModuleType("difflogic_cuda"))
    sys.path.insert(0, str(src))
    try:
        import difflogic
        return difflogic
    except Exception:
        return None


class ReferenceLayer(torch.nn.Module):
    "Plain 16-gate PyTorch layer (all 16 gate outputs materialized, like difflogic's Python path)."

    def __init__(self, indices):
        super().__init__()
        self.register_buffer("indices", indices.clone())
        self.weights = torch.nn.Parameter(torch.randn(indices.shape[1], 16))

    def forward(self, x):
        a, b = x[..., self.indices[0]], x[..., self.indices[1]]
        p = torch.softmax(self.weights, -1)
        ab = a * b
        gates = [torch.zeros_like(a), ab, a - ab, a, b - ab, b, a + b - 2 * ab, a + b - ab,
                 1 - (a + b - ab), 1 - (a + b - 2 * ab), 1 - b, 1 - b + ab, 1 - a, 1 - a + ab,
                 1 - ab, torch.ones_like(a)]
        out = torch.zeros_like(a)
        for i, g in enumerate(gates):
            out = out + p[:, i] * g
        return out


def build(kind, in_dim, width, k=10, tau=10.0, difflogic_src=None):
    torch.manual_seed(0)
    if kind == "diffalg":
        return torch.nn.Sequential(LogicLayer(in_dim, width), LogicLayer(width, width),
                                   GroupSum(k, tau))
    if kind == "reference":
        l1, l2 = LogicLayer(in_dim, width), LogicLayer(width, width)
        return torch.nn.Sequential(ReferenceLayer(l1.indices), ReferenceLayer(l2.indices),
                                   GroupSum(k, tau))
    dl = load_difflogic(difflogic_src)
    return torch.nn.Sequential(
        dl.LogicLayer(in_dim, width, device="cpu", implementation="python"),
        dl.LogicLayer(width, width, device="cpu", implementation="python"),
        dl.GroupSum(k, tau, device="cpu"))


def train_step_fn(model, batch, in_dim):
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, in_dim, generator=gen) > 0.5).float()
    y = torch.randint(0, 10, (batch,), generator=gen)

    def step():
        model.zero_grad(set_to_none=True)
        with contextlib.redirect_stdout(io.StringIO()):
            torch.nn.functional.cross_entropy(model(x), y).backward()
    return step


def interleaved_medians(fns, repeats, warmup=2, block=1):
    """Median wall and CPU (process, all threads) seconds per call of each function in `fns`,
    timed in alternation (a shared machine's load hits all alike; CPU time does not count the time
    others use the cores). Each sample is the mean over `block` consecutive calls of one
    function (steady state, as in training)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times, cpu = {k: [] for k in fns}, {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(block):
                fn()
            times[k].append((time.perf_counter() - t0) / block)
            cpu[k].append((time.process_time() - c0) / block)
    median = statistics.median
    return {k: median(v) for k, v in times.items()}, {k: median(v) for k, v in cpu.items()}


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(field)


def _step_peak(kind, in_dim, width, batch, difflogic_src, queue):
    step = train_step_fn(build(kind, in_dim, width, difflogic_src=difflogic_src), batch, in_dim)
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
        f.write("5")
    rss0 = _status_kib("VmRSS")
    step()
    queue.put((_status_kib("VmHWM") - rss0) / 1024)


def step_peak_mib(kind, in_dim, width, batch, difflogic_src):
    "Peak RSS growth (MiB) in the first training step of a fresh model and process; Linux only."
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_step_peak,
                       args=(kind, in_dim, width, batch, difflogic_src, queue))
    proc.start()
    proc.join()
    return queue.get() if proc.exitcode == 0 else None


def training_rows(args, peer):
    "Training step of both sides at every width: rows of the record, and the printed table."
    rows = []
    sides = ["diffalg"] + ([] if args.no_reference else [peer])
    for width in args.widths:
        steps = {kind: train_step_fn(build(kind, IN_DIM, width, difflogic_src=args.difflogic_src),
                                     args.batch, IN_DIM) for kind in sides}
        t, c = interleaved_medians(steps, args.repeats, block=args.block)
        mb = {kind: step_peak_mib(kind, IN_DIM, width, args.batch, args.difflogic_src)
              for kind in sides}
        row = {"comparison": "training step", "case": f"width {width}, batch {args.batch}",
               "size_name": "width", "size": width, "batch": args.batch,
               "diffalg_s": t["diffalg"], "diffalg_cpu_s": c["diffalg"],
               "diffalg_mb": mb["diffalg"]}
        if peer in t:
            row.update(reference=REFERENCE if peer == "reference" else "difflogic (Python)",
                       reference_s=t[peer], reference_cpu_s=c[peer], reference_mb=mb[peer],
                       ratio=t[peer] / t["diffalg"], cpu_ratio=c[peer] / c["diffalg"])
        rows.append(row)
    print(f"\nTraining step (forward+backward, batch {args.batch}) of LogicLayer({IN_DIM}, w) -> "
          f"LogicLayer(w, w) -> GroupSum(10, 10); median of {args.repeats} samples of "
          f"{args.block} consecutive step(s), the sides alternating; CPU = process CPU time; "
          "peak = growth of the resident memory in the first step, fresh process")
    shown = [dict(r, **{"diffalg ms": 1e3 * r["diffalg_s"], "reference ms":
                        1e3 * r.get("reference_s", float("nan")), "speed-up": r.get("ratio"),
                        "CPU speed-up": r.get("cpu_ratio"), "diffalg MiB": r["diffalg_mb"],
                        "reference MiB": r.get("reference_mb")}) for r in rows]
    print(table(shown, ["size", "diffalg ms", "reference ms", "speed-up", "CPU speed-up",
                        "diffalg MiB", "reference MiB"]))
    return rows


def inference_rows(args):
    "Discrete inference of a 6 x width circuit: rows of the record, and the printed table."
    torch.manual_seed(0)
    w = args.width
    net = torch.nn.Sequential(LogicLayer(IN_DIM, w), *[LogicLayer(w, w) for _ in range(5)],
                              GroupSum(10, 10.0)).eval()
    circuit = LogicCircuit.from_model(net)
    compiled = compile_circuit(circuit)
    n = args.images
    x = torch.rand(n, IN_DIM) > 0.5
    ref = circuit.packed(x[:1000])
    if not (torch.equal(compiled(x[:1000]), ref) and torch.equal(circuit(x[:1000]), ref)):
        print("warning: the compiled circuit and the PyTorch paths disagree")
    packed, _ = compiled.pack(x)
    threads = torch.get_num_threads()

    def one_thread(fn):
        def run():
            torch.set_num_threads(1)
            try:
                fn()
            finally:
                torch.set_num_threads(threads)
        return run
    cases = [("compiled C, pre-packed input", 1, lambda: compiled.run_packed(packed, n)),
             ("compiled C, from bool tensor", 1, lambda: compiled(x)),
             ("compiled C, pre-packed input", 2,
              lambda: compiled.run_packed(packed, n, n_threads=2)),
             ("compiled C, from bool tensor", 2, lambda: compiled(x, n_threads=2)),
             ("bit-packed PyTorch, from bool tensor", threads, lambda: circuit.packed(x)),
             ("bit-packed PyTorch, from bool tensor", 1, one_thread(lambda: circuit.packed(x)))]
    comparison = f"discrete inference, {circuit.n_gates:,} gates"
    rows = []
    for name, th, fn in cases:
        t, c = interleaved_medians({name: fn}, max(3, args.repeats // 4), warmup=1)
        rows.append({"comparison": comparison, "case": f"{name}, {th} thread(s)", "path": name,
                     "threads": th, "size_name": "images", "size": n, "diffalg_s": t[name],
                     "images_per_s": n / t[name], "images_per_cpu_s": n / c[name]})
    print(f"\nDiscrete inference of {circuit.n_gates:,} gates ({IN_DIM} input bits, 6 x {w}, "
          f"GroupSum 10), {n:,} images, median; images per CPU-s = images per second of process "
          "CPU time (all threads)")
    print(table(rows, ["path", "threads", "images_per_s", "images_per_cpu_s"]))
    return comparison, rows


CONV_MODELS = {   # name: (k, channels, image size, blocks, bits per pixel), the chapter's models
    "mnist": (16, 1, 28, 1, 2),    # 05_convolutions: logic_tree_net(16, 2, 28, blocks=1)
    "mnist_deep": (4, 1, 28, 3, 2),  # the same family at k = 4, 3 blocks
    "cifar": (1, 3, 32, 4, 3),     # CIFAR-10 size, the paper's family at k = 1 (3 thresholds)
}


def conv_inference_rows(args):
    "Discrete inference of the convolutional models (random gates): images/s/core, C and packed."
    rows = []
    for name in args.conv:
        k, c, size, blocks, bits = CONV_MODELS[name]
        net = logic_tree_net(k, c * bits, size, 10, blocks=blocks, seed=0)
        model = torch.nn.Sequential(BitsToImage(c, size, size, bits), *net).eval()
        circuit = hardware_circuit(model, (c * size * size * bits,)).circuit
        compiled, n = compile_circuit(circuit), args.conv_images
        x = torch.rand(n, circuit.in_dim) > 0.5
        with torch.no_grad():
            want = model(x[:256].float())
        if not torch.equal(compiled(x[:256]).float() / circuit.tau, want):
            print(f"warning: the compiled {name} circuit and eval mode disagree")
        packed, _ = compiled.pack(x)
        cases = {"compiled C, pre-packed input": lambda: compiled.run_packed(packed, n),
                 "compiled C, from bool tensor": lambda: compiled(x)}
        comparison = f"conv discrete inference, {name}, {circuit.n_gates:,} gates"
        t, cpu = interleaved_medians(cases, max(3, args.repeats // 4), warmup=1)
        for case in cases:
            rows.append({"comparison": comparison, "case": f"{case}, 1 thread(s)", "path": case,
                         "model": name, "gates": circuit.n_gates, "threads": 1,
                         "size_name": "images", "size": n, "diffalg_s": t[case],
                         "images_per_s": n / t[case], "images_per_cpu_s": n / cpu[case]})
    if rows:
        print("\nDiscrete inference of the convolutional models (one thread), median")
        print(table(rows, ["model", "gates", "path", "images_per_s", "images_per_cpu_s"]))
    return rows


CONV_LAYERS = {   # name: (in channels, out channels, image size): the conv models' tree layers
    "mnist k=16": (2, 16, 28), "mnist_deep block 2": (4, 16, 14),
    "mnist_deep block 3": (16, 64, 7), "cifar k=8 block 1": (9, 8, 32),
    "cifar k=8 block 2": (8, 32, 16),
}


def conv_step_rows(args):
    """Training step (forward + backward) of one LogicTreeConv2d (3x3, padding 1, depth-2 trees)
    against the same layer written plainly (`reference_tree_conv`: unfold, gather, 16 gates)."""
    rows = []
    for name, (cin, cout, size) in CONV_LAYERS.items():
        conv = LogicTreeConv2d(cin, cout, 3, padding=1, seed=0)
        x = torch.rand(args.conv_batch, cin, size, size, generator=torch.Generator().manual_seed(0))
        plain = lambda: reference_tree_conv(x, conv.leaves, conv.weights, 3, 1, 1)  # noqa: E731
        diff = (conv(x) - plain()).abs().max().item()
        if diff > 1e-5:
            raise AssertionError(f"{name}: the layer and its plain form differ by {diff:.2e}")

        def step(fn):
            def run():
                conv.zero_grad(set_to_none=True)
                fn().sum().backward()
            return run
        t, c = interleaved_medians({"diffalg": step(lambda: conv(x)), "plain": step(plain)},
                                   args.repeats, block=args.block)
        rows.append({"comparison": "conv training step", "case": f"{name}, batch "
                     f"{args.conv_batch}", "layer": name, "in_channels": cin,
                     "out_channels": cout, "image": size, "size_name": "image", "size": size,
                     "batch": args.conv_batch, "max_abs_diff": diff,
                     "diffalg_s": t["diffalg"], "diffalg_cpu_s": c["diffalg"],
                     "reference": "unfold + gather + 16-gate formula (reference_tree_conv)",
                     "reference_s": t["plain"], "reference_cpu_s": c["plain"],
                     "ratio": t["plain"] / t["diffalg"], "cpu_ratio": c["plain"] / c["diffalg"]})
    print(f"\nTraining step (forward + backward, batch {args.conv_batch}) of one logic tree "
          "convolution (3x3, padding 1, depth 2) against unfold + gather + the 16-gate formula")
    shown = [dict(r, **{"diffalg ms": 1e3 * r["diffalg_s"], "plain ms": 1e3 * r["reference_s"],
                        "speed-up": r["ratio"]}) for r in rows]
    print(table(shown, ["layer", "in_channels", "out_channels", "image", "diffalg ms",
                        "plain ms", "speed-up", "max_abs_diff"]))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[1000, 2000, 4000, 8000],
                    help="training step: layer widths")
    ap.add_argument("--width", type=int, default=8000, help="inference: layer width")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--images", type=int, default=65536, help="batch for the inference")
    ap.add_argument("--difflogic-src", default=os.environ.get("DIFFLOGIC_SRC"),
                    help="folder holding difflogic's package sources (its `difflogic/` folder)")
    ap.add_argument("--block", type=int, default=1,
                    help="training step: each timed sample is the mean of this many consecutive "
                         "steps of one side (default 1: the sides alternate step by step)")
    ap.add_argument("--conv", nargs="*", default=[], choices=sorted(CONV_MODELS),
                    help="also time the discrete inference of these convolutional models")
    ap.add_argument("--conv-images", type=int, default=16384,
                    help="batch for the convolutional inference")
    ap.add_argument("--conv-step", action="store_true",
                    help="also time the training step of a logic tree convolution against its "
                         "plain PyTorch form")
    ap.add_argument("--conv-batch", type=int, default=64, help="batch of the conv training step")
    ap.add_argument("--quick", action="store_true",
                    help="widths 500 and 2000, 3 repeats, 16,384 images")
    args = add_record_args(ap).parse_args()
    if args.quick:
        args.widths, args.width, args.repeats, args.images = [500, 2000], 2000, 3, 16384
    print(setting())
    peer = "difflogic" if load_difflogic(args.difflogic_src) is not None else "reference"
    if peer == "reference":
        print("difflogic not importable: comparing with the 16-gate PyTorch layer of this file")
    what = (f"forward + backward of LogicLayer(784, w) -> LogicLayer(w, w) -> GroupSum(10, 10), "
            f"batch {args.batch}, median of {args.repeats} samples of {args.block} step(s)")
    run = Run("logic", args, repeats=args.repeats,
              params={"block": args.block, "batch": args.batch, "inference_width": args.width},
              comparisons={"training step": {"what": what, "size": "width",
                                             "ratio": "reference / diffalg"}})
    run.add(training_rows(args, peer))
    comparison, rows = inference_rows(args)
    run.run["comparisons"][comparison] = {
        "what": f"6 x {args.width} gates, 784 input bits, median of {max(3, args.repeats // 4)}",
        "size": "images"}
    conv_rows = conv_inference_rows(args) if args.conv and hardware_circuit else []
    for r in conv_rows:
        run.run["comparisons"].setdefault(r["comparison"], {
            "what": f"{r['model']} model, {r['gates']:,} gates, one thread", "size": "images"})
    if args.conv_step and hardware_circuit:
        conv_rows = conv_step_rows(args) + conv_rows
        run.run["comparisons"]["conv training step"] = {
            "what": "forward + backward of one LogicTreeConv2d(c_in, c_out, 3, padding=1), "
                    f"batch {args.conv_batch}, median of {args.repeats} samples of "
                    f"{args.block} step(s), the sides alternating",
            "size": "image", "ratio": "plain / diffalg"}
    run.close(rows + conv_rows)


if __name__ == "__main__":
    main()
