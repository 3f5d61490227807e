"""Convolutional logic gate networks: the tree convolution against its plain reference, OR
pooling, residual initialization, the architecture family and its gate count."""
import pytest
import torch
from diffalg.logic import (LogicLayer, LogicTreeConv2d, OrPool2d, LearnableThresholds,
                           BitsToImage, reference_tree_conv, reference_or_pool, logic_tree_net,
                           count_gates, residual_logits, tree_connections, output_size)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))]
CASES = [  # in_ch, out_ch, kernel, stride, padding, tree_depth, groups, size
    (3, 4, 3, 1, 1, 2, 1, (7, 6)), (2, 5, 3, 2, 0, 2, 1, (9, 8)), (4, 4, (3, 2), (2, 1), (1, 0),
     1, 2, (6, 5)), (1, 3, 2, 1, 1, 3, 1, (4, 4)), (6, 6, 1, 1, 0, 2, 3, (3, 5)),
    (2, 2, 3, 3, 2, 2, 2, (5, 5))]


def _pair_case(in_ch, out_ch, kernel, stride, padding, depth, groups, size, device, n=3):
    conv = LogicTreeConv2d(in_ch, out_ch, kernel, stride, padding, depth, groups, seed=7)
    conv = conv.double().to(device)
    x = torch.rand(n, in_ch, *size, dtype=torch.float64, device=device)
    return conv, x


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES)
def test_relaxed_equals_reference_values_and_gradients(case, device):
    conv, x = _pair_case(*case, device)
    kernel, stride, padding = case[2:5]
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    w2 = conv.weights.detach().clone().requires_grad_(True)
    y1 = conv(x1)
    y2 = reference_tree_conv(x2, conv.leaves, w2, kernel, stride, padding)
    assert y1.shape == (3, case[1], *output_size(case[7], kernel, stride, padding))
    assert y1.device.type == device and y1.dtype == torch.float64
    torch.testing.assert_close(y1, y2, atol=1e-5, rtol=0)
    g = torch.randn_like(y1)
    y1.backward(g); y2.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(conv.weights.grad, w2.grad, atol=1e-5, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES)
def test_eval_equals_hard_gate_reference(case, device):
    conv, x = _pair_case(*case, device, n=5)
    bits = (x > 0.5).double()
    y = conv.eval()(bits)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    kernel, stride, padding = case[2:5]
    ref = reference_tree_conv(bits, conv.leaves, conv.weights, kernel, stride, padding, False)
    assert torch.equal(y, ref)
    assert torch.equal(conv.float()(bits.float()), ref.float())      # float32 too: exact bits


def test_gradcheck_tree_convolution():
    conv = LogicTreeConv2d(2, 3, 3, stride=2, padding=1, seed=0).double()
    x = torch.rand(2, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 3, 16, dtype=torch.float64, requires_grad=True)

    def f(x, w):                     # the module's forward as a function of (x, weights)
        return torch.func.functional_call(conv, {"weights": w, "leaves": conv.leaves}, (x,))
    assert torch.autograd.gradcheck(f, (x, w))


@pytest.mark.parametrize("device", DEVICES)
def test_or_pooling_relaxed_and_discrete(device):
    x = torch.rand(2, 3, 7, 5, dtype=torch.float64, device=device)
    bits = (x > 0.6).double()
    for k, s, p in ((2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1))):
        pool = OrPool2d(k, s, p)
        assert torch.equal(pool(x), reference_or_pool(x, k, s, p))
        assert torch.equal(pool.eval()(bits), reference_or_pool(bits, k, s, p, training=False))
    windows = bits[:, :, :6, :4].unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2)
    assert torch.equal(OrPool2d(2)(bits), windows.any(-1).double())   # OR of each window


def test_residual_initialization_probability():
    for p in (0.5, 0.9, 0.99):
        conv = LogicTreeConv2d(2, 4, residual_init=p, seed=0)
        torch.testing.assert_close(torch.softmax(conv.weights, -1)[..., 3],
                                   torch.full((4, 3), p))
        dense = LogicLayer(8, 6, residual_init=p, seed=0)
        torch.testing.assert_close(torch.softmax(dense.weights, -1)[:, 3], torch.full((6,), p))
        assert torch.equal(dense.indices, LogicLayer(8, 6, seed=0).indices)   # same wiring
    # the default initialization is unchanged: difflogic's standard normal logits
    assert torch.equal(LogicLayer(8, 6, seed=3).weights.data,
                       torch.randn(6, 16, generator=torch.Generator().manual_seed(3)))
    bits = (torch.rand(4, 2, 6, 6) > 0.5).float()            # p > 1/16: argmax is gate "A"
    conv = LogicTreeConv2d(2, 4, 3, padding=1, residual_init=0.9, seed=1).eval()
    first = conv.leaves[:, 0]
    assert torch.equal(conv(bits), torch.nn.functional.unfold(bits, 3, padding=1)[:, first]
                       .unflatten(-1, (6, 6)))                   # passes leaf 0 through
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="residual_init"):
            residual_logits((2,), bad)


def test_tree_connections_stay_in_groups_and_fields():
    g = torch.Generator().manual_seed(0)
    leaves = tree_connections(8, 12, (3, 2), tree_depth=3, groups=4, generator=g)
    channel, pos = leaves // 6, leaves % 6
    assert leaves.shape == (12, 8) and bool((pos < 6).all())
    assert torch.equal(channel // 2, (torch.arange(12) // 3)[:, None].expand(12, 8))
    assert bool((channel[:, 0::2] != channel[:, 1::2]).all())


def test_architecture_and_gate_count():
    net = logic_tree_net(2, in_channels=3, image_size=32, blocks=4, seed=0)
    n = count_gates(net, (3, 32, 32))
    trees = 3 * 2 * (32 * 32 + 4 * 16 * 16 + 16 * 8 * 8 + 32 * 4 * 4)
    pools = 3 * 2 * (16 * 16 + 4 * 8 * 8 + 16 * 4 * 4 + 32 * 2 * 2)
    assert n == {"tree": trees, "or": pools, "dense": 2240 * 2, "total": trees + pools + 4480,
                 "learned": 3 * 2 * (1 + 4 + 16 + 32) + 4480}
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    same = logic_tree_net(2, in_channels=3, image_size=32, blocks=4, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                  same.state_dict().values()))
    deep = logic_tree_net(1, 2, 28, blocks=3, convs=2, tree_depth=3)
    assert count_gates(deep, (2, 28, 28))["tree"] == 7 * 2 * (28 * 28 + 4 * 14 * 14 + 16 * 49)


def test_bits_to_image_and_learnable_thresholds():
    x = torch.rand(2, 3, 4, 5)
    th = torch.tensor([0.3, 0.6])
    flat = (x.flatten(1).unsqueeze(-1) > th).flatten(1).float()      # Binarize's layout
    img = BitsToImage(3, 4, 5, 2)(flat)
    assert torch.equal(img[:, 2 * 1 + 1], (x[:, 1] > 0.6).float())
    lt = LearnableThresholds(3, 2)
    assert lt(x).shape == (2, 6, 4, 5)
    lt(x).sum().backward()
    assert lt.thresholds.grad.abs().sum() > 0
    assert set(lt.eval()(x).unique().tolist()) <= {0.0, 1.0}


def test_bad_input_gives_clear_errors():
    conv = LogicTreeConv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        conv(torch.rand(2, 2, 8, 8))
    with pytest.raises(ValueError, match="at least 4 dimension"):
        conv(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        conv(torch.rand(1, 2, 3, 8, 8))
    with pytest.raises(ValueError, match="does not fit"):
        conv(torch.rand(2, 3, 2, 8))
    with pytest.raises(TypeError, match="floating"):
        conv(torch.ones(2, 3, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible by `groups`"):
        LogicTreeConv2d(3, 4, groups=2)
    with pytest.raises(ValueError, match="kernel_size"):
        LogicTreeConv2d(3, 4, kernel_size=0)
    with pytest.raises(ValueError, match="stride"):
        LogicTreeConv2d(3, 4, stride=(1, 2, 3))
    with pytest.raises(TypeError, match="padding"):
        LogicTreeConv2d(3, 4, padding=0.5)
    with pytest.raises(ValueError, match="padding"):
        OrPool2d(2, padding=2)
    with pytest.raises(ValueError, match="too small"):
        logic_tree_net(2, 1, 8, blocks=4)
    with pytest.raises(ValueError, match=r"\(N, 60\)"):
        BitsToImage(3, 4, 5)(torch.rand(2, 59))


def test_compiles_fullgraph():
    conv = LogicTreeConv2d(2, 3, 3, padding=1, seed=0)
    x = torch.rand(2, 2, 6, 6)
    compiled = torch.compile(conv, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), conv(x))
