"""Logic gate networks: training-step time and peak memory of diffalg.logic against difflogic's
Python implementation (or, when difflogic cannot be imported, a plain 16-gate PyTorch reference
written the same way), and discrete inference throughput of a 48,000-gate circuit: the compiled C
path timed on the circuit alone (input packed beforehand, as in the paper's figure) and from a bool
tensor (packing included), and the bit-packed PyTorch path from a bool tensor.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_logic.py [--quick] [--difflogic-src DIR]

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
import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from harness import setting, table  # noqa: E402

from diffalg.logic.layers import GroupSum, LogicLayer  # noqa: E402
from diffalg.logic.inference import LogicCircuit, compile_circuit  # noqa: E402


def load_difflogic(src=None):
    "Import difflogic (installed, or from source folder `src` with a stub CUDA extension); None if impossible."
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
        gates = [torch.zeros_like(a), ab, a - ab, a, b - ab, b, a + b - 2 * ab, a + b - ab, 1 - (a + b - ab),
                 1 - (a + b - 2 * ab), 1 - b, 1 - b + ab, 1 - a, 1 - a + ab, 1 - ab, torch.ones_like(a)]
        out = torch.zeros_like(a)
        for i, g in enumerate(gates):
            out = out + p[:, i] * g
        return out


def build(kind, in_dim, width, k=10, tau=10.0, difflogic_src=None):
    torch.manual_seed(0)
    if kind == "diffalg":
        return torch.nn.Sequential(LogicLayer(in_dim, width), LogicLayer(width, width), GroupSum(k, tau))
    if kind == "reference":
        l1, l2 = LogicLayer(in_dim, width), LogicLayer(width, width)
        return torch.nn.Sequential(ReferenceLayer(l1.indices), ReferenceLayer(l2.indices), GroupSum(k, tau))
    dl = load_difflogic(difflogic_src)
    return torch.nn.Sequential(dl.LogicLayer(in_dim, width, device="cpu", implementation="python"),
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
    """Median wall and CPU (process, all threads) seconds per call of each function in dict `fns`, timed in
    alternation (a shared machine's load hits all alike; CPU time does not count the time others use the cores).
    Each sample is the mean over `block` consecutive calls of one function (steady state, as in training)."""
    import statistics
    import time
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
    return {k: statistics.median(v) for k, v in times.items()}, {k: statistics.median(v) for k, v in cpu.items()}


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
    "Peak RSS growth (MiB) during the first training step of a freshly built model, in a fresh process; Linux only."
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_step_peak, args=(kind, in_dim, width, batch, difflogic_src, queue))
    proc.start()
    proc.join()
    return queue.get() if proc.exitcode == 0 else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--images", type=int, default=65536, help="batch for the inference throughput")
    ap.add_argument("--difflogic-src", default=os.environ.get("DIFFLOGIC_SRC"),
                    help="folder holding difflogic's package sources (its `difflogic/` directory)")
    ap.add_argument("--block", type=int, default=1,
                    help="training step: each timed sample is the mean of this many consecutive steps of one side (default 1: the sides alternate step by step)")
    ap.add_argument("--quick", action="store_true", help="width 2000, 3 repeats, 16,384 images")
    args = ap.parse_args()
    if args.quick:
        args.width, args.repeats, args.images = 2000, 3, 16384
    in_dim = 784
    print(setting())

    # ---- training step ----
    peer = "difflogic" if load_difflogic(args.difflogic_src) is not None else "reference"
    if peer == "reference":
        print("difflogic not importable: comparing against the plain 16-gate PyTorch reference in this file")
    rows = []
    steps = {kind: train_step_fn(build(kind, in_dim, args.width, difflogic_src=args.difflogic_src), args.batch, in_dim)
             for kind in ("diffalg", peer)}
    times, cpu = interleaved_medians(steps, args.repeats, block=args.block)
    for kind in ("diffalg", peer):
        rows.append({"implementation": kind + (" (python)" if kind == "difflogic" else ""),
                     "step ms": 1e3 * times[kind], "speed-up": times[peer] / times[kind],
                     "step CPU ms": 1e3 * cpu[kind], "CPU speed-up": cpu[peer] / cpu[kind],
                     "step peak MiB": step_peak_mib(kind, in_dim, args.width, args.batch, args.difflogic_src)})
    print(f"\nTraining step (forward+backward, batch {args.batch}) of LogicLayer({in_dim}, {args.width}) -> "
          f"LogicLayer({args.width}, {args.width}) -> GroupSum(10, 10); median of {args.repeats} samples of {args.block} consecutive step(s), the two sides alternating; "
          "step CPU ms = process CPU time of both threads; "
          "step peak MiB = growth of the resident memory during the first step, fresh process")
    print(table(rows, ["implementation", "step ms", "speed-up", "step CPU ms", "CPU speed-up", "step peak MiB"]))

    # ---- discrete inference of a 6 x width network ----
    torch.manual_seed(0)
    net = torch.nn.Sequential(LogicLayer(in_dim, args.width),
                              *[LogicLayer(args.width, args.width) for _ in range(5)], GroupSum(10, 10.0)).eval()
    circuit = LogicCircuit.from_model(net)
    compiled = compile_circuit(circuit)
    n = args.images
    x = torch.rand(n, in_dim) > 0.5
    ref = circuit.packed(x[:1000])
    assert torch.equal(compiled(x[:1000]), ref) and torch.equal(circuit(x[:1000]), ref)
    packed, _ = compiled.pack(x)
    threads = torch.get_num_threads()
    rows = []
    def one_thread(fn):
        def run():
            torch.set_num_threads(1)
            try:
                fn()
            finally:
                torch.set_num_threads(threads)
        return run
    cases = [("compiled C, circuit only (pre-packed input)", 1, lambda: compiled.run_packed(packed, n)),
             ("compiled C, incl. packing (bool tensor in)", 1, lambda: compiled(x)),
             ("compiled C, circuit only (pre-packed input)", 2, lambda: compiled.run_packed(packed, n, n_threads=2)),
             ("compiled C, incl. packing (bool tensor in)", 2, lambda: compiled(x, n_threads=2)),
             ("bit-packed PyTorch, incl. packing", threads, lambda: circuit.packed(x)),
             ("bit-packed PyTorch, incl. packing", 1, one_thread(lambda: circuit.packed(x)))]
    for name, th, fn in cases:
        t, c = interleaved_medians({name: fn}, max(3, args.repeats // 4), warmup=1)
        rows.append({"path": name, "threads": th, "images/s": n / t[name], "images per CPU-s": n / c[name]})
    print(f"\nDiscrete inference of {circuit.n_gates:,} gates ({in_dim} input bits, 6 x {args.width}, GroupSum 10), "
          f"{n:,} images, median")
    print("images per CPU-s = images per second of process CPU time (all threads): on 1 thread, the throughput of\n"
          "one core that nothing else uses, whatever the machine's load (the C threads' time counts too)")
    print(table(rows, ["path", "threads", "images/s", "images per CPU-s"]))


if __name__ == "__main__":
    main()
