"""The engine behind LogicLayer and GroupSum against the reference of the paper's formulas
(diffalg.logic.gates / diffalg.logic.reference), in float64: values and gradients with respect to
the inputs and the gate logits, on random and adversarial inputs."""
import doctest

import pytest
import torch

import diffalg.logic.layers
from diffalg.logic import (GATE_COEFFICIENTS, RELAXED_GATES, GroupSum, LogicLayer,
                           gate_coefficients, gate_truth_table, logic_layer, random_connections,
                           reference_group_sum, reference_layer, relaxed_gate, relaxed_gates,
                           unique_connections)

F64 = torch.float64
ATOL = 1e-12


def engine_and_reference(layer, x, grad_out=None):
    """Values and gradients (x, weights) of `layer` and of `reference_layer` on copies of its
    logits; the reference's input gradient is scaled by the layer's grad_factor."""
    x1 = x.detach().clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    w2 = layer.weights.detach().clone().requires_grad_(True)
    layer.weights.grad = None
    y1 = layer(x1)
    y2 = reference_layer(x2, layer.indices, w2, training=layer.training)
    g = torch.randn_like(y1) if grad_out is None else grad_out
    y1.backward(g)
    if y2.requires_grad:
        y2.backward(g)
    return (y1, x1.grad, layer.weights.grad), (y2, layer.grad_factor * x2.grad, w2.grad)


def assert_close(got, want):
    for a, b in zip(got, want):
        if b is None:
            assert a is None or torch.equal(a, torch.zeros_like(a))
        else:
            assert a is not None and a.dtype == F64
            assert torch.allclose(a, b, atol=ATOL, rtol=1e-10), (a - b).abs().max()


# ---- the reference itself: Table 1 is the expectation of the gate on Bernoulli inputs ----

def test_table_1_is_the_expectation_and_the_coefficient_form():
    u = torch.rand(300, dtype=F64)
    v = torch.rand(300, dtype=F64)
    P = torch.stack([(1 - u) * (1 - v), (1 - u) * v, u * (1 - v), u * v], -1)
    assert torch.allclose(relaxed_gates(u, v), P @ gate_truth_table(F64).t(), atol=ATOL)
    basis = torch.stack([torch.ones_like(u), u, v, u * v], -1)
    assert torch.allclose(relaxed_gates(u, v), basis @ GATE_COEFFICIENTS.t(), atol=ATOL)
    for i, f in enumerate(RELAXED_GATES):
        assert torch.equal(relaxed_gate(u, v, i), f(u, v))
    corners = torch.tensor([0., 0., 1., 1.], dtype=F64), torch.tensor([0., 1., 0., 1.], dtype=F64)
    assert torch.equal(relaxed_gates(*corners).t(), gate_truth_table(F64))


def test_relaxed_gate_returns_fresh_tensors():
    a, b = torch.rand(4, dtype=F64), torch.rand(4, dtype=F64)
    for i in range(16):
        out = relaxed_gate(a, b, i)
        assert out.data_ptr() not in (a.data_ptr(), b.data_ptr())


# ---- LogicLayer (engine) == reference_layer ----

@pytest.mark.parametrize("connections", ["random", "unique"])
@pytest.mark.parametrize("grad_factor", [1.0, 0.5, 3.0])
@pytest.mark.parametrize("training", [True, False])
def test_layer_random_inputs(connections, grad_factor, training, device):
    torch.manual_seed(0)
    layer = LogicLayer(13, 29, device=device, grad_factor=grad_factor, connections=connections,
                       seed=1).double().train(training)
    x = torch.rand(11, 13, dtype=F64, device=device)
    got, want = engine_and_reference(layer, x)
    assert_close(got, want)
    if not training:
        assert got[2] is None and want[2] is None       # argmax gates: no gradient to the logits


@pytest.mark.parametrize("training", [True, False])
def test_layer_binary_inputs(training, device):
    "Inputs exactly 0 and 1: values are the gates' truth tables in eval mode, gradients agree."
    torch.manual_seed(1)
    layer = LogicLayer(8, 40, device=device, seed=2).double().train(training)
    x = (torch.rand(64, 8, device=device) > 0.5).to(F64)
    x[0], x[1] = 0.0, 1.0                               # all-zero and all-one samples
    got, want = engine_and_reference(layer, x)
    assert_close(got, want)
    if not training:
        assert set(got[0].unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(got[0], want[0])


@pytest.mark.parametrize("batch", [1, 2, 7, 128])
@pytest.mark.parametrize("out_dim", [1, 2, 5])
def test_one_neuron_small_batches(batch, out_dim, device):
    torch.manual_seed(batch + 10 * out_dim)
    layer = LogicLayer(2, out_dim, device=device, seed=out_dim).double()
    got, want = engine_and_reference(layer, torch.rand(batch, 2, dtype=F64, device=device))
    assert_close(got, want)


@pytest.mark.parametrize("training", [True, False])
def test_repeated_and_unused_inputs(training, device):
    "A neuron reading the same input twice, inputs read by many neurons, inputs read by none."
    torch.manual_seed(2)
    layer = LogicLayer(6, 5, device=device, seed=0).double().train(training)
    with torch.no_grad():
        layer.indices.copy_(torch.tensor([[2, 2, 2, 4, 2], [2, 4, 0, 4, 2]], device=device))
    x = torch.rand(9, 6, dtype=F64, device=device)
    got, want = engine_and_reference(layer, x)
    assert_close(got, want)
    assert torch.equal(got[1][:, [1, 3, 5]], torch.zeros(9, 3, dtype=F64, device=device))


def test_every_gate_alone(device):
    "Logits that make each neuron (almost) one of the 16 gates, in train and eval mode."
    layer = LogicLayer(4, 16, device=device, seed=3).double()
    with torch.no_grad():
        layer.weights.copy_(40.0 * torch.eye(16, dtype=F64, device=device))
    x = torch.rand(20, 4, dtype=F64, device=device)
    for training in (True, False):
        got, want = engine_and_reference(layer.train(training), x)
        assert_close(got, want)
    a, b = x[:, layer.indices[0]], x[:, layer.indices[1]]
    assert torch.allclose(layer.eval()(x), relaxed_gates(a, b).diagonal(dim1=-2, dim2=-1),
                          atol=ATOL)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 30.0])
def test_tiny_and_huge_logits(scale, device):
    "Nearly uniform and nearly one-hot softmax over the gates."
    torch.manual_seed(4)
    layer = LogicLayer(10, 12, device=device, seed=4).double()
    with torch.no_grad():
        layer.weights.mul_(scale)
    got, want = engine_and_reference(layer, torch.rand(6, 10, dtype=F64, device=device))
    assert_close(got, want)


def test_only_inputs_or_only_logits_need_gradients(device):
    torch.manual_seed(5)
    layer = LogicLayer(7, 9, device=device, seed=5).double()
    x = torch.rand(4, 7, dtype=F64, device=device)
    y = layer(x)                                       # x needs no gradient: no fan-in computed
    y2 = reference_layer(x, layer.indices, layer.weights)
    g = torch.randn_like(y)
    gw, = torch.autograd.grad(y, layer.weights, g)
    gw2, = torch.autograd.grad(y2, layer.weights, g)
    assert torch.allclose(gw, gw2, atol=ATOL)
    layer.weights.requires_grad_(False)                # only x needs a gradient
    xg = x.clone().requires_grad_(True)
    gx, = torch.autograd.grad(layer(xg), xg, g)
    gx2, = torch.autograd.grad(reference_layer(xg, layer.indices, layer.weights), xg, g)
    assert torch.allclose(gx, gx2, atol=ATOL)


@pytest.mark.parametrize("training", [True, False])
def test_no_grad_path(training, device):
    torch.manual_seed(6)
    layer = LogicLayer(9, 14, device=device, seed=6).double().train(training)
    x = torch.rand(5, 9, dtype=F64, device=device)
    with torch.no_grad():
        y = layer(x)
        assert torch.allclose(y, reference_layer(x, layer.indices, layer.weights, training),
                              atol=ATOL)


def test_leading_dimensions_and_non_contiguous_input(device):
    torch.manual_seed(7)
    layer = LogicLayer(6, 10, device=device, seed=7).double()
    x = torch.rand(3, 4, 6, dtype=F64, device=device)
    got, want = engine_and_reference(layer, x)
    assert got[0].shape == (3, 4, 10)
    assert_close(got, want)
    xt = torch.rand(6, 5, dtype=F64, device=device).t()          # a transposed (strided) input
    got, want = engine_and_reference(layer, xt)
    assert_close(got, want)


@pytest.mark.parametrize("connections", ["random", "unique"])
def test_network_with_groupsum(connections, device):
    "Layers chained through their feature-major outputs, then GroupSum, against the reference."
    torch.manual_seed(8)
    net = torch.nn.Sequential(LogicLayer(12, 30, connections=connections, seed=1),
                              LogicLayer(30, 24, connections=connections, seed=2),
                              LogicLayer(24, 18, grad_factor=2.0, connections=connections, seed=3),
                              GroupSum(3, tau=1.7)).to(device).double()
    x = torch.rand(10, 12, dtype=F64, device=device, requires_grad=True)
    y = net(x)
    ws = [m.weights.detach().clone().requires_grad_(True) for m in net[:3]]
    x2 = x.detach().clone().requires_grad_(True)
    h = x2
    for m, w in zip(net[:3], ws):
        h = reference_layer(h, m.indices, w)
    y2 = reference_group_sum(h, 3, 1.7)
    assert torch.allclose(y, y2, atol=ATOL)
    g = torch.randn_like(y)
    y.backward(g)
    y2.backward(g)
    # grad_factor=2 of the last layer doubles every gradient that flows below it, not its own
    for m, w, factor in zip(net[:3], ws, (2.0, 2.0, 1.0)):
        assert torch.allclose(m.weights.grad, factor * w.grad, atol=1e-10)
    assert torch.allclose(x.grad, 2.0 * x2.grad, atol=1e-10)


def test_functional_logic_layer(device):
    torch.manual_seed(9)
    for idx in (random_connections(8, 11), unique_connections(8, 11)):
        idx = idx.to(device)
        x = torch.rand(6, 8, dtype=F64, device=device, requires_grad=True)
        w = torch.randn(11, 16, dtype=F64, device=device, requires_grad=True)
        y = logic_layer(x, idx, gate_coefficients(torch.softmax(w, -1)), grad_factor=1.0)
        y2 = reference_layer(x, idx, w)
        g = torch.randn_like(y)
        got, want = torch.autograd.grad(y, (x, w), g), torch.autograd.grad(y2, (x, w), g)
        assert torch.allclose(y, y2, atol=ATOL)
        assert all(torch.allclose(a, b, atol=ATOL) for a, b in zip(got, want))


# ---- GroupSum == reference_group_sum ----

@pytest.mark.parametrize("shape", [(1, 12), (5, 12), (2, 3, 12), (12,)])
@pytest.mark.parametrize("k", [1, 3, 12])
def test_groupsum(shape, k, device):
    x = torch.rand(*shape, dtype=F64, device=device, requires_grad=True)
    y, y2 = GroupSum(k, tau=2.5)(x), reference_group_sum(x, k, 2.5)
    assert torch.allclose(y, y2, atol=ATOL)
    g = torch.randn_like(y)
    assert torch.allclose(torch.autograd.grad(y, x, g)[0], torch.autograd.grad(y2, x, g)[0])
    if x.dim() == 2:                                    # the feature-major path
        xt = x.detach().t().contiguous().t()
        assert torch.allclose(GroupSum(k, tau=2.5)(xt), y2, atol=ATOL)


def test_reference_errors():
    with pytest.raises(ValueError, match="not divisible by k=4"):
        reference_group_sum(torch.ones(2, 10), 4)
    with pytest.raises(ValueError, match="tau"):
        reference_group_sum(torch.ones(2, 10), 2, tau=0)
    with pytest.raises(TypeError, match="floating"):
        reference_layer(torch.ones(2, 3, dtype=torch.int64), torch.zeros(2, 1, dtype=torch.long),
                        torch.zeros(1, 16))


def test_docstring_examples():
    "The example-first docstrings of the public modules run as written."
    for obj in (LogicLayer, GroupSum):
        finder = doctest.DocTestFinder(recurse=False)
        globs = {"torch": torch, "LogicLayer": LogicLayer, "GroupSum": GroupSum}
        for test in finder.find(obj, globs=globs, module=diffalg.logic.layers):
            result = doctest.DocTestRunner().run(test)
            assert result.failed == 0 and result.attempted > 0
