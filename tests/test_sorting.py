"""Tests of diffalg.sorting.networks and diffalg.sorting: networks, relaxed permutations, values,
ranks, top-k, losses."""
import itertools
import pytest
import torch

from diffalg.distributions import distribution_names
from diffalg.sorting.networks import SortingNetwork, odd_even_network, bitonic_network
from diffalg.sorting.networks import get_sorting_network
from diffalg.sorting import diff_sort, soft_sort, soft_permutation, soft_rank, soft_topk_mask
from diffalg.sorting import sort_loss, permutation_targets, relaxed_swap, DiffSortNet, RelaxedSort

NETWORKS = ("odd_even", "bitonic")
DISTRIBUTIONS = distribution_names()


@pytest.mark.parametrize("kind", NETWORKS)
@pytest.mark.parametrize("n", list(range(2, 14)))
def test_networks_sort_every_binary_input(kind, n):
    assert get_sorting_network(kind, n).is_sorting_network()


def test_bitonic_depth_and_non_power_of_two():
    assert bitonic_network(1024).depth == 55
    assert bitonic_network(1000).depth == 55 and bitonic_network(1000).n == 1000
    assert odd_even_network(7).depth == 7


@pytest.mark.parametrize("kind", NETWORKS)
@pytest.mark.parametrize("n", [2, 3, 5, 8, 13])
def test_hard_limit_equals_torch_sort(kind, n, device):
    torch.manual_seed(n)
    x = torch.randperm(4 * n, device=device)[:n].double().repeat(3, 1)
    x = x + torch.arange(3, device=device).double()[:, None]
    r = diff_sort(x, kind, steepness=1e8, distribution="logistic")
    ref = x.sort(-1)
    torch.testing.assert_close(r.values, ref.values)
    torch.testing.assert_close(r.permutation, permutation_targets(x).double())
    torch.testing.assert_close(r.ranks, (ref.indices.argsort(-1) + 1).double())


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("kind", NETWORKS)
def test_permutation_doubly_stochastic_and_consistent(distribution, kind, device):
    torch.manual_seed(0)
    x = torch.randn(4, 7, device=device, dtype=torch.float64)
    r = diff_sort(x, kind, steepness=3.0, distribution=distribution)
    P = r.permutation
    ones = torch.ones(4, 7, device=device, dtype=torch.float64)
    assert (P >= 0).all()
    torch.testing.assert_close(P.sum(-1), ones)
    torch.testing.assert_close(P.sum(-2), ones)
    torch.testing.assert_close(torch.einsum("bi,bij->bj", x, P), r.values)   # values == x @ P
    torch.testing.assert_close(r.ranks, P @ torch.arange(1, 8, device=device, dtype=torch.float64))
    # top-k columns == full matrix columns
    torch.testing.assert_close(r.topk(3), P[..., [6, 5, 4]])
    torch.testing.assert_close(r.topk_mask(3), P[..., 4:].sum(-1))


@pytest.mark.parametrize("kind", NETWORKS)
def test_matches_dense_layer_products(kind, device):
    "P equals the product of the layers' dense mixing matrices (the papers' definition)."
    torch.manual_seed(1)
    n = 6
    x = torch.randn(n, device=device, dtype=torch.float64)
    net = get_sorting_network(kind, n)
    P, cur = torch.eye(n, device=device, dtype=torch.float64), x.clone()
    for layer in net:
        M = torch.eye(n, device=device, dtype=torch.float64)
        for lo, hi in layer:
            a = torch.distributions.Cauchy(0.0, 1.0).cdf(4.0 * (cur[hi] - cur[lo]))
            M[lo, lo] = M[hi, hi] = a
            M[hi, lo] = M[lo, hi] = 1 - a
        P, cur = P @ M, cur @ M
    r = diff_sort(x, kind, steepness=4.0, distribution="cauchy")
    torch.testing.assert_close(r.permutation, P)
    torch.testing.assert_close(r.values, cur)


def test_leading_dims_dim_and_descending(device):
    torch.manual_seed(2)
    x = torch.randn(2, 6, 3, device=device, dtype=torch.float64)
    r = diff_sort(x, "bitonic", dim=1, steepness=5.0)
    flat = diff_sort(x.movedim(1, -1).reshape(-1, 6), "bitonic", steepness=5.0)
    torch.testing.assert_close(r.values, flat.values.reshape(2, 3, 6).movedim(-1, 1))
    torch.testing.assert_close(r.permutation, flat.permutation.reshape(2, 3, 6, 6))
    d = diff_sort(x, "bitonic", dim=1, steepness=5.0, descending=True)
    torch.testing.assert_close(d.values, -diff_sort(-x, "bitonic", dim=1, steepness=5.0).values)
    neg = diff_sort(-x, "bitonic", dim=1, steepness=5.0)
    torch.testing.assert_close(d.ranks, neg.ranks)
    torch.testing.assert_close(d.permutation, neg.permutation)
    # descending: the largest come first
    torch.testing.assert_close(d.topk(2), d.permutation[..., [0, 1]])
    hard = diff_sort(x, "odd_even", dim=1, steepness=1e8, distribution="logistic", descending=True)
    torch.testing.assert_close(hard.values, x.sort(1, descending=True).values)
    top2 = torch.zeros_like(x).scatter(1, x.topk(2, dim=1).indices, 1.0)
    torch.testing.assert_close(hard.topk_mask(2), top2)


def _max_decrease(outputs, xs):
    "Largest drop of an output (over later grid points) as the varied input increases."
    return (outputs.cummax(0).values - outputs).max().item()


@pytest.mark.parametrize("distribution", ["cauchy", "reciprocal", "optimal"])
@pytest.mark.parametrize("kind", NETWORKS)
def test_monotonic_distributions(distribution, kind):
    """ICLR 2022, Thm. 4: sigmoids with 1/x^2 tails give monotonic networks: every sorted output
    is non-decreasing in every input."""
    torch.manual_seed(3)
    base = torch.randn(6, dtype=torch.float64) * 3
    t = torch.linspace(-20, 20, 4001, dtype=torch.float64)
    for i in range(6):
        x = base.repeat(len(t), 1)
        x[:, i] = t
        v = soft_sort(x, kind, steepness=1.0, distribution=distribution)
        assert _max_decrease(v, t) <= 1e-9


def test_logistic_is_not_monotonic():
    "ICLR 2022, Sec. 3: the logistic sigmoid gives a non-monotonic soft min (a counterexample)."
    t = torch.linspace(-10, 10, 2001, dtype=torch.float64)
    x = torch.stack([torch.zeros_like(t), t], -1)
    v = soft_sort(x, steepness=1.0, distribution="logistic")
    # softmin(0, t) = t (1 - sigmoid(t)) peaks near t = 1.28
    assert _max_decrease(v[:, 0], t) > 0.2
    v = soft_sort(x, steepness=1.0, distribution="cauchy")
    assert _max_decrease(v[:, 0], t) <= 1e-12


@pytest.mark.parametrize("kind", NETWORKS)
@pytest.mark.parametrize("distribution",
                         ["cauchy", "logistic_art", "reciprocal", "optimal", "gaussian"])
def test_gradcheck_float64(kind, distribution, device):
    torch.manual_seed(4)
    x = torch.randn(2, 5, device=device, dtype=torch.float64, requires_grad=True)
    def outputs(x):
        r = diff_sort(x, kind, steepness=2.0, distribution=distribution)
        return r.values, r.permutation, r.ranks, r.topk(2), r.topk_mask(2)
    assert torch.autograd.gradcheck(outputs, (x,))


def test_gradcheck_many_layers_uses_checkpoints():
    x = torch.randn(1, 9, dtype=torch.float64, requires_grad=True)
    f = lambda x: RelaxedSort(x, "odd_even", 3.0, checkpoint_every=2).permutation
    assert torch.autograd.gradcheck(f, (x,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype, device):
    x = torch.randn(3, 8, device=device)
    r = diff_sort(x.to(dtype), "bitonic", steepness=5.0)
    ref = diff_sort(x.to(dtype).float(), "bitonic", steepness=5.0)
    assert r.values.dtype == dtype and r.permutation.dtype == dtype
    torch.testing.assert_close(r.values.float(), ref.values, atol=2e-2, rtol=2e-2)
    xh = x.to(dtype).requires_grad_()
    soft_sort(xh).sum().backward()
    assert xh.grad.dtype == dtype


def test_relaxed_swap():
    a, b = torch.tensor([0.0, 3.0]), torch.tensor([1.0, 1.0])
    lo, hi, alpha = relaxed_swap(a, b, steepness=2.0, distribution="cauchy")
    torch.testing.assert_close(lo + hi, a + b)
    assert (alpha[0] > 0.5) and (alpha[1] < 0.5)


def test_sort_loss_prefers_correct_order_and_trains():
    torch.manual_seed(5)
    target = torch.randn(16, 5)
    scores = torch.zeros(16, 5, requires_grad=True)
    opt = torch.optim.Adam([scores], lr=0.1)
    first = sort_loss(scores, target).item()
    for _ in range(100):
        opt.zero_grad()
        loss = sort_loss(scores, target)
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    assert torch.equal(scores.argsort(-1), target.argsort(-1))


def test_diffsortnet_api(device):
    x = torch.randn(4, 8, device=device)
    sorter = DiffSortNet("bitonic", 8, device=device, steepness=12.0, distribution="logistic_phi")
    values, P = sorter(x)
    assert values.shape == (4, 8) and P.shape == (4, 8, 8) and P.device == x.device
    torch.testing.assert_close(torch.einsum("bi,bij->bj", x, P), values, atol=1e-5, rtol=1e-5)


def test_bad_inputs():
    x = torch.randn(3, 5)
    with pytest.raises(ValueError, match="`x` must have at least 1 dimension"):
        diff_sort(torch.tensor(0.5))
    with pytest.raises(TypeError, match="`x` must be a torch.Tensor"):
        diff_sort([1.0, 2.0])
    with pytest.raises(TypeError, match="`x` must be a floating-point tensor"):
        diff_sort(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="`x` must contain only finite values"):
        diff_sort(torch.tensor([1.0, float("inf")]))
    with pytest.raises(ValueError, match="`x` must have size >= 2"):
        diff_sort(torch.randn(3, 1))
    with pytest.raises(ValueError, match="`steepness` must be finite and > 0"):
        diff_sort(x, steepness=0.0)
    with pytest.raises(ValueError, match="`distribution` must be one of"):
        diff_sort(x, distribution="student_t")
    with pytest.raises(ValueError, match="`network` must be one of"):
        diff_sort(x, network="merge")
    with pytest.raises(ValueError, match="`k` must be <= 5"):
        diff_sort(x).topk(6)
    with pytest.raises(ValueError, match="`k` must be >= 1"):
        soft_topk_mask(x, 0)
    with pytest.raises(ValueError, match="`dim` must be <= 1"):
        diff_sort(x, dim=2)
    with pytest.raises(ValueError, match="has 4 wires"):
        diff_sort(x, network=odd_even_network(4))
    with pytest.raises(ValueError, match="`vectors` must have size 8"):
        DiffSortNet("odd_even", 8)(x)
    with pytest.raises(ValueError, match="`size` must be >= 2"):
        DiffSortNet("odd_even", 1)
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        sort_loss(x, x, reduction="max")
    with pytest.raises(ValueError, match="distinct wires"):
        SortingNetwork(4, [[(0, 1), (1, 2)]])


@pytest.mark.parametrize("distribution", ["logistic", "logistic_art", "cauchy", "optimal"])
@pytest.mark.parametrize("kind", NETWORKS)
def test_second_order_gradgradcheck(kind, distribution, device):
    """Twice differentiable: create_graph=True backward goes through a recorded path (Hessians for
    Newton losses)."""
    torch.manual_seed(3)
    n = 5 if kind == "odd_even" else 6
    x = torch.randn(2, n, device=device, dtype=torch.float64, requires_grad=True)
    targets = torch.randn(2, n, device=device)
    f = lambda x_: sort_loss(x_, targets, kind, 2.0, distribution)
    assert torch.autograd.gradgradcheck(f, (x,))
    def outputs(x_):
        r = diff_sort(x_, kind, 2.0, distribution)
        return r.permutation, r.ranks, r.topk(2), r.values
    assert torch.autograd.gradgradcheck(outputs, (x,))


@pytest.mark.parametrize("kind", NETWORKS)
def test_hessian_of_sort_loss_matches_double_grad(kind, device):
    """torch.autograd.functional.hessian is symmetric and equals the row-by-row double grad;
    first-order grads are unchanged by create_graph."""
    torch.manual_seed(4)
    x = torch.randn(7, device=device, dtype=torch.float64)
    targets = torch.randn(7, device=device)
    f = lambda x_: sort_loss(x_, targets, kind, 3.0, "logistic")
    H = torch.autograd.functional.hessian(f, x)
    torch.testing.assert_close(H, H.T)
    xr = x.clone().requires_grad_()
    g1, = torch.autograd.grad(f(xr), xr, create_graph=True)
    g0, = torch.autograd.grad(f(xr), xr)
    torch.testing.assert_close(g1.detach(), g0)
    rows = torch.stack([torch.autograd.grad(g1[i], xr, retain_graph=True)[0] for i in range(7)])
    torch.testing.assert_close(rows, H)


def test_pair_layer_values_match_general_path(device):
    "The sliced path for adjacent-pair layers gives the gather path's values and weights exactly."
    from diffalg.sorting._engine_values import _network_values
    from diffalg.distributions import get_distribution
    torch.manual_seed(5)
    net = odd_even_network(11)
    generic = SortingNetwork(11, net.layers, "custom")
    generic._value_specs = [None] * generic.depth          # force the gather path
    x = torch.randn(3, 11, device=device, dtype=torch.float64)
    v1, w1 = _network_values(x, net, 4.0, get_distribution("cauchy"))
    v2, w2 = _network_values(x, generic, 4.0, get_distribution("cauchy"))
    assert torch.equal(v1, v2) and torch.equal(w1, w2)
    # sigmoid's vector and scalar code paths differ by an ulp
    v1, w1 = _network_values(x, net, 4.0, get_distribution("logistic"))
    v2, w2 = _network_values(x, generic, 4.0, get_distribution("logistic"))
    torch.testing.assert_close(v1, v2, rtol=0, atol=1e-15)
    torch.testing.assert_close(w1, w2, rtol=0, atol=1e-15)


@pytest.mark.parametrize("n,block", [(9, 4), (13, 6), (70, 32), (64, 16)])
def test_banded_chain_matches_layer_chain(n, block, device):
    """Odd-even networks b layers at a time (block-tridiagonal products) equal the layer-by-layer
    chain; gradients too."""
    from diffalg.sorting._engine_values import _network_values
    from diffalg.sorting._engine_matrix import _apply_network_matrix, _banded_chain, _pair_specs
    from diffalg.distributions import get_distribution
    torch.manual_seed(n)
    net = odd_even_network(n)
    x = torch.randn(2, n, device=device, dtype=torch.float64, requires_grad=True)
    start = torch.randn(1, n, 5, device=device, dtype=torch.float64)
    _, w = _network_values(x, net, 3.0, get_distribution("cauchy"))
    ref = _apply_network_matrix(w, start, net, banded=False)
    out = _banded_chain(w, start, list(range(n))[::-1], _pair_specs(net), block)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(out, x, g, retain_graph=True)[0],
                               torch.autograd.grad(ref, x, g)[0])


def test_banded_path_gradcheck_and_default_dispatch(device):
    from diffalg.sorting._engine_values import _network_values
    from diffalg.sorting._engine_matrix import _banded_chain, _pair_specs, _BandProduct
    from diffalg.sorting._engine_matrix import _band_product
    from diffalg.distributions import get_distribution
    torch.manual_seed(6)
    n = 9
    net = odd_even_network(n)
    eye = torch.eye(n, device=device, dtype=torch.float64)[None]
    order = list(range(n))[::-1]
    f = lambda x_: _banded_chain(_network_values(x_, net, 3.0, get_distribution("logistic"))[1],
                                 eye, order, _pair_specs(net), 4)
    x = torch.randn(2, n, device=device, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))
    wg = torch.rand(2, 5, n, device=device, dtype=torch.float64, requires_grad=True)
    offsets = [0, 1, 1, 0, 1]
    torch.testing.assert_close(_BandProduct.apply(wg, offsets, n), _band_product(wg, offsets, n))
    assert torch.autograd.gradcheck(lambda w_: _BandProduct.apply(w_, offsets, n), (wg,))
    # the default dispatch (n = 64 >= 2 * 32 columns) takes the banded path and agrees with the
    # dense layer products
    y = torch.randn(2, 64, device=device, dtype=torch.float64)
    P = soft_permutation(y, "odd_even", 5.0)
    torch.testing.assert_close(P.sum(-1), torch.ones(2, 64, device=device, dtype=torch.float64))
    torch.testing.assert_close(torch.einsum("bi,bij->bj", y, P), soft_sort(y, "odd_even", 5.0))


@pytest.mark.parametrize("k", [1, 2, 3, 5, 6, 7, 9])
def test_bitonic_butterfly_matches_block_form(k, device):
    """The butterfly form of the bitonic permutation (one matrix product per stage) equals the
    in-place block form; gradients too."""
    from diffalg.sorting._engine_bitonic import _BitonicPermutation, _bitonic_butterfly
    torch.manual_seed(k)
    N = 2 ** k
    w = torch.rand(2, k * (k + 1) // 2, N, device=device, dtype=torch.float64, requires_grad=True)
    ref = _BitonicPermutation.apply(w, k).transpose(-2, -1)
    out = _bitonic_butterfly(w, k)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(out, w, g)[0], torch.autograd.grad(ref, w, g)[0],
                               rtol=0, atol=1e-11)


@pytest.mark.parametrize("K", [1, 2, 3, 4, 5])
def test_butterfly_factors_give_the_layer_product(K):
    """S = M_last ... M_first of K single-bit layers (first on the highest bit) equals the product
    of the two factors, and its transpose."""
    from diffalg.sorting._engine_bitonic import _butterfly
    torch.manual_seed(K)
    B, M, b = 2, 3, 2 ** K
    ws = [torch.rand(B, M, b, dtype=torch.float64) for _ in range(K)]
    S = torch.eye(b, dtype=torch.float64).expand(B, M, b, b)
    idx = torch.arange(b)
    for j, wj in enumerate(ws):
        d = 2 ** (K - 1 - j)
        # alpha of the pair, read from its upper wire
        a = torch.where((idx & d) == 0, wj, wj[..., idx ^ d]).unsqueeze(-1)
        S = a * S + (1 - a) * S[:, :, idx ^ d]
    torch.testing.assert_close(_butterfly(ws, K), S, rtol=0, atol=1e-14)
    torch.testing.assert_close(_butterfly(ws, K, transpose=True), S.transpose(-2, -1),
                               rtol=0, atol=1e-14)
    assert _butterfly(ws, K, transpose=True).is_contiguous()


def test_bitonic_butterfly_gradcheck_and_default_dispatch(device):
    from diffalg.sorting._engine_bitonic import _BitonicPermutation, _bitonic_butterfly, _MATMUL_MIN
    torch.manual_seed(4)
    # k = 6: stages of 1 to 6 layers
    w = torch.rand(1, 21, 64, device=device, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w_: _bitonic_butterfly(w_, 6)[:, ::7, ::5], (w,))
    # fast mode: a random projection of the second derivative (the full check takes a minute)
    assert torch.autograd.gradgradcheck(lambda w_: _bitonic_butterfly(w_, 6)[:, ::9, ::11], (w,),
                                        fast_mode=True)
    # n = 300 (padded to 512 >= _MATMUL_MIN) takes the butterfly form: same P as the block form
    assert _MATMUL_MIN <= 512
    x = torch.randn(2, 300, device=device, dtype=torch.float64)
    r = diff_sort(x, "bitonic", steepness=5.0)
    wp = torch.nn.functional.pad(r._w, (212, 0), value=1.0)
    ref = _BitonicPermutation.apply(wp.contiguous(), 9)[:, 212:, 212:].transpose(-2, -1)
    torch.testing.assert_close(r.permutation, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.einsum("bi,bij->bj", x, r.permutation), r.values)
