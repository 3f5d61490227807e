"""The sorting operators behave like PyTorch's own (issue 21): `torch.compile(fullgraph=True)`
equals eager, forward and backward, with no graph break; meta and fake tensors give the output
shapes; nothing reads a tensor's values with validation off; the C kernel's registered operators
pass `opcheck`; results print and unpack like `torch.return_types`; on CUDA a training step does
not synchronize. Every case runs with the compiled kernel on and off (`compiled_pass`)."""
import contextlib
import time

import pytest
import torch
from torch_native import (assert_compiled_matches_eager, assert_fake_shapes, assert_meta_shapes,
                          assert_no_graph_breaks, no_cuda_sync, tensors)

import diffalg
import diffalg.sorting._kernel as sc
import diffalg.sorting.networks as networks
from diffalg.sorting import (DiffSortNet, DiffTopkNet, NeuralSort, SoftSort, TopKCrossEntropyLoss,
                             compiled_pass, diff_sort, get_sorting_network, relaxed_swap,
                             soft_permutation, soft_rank, soft_sort, soft_topk, soft_topk_mask,
                             sort_loss)
from diffalg.sorting._operators import _network_key

HAS_KERNEL = sc.compiled_library() is not None
NETWORKS = ("odd_even", "bitonic")
NO_KERNEL = pytest.mark.skipif(not HAS_KERNEL, reason="no C compiler")
MODES = ["off", pytest.param("on", marks=NO_KERNEL)]
B, N, K = 2, 3, 2            # odd n: the bitonic network is padded


def _targets(x):
    "Targets for the ranking loss: a fixed order, built from x's metadata only."
    return torch.arange(x.shape[-1], 0, -1, dtype=x.dtype, device=x.device).expand(x.shape)


def _labels(x):
    return torch.arange(x.shape[0], device=x.device) % x.shape[-1]


def operators(network):
    """Every sorting operator of the top-level API as a function of one tensor (B, N), with
    `network` where it takes one."""
    net = network
    loss = TopKCrossEntropyLoss(net, 2.0, p_k=[0.5, 0.0, 0.5])
    dsn, dtk = DiffSortNet(net, N, steepness=5.0), DiffTopkNet(net, N, K, steepness=5.0)
    def all_outputs(x):
        "Every output of a RelaxedSort, the first two unpacked like torch.sort's result."
        r = diff_sort(x, net, 5.0)
        values, permutation = r
        return values, permutation, r.ranks, r.topk(K), r.topk_mask(K)
    return {
        "soft_sort": lambda x: soft_sort(x, net, 5.0),
        "soft_rank": lambda x: soft_rank(x, net, 5.0),
        "soft_permutation": lambda x: soft_permutation(x, net, 5.0),
        "soft_topk": lambda x: soft_topk(x, K, net, 5.0),
        "soft_topk_mask": lambda x: soft_topk_mask(x, K, net, 5.0),
        "diff_sort": all_outputs,
        "sort_loss": lambda x: sort_loss(x, _targets(x), net, 5.0),
        "DiffSortNet": lambda x: dsn(x),
        "DiffTopkNet": lambda x: dtk(x).topk,
        "TopKCrossEntropyLoss": lambda x: loss(x, _labels(x)),
    }


OPERATORS = list(operators("odd_even"))
BASELINES = {"NeuralSort": NeuralSort(tau=0.5), "SoftSort": SoftSort(tau=0.5)}


def cases():
    "(name, network, mode) for the relaxed operators; the baselines once (no network, no kernel)."
    out = [pytest.param(op, net, mode, id=f"{op}-{net}-{mode}",
                        marks=[NO_KERNEL] if mode == "on" else [])
           for op in OPERATORS for net in NETWORKS for mode in ("off", "on")]
    return out + [pytest.param(name, None, "off", id=name) for name in BASELINES]


def function(name, network):
    return BASELINES[name] if network is None else operators(network)[name]


def x_for(device, dtype=torch.float64, requires_grad=True):
    torch.manual_seed(0)
    x = torch.randn(B, N, dtype=dtype).to(device)
    return x.requires_grad_(requires_grad)


@pytest.mark.parametrize("name,network,mode", cases())
def test_compiled_equals_eager_float64(name, network, mode, device):
    with compiled_pass(mode):
        assert_compiled_matches_eager(function(name, network), x_for(device))


@NO_KERNEL
@pytest.mark.parametrize("name", ["soft_sort", "soft_permutation", "diff_sort", "sort_loss"])
@pytest.mark.parametrize("network", NETWORKS)
def test_compiled_equals_eager_float32_kernel(name, network):
    "float32, the kernel's operators: compiled equals eager (the same C code runs)."
    with compiled_pass("on"):
        assert_compiled_matches_eager(operators(network)[name], x_for("cpu", torch.float32),
                                      rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,network,mode", cases())
def test_no_graph_breaks(name, network, mode, device):
    with compiled_pass(mode):
        assert_no_graph_breaks(function(name, network), x_for(device))


@pytest.mark.parametrize("name,network,mode", [c for c in cases() if c.values[2] == "off"])
def test_meta_shapes(name, network, mode):
    "Meta tensors never take the kernel: one mode suffices."
    assert_meta_shapes(function(name, network), x_for("cpu", requires_grad=False))


@pytest.mark.parametrize("name,network,mode", cases())
def test_fake_shapes_read_no_values(name, network, mode, device):
    """Forward and backward under FakeTensorMode with validation off: any read of a value (an
    `.item()`, `bool(tensor)`, `.tolist()`, a `data_ptr()` in C) would raise."""
    with compiled_pass(mode):
        assert_fake_shapes(function(name, network), x_for(device), validate=False)
        assert_fake_shapes(function(name, network), x_for(device, torch.float32), validate=False)


FIXED_SIZE = ("DiffSortNet", "DiffTopkNet")      # modules built for rows of size N


@pytest.mark.parametrize("name", OPERATORS + list(BASELINES))
def test_new_sizes_recompile_without_error(name):
    """One compiled function called on a new batch size, then a new row length (which dynamo
    first makes symbolic): it recompiles, in one graph, with the numbers of eager mode."""
    fn = function(name, None if name in BASELINES else "bitonic")
    shapes = [(2, N), (3, N)] + ([] if name in FIXED_SIZE else [(2, 5)])
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    with compiled_pass("on" if HAS_KERNEL else "off"), torch.no_grad():
        for shape in shapes:
            x = torch.randn(shape, dtype=torch.float64)
            for got, want in zip(tensors(compiled(x)), tensors(fn(x))):
                torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("mode", MODES)
def test_networks_first_built_inside_one_trace(mode, monkeypatch):
    """Two networks that no call has built yet, met in one compiled function: each is built once,
    outside the trace, and the trace finds both (a dict of networks read by the trace would be
    read as it was before the second was built)."""
    monkeypatch.setattr(networks, "_NETWORKS", {})      # no network built yet
    def step(x):
        return soft_sort(x, "bitonic", 5.0), soft_permutation(x, "odd_even", 5.0)
    x = torch.randn(2, 7, dtype=torch.float64, requires_grad=True)
    with compiled_pass(mode):
        assert_no_graph_breaks(step, x)
        assert_compiled_matches_eager(step, x)


@pytest.mark.parametrize("mode", MODES)
def test_fake_shapes_with_default_validation(mode):
    "The default validation skips value checks on fake tensors (they have no values)."
    with compiled_pass(mode):
        assert_fake_shapes(operators("bitonic")["diff_sort"], x_for("cpu"), validate=True)


# ---- the registered operators of the C kernel ------------------------------------------------

def opcheck_cases():
    f32, f64 = torch.float32, torch.float64
    shapes = (("bitonic", 6, f64, 3), ("bitonic", 5, f32, 1), ("odd_even", 7, f64, 1),
              ("odd_even", 4, f32, 2), ("bitonic", 16, f64, 2))
    return [pytest.param(network, n, dtype, batch, id=f"{network}-{n}-{dtype}-B{batch}")
            for network, n, dtype, batch in shapes]


@NO_KERNEL
@pytest.mark.parametrize("network,n,dtype,batch", opcheck_cases())
def test_opcheck(network, n, dtype, batch):
    net = get_sorting_network(network, n)
    key = _network_key(net)
    torch.manual_seed(n)
    x = torch.randn(batch, n, dtype=dtype, requires_grad=True)
    w = torch.rand(batch, net.depth, n, dtype=dtype, requires_grad=True)
    g, G = torch.randn(batch, n, dtype=dtype), torch.randn(batch, n, n, dtype=dtype)
    gw = torch.randn(batch, net.depth, n, dtype=dtype)
    ops = torch.ops.diffalg
    for op, args in ((ops.network_pass, (x, key, 3.0, True)),
                     (ops.network_pass, (x, key, 3.0, False)),
                     (ops.network_pass_backward, (x.detach(), key, 3.0, g, gw)),
                     (ops.network_pass_backward, (x.detach(), key, 3.0, g, None)),
                     (ops.network_pass_backward, (x.detach(), key, 3.0, None, gw)),
                     (ops.network_matrix, (w, key)),
                     (ops.network_matrix_backward, (w.detach(), G, key))):
        assert set(torch.library.opcheck(op, args).values()) == {"SUCCESS"}, op


@NO_KERNEL
def test_operators_equal_autograd_functions_and_double_backward():
    """The registered operators (what torch.compile and fake tensors see) give the numbers of the
    eager autograd functions, gradients included, and second derivatives through the operators'
    autograd formulas (create_graph=True) work."""
    from diffalg.sorting._kernel_ops import _CompiledMatrix, _KernelValues
    net = get_sorting_network("bitonic", 6)
    key = _network_key(net)
    x = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    by_op = lambda x_: torch.ops.diffalg.network_pass(x_, key, 3.0, True)
    by_fn = lambda x_: _KernelValues.apply(x_, net, 3.0, True)
    for a, b in zip(by_op(x), by_fn(x)):
        assert torch.equal(a, b)
    assert torch.autograd.gradcheck(by_op, (x,))
    assert torch.autograd.gradgradcheck(by_op, (x,))
    w = torch.rand(2, net.depth, 6, dtype=torch.float64, requires_grad=True)
    mat = lambda w_: torch.ops.diffalg.network_matrix(w_, key)
    assert torch.equal(mat(w), _CompiledMatrix.apply(w, net))
    assert torch.autograd.gradcheck(mat, (w,))
    assert torch.autograd.gradgradcheck(mat, (w,))


def test_network_keys():
    from diffalg.sorting.networks import SortingNetwork
    from diffalg.sorting._operators import _network_of
    odd = get_sorting_network("odd_even", 6)
    key = _network_key(odd)
    short = SortingNetwork(6, odd.layers[:-1], "odd_even")
    assert _network_of(key) is odd and _network_key(short) != key
    assert _network_of(_network_key(short)) is short
    with pytest.raises(KeyError, match="no sorting network is registered"):
        _network_of("custom:6:000000000000")


@NO_KERNEL
def test_dispatch_is_the_same_eager_and_compiled():
    """The kernel's operators are in the compiled graph exactly when eager mode takes the kernel
    (mode, dtype, device, distribution), and a change of mode recompiles."""
    graphs = []
    def backend(gm, inputs):
        graphs.append(gm)
        return gm.forward
    def f(x, distribution="cauchy"):
        return (soft_sort(x, "bitonic", 5.0, distribution),
                soft_permutation(x, "bitonic", 5.0, distribution))
    compiled = torch.compile(f, fullgraph=True, backend=backend)
    def diffalg_ops():
        return sorted({str(node.target) for node in graphs[-1].graph.nodes
                       if node.op == "call_function" and "diffalg" in str(node.target)})
    x = torch.randn(3, 6)
    torch._dynamo.reset()
    with compiled_pass("on"):
        compiled(x)
        assert diffalg_ops() == ["diffalg.network_matrix", "diffalg.network_pass"]
        compiled(x, "logistic")                  # values by PyTorch, the matrix by the kernel
        assert diffalg_ops() == ["diffalg.network_matrix"]
    with compiled_pass("off"):
        for a, b in zip(compiled(x), f(x)):
            torch.testing.assert_close(a, b)
        assert diffalg_ops() == []
    with compiled_pass("on"):
        compiled(x.half())                        # half precision: float32 inside, the kernel
        assert diffalg_ops() == ["diffalg.network_matrix", "diffalg.network_pass"]


def test_inductor_soft_sort():
    """The default backend (inductor) on a small input, both paths; compile time reported."""
    x = x_for("cpu")
    for mode in ["off"] + (["on"] if HAS_KERNEL else []):
        with compiled_pass(mode):
            start = time.perf_counter()
            assert_compiled_matches_eager(lambda x_: soft_sort(x_, "bitonic", 5.0), x,
                                          backend="inductor", rtol=1e-6, atol=1e-9)
            print(f"inductor, kernel {mode}: {time.perf_counter() - start:.1f} s")


def test_import_stays_cheap_and_marks_like_torch():
    """Importing the package does not import torch's compiler front end (torch._dynamo: over a
    second and tens of MB); `_constant_result` sets the mark of
    `torch.compiler.assume_constant_result`."""
    import subprocess
    import sys
    code = "import sys, diffalg, diffalg.sorting; print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    from diffalg.sorting._kernel import _constant_result
    marked = torch.compiler.assume_constant_result(lambda: 0)
    mine = _constant_result(lambda: 0)
    assert {k: v for k, v in vars(mine).items()} == {k: v for k, v in vars(marked).items()}


# ---- results that read like torch's -------------------------------------------------------------

def test_relaxed_sort_prints_and_unpacks_like_torch_sort():
    x = torch.tensor([[0.3, -1.0, 2.0]])
    r = diff_sort(x, steepness=100.0)
    text = repr(r)
    assert text.startswith("diffalg.sorting.RelaxedSort(\nvalues=tensor(")
    assert "\npermutation=tensor(" in text and "\nranks=tensor(" in text and "0x" not in text
    values, permutation = r
    assert torch.equal(values, r.values) and torch.equal(permutation, r.permutation)
    assert len(r) == 2 and torch.equal(r[0], values) and torch.equal(r[-1], permutation)
    assert [t.shape for t in r[:]] == [(1, 3), (1, 3, 3)]
    v, i = torch.sort(x)                         # the same pattern as torch's
    assert torch.allclose(values, v, atol=1e-2)


def test_named_tuples():
    a, b = torch.tensor([0.0, 2.0]), torch.tensor([1.0, -1.0])
    swap = relaxed_swap(a, b, 1e4, "logistic")
    assert swap._fields == ("min", "max", "alpha") and torch.equal(swap.min, swap[0])
    assert repr(swap).startswith("RelaxedSwap(min=tensor(")
    x = torch.randn(2, 5)
    out = DiffSortNet("bitonic", 5)(x)
    assert out._fields == ("values", "permutation") and torch.equal(out.values, out[0])
    top = DiffTopkNet("bitonic", 5, 2)(x)
    assert top._fields == ("values", "topk") and top.values is None and top.topk.shape == (2, 5, 2)


# ---- CUDA: no host-device synchronization -------------------------------------------------------

def test_training_step_does_not_synchronize(device):
    "A training step with the default validation setting makes no host-device synchronization."
    if device.type != "cuda":
        pytest.skip("a CUDA check")
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 8).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, t = torch.randn(16, 8, device=device), torch.randn(16, 8, device=device)
    loss_fn = TopKCrossEntropyLoss("bitonic", p_k=[0.5, 0.5])
    labels = torch.arange(16, device=device) % 8
    for step in range(2):                       # the second step: no first-call set-up
        sync = no_cuda_sync() if step else contextlib.nullcontext()
        with sync:
            scores = model(x)
            loss = (sort_loss(scores, t, "bitonic") + soft_sort(scores).square().mean()
                    + soft_rank(scores, "odd_even").mean() + loss_fn(scores, labels)
                    + soft_topk_mask(scores, 3).mean())
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert diffalg.get_validate_args() == "cpu"
