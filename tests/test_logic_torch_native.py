"""The logic chapter's operators behave like torch's own: `torch.compile(fullgraph=True)` gives the
eager values and gradients (float64) with no graph break, meta and fake tensors give the output
shapes, nothing reads a tensor's values on the host while validation is off (or while tracing),
the compiled circuit's C call is a registered operator that `torch.library.opcheck` accepts, and
multi-part results are named tuples."""
import time

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.func import functional_call
from torch_native import (assert_compiled_matches_eager, assert_fake_shapes, assert_meta_shapes,
                          assert_no_graph_breaks, no_cuda_sync)

import diffalg
from diffalg._native import find_c_compiler
from diffalg.logic import (Binarize, CircuitLayer, GroupSum, LogicCircuit, LogicLayer,
                           PackedInput, PackedPlan, PlanLayer, binarize, check_bits,
                           compile_circuit, gate_coefficients, logic_layer, packed_forward,
                           packed_plan)
from diffalg.logic.export import _circuit_op

F64 = torch.float64
needs_cc = pytest.mark.skipif(find_c_compiler() is None, reason="no C compiler")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(autouse=True)
def fresh_dynamo():
    "Each test compiles from scratch (no recompile limit shared between tests)."
    torch._dynamo.reset()
    yield


def network(device="cpu", connections="random", grad_factor=1.0, training=True, k=4, seed=0):
    "LogicLayer(10, 24) -> LogicLayer(24, 16) -> GroupSum(k, 2), float64."
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        LogicLayer(10, 24, connections=connections, grad_factor=grad_factor),
        LogicLayer(24, 16, connections=connections, grad_factor=grad_factor), GroupSum(k, 2.0))
    return net.to(device=device, dtype=F64).train(training)


def as_function(net):
    """`f(x, *params, *buffers)`: `net` with its parameters and buffers passed as tensors (so the
    test helpers differentiate and fake them); the tensors themselves, in that order."""
    names = [n for n, _ in net.named_parameters()] + [n for n, _ in net.named_buffers()]
    tensors = [p.detach().clone().requires_grad_(True) for _, p in net.named_parameters()]
    tensors += [b.detach().clone() for _, b in net.named_buffers()]

    def f(x, *ts):
        return functional_call(net, dict(zip(names, ts)), (x,))
    return f, tensors


def circuit_net(k=5, seed=0):
    torch.manual_seed(seed)
    layers = [LogicLayer(20, 48), LogicLayer(48, 40)]
    for layer in layers:                         # spread the argmax over all 16 gates
        with torch.no_grad():
            layer.weights.normal_(0, 3)
    return torch.nn.Sequential(*layers, *([GroupSum(k, 3.0)] if k else [])).eval()


# ---- LogicLayer and GroupSum: compiled = eager, values and gradients, in float64 ----

@pytest.mark.parametrize("grad_factor", [1.0, 2.5])
@pytest.mark.parametrize("connections", ["random", "unique"])
@pytest.mark.parametrize("training", [True, False])
def test_network_compiled_matches_eager(training, connections, grad_factor, device):
    net = network(device, connections, grad_factor, training)
    f, tensors = as_function(net)
    x = torch.rand(7, 10, dtype=F64, device=device, requires_grad=True)
    assert_compiled_matches_eager(f, x, *tensors)
    x3 = torch.rand(2, 3, 10, dtype=F64, device=device, requires_grad=True)    # leading dims
    assert_compiled_matches_eager(f, x3, *tensors)


def test_modules_compiled_directly_and_no_grad(device):
    "The modules themselves compiled (parameters read from them), and the inference path."
    net = network(device)
    x = torch.rand(9, 10, dtype=F64, device=device)
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), net(x), rtol=1e-12, atol=1e-12)
    compiled(x).sum().backward()
    want = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    net(x).sum().backward()
    for w, p in zip(want, net.parameters()):
        torch.testing.assert_close(w, p.grad, rtol=1e-12, atol=1e-12)
    with torch.no_grad():                    # the forward-only path of the layers
        torch.testing.assert_close(compiled(x), net(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("grad_factor", [1.0, 0.5])
def test_logic_layer_function_compiled_matches_eager(grad_factor, device):
    torch.manual_seed(1)
    x = torch.rand(6, 9, dtype=F64, device=device, requires_grad=True)
    idx = torch.randint(0, 9, (2, 13), device=device)
    probs = torch.softmax(torch.randn(13, 16, dtype=F64, device=device), -1).requires_grad_()
    assert_compiled_matches_eager(lambda x, p: logic_layer(x, idx, gate_coefficients(p),
                                                           grad_factor), x, probs)
    assert_compiled_matches_eager(lambda x, p: logic_layer(x, idx.int(), gate_coefficients(p)),
                                  x, probs)


def test_binarize_compiled_matches_eager(device):
    x = torch.randn(5, 3, dtype=F64, device=device)
    module = Binarize(torch.randn(3, 4, dtype=F64)).to(device)
    assert_compiled_matches_eager(module, x, backward=False)


# ---- graph breaks ----

def test_no_graph_breaks_training_and_eval():
    x = torch.rand(8, 10, dtype=F64, requires_grad=True)
    for training in (True, False):
        for connections in ("random", "unique"):
            assert_no_graph_breaks(network(connections=connections, training=training), x)
    with torch.no_grad():
        assert_no_graph_breaks(network(training=False), x.detach())
    idx = torch.randint(0, 10, (2, 12))
    coef = torch.rand(12, 4, dtype=F64, requires_grad=True)
    assert_no_graph_breaks(lambda x, c: logic_layer(x, idx, c, 2.0), x, coef)
    assert_no_graph_breaks(gate_coefficients, torch.rand(3, 16, requires_grad=True))
    assert_no_graph_breaks(GroupSum(4, 2.0), torch.rand(5, 12, requires_grad=True))
    assert_no_graph_breaks(Binarize(torch.rand(10, 2)), torch.rand(5, 10))


@pytest.mark.parametrize("k", [None, 5])
def test_no_graph_breaks_inference(k):
    circuit = LogicCircuit.from_model(circuit_net(k))
    xb = torch.rand(130, 20) > 0.5
    for x in (xb, xb.float(), xb.long()):           # the 0/1 check is skipped while tracing
        assert_no_graph_breaks(lambda x: packed_forward(circuit, x), x)
        assert_no_graph_breaks(circuit, x)
    if find_c_compiler() is not None:
        compiled = compile_circuit(circuit)
        for x in (xb, xb.float()):
            assert_no_graph_breaks(compiled, x)


# ---- the discrete paths compiled ----

@pytest.mark.parametrize("k", [None, 1, 5])
def test_packed_forward_compiled_matches_eager(k, device):
    circuit = LogicCircuit.from_model(circuit_net(k))
    compiled = torch.compile(packed_forward, fullgraph=True, backend="aot_eager")
    plain = torch.compile(circuit, fullgraph=True, backend="aot_eager")
    for batch in (0, 1, 64, 200):
        x = torch.rand(batch, 20, device=device) > 0.5
        want = circuit.packed(x)
        got = compiled(circuit, x)
        assert got.dtype == want.dtype and got.device == want.device
        assert torch.equal(got, want) and torch.equal(got.cpu(), circuit(x.cpu()))
        assert torch.equal(plain(x), want)


def test_packed_forward_compiled_dynamic_batch():
    circuit = LogicCircuit.from_model(circuit_net(5))
    compiled = torch.compile(packed_forward, fullgraph=True, backend="aot_eager", dynamic=True)
    for batch in (3, 70, 300):
        x = torch.rand(batch, 20) > 0.5
        assert torch.equal(compiled(circuit, x), circuit.packed(x))


@needs_cc
@pytest.mark.parametrize("k", [None, 5])
def test_compiled_circuit_under_torch_compile(k):
    circuit = LogicCircuit.from_model(circuit_net(k))
    cc = compile_circuit(circuit, lanes=2)
    f = torch.compile(lambda x: cc(x, n_threads=2), fullgraph=True, backend="aot_eager")
    for batch in (0, 1, 129, 300):
        x = torch.rand(batch, 20) > 0.5
        want = circuit(x)
        assert torch.equal(cc(x), want) and torch.equal(f(x), want)
        assert torch.equal(f(x.float()), want)          # any 0/1 dtype


@needs_cc
@pytest.mark.parametrize("k", [0, 5])
@pytest.mark.parametrize("lanes", [1, 4])
def test_opcheck_logic_circuit(k, lanes):
    "`torch.library.opcheck` (schema, autograd registration, fake tensor, AOT dispatch)."
    net = circuit_net(k or None, seed=2)
    cc = compile_circuit(net, lanes=lanes)
    for batch, threads in ((0, 1), (1, 1), (65, 2), (300, 3)):
        x = torch.rand(batch, 20) > 0.5
        torch.library.opcheck(_circuit_op, (x, cc._handle, k, 40, threads))


@needs_cc
def test_compiled_circuit_op_and_direct_call_agree():
    "Eager calls run the operator's kernel directly; through the dispatcher: the same output."
    cc = compile_circuit(circuit_net(5))
    x = torch.rand(100, 20) > 0.5
    assert torch.equal(_circuit_op(x, cc._handle, 5, 40, 1), cc(x))
    with pytest.raises(RuntimeError, match="no longer exists"):
        _circuit_op(x, 10 ** 9, 5, 40, 1)


# ---- meta and fake tensors ----

@pytest.mark.parametrize("training", [True, False])
def test_meta_modules(training):
    "Modules moved to meta give the output shapes, forward and backward, reading no values."
    net = network(training=training)
    x = torch.rand(6, 10, dtype=F64)
    want = net(x)
    meta = network(training=training).to("meta")
    xm = x.to("meta").requires_grad_()
    out = meta(xm)
    assert (out.shape, out.dtype, out.device.type) == (want.shape, want.dtype, "meta")
    out.sum().backward()
    assert xm.grad.shape == x.shape and xm.grad.device.type == "meta"
    if training:
        assert meta[0].weights.grad.shape == (24, 16)
    assert_meta_shapes(lambda x: logic_layer(x, torch.randint(0, 10, (2, 5), device=x.device),
                                             torch.rand(5, 4, dtype=x.dtype, device=x.device)), x)
    assert_meta_shapes(GroupSum(3, 2.0), torch.rand(4, 9))
    assert_meta_shapes(binarize, torch.rand(4, 3), torch.rand(3, 2))


@pytest.mark.parametrize("k", [None, 5])
def test_meta_inference(k):
    circuit = LogicCircuit.from_model(circuit_net(k))
    x = torch.rand(70, 20) > 0.5
    want = circuit.packed(x)
    for fn in (circuit, circuit.packed) + ((compile_circuit(circuit),) if find_c_compiler()
                                          else ()):
        got = fn(x.to("meta"))
        assert (got.shape, got.dtype, got.device.type) == (want.shape, want.dtype, "meta")


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("connections", ["random", "unique"])
def test_fake_modules_read_no_values(training, connections):
    "Forward and backward under FakeTensorMode with validation off: any host read would raise."
    f, tensors = as_function(network(connections=connections, training=training))
    assert_fake_shapes(f, torch.rand(5, 10, dtype=F64, requires_grad=True), *tensors)
    idx = torch.randint(0, 10, (2, 12))
    assert_fake_shapes(lambda x, p, i: logic_layer(x, i, gate_coefficients(p), 3.0),
                       torch.rand(4, 10, requires_grad=True),
                       torch.softmax(torch.randn(12, 16), -1).requires_grad_(), idx)
    assert_fake_shapes(GroupSum(4, 2.0), torch.rand(3, 12, requires_grad=True))
    assert_fake_shapes(binarize, torch.rand(3, 5), torch.rand(5, 2), backward=False)


@pytest.mark.parametrize("k", [None, 5])
def test_fake_inference_reads_no_values(k):
    """The discrete paths under FakeTensorMode with validation off. The circuit's own tensors are
    real constants (its plan is built on the host once, before), so the mode accepts them."""
    circuit = LogicCircuit.from_model(circuit_net(k))
    x = torch.rand(70, 20) > 0.5
    fns = [circuit, circuit.packed] + ([compile_circuit(circuit)] if find_c_compiler() else [])
    wants = [fn(x) for fn in fns]                     # also builds the packed plan
    with diffalg.validate_args(False), FakeTensorMode(allow_non_fake_inputs=True) as mode:
        for fn, want in zip(fns, wants):
            for xf in (mode.from_tensor(x), mode.from_tensor(x.float())):
                got = fn(xf)
                assert (got.shape, got.dtype) == (want.shape, want.dtype)
    if find_c_compiler() is not None:                 # the operator needs no real constant
        with FakeTensorMode() as mode:
            got = fns[2](mode.from_tensor(x))
            assert (got.shape, got.dtype) == (wants[2].shape, wants[2].dtype)


# ---- one inductor compile of a training step ----

def test_inductor_training_step():
    "The default backend on a small LogicLayer + GroupSum training step: equal to eager."
    torch.manual_seed(0)
    net = torch.nn.Sequential(LogicLayer(16, 32), GroupSum(4, 2.0))
    x, y = torch.rand(8, 16), torch.randint(0, 4, (8,))

    def loss(model, x):
        return torch.nn.functional.cross_entropy(model(x), y)
    torch._dynamo.reset()
    t0 = time.perf_counter()
    compiled = torch.compile(loss, fullgraph=True)
    got = compiled(net, x)
    got.backward()
    seconds = time.perf_counter() - t0
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    want = loss(net, x)
    want.backward()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for g, p in zip(grads, net.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)
    print(f"inductor compile + first step: {seconds:.1f} s")


# ---- CUDA: no host-device synchronization in a training step ----

@needs_cuda
def test_cuda_training_step_does_not_sync():
    net = network("cuda")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.rand(32, 10, dtype=F64, device="cuda")
    y = torch.randint(0, 4, (32,), device="cuda")

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    step()                  # first step: fills the caches (gate table, fan-in) on the device
    assert diffalg.checks.get_validate_args() == "cpu"
    with no_cuda_sync():
        step()
        net.eval()(x)


@needs_cuda
def test_cuda_packed_forward_does_not_sync():
    circuit = LogicCircuit.from_model(circuit_net(5))
    x = torch.rand(300, 20, device="cuda") > 0.5
    want = circuit.packed(x)                       # first call: moves the plan to the device
    with no_cuda_sync():
        got = circuit.packed(x)
    assert torch.equal(got, want)


# ---- edge cases: empty batches, bad dtypes ----

@pytest.mark.parametrize("training", [True, False])
def test_empty_batch(training, device):
    net = network(device, training=training)
    x = torch.rand(0, 10, dtype=F64, device=device, requires_grad=True)
    out = net(x)
    assert out.shape == (0, 4)
    out.sum().backward()
    assert x.grad.shape == (0, 10)
    if training:
        assert torch.equal(net[0].weights.grad, torch.zeros_like(net[0].weights))
    f, tensors = as_function(net)
    assert_compiled_matches_eager(f, x, *tensors)
    assert GroupSum(2)(torch.rand(0, 6, device=device)).shape == (0, 2)


@pytest.mark.parametrize("k", [None, 5])
def test_empty_batch_inference(k):
    circuit = LogicCircuit.from_model(circuit_net(k))
    x = torch.zeros(0, 20, dtype=torch.bool)
    shape = (0, k or 40)
    assert circuit(x).shape == shape and circuit.packed(x).shape == shape
    if find_c_compiler() is not None:
        assert compile_circuit(circuit)(x).shape == shape


def test_bad_dtypes_name_the_argument():
    layer, gs = LogicLayer(4, 4), GroupSum(2)
    for bad in (torch.ones(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.bool)):
        with pytest.raises(TypeError, match="`x`"):
            layer(bad)
        with pytest.raises(TypeError, match="`x`"):
            gs(bad)
        with pytest.raises(TypeError, match="`x`"):
            binarize(bad, torch.rand(4, 2))
    idx, coef = torch.randint(0, 4, (2, 3)), torch.rand(3, 4)
    with pytest.raises(TypeError, match="`x`"):
        logic_layer(torch.ones(2, 4, dtype=torch.long), idx, coef)
    with pytest.raises(TypeError, match="`indices`"):
        logic_layer(torch.rand(2, 4), idx.float(), coef)
    with pytest.raises(TypeError, match="`coef`"):
        logic_layer(torch.rand(2, 4), idx, coef.long())
    with pytest.raises(TypeError, match="`probs`"):
        gate_coefficients(torch.ones(3, 16, dtype=torch.long))
    with pytest.raises(TypeError, match="`x`"):
        check_bits(torch.ones(2, 4, dtype=torch.complex64), 4)
    circuit = LogicCircuit.from_model(circuit_net(5))
    with pytest.raises(TypeError, match="`x`"):
        circuit.packed(torch.ones(2, 20, dtype=torch.complex64))


def test_binary_check_follows_the_validation_switch():
    circuit = LogicCircuit.from_model(circuit_net(5))
    half = torch.full((3, 20), 0.5)
    with pytest.raises(ValueError, match="binary"):
        circuit.packed(half)
    with diffalg.validate_args(False):          # no value read: nonzero counts as 1
        assert torch.equal(circuit.packed(half), circuit.packed(torch.ones(3, 20)))


# ---- results read like torch's: named tuples ----

def test_multi_part_results_are_named_tuples():
    circuit = LogicCircuit.from_model(circuit_net(5))
    layer = circuit.layers[0]
    assert isinstance(layer, CircuitLayer) and layer.indices.shape == (2, 48)
    indices, gates = layer
    assert gates is layer.gates and repr(layer).startswith("CircuitLayer(indices=tensor(")
    plan = packed_plan(circuit)
    assert isinstance(plan, PackedPlan) and isinstance(plan.layers[0], PlanLayer)
    rows, bounds = plan.layers[0]
    assert rows.shape == (96,) and len(bounds) == 4 and plan.leaf.shape == (40,)
    if find_c_compiler() is not None:
        packed = compile_circuit(circuit).pack(torch.zeros(3, 20, dtype=torch.bool))
        assert isinstance(packed, PackedInput) and packed.batch == 3
        assert "PackedInput(words=" in repr(packed)
