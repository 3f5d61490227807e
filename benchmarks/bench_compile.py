"""torch.compile against eager for every public operator of the top-level API, and what the value
checks cost. Records benchmarks/results/compile.json.

For each operator (soft_sort ... ranking_accuracy, at the sizes of the other benchmarks) a fresh
process measures:
- graph breaks: `torch._dynamo.explain` on the forward (graphs, breaks, the first reasons);
- fullgraph: whether `torch.compile(fn, fullgraph=True)` compiles forward and backward, else the
  error; the timings then use `torch.compile(fn)` with its graph breaks (the row says which);
- compile seconds: the first call (forward and backward) of the compiled function, after a
  warm-up compile of a one-line function (imports and the compiler's own start, recorded apart),
  with a fresh inductor cache for the run (`--warm-cache`: the user's cache);
- the median time per call of forward + backward (the outputs summed against fixed random
  weights; forward only where an operator has no gradient) for eager and compiled (default
  backend "inductor"; "aot_eager" beside it at full size, or with `--aot-eager`), alternated in
  one process in blocks of consecutive calls (about 50 ms of eager calls each), and the ratio
  compiled / eager (below 1: compiled is faster);
- at a small size, the eager forward per call with `diffalg.set_validate_args(False)`, `"cpu"`
  (the default) and `True`, alternated in blocks of about 20 ms, the fastest block of each (the
  one least disturbed by other processes), in microseconds, and the overhead over False.
Before the operators, a one-line function (x.sin() * 2 on a 32 x 64 input, forward + backward)
is timed the same way in a process of its own: what a compiled call costs beyond its work
(dynamo's guards, AOTAutograd's wrappers around the graphs), the fixed cost against which the
operators' eager times are read (row "one-line function", comparison "compiler's fixed cost").
Run it with PyTorch's default OpenMP wait policy, as users do, on an otherwise idle machine:
inductor's CPU kernels open an OpenMP parallel region each, and with `OMP_WAIT_POLICY=PASSIVE`
(which the other benchmarks use against a busy machine) every region pays for waking its threads,
which made small compiled operators up to ten times slower than eager here (SoftSort at 64 x 8).
A failure is a row with its reason (never a crash of the script); nothing is asserted. The
command that regenerates benchmarks/results/compile.json is the first below (harness.FULL).

    python benchmarks/bench_compile.py          # full size, an hour or more
    python benchmarks/bench_compile.py --quick  # small sizes, no aot_eager,
                                        # a minute or two per operator on 2 cores
    python benchmarks/bench_compile.py --quick --only soft_sort sort_loss --no-record
    python benchmarks/bench_compile.py --device cuda                    # on a GPU
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import Run, add_record_args, setting, table  # noqa: E402

COMPILE = "compiled against eager"
VALIDATION = "validation cost"
FIXED = "compiler's fixed cost"
FLOOR = "one-line function"     # x.sin() * 2: what a compiled call costs beyond its work
RATIO = "compiled / eager (below 1: compiled is faster)"


# ------------------------------------------------------------------ the operators
def _leaf(torch, dev, *shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(dev).requires_grad_()


def _data(torch, dev, *shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dev)


def pairwise_logistic(y, values):
    "The Newton benchmark's pairwise logistic ranking loss per sample (B,)."
    import torch
    want = (values[:, :, None] < values[:, None, :]).to(y.dtype)
    return (torch.nn.functional.softplus(y[:, :, None] - y[:, None, :]) * want).sum((1, 2))


def build(name, p, dev):
    """(function, inputs, modules, description) of operator `name` with size parameters `p`; the
    function returns a tensor or a tuple of them (the gradient flows from the float ones)."""
    import torch
    import diffalg
    B, n = p.get("B"), p.get("n")
    x = _leaf(torch, dev, B, n) if n else None
    if name == FLOOR:
        return lambda x: x.sin() * 2, [x], [], f"x.sin() * 2, x ({B}, {n})"
    net = ("bitonic", 10.0, "cauchy")
    if name in ("soft_sort", "soft_rank", "soft_permutation"):
        op = getattr(diffalg, name)
        return lambda x: op(x, *net), [x], [], f"x ({B}, {n}), bitonic"
    if name in ("soft_topk", "soft_topk_mask"):
        op, k = getattr(diffalg, name), p["k"]
        return lambda x: op(x, k, *net), [x], [], f"x ({B}, {n}), k {k}, bitonic"
    if name == "diff_sort":
        def run(x):
            r = diffalg.diff_sort(x, *net)
            return r.values, r.permutation
        return run, [x], [], f"x ({B}, {n}), .values and .permutation, bitonic"
    if name == "sort_loss":
        v = _data(torch, dev, B, n)
        return (lambda x: diffalg.sort_loss(x, v, steepness=10.0, distribution="logistic"), [x],
                [], f"scores ({B}, {n}), odd-even, logistic")
    if name == "DiffSortNet":
        m = diffalg.DiffSortNet("bitonic", n, steepness=10.0)
        return lambda x: m(x), [x], [m], f"x ({B}, {n}), bitonic"
    if name == "DiffTopkNet":
        m = diffalg.DiffTopkNet("bitonic", n, k=p["k"], steepness=10.0)
        return lambda x: m(x)[1], [x], [m], f"x ({B}, {n}), k {p['k']}, bitonic"
    if name == "TopKCrossEntropyLoss":
        m = diffalg.TopKCrossEntropyLoss("odd_even", 2.0, p_k=[0.5, 0, 0, 0, 0.5], n=n, m=16)
        labels = torch.randint(0, n, (B,), generator=torch.Generator().manual_seed(1)).to(dev)
        return (lambda x: m(x, labels), [x], [m],
                f"logits ({B}, {n}), m 16, top-1 and top-5, odd-even")
    if name in ("NeuralSort", "SoftSort"):
        m = getattr(diffalg, name)(tau=1.0)
        return lambda x: m(x), [x], [m], f"scores ({B}, {n}), tau 1"
    if name == "relaxed_step":
        x = _leaf(torch, dev, p["size"])
        return (lambda x: diffalg.relaxed_step(x, 4.0, "logistic"), [x], [],
                f"x ({p['size']:,},), logistic")
    if name == "Relaxation":
        from diffalg.relax import bubble_sort_program
        return (lambda x: bubble_sort_program(x, steepness=8.0, epsilon=1e-5), [x], [],
                f"bubble-sort program, x ({B}, {n})")
    if name in ("SoftRasterizer", "render_silhouette"):
        from diffalg.rendering import Camera, camera_position, icosphere
        v, f = icosphere(3)
        v, f = v.to(dev).requires_grad_(), f.to(dev)
        cam = Camera(camera_position(4.0, torch.tensor([10.0]), torch.tensor([20.0])).to(dev))
        res, text = p["res"], f"icosphere ({f.shape[0]:,} faces), {p['res']} x {p['res']}"
        if name == "render_silhouette":
            return (lambda v: diffalg.render_silhouette(v, f, cam, res, tau=1e-4, squared=True),
                    [v], [], text)
        m = diffalg.SoftRasterizer(cam, res, tau=1e-4, squared=True)
        return lambda v: m(v, f), [v], [m], text
    if name == "LogicLayer+GroupSum":
        w = p["width"]
        m = torch.nn.Sequential(diffalg.LogicLayer(784, w, seed=0),
                                diffalg.LogicLayer(w, w, seed=1),
                                diffalg.GroupSum(10, 10.0)).to(dev)
        g = torch.Generator().manual_seed(0)
        bits = (torch.rand(B, 784, generator=g) > 0.5).float().to(dev)
        y = torch.randint(0, 10, (B,), generator=g).to(dev)
        return (lambda bits: torch.nn.functional.cross_entropy(m(bits), y), [bits], [m],
                f"784 -> {w:,} -> {w:,} gates -> 10 classes, batch {B}")
    if name in ("HessianNewtonLoss", "FisherNewtonLoss"):
        v = _data(torch, dev, B, n)
        m = getattr(diffalg, name)(pairwise_logistic, 1.0 if name[0] == "H" else 0.1)
        return lambda x: m(x, v), [x], [m], f"pairwise logistic loss, scores ({B}, {n})"
    if name == "ranking_accuracy":
        v = _data(torch, dev, B, n)
        return (lambda x: diffalg.ranking_accuracy(x.detach(), v), [x], [],
                f"scores ({B}, {n}), no gradient")
    raise ValueError(f"unknown operator {name!r}")


# operator -> (full size, quick size, small size for the validation cost); `backward` False: the
# operator has no gradient (forward only). Sizes follow bench_sorting (values n 1000 and 128 at
# batch 128; permutations n 256 at batch 32; top-k n 1024 at batch 32, k 5), bench_newton (B 64,
# m 32 and 64), bench_distributions (10^6 elements), bench_relax (bubble sort, batch 100),
# bench_rendering (icosphere, 64 and 128 pixels) and bench_logic (batch 128, widths 500-8000).
PERM, PERM_Q, SMALL = {"B": 32, "n": 256}, {"B": 32, "n": 64}, {"B": 4, "n": 16}
TOPK, TOPK_Q, TOPK_S = {"B": 32, "n": 1024, "k": 5}, {"B": 32, "n": 256, "k": 5}, \
    {"B": 4, "n": 16, "k": 5}
OPERATORS = {
    "soft_sort": ({"B": 128, "n": 1000}, {"B": 128, "n": 128}, SMALL),
    "soft_rank": (PERM, PERM_Q, SMALL),
    "soft_permutation": (PERM, PERM_Q, SMALL),
    "soft_topk": (TOPK, TOPK_Q, TOPK_S),
    "soft_topk_mask": (TOPK, TOPK_Q, TOPK_S),
    "diff_sort": (PERM, PERM_Q, SMALL),
    "sort_loss": ({"B": 64, "n": 32}, {"B": 64, "n": 8}, {"B": 4, "n": 8}),
    "DiffSortNet": (PERM, PERM_Q, SMALL),
    "DiffTopkNet": (TOPK, TOPK_Q, TOPK_S),
    "TopKCrossEntropyLoss": ({"B": 128, "n": 100}, {"B": 32, "n": 100}, {"B": 4, "n": 20}),
    "NeuralSort": ({"B": 64, "n": 32}, {"B": 64, "n": 8}, {"B": 4, "n": 8}),
    "SoftSort": ({"B": 64, "n": 32}, {"B": 64, "n": 8}, {"B": 4, "n": 8}),
    "relaxed_step": ({"size": 1_000_000}, {"size": 100_000}, {"size": 1000}),
    "Relaxation": ({"B": 100, "n": 16}, {"B": 100, "n": 5}, {"B": 4, "n": 5}),
    "SoftRasterizer": ({"res": 128}, {"res": 64}, {"res": 16}),
    "render_silhouette": ({"res": 128}, {"res": 64}, {"res": 16}),
    "LogicLayer+GroupSum": ({"B": 128, "width": 8000}, {"B": 128, "width": 500},
                            {"B": 4, "width": 400}),
    "HessianNewtonLoss": ({"B": 64, "n": 64}, {"B": 64, "n": 16}, {"B": 4, "n": 8}),
    "FisherNewtonLoss": ({"B": 64, "n": 64}, {"B": 64, "n": 16}, {"B": 4, "n": 8}),
    "ranking_accuracy": ({"B": 128, "n": 32}, {"B": 100, "n": 5}, {"B": 4, "n": 5}),
}
NO_GRADIENT = {"ranking_accuracy"}
# the reference timed first in every run, at one size (the quick size of the sorting operators)
FLOOR_SIZES = ({"B": 32, "n": 64}, {"B": 32, "n": 64}, None)


def size_of(p):
    "One number for the size of a case: the elements of its input (or pixels, or gates)."
    if "res" in p:
        return p["res"] ** 2
    if "width" in p:
        return p["width"]
    return p.get("size") or p["B"] * p["n"]


# ------------------------------------------------------------------ one operator (child process)
def short(exc_or_text, limit=160):
    "The first line of an error (type and message) and, if given, where in diffalg it arose."
    text = exc_or_text if isinstance(exc_or_text, str) else \
        f"{type(exc_or_text).__name__}: {exc_or_text}"
    text = text.replace("Consider annotating your code using torch._check*(). ", "")
    text = re.sub(r"\s*\((unhinted|Size-like symbols):[^()]*(\([^()]*\)[^()]*)*\)", "", text)
    lines = [s.strip() for s in text.strip().splitlines() if s.strip()]
    first = lines[0] if lines else "failed"
    places = re.findall(r'File "[^"]*?diffalg/([^"]+)", line (\d+), in (\w+)', text)
    where = f" (at {places[-1][0]}:{places[-1][1]}, {places[-1][2]})" if places else ""
    first = first[:limit - len(where)]
    return first + where


def tensors(out):
    "The floating-point tensors of an operator's output (a tensor, a tuple, or a list of them)."
    import torch
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in tensors(o)]
    return []


def scalar_loss(fn, inputs, backward):
    "fn's outputs summed against fixed random weights: one scalar to differentiate."
    import torch
    if not backward:
        return fn
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        weights = [torch.randn(t.shape, generator=g).to(t) for t in tensors(fn(*inputs))]

    def loss(*args):
        return sum((t * w).sum() for t, w in zip(tensors(fn(*args)), weights))
    return loss


def numbers(out):
    "The values of an output (tensors, numbers, tuples of them) as a flat list of tensors."
    import torch
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in numbers(o)]
    if isinstance(out, torch.Tensor):
        return [out.detach().double().cpu().reshape(-1)]
    return [torch.tensor([float(out)], dtype=torch.float64)] if isinstance(out, (int, float)) \
        else []


def max_diff(a, b):
    "Largest absolute difference between two outputs (with their gradients)."
    pairs = list(zip(numbers(a), numbers(b)))
    return max([float((x - y).abs().max()) for x, y in pairs if x.numel()] or [0.0])


def step_fn(f, inputs, modules, backward, sync):
    "One call: forward (and backward) of `f`, gradients cleared first."
    leaves = [t for t in inputs if t.requires_grad]

    def step():
        for t in leaves:
            t.grad = None
        for m in modules:
            m.zero_grad(set_to_none=True)
        out = f(*inputs)
        if backward:
            out.backward()
        sync()
        return out
    return step


BLOCK_S = 0.05   # seconds of calls per timed sample (one call where a call takes longer)


def calls_in(fn, seconds):
    "How many consecutive calls of `fn` take about `seconds` (at least 1)."
    t0, calls = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds and calls < 10_000:
        fn()
        calls += 1
    return max(1, calls)


def interleaved(fns, repeats, block=1, pick=statistics.median):
    """Seconds per call of each fn (`pick`, the median by default, over the rounds), timed in
    rounds that alternate them (the order rotated from round to round)."""
    times = {k: [] for k in fns}
    keys = list(fns)
    for r in range(repeats):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            t0 = time.perf_counter()
            for _ in range(block):
                fns[k]()
            times[k].append((time.perf_counter() - t0) / block)
    return {k: pick(v) for k, v in times.items()}


def explain(torch, f, inputs):
    "Graphs, graph breaks and the distinct reasons of `torch._dynamo.explain` on the forward."
    torch._dynamo.reset()
    e = torch._dynamo.explain(f)(*inputs)
    reasons = []
    for r in e.break_reasons:
        frame = r.user_stack[-1] if r.user_stack else None
        where = ""
        if frame is not None and "diffalg/" in frame.filename:
            where = f" (at {frame.filename.split('diffalg/')[-1]}:{frame.lineno}, {frame.name})"
        text = short(r.reason, 120) + where
        if text not in reasons:
            reasons.append(text)
    return {"graphs": e.graph_count, "graph_breaks": e.graph_break_count,
            "break_reasons": reasons[:5]}


def compiled(torch, f, backend, step):
    """(compiled function, fullgraph, error of the fullgraph attempt, seconds of the first call);
    the function is None (and the last item the error without fullgraph) where both fail."""
    errors = []
    for fullgraph in (True, False):
        cf = torch.compile(f, backend=backend, fullgraph=fullgraph)
        t0 = time.perf_counter()
        try:
            step(cf)
            return cf, fullgraph, (errors or [None])[0], time.perf_counter() - t0
        except Exception as exc:              # noqa: BLE001  (a failure is a result)
            errors.append(short(exc, 120 if errors else 160))
    return None, False, errors[0], f"without fullgraph too: {errors[1]}"


def child(spec):
    "Measure one operator; print RESULT lines (partial results survive a timeout)."
    import torch
    import diffalg
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    dev, backward = spec["device"], spec["name"] not in NO_GRADIENT
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    res = {"threads": torch.get_num_threads()}

    def report(**kw):
        res.update(kw)
        print("RESULT" + json.dumps(res), flush=True)

    fn, inputs, modules, text = build(spec["name"], spec["params"], dev)
    report(shape=text, backward=backward)
    f = scalar_loss(fn, inputs, backward)
    step = lambda g: step_fn(g, inputs, modules, backward, sync)()  # noqa: E731
    try:
        eager_out = step(f)                                  # warm-up: loads kernels and caches
    except Exception as exc:                  # noqa: BLE001
        return report(error=f"eager call failed: {short(exc)}")
    grads = [t.grad.clone() for t in inputs if t.grad is not None]
    try:
        report(**explain(torch, f, inputs))
    except Exception as exc:                  # noqa: BLE001
        report(explain_error=short(exc))
    fns = {"eager": step_fn(f, inputs, modules, backward, sync)}
    for backend in spec["backends"]:
        torch._dynamo.reset()
        if backend == "inductor":             # the compiler's own start, once per process
            t0 = time.perf_counter()
            warm = torch.compile(lambda t: (t.sin() * 2).sum())
            warm(torch.ones(4, device=dev, requires_grad=True)).backward()
            report(warmup_s=time.perf_counter() - t0)
            torch._dynamo.reset()
        key = "compiled" if backend == "inductor" else backend
        cf, full, err, first = compiled(torch, f, backend, step)
        if cf is None:
            report(**{f"{key}_fullgraph": False, f"{key}_fullgraph_error": err,
                      f"{key}_error": first})
            continue
        out = step(cf)
        diff = max_diff([out] + [t.grad for t in inputs if t.grad is not None],
                        [eager_out] + grads)
        report(**{f"{key}_fullgraph": full, f"{key}_compile_s": first, f"{key}_max_diff": diff,
                  **({f"{key}_fullgraph_error": err} if err else {})})
        fns[key] = step_fn(cf, inputs, modules, backward, sync)
    for g in fns.values():
        g()
    block = calls_in(fns["eager"], BLOCK_S)
    times = interleaved(fns, spec["repeats"], block)
    report(block=block, **{f"{k}_s": v for k, v in times.items()})
    if spec["small"] is None:
        return
    try:
        validation_cost(torch, diffalg, spec, sync, report)
    except Exception as exc:                  # noqa: BLE001
        report(validate_error=short(exc))


def validation_cost(torch, diffalg, spec, sync, report):
    "Eager forward at the small size with each validation setting, alternated, seconds per call."
    fn, inputs, _, text = build(spec["name"], spec["small"], spec["device"])
    forward = lambda: (fn(*inputs), sync())  # noqa: E731
    forward()
    t0, calls = time.perf_counter(), 0
    while time.perf_counter() - t0 < 0.02 and calls < 10_000:
        forward()
        calls += 1
    block = max(1, calls)                     # about 20 ms of calls per timed block

    def setting(value):
        def run():
            with diffalg.validate_args(value):
                forward()
        return run
    fns = {"off": setting(False), "default": setting("cpu"), "on": setting(True)}
    times = interleaved(fns, spec["rounds"], block, pick=min)   # the least disturbed block
    report(small_shape=text, **{f"validate_{k}_s": v for k, v in times.items()})


# ------------------------------------------------------------------ the run (parent process)
def run_operator(name, args, mode):
    sizes = FLOOR_SIZES if name == FLOOR else OPERATORS[name]
    spec = {"name": name, "params": sizes[mode], "small": sizes[2],
            "device": args.device, "threads": args.threads, "repeats": args.repeats,
            "rounds": args.rounds, "backends": ["inductor"] + ([] if args.no_aot_eager
                                                               else ["aot_eager"])}
    try:
        p = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                           capture_output=True, text=True, timeout=args.timeout)
        out, err = p.stdout, p.stderr
        last = [line for line in err.splitlines() if line.strip()][-1:] or ["no message"]
        failed = f"the process failed: {short(last[0] + chr(10) + err)}" if p.returncode \
            else None
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err, failed = "", f"timeout after {args.timeout} s"
    found = [json.loads(line[6:]) for line in out.splitlines() if line.startswith("RESULT")]
    res = found[-1] if found else {}
    if failed:
        res["error"] = failed
    return spec, res


def rows_of(name, spec, res):
    "The record's rows of one operator: compiled against eager, and the validation cost."
    if name == FLOOR:
        eager, comp = res.get("eager_s"), res.get("compiled_s")
        return [{"case": name, "operator": name, "size_name": "elements", "comparison": FIXED,
                 "shape": res.get("shape"), "size": size_of(spec["params"]),
                 "pass": "forward + backward", "error": res.get("error"), "eager_s": eager,
                 "compiled_s": comp, "fixed_s": comp - eager if eager and comp else None,
                 "reference": "eager", "reference_s": eager, "diffalg_s": comp,
                 "ratio": comp / eager if eager and comp else None}]
    base = {"case": name, "operator": name, "size_name": "elements", "shape": res.get("shape"),
            "size": size_of(spec["params"]), "error": res.get("error"),
            "pass": "forward + backward" if res.get("backward", True) else "forward"}
    keys = ("graphs", "graph_breaks", "break_reasons", "explain_error", "warmup_s", "eager_s",
            "block")
    row = dict(base, comparison=COMPILE, **{k: res.get(k) for k in keys})
    for key in ("compiled", "aot_eager"):
        for part in ("fullgraph", "fullgraph_error", "compile_s", "s", "max_diff", "error"):
            row[f"{key}_{part}"] = res.get(f"{key}_{part}")
        if res.get(f"{key}_s") and res.get("eager_s"):
            row[f"{key}_ratio"] = res[f"{key}_s"] / res["eager_s"]
    row["fullgraph"] = row.pop("compiled_fullgraph")
    row.update(reference="eager", reference_s=res.get("eager_s"), diffalg_s=res.get("compiled_s"),
               ratio=row.pop("compiled_ratio", None))
    rows = [row]
    off, on, default = (res.get(f"validate_{k}_s") for k in ("off", "on", "default"))
    if off or res.get("validate_error"):
        row = dict(base, comparison=VALIDATION, size=size_of(spec["small"]),
                   shape=res.get("small_shape"), error=res.get("validate_error"),
                   validate_off_s=off, validate_default_s=default, validate_on_s=on,
                   reference="validation off", reference_s=off, diffalg_s=on)
        row["pass"] = "forward"
        if off and on and default:
            row.update(default_overhead=default / off - 1, on_overhead=on / off - 1,
                       ratio=on / off)
        rows.append(row)
    return rows


def printed(rows):
    "The two tables of the run, as text."
    comp = [r for r in rows if r["comparison"] in (COMPILE, FIXED)]
    for r in comp:
        r.update({"breaks": r.get("graph_breaks"), "fullgraph?": {True: "yes", False: "no"}.get(
            r.get("fullgraph"), "-"), "compile s": r.get("compiled_compile_s"),
            "eager ms": r["eager_s"] and 1e3 * r["eager_s"],
            "compiled ms": r.get("compiled_s") and 1e3 * r["compiled_s"],
            "compiled/eager": r.get("ratio"), "aot_eager/eager": r.get("aot_eager_ratio"),
            "note": "reference, not an operator" if r["comparison"] == FIXED else
            (r.get("error") or r.get("compiled_error") or "")[:50]})
    cols = ["operator", "breaks", "fullgraph?", "compile s", "eager ms", "compiled ms",
            "compiled/eager", "aot_eager/eager", "note"]
    text = [table(comp, cols)]
    val = [r for r in rows if r["comparison"] == VALIDATION]
    for r in val:
        r.update({f"{k} us": 1e6 * r[f"validate_{k}_s"] for k in ("off", "default", "on")
                  if r.get(f"validate_{k}_s")})
        r.update({f"{k} +%": 100 * r[f"{k}_overhead"] for k in ("default", "on")
                  if r.get(f"{k}_overhead") is not None})
    cols = ["operator", "off us", "default us", "on us", "default +%", "on +%"]
    text.append(table(val, cols) if val else "(no validation cost measured)")
    return "\n\n".join(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, 3 repeats, 5 rounds")
    ap.add_argument("--only", nargs="+", metavar="OPERATOR", help=f"of {list(OPERATORS)}")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed blocks of calls of each side (default 10, 3 with --quick)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="validation cost: rounds of ~20 ms blocks (default 15, 5 with --quick)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    ap.add_argument("--no-aot-eager", action="store_true",
                    help="skip the aot_eager column (the default with --quick)")
    ap.add_argument("--aot-eager", action="store_true", help="time aot_eager with --quick too")
    ap.add_argument("--timeout", type=int, default=None,
                    help="seconds per operator (default 1200, 600 with --quick)")
    ap.add_argument("--warm-cache", action="store_true",
                    help="keep the user's inductor cache (default: a fresh one for the run)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = add_record_args(ap).parse_args()
    if args.child:
        return child(json.loads(args.child))
    mode = 1 if args.quick else 0
    args.no_aot_eager = args.no_aot_eager or (args.quick and not args.aot_eager)
    args.repeats = args.repeats or (3 if args.quick else 10)
    args.rounds = args.rounds or (5 if args.quick else 15)
    args.timeout = args.timeout or (600 if args.quick else 1200)
    names = [FLOOR] + [n for n in OPERATORS if not args.only or n in args.only]
    cache = None
    if not args.warm_cache:
        cache = tempfile.mkdtemp(prefix="diffalg_inductor_")
        os.environ.update(TORCHINDUCTOR_CACHE_DIR=cache, TRITON_CACHE_DIR=f"{cache}/triton")
    what = (f"forward + backward per call (outputs summed against fixed random weights), median of "
            f"{args.repeats} blocks of consecutive calls (about {BLOCK_S * 1e3:.0f} ms of eager "
            "calls each, one call where a call takes longer), eager and compiled alternated in a "
            "fresh process per operator")
    run = Run("compile", args, repeats=args.repeats, device=args.device,
              params={"rounds": args.rounds, "threads": args.threads or "torch default",
                      "fresh_inductor_cache": not args.warm_cache, "operators": names},
              comparisons={COMPILE: {"what": what, "size": "elements", "ratio": RATIO},
                           VALIDATION: {"what": "eager forward per call at a small size, "
                                        f"fastest of {args.rounds} rounds of ~20 ms blocks, the "
                                        "three settings alternated", "size": "elements",
                                        "ratio": "validation on / off"},
                           FIXED: {"what": "a one-line function (x.sin() * 2) timed like the "
                                   "operators: the compiled call's cost beyond the work, "
                                   "fixed_s = compiled - eager per call", "size": "elements",
                                   "ratio": "compiled / eager"}})
    print(f"{setting()}; {what}")
    rows = []
    try:
        for name in names:
            spec, res = run_operator(name, args, mode)
            new = rows_of(name, spec, res)
            r = new[0]
            print(f"{name}: breaks {r.get('graph_breaks', '-')}, fullgraph {r.get('fullgraph')}"
                  + (f", compiled/eager {r['ratio']:.2f}" if r.get("ratio") else "")
                  + "".join(f"; {r[k]}" for k in ("error", "compiled_error") if r.get(k)),
                  flush=True)
            rows += new
            run.add(new)
    finally:
        if cache:
            shutil.rmtree(cache, ignore_errors=True)
    print("\n" + printed([dict(r) for r in rows]))
    run.close()


if __name__ == "__main__":
    main()
