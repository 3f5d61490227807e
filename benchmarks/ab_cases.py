"""The cases of benchmarks/ab_interleaved.py: every case of every benchmark script, each as
(group, setup code, timed code, threads, environment). The setup runs once per server (cases with
the same setup share it); `torch` is imported. Imports try the chapter subpackages first, then the
flat modules of before the layout change, so both trees run the same code."""
from pathlib import Path

TEAPOT = str(Path(__file__).resolve().parent.parent / "tests" / "data" / "teapot.obj")
CASES = {}


def imports(*pairs):
    "try: from NEW import names / except ImportError: from OLD import names, for each triple."
    return "".join(f"try:\n    from {new} import {names}\nexcept ImportError:\n"
                   f"    from {old} import {names}\n" for new, old, names in pairs)


# bench_distributions: relaxed_step forward + backward, steepness 4
DISTS = ("logistic", "logistic_art", "gaussian", "cauchy", "reciprocal", "optimal", "uniform",
         "laplace")
for n in (10_000, 100_000, 1_000_000):
    for d in DISTS:
        CASES[f"relaxed_step {d} {n:,}"] = (
            "distributions", "from diffalg.distributions import relaxed_step\n"
            f"x = torch.randn({n}, requires_grad=True)\n",
            f"x.grad = None\nrelaxed_step(x, 4.0, {d!r}).sum().backward()", 1, {})

# bench_relax: relaxed bubble sort and shortest path, forward + backward; the training step
RELAX = imports(("diffalg.relax", "diffalg.relax_algorithms", "bubble_sort, shortest_path"))
for n in (5, 16, 32):
    CASES[f"bubble sort n={n} B=100"] = (
        "relax", RELAX + f"x = torch.randn(100, {n})\n",
        "v = x.clone().requires_grad_()\ns = bubble_sort(v, steepness=8.0, epsilon=1e-5)\n"
        "(s[0].sum() + s[-1].sum()).backward()", 1, {})
for method in ("tournament", "pairwise"):
    CASES[f"shortest path 12x12, 32 maps, 24 rounds, {method}"] = (
        "relax", RELAX + "cost = torch.rand(32, 12, 12) * 9 + 1\n",
        "c = cost.clone().requires_grad_()\nshortest_path(c, steepness=8.0, n_iter=24, "
        f"n_trace=24, method={method!r})[1].sum().backward()", 1, {})
CASES["ranking chapter training step, 5 numbers, batch 100"] = (
    "relax_train_step", RELAX + "from diffalg.data import digits_numbers\n"
    "from diffalg.ranking import NumberScorer\ntrain = digits_numbers('train')\n"
    "gen = torch.Generator().manual_seed(0)\nmodel = NumberScorer(channels=16)\n"
    "model(train.sample_ranking(5, 2, gen)[0])\n"
    "opt = torch.optim.Adam(model.parameters(), lr=2e-3)\n",
    "images, values = train.sample_ranking(5, 100, generator=gen)\norder = values.argsort(-1)\n"
    "scores = model(torch.take_along_dim(images, order[:, :, None, None, None], 1))\n"
    "loss = bubble_sort(scores, steepness=8.0, epsilon=1e-5)[2].mean()\nopt.zero_grad()\n"
    "loss.backward()\nopt.step()", 2, {})

# bench_sorting: the kernel, the PyTorch pass (DIFFALG_COMPILED=off) and the values-only runs
SORT = "from diffalg.sorting import RelaxedSort, soft_sort, get_sorting_network\n"
SORT_OPS = {"perm": "RelaxedSort(x, net, 10.0, 'cauchy').permutation",
            "values": "soft_sort(x, net, 10.0, 'cauchy')",
            "topk": "RelaxedSort(x, net, 10.0, 'cauchy').topk(5).flip(-1)"}


def sort_case(kind, net, n, B):
    return (SORT + f"net = get_sorting_network({net!r}, {n})\nx0 = torch.randn({B}, {n})\n",
            f"x = x0.clone().requires_grad_()\nout = {SORT_OPS[kind]}\n"
            "(out.sum() / out.numel()).backward()")


SORT_CASES = [("perm", "bitonic", n, 8) for n in (8, 16, 32, 64, 128, 256, 512, 1024)] + [
    ("perm", "odd_even", 256, 32), ("perm", "bitonic", 256, 32), ("values", "bitonic", 1000, 128),
    ("values", "bitonic", 128, 128), ("topk", "bitonic", 1024, 32)]
for group, env in (("sorting", {}), ("sorting_pytorch", {"DIFFALG_COMPILED": "off"})):
    for kind, net, n, B in SORT_CASES:
        CASES[f"{kind} {net} n={n} B={B}" + (", PyTorch pass" if env else "")] = (
            group, *sort_case(kind, net, n, B), 1, env)
for threads in (1, 2):
    for net, n, B in (("bitonic", 1000, 128), ("bitonic", 128, 128), ("odd_even", 128, 128),
                      ("bitonic", 4096, 32), ("odd_even", 1000, 16)):
        CASES[f"sorted values {net} n={n} B={B}, {threads} thread(s)"] = (
            "sorting_values", *sort_case("values", net, n, B), threads, {})

# bench_rendering: forward + backward, one thread
RENDER = ("from diffalg.rendering import Camera, camera_position, icosphere, load_mesh, "
          "render_rgb, render_silhouette\n")
RENDER_OPS = {
    "silhouette": "render_silhouette(vv, f, Camera(eye), {res}, tau=1e-4, squared=True)",
    "rgb": "render_rgb(vv, f, Camera(eye), {res}, colors=colors, tau=1e-4, squared=True, "
           "gamma=1e-4)",
    "cauchy": "render_silhouette(vv, f, Camera(eye), {res}, tau=0.01, distribution='cauchy')"}


def render_case(mesh, mode, B, res):
    load = f"v, f = load_mesh({TEAPOT!r})\n" if mesh == "teapot" else f"v, f = icosphere({mesh})\n"
    setup = RENDER + load + (f"eye = camera_position(4.0, torch.linspace(10.0, 40.0, {B}), "
                             f"torch.linspace(20.0, 200.0, {B}))\ncolors = torch.full_like(v, "
                             "0.7)\n")
    return setup, f"vv = v.clone().requires_grad_()\n{RENDER_OPS[mode].format(res=res)}.sum()" \
                  ".backward()"


for mesh, label in ((3, "icosphere"), ("teapot", "teapot")):
    for mode in ("silhouette", "rgb"):
        for B in (1, 8):
            for res in (64, 128, 256):
                CASES[f"{label} {mode} B={B} {res}px"] = (
                    "rendering", *render_case(mesh, mode, B, res), 1, {})
CASES["worst case: Cauchy coverage, icosphere 256px"] = (
    "rendering", *render_case(3, "cauchy", 1, 256), 1, {})
for sub in (1, 2, 4):       # subdivision 3 is the icosphere silhouette B=1 above
    for res in (64, 128, 256):
        CASES[f"icosphere silhouette {20 * 4 ** sub} faces {res}px"] = (
            "rendering", *render_case(sub, "silhouette", 1, res), 1, {})

# bench_logic: training step of LogicLayer(784, w) -> LogicLayer(w, w) -> GroupSum; inference
for width in (1000, 2000, 4000, 8000):
    CASES[f"logic training step width {width} batch 128"] = (
        "logic", "from diffalg.logic import GroupSum, LogicLayer\n"
        f"model = torch.nn.Sequential(LogicLayer(784, {width}), LogicLayer({width}, {width}), "
        "GroupSum(10, 10.0))\ngen = torch.Generator().manual_seed(0)\n"
        "x = (torch.rand(128, 784, generator=gen) > 0.5).float()\n"
        "y = torch.randint(0, 10, (128,), generator=gen)\n",
        "model.zero_grad(set_to_none=True)\n"
        "torch.nn.functional.cross_entropy(model(x), y).backward()", 2, {})
LOGIC = ("from diffalg.logic import GroupSum, LogicLayer\n"
         + imports(("diffalg.logic", "diffalg.logic_compiled", "LogicCircuit, compile_circuit"))
         + "net = torch.nn.Sequential(LogicLayer(784, 8000), *[LogicLayer(8000, 8000) for _ in "
         "range(5)], GroupSum(10, 10.0)).eval()\ncircuit = LogicCircuit.from_model(net)\n"
         "compiled = compile_circuit(circuit)\nxb = torch.rand(65536, 784) > 0.5\n"
         "packed, _ = compiled.pack(xb)\n")
for name, threads, stmt in (
        ("compiled C, pre-packed input", 1, "compiled.run_packed(packed, 65536)"),
        ("compiled C, from bool tensor", 1, "compiled(xb)"),
        ("compiled C, pre-packed input", 2, "compiled.run_packed(packed, 65536, n_threads=2)"),
        ("compiled C, from bool tensor", 2, "compiled(xb, n_threads=2)"),
        ("bit-packed PyTorch, from bool tensor", 2, "circuit.packed(xb)"),
        ("bit-packed PyTorch, from bool tensor", 1, "circuit.packed(xb)")):
    CASES[f"inference 48,000 gates, 65,536 images: {name}, {threads} thread(s)"] = (
        "logic", LOGIC, stmt, threads, {})

# bench_newton: plain loss wrapped by the Fisher / Hessian Newton losses, forward + backward
NEWTON = ("from diffalg.newton import fisher_newton_loss, hessian_newton_loss\n"
          "from diffalg.sorting import permutation_targets, sort_loss\n"
          + imports(("diffalg.sorting", "diffalg.sorting_baselines", "neuralsort_permutation"))
          + "def pairwise_logistic(y, values):\n"
          "    want = (values[:, :, None] < values[:, None, :]).to(y.dtype)\n"
          "    return (torch.nn.functional.softplus(y[:, :, None] - y[:, None, :]) * want).sum("
          "(1, 2))\n"
          "def sorting_network(y, values):\n"
          "    return sort_loss(y, values, steepness=10.0, distribution='logistic', "
          "reduction='none')\n"
          "def neuralsort(y, values):\n"
          "    Q = permutation_targets(values).to(y.dtype)\n"
          "    log_p = neuralsort_permutation(y, tau=1.0).clamp_min(1e-12).log()\n"
          "    return -(Q * log_p).sum((-2, -1)) / y.shape[-1]\n")
NEWTON_CALLS = {
    "Fisher": "fisher_newton_loss(y_, f, tikhonov=0.1)",
    "Hessian, exact": "hessian_newton_loss(y_, f, tikhonov=1.0, method='exact')",
    "Hessian, CG": "hessian_newton_loss(y_, f, tikhonov=1.0, method='cg', cg_max_iter=10)",
    "Hessian, finite differences": "hessian_newton_loss(y_, f, tikhonov=1.0, "
                                   "method='finite_difference')"}
for loss, fn, sizes in (
        ("pairwise logistic", "pairwise_logistic", [(64, 4), (64, 16), (256, 16), (64, 64),
                                                    (16, 256)]),
        ("sorting network", "sorting_network", [(64, 4), (64, 8), (256, 8), (64, 16), (64, 32)]),
        ("NeuralSort", "neuralsort", [(64, 4), (64, 8), (256, 8), (64, 16), (64, 32)])):
    for B, m in sizes:
        for variant, call in NEWTON_CALLS.items():
            CASES[f"{loss} B={B} m={m}: {variant}"] = (
                "newton", NEWTON + f"y, values = torch.randn({B}, {m}), torch.randn({B}, {m})\n"
                f"f = lambda v: {fn}(v, values)\n",
                f"y_ = y.detach().requires_grad_(True)\n{call}.backward()", 1, {})
