"""Tests of the in-place values path of diffalg.sorting (`_NetworkValues`, with and without the
per-wire weights) against the layer-by-layer path, and of `sort_loss` on saturated inputs."""
import pytest
import torch

from diffalg.distributions import distribution_names, get_distribution
from diffalg.sorting.networks import get_sorting_network, SortingNetwork
from diffalg.sorting import diff_sort, soft_sort, sort_loss
from diffalg.sorting._engine_values import _network_values, _NetworkValues
from diffalg.sorting._plan import _values_plan
from diffalg.sorting._threads import _serial_for

NETWORKS = ("odd_even", "bitonic")


@pytest.mark.parametrize("kind", NETWORKS)
@pytest.mark.parametrize("n", [2, 3, 5, 8, 13, 16, 33, 100, 257])
@pytest.mark.parametrize("dist", distribution_names())
def test_values_equal_layer_path(kind, n, dist, device):
    torch.manual_seed(n)
    net, d = get_sorting_network(kind, n), get_distribution(dist)
    x = (torch.randn(4, n) * 3).to(device)
    ref = _network_values(x, net, 7.0, d)[0]
    out = _NetworkValues.apply(x, net, 7.0, d)
    exact = _network_values(x.double(), net, 7.0, d)[0]
    # float32: a different order of operations, so compare both paths' rounding errors against
    # float64
    assert (out.double() - exact).abs().max() <= 4 * (ref.double() - exact).abs().max() + 1e-5
    x64 = x.double().requires_grad_()
    g = torch.randn(4, n, dtype=torch.float64, device=device)
    ref64 = _network_values(x64, net, 7.0, d)[0]
    out64 = _NetworkValues.apply(x64, net, 7.0, d)
    assert torch.allclose(out64, ref64, atol=1e-12)
    assert torch.allclose(torch.autograd.grad(out64, x64, g)[0],
                          torch.autograd.grad(ref64, x64, g)[0], atol=1e-10)


@pytest.mark.parametrize("kind", NETWORKS)
@pytest.mark.parametrize("n", [2, 5, 12, 16])
@pytest.mark.parametrize("dist", ["cauchy", "logistic_art", "reciprocal", "gaussian"])
def test_values_gradcheck_and_double_backward(kind, n, dist, device):
    net, d = get_sorting_network(kind, n), get_distribution(dist)
    x = torch.randn(2, n, dtype=torch.float64, device=device, requires_grad=True)
    f = lambda x_: _NetworkValues.apply(x_, net, 2.0, d)
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.parametrize("kind", NETWORKS)
@pytest.mark.parametrize("n", [2, 3, 5, 8, 13, 16, 33, 100])
@pytest.mark.parametrize("dist", distribution_names())
def test_weights_equal_layer_path(kind, n, dist, device):
    """With weights=True the in-place pass returns the per-wire weights of `_network_values` too,
    and the gradient through both outputs, or either."""
    torch.manual_seed(n)
    net, d = get_sorting_network(kind, n), get_distribution(dist)
    x = (torch.randn(3, n, dtype=torch.float64, device=device) * 2).requires_grad_()
    v, w = _NetworkValues.apply(x, net, 3.0, d, True)
    v_ref, w_ref = _network_values(x, net, 3.0, d)
    # the steepness is folded into the input: other rounding
    torch.testing.assert_close(v, v_ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(w, w_ref, rtol=0, atol=1e-10)
    gv, gw = torch.randn_like(v), torch.randn_like(w)
    for outs, refs, gs in (((v, w), (v_ref, w_ref), (gv, gw)), ((w,), (w_ref,), (gw,)),
                           ((v,), (v_ref,), (gv,))):
        got = torch.autograd.grad(outs, x, gs, retain_graph=True)[0]
        want = torch.autograd.grad(refs, x, gs, retain_graph=True)[0]
        # uniform: gradients of size 1e4 here
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kind", NETWORKS)
@pytest.mark.parametrize("dist", ["cauchy", "logistic_art", "optimal"])
def test_weights_gradcheck_and_double_backward(kind, dist, device):
    net, d = get_sorting_network(kind, 6), get_distribution(dist)
    x = torch.randn(2, 6, dtype=torch.float64, device=device, requires_grad=True)
    f = lambda x_: _NetworkValues.apply(x_, net, 2.0, d, True)
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_serial_for_small_tensors_restores_threads():
    """Small CPU tensors run on one intra-op thread inside `_serial_for` (nested too); the thread
    count is restored afterwards, also after an error."""
    before = torch.get_num_threads()
    if before < 2:
        torch.set_num_threads(2)
    try:
        small, big = torch.zeros(10), torch.zeros(2 ** 19)
        with _serial_for(small):
            assert torch.get_num_threads() == 1
            with _serial_for(small):
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == max(before, 2)
        with _serial_for(big):
            assert torch.get_num_threads() == max(before, 2)
        with pytest.raises(KeyError):
            with _serial_for(small):
                raise KeyError("inside")
        assert torch.get_num_threads() == max(before, 2)
        x = torch.randn(4, 50, requires_grad=True)
        r = diff_sort(x, "bitonic")
        r.permutation.sum().backward()
        assert torch.get_num_threads() == max(before, 2)
    finally:
        torch.set_num_threads(before)


def test_values_path_large_n_matches_and_sorts(device):
    x = torch.randn(8, 1000, device=device)
    net, d = get_sorting_network("bitonic", 1000), get_distribution("cauchy")
    assert torch.allclose(_NetworkValues.apply(x, net, 10.0, d),
                          _network_values(x, net, 10.0, d)[0], atol=5e-5, rtol=1e-5)
    hard = soft_sort(x, "bitonic", steepness=1e6, distribution="logistic")
    assert torch.allclose(hard, x.sort(-1).values, atol=1e-4)


@pytest.mark.parametrize("kind", NETWORKS)
@pytest.mark.parametrize("descending", [False, True])
def test_diff_sort_values_dims_and_consistency(kind, descending, device):
    x = torch.randn(2, 11, 3, dtype=torch.float64, device=device, requires_grad=True)
    r = diff_sort(x, kind, 4.0, dim=1, descending=descending)
    flat = x.movedim(1, -1).reshape(-1, 11)
    ref = _network_values(-flat if descending else flat, get_sorting_network(kind, 11), 4.0,
                          get_distribution("cauchy"))[0]
    ref = (-ref if descending else ref).reshape(2, 3, 11).movedim(-1, 1)
    assert torch.allclose(r.values, ref)
    assert torch.allclose(torch.einsum("bci,bcij->bcj", x.movedim(1, -1), r.permutation),
                          r.values.movedim(1, -1))
    f = lambda x_: diff_sort(x_, kind, 4.0, dim=1, descending=descending).values
    assert torch.autograd.gradcheck(f, (x,))


def test_values_path_does_not_modify_input_and_tensor_steepness(device):
    x = torch.randn(3, 9, device=device)
    x0 = x.clone()
    v = soft_sort(x, "bitonic", 5.0)
    assert torch.equal(x, x0)
    # tensor steepness: the layer-by-layer path
    v_t = soft_sort(x, "bitonic", torch.tensor(5.0, device=device))
    assert torch.allclose(v, v_t, atol=1e-6)


def test_lazy_weights_refuse_input_modified_in_place():
    x = torch.randn(2, 6)
    r = diff_sort(x, "bitonic")
    x.add_(1.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        r.permutation
    with pytest.raises(RuntimeError, match="modified in place"):
        r.values


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("kind", ["odd_even", "bitonic"])
def test_values_the_same_whichever_output_comes_first(kind, descending):
    """Values asked first come from the in-place values network, after the permutation from the
    run that made the weights: equal, gradients too."""
    x = torch.randn(4, 11, dtype=torch.float64, requires_grad=True)
    a = diff_sort(x, kind, 5.0, descending=descending)
    va = a.values
    b = diff_sort(x, kind, 5.0, descending=descending)
    b.permutation
    vb = b.values
    torch.testing.assert_close(va, vb, rtol=0, atol=1e-12)
    g = torch.randn_like(va)
    torch.testing.assert_close(torch.autograd.grad(va, x, g)[0], torch.autograd.grad(vb, x, g)[0],
                               rtol=0, atol=1e-12)


def test_values_plan_only_for_pair_networks():
    assert _values_plan(get_sorting_network("bitonic", 10)) is not None
    assert _values_plan(get_sorting_network("odd_even", 10)) is not None
    odd = SortingNetwork(3, [[(0, 2)], [(0, 1)], [(1, 2)]], "custom")
    assert _values_plan(odd) is None
    x = torch.randn(4, 3, dtype=torch.float64)
    hard = diff_sort(x, odd, steepness=1e7, distribution="logistic").values
    assert torch.allclose(hard, x.sort(-1).values)


@pytest.mark.parametrize("kind", NETWORKS)
@pytest.mark.parametrize("gap", [0.9, 1.2, 50.0])
def test_sort_loss_saturated_gradients_and_hessians_bounded(kind, gap, device):
    # well separated scores at steepness 20: entries of the relaxed permutation of 1e-10 and below
    # (with a plain clamp to [0, 1] the gap 0.9, wrong order gives gradients of 1e4 and Hessian
    # entries of 1e10 in float32)
    scores = (torch.arange(6, dtype=torch.float32, device=device) * gap).flip(0).contiguous()
    targets = torch.arange(6, dtype=torch.float32, device=device)
    for t in (targets, targets.flip(0)):
        f = lambda s_: sort_loss(s_, t, kind, steepness=20.0, distribution="logistic")
        g = torch.autograd.functional.jacobian(f, scores)
        H = torch.autograd.functional.hessian(f, scores)
        assert torch.isfinite(g).all() and torch.isfinite(H).all()
        assert g.abs().max() < 1e2 and H.abs().max() < 1e3
        assert 0 <= f(scores) < 17
    wrong = lambda s_: sort_loss(s_, targets, kind, steepness=20.0, distribution="logistic")
    # saturated but wrong: the gradient still points somewhere
    if gap < 2:
        assert torch.autograd.functional.jacobian(wrong, scores).abs().max() > 0
