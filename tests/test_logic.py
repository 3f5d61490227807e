"""Tests of diffalg.logic: relaxed gates, LogicLayer against a plain 16-gate reference, GroupSum,
binarization."""
import io

import pytest
import torch

from diffalg.logic import (GATE_COEFFICIENTS, GATE_NAMES, Binarize, GroupSum, LogicLayer, binarize,
                           fit_thresholds, gate_coefficients, gate_truth_table, logic_layer,
                           random_connections, relaxed_gate, unique_connections)


# ---- a plain reference: the 16 gates written out one by one (as in the paper's Table 1) ----
def ref_gate(a, b, i):
    return [lambda: torch.zeros_like(a), lambda: a * b, lambda: a - a * b, lambda: a,
            lambda: b - a * b, lambda: b, lambda: a + b - 2 * a * b, lambda: a + b - a * b,
            lambda: 1 - (a + b - a * b), lambda: 1 - (a + b - 2 * a * b), lambda: 1 - b,
            lambda: 1 - b + a * b, lambda: 1 - a, lambda: 1 - a + a * b, lambda: 1 - a * b,
            lambda: torch.ones_like(a)][i]()


def ref_layer(x, indices, weights, training=True):
    "All 16 gate outputs per neuron, mixed by softmax(weights) (training) or one-hot argmax (eval)."
    a, b = x[..., indices[0]], x[..., indices[1]]
    if training:
        p = torch.softmax(weights, -1)
    else:
        p = torch.nn.functional.one_hot(weights.argmax(-1), 16).to(x)
    return sum(p[:, i] * ref_gate(a, b, i) for i in range(16))


BITS = torch.tensor([[0., 0.], [0., 1.], [1., 0.], [1., 1.]], dtype=torch.float64)


@pytest.mark.parametrize("i", range(16))
def test_relaxed_gate_truth_table_and_range(i, device):
    a, b = BITS[:, 0].to(device), BITS[:, 1].to(device)
    assert torch.equal(relaxed_gate(a, b, i), gate_truth_table(torch.float64)[i].to(device))
    assert torch.equal(relaxed_gate(a, b, i), ref_gate(a, b, i))
    u = torch.rand(2000, dtype=torch.float64, device=device)
    v = torch.rand(2000, dtype=torch.float64, device=device)
    r = relaxed_gate(u, v, i)
    assert r.min() >= 0 and r.max() <= 1
    assert torch.allclose(r, ref_gate(u, v, i))


def test_gate_names_and_coefficients():
    assert len(GATE_NAMES) == 16 and len(set(GATE_NAMES)) == 16
    assert GATE_COEFFICIENTS.shape == (16, 4)
    # gate i's truth table read as a binary number (AB = 00 is the most significant bit) is i
    tt = gate_truth_table()
    assert torch.equal(tt @ torch.tensor([8, 4, 2, 1]), torch.arange(16))
    p = torch.softmax(torch.randn(5, 16, dtype=torch.float64), -1)
    assert torch.allclose(gate_coefficients(p), p @ GATE_COEFFICIENTS)


@pytest.mark.parametrize("connections", ["random", "unique"])
@pytest.mark.parametrize("grad_factor", [1.0, 2.0])
def test_layer_matches_reference_forward_backward(connections, grad_factor, device):
    torch.manual_seed(0)
    layer = LogicLayer(12, 20, device=device, connections=connections,
                       grad_factor=grad_factor).double()
    x = torch.rand(9, 12, dtype=torch.float64, device=device, requires_grad=True)
    y = layer(x)
    x2 = x.detach().clone().requires_grad_(True)
    w2 = layer.weights.detach().clone().requires_grad_(True)
    y2 = ref_layer(x2, layer.indices, w2)
    assert torch.allclose(y, y2, atol=1e-12)
    g = torch.randn_like(y)
    y.backward(g)
    y2.backward(g)
    assert torch.allclose(layer.weights.grad, w2.grad, atol=1e-12)
    assert torch.allclose(x.grad, grad_factor * x2.grad, atol=1e-12)


def test_two_layers_and_groupsum_match_reference(device):
    torch.manual_seed(1)
    net = torch.nn.Sequential(LogicLayer(10, 16, device=device), LogicLayer(16, 12, device=device),
                              GroupSum(3, tau=2.0)).double()
    x = torch.rand(70, 10, dtype=torch.float64, device=device)
    y = net(x)
    w = [net[0].weights.detach().clone().requires_grad_(True),
         net[1].weights.detach().clone().requires_grad_(True)]
    h = ref_layer(ref_layer(x, net[0].indices, w[0]), net[1].indices, w[1])
    y2 = h.reshape(70, 3, 4).sum(-1) / 2.0
    assert torch.allclose(y, y2, atol=1e-12)
    y.square().sum().backward()
    y2.square().sum().backward()
    assert torch.allclose(net[0].weights.grad, w[0].grad, atol=1e-10)
    assert torch.allclose(net[1].weights.grad, w[1].grad, atol=1e-10)


def test_eval_mode_is_argmax_gate_and_exact_bits(device):
    torch.manual_seed(2)
    layer = LogicLayer(16, 40, device=device).eval()
    x = (torch.rand(33, 16, device=device) > 0.5).float()
    y = layer(x)
    assert torch.equal(y, ref_layer(x, layer.indices, layer.weights, training=False))
    assert set(y.unique().tolist()) <= {0.0, 1.0}


def test_gradcheck(device):
    torch.manual_seed(3)
    x = torch.rand(4, 6, dtype=torch.float64, device=device, requires_grad=True)
    idx = random_connections(6, 7).to(device)
    w = torch.randn(7, 16, dtype=torch.float64, device=device, requires_grad=True)
    fn = lambda x, w: logic_layer(x, idx, gate_coefficients(torch.softmax(w, -1)))
    assert torch.autograd.gradcheck(fn, (x, w))


def test_float32_follows_input_and_no_inplace(device):
    layer = LogicLayer(8, 8, device=device, seed=0)
    x = torch.rand(5, 8, device=device)
    x0 = x.clone()
    y = layer(x)
    assert y.dtype == torch.float32 and y.device.type == torch.device(device).type
    assert torch.equal(x, x0)
    assert layer(x.double()).dtype == torch.float64


def test_connections():
    r = random_connections(100, 60, torch.Generator().manual_seed(0))
    counts = torch.bincount(r.flatten(), minlength=100)
    assert counts.min() >= 1 and counts.max() <= 2  # 120 slots over 100 inputs: every input used
    u = unique_connections(10, 30, torch.Generator().manual_seed(0))
    assert len({tuple(p) for p in u.t().tolist()}) == 30 and (u[0] != u[1]).all()
    with pytest.raises(ValueError, match="at most"):
        unique_connections(4, 30)
    assert torch.equal(LogicLayer(10, 30, seed=5).indices, LogicLayer(10, 30, seed=5).indices)
    assert not torch.equal(LogicLayer(10, 30, seed=5).indices, LogicLayer(10, 30, seed=6).indices)


def test_save_load_roundtrip():
    net = torch.nn.Sequential(LogicLayer(8, 16, seed=0), LogicLayer(16, 10, seed=1),
                              GroupSum(2, 3.0))
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    net2 = torch.nn.Sequential(LogicLayer(8, 16, seed=10), LogicLayer(16, 10, seed=11),
                               GroupSum(2, 3.0))
    net2.load_state_dict(torch.load(buf))
    x = torch.rand(4, 8)
    assert torch.equal(net(x), net2(x))
    assert torch.equal(net.eval()(x), net2.eval()(x))


def test_difflogic_constructor_arguments():
    layer = LogicLayer(in_dim=8, out_dim=16, device="cpu", grad_factor=1.0,
                       implementation="python", connections="unique")
    assert layer.implementation == "fast"
    gs = GroupSum(k=2, tau=10.0, device="cpu")
    assert gs(layer(torch.rand(3, 8))).shape == (3, 2)


def test_groupsum(device):
    x = torch.arange(12.0, device=device).reshape(2, 6)
    assert torch.equal(GroupSum(3, tau=1.0)(x),
                       torch.tensor([[1., 5., 9.], [13., 17., 21.]], device=device))
    assert GroupSum(2)(torch.ones(4, 3, 6)).shape == (4, 3, 2)


def test_binarize(device):
    x = torch.rand(200, 5, device=device)
    th = fit_thresholds(x, 3)
    assert th.shape == (5, 3) and (th.diff(dim=1) > 0).all()
    bits = binarize(x, th)
    assert bits.shape == (200, 15) and set(bits.unique().tolist()) <= {0.0, 1.0}
    # quantile thresholds: each bit is on for about 3/4, 1/2, 1/4 of the samples
    assert torch.allclose(bits.reshape(200, 5, 3).mean((0, 1)),
                          torch.tensor([0.75, 0.5, 0.25], device=device), atol=0.02)
    assert torch.equal(Binarize(th)(x), bits)
    th_u = fit_thresholds(x, 1, method="uniform")
    assert torch.allclose(th_u[:, 0], (x.min(0).values + x.max(0).values) / 2)


def test_bad_input():
    layer = LogicLayer(6, 8)
    with pytest.raises(ValueError, match="6 features"):
        layer(torch.rand(3, 7))
    with pytest.raises(TypeError, match="x"):
        layer([[0.0] * 6])
    with pytest.raises(TypeError, match="floating"):
        layer(torch.ones(3, 6, dtype=torch.int64))
    with pytest.raises(ValueError, match="connections"):
        LogicLayer(6, 8, connections="dense")
    with pytest.raises(ValueError, match="implementation"):
        LogicLayer(6, 8, implementation="triton")
    with pytest.raises(ValueError, match="at least half"):
        LogicLayer(100, 8)
    with pytest.raises(ValueError, match="out_dim"):
        LogicLayer(6, 0)
    with pytest.raises(ValueError, match="not divisible by k=4"):
        GroupSum(4)(torch.ones(2, 10))
    with pytest.raises(TypeError, match="k"):
        GroupSum(2.5)
    with pytest.raises(ValueError, match="gate"):
        relaxed_gate(torch.zeros(2), torch.zeros(2), "nor")
    with pytest.raises(ValueError, match="16 entries"):
        gate_coefficients(torch.ones(2, 15))
    with pytest.raises(ValueError, match="method"):
        fit_thresholds(torch.rand(5, 2), 2, method="median")
    with pytest.raises(ValueError, match="features = 3"):
        binarize(torch.rand(4, 3), torch.rand(2, 2))


def test_no_grad_path_equals_autograd_path(device):
    torch.manual_seed(7)
    layer = LogicLayer(10, 30, device=device).double()
    x = torch.rand(17, 10, dtype=torch.float64, device=device)
    y = layer(x)
    with torch.no_grad():
        assert torch.allclose(layer(x), y, atol=1e-12)
        layer.eval()
        xb = (x > 0.5).double()
        assert torch.equal(layer(xb), ref_layer(xb, layer.indices, layer.weights, training=False))


def test_backward_twice_with_retain_graph(device):
    """The backward writes the input gradients over its gathered inputs; a second backward must
    gather them again."""
    torch.manual_seed(5)
    net = torch.nn.Sequential(LogicLayer(10, 16, device=device), LogicLayer(16, 12, device=device),
                              GroupSum(3, tau=2.0)).double()
    x = torch.rand(33, 10, dtype=torch.float64, device=device, requires_grad=True)
    y = net(x)
    g = torch.randn_like(y)
    y.backward(g, retain_graph=True)
    first = [p.grad.clone() for p in (x, net[0].weights, net[1].weights)]
    y.backward(g)
    params = (x, net[0].weights, net[1].weights)
    assert all(torch.allclose(p.grad, 2 * f, atol=1e-12) for p, f in zip(params, first))
    y2 = ref_layer(ref_layer(x, net[0].indices, net[0].weights), net[1].indices, net[1].weights)
    gx, = torch.autograd.grad(y2.reshape(33, 3, 4).sum(-1) / 2.0, x, g)
    assert torch.allclose(first[0], gx, atol=1e-12)


def test_input_gradient_with_unused_and_repeated_inputs(device):
    # inputs 0, 5 and the last two (6, 7) are read by no neuron, input 3 by five: their gradient
    # rows are 0 / a sum
    idx = torch.tensor([[3, 1, 3, 2, 4], [3, 3, 2, 1, 3]], device=device)
    w = torch.randn(5, 16, dtype=torch.float64, device=device)
    x = torch.rand(6, 8, dtype=torch.float64, device=device, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    g = torch.randn(6, 5, dtype=torch.float64, device=device)
    logic_layer(x, idx, gate_coefficients(torch.softmax(w, -1))).backward(g)
    ref_layer(x2, idx, w).backward(g)
    assert torch.allclose(x.grad, x2.grad, atol=1e-12)
    assert torch.equal(x.grad[:, [0, 5, 6, 7]], torch.zeros_like(x.grad[:, [0, 5, 6, 7]]))


def test_layer_follows_edits_of_its_connections(device):
    torch.manual_seed(3)
    layer = LogicLayer(6, 8, device=device).double()
    x = torch.rand(5, 6, dtype=torch.float64, device=device, requires_grad=True)
    layer(x).sum().backward()                        # caches the connections' fan-in
    with torch.no_grad():
        layer.indices.copy_(layer.indices.flip(-1))  # in place: the cache must notice
    x.grad = None
    layer(x).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    ref_layer(x2, layer.indices, layer.weights.detach()).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-12)
