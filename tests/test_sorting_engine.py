"""Engine == reference: every public operator of diffalg.sorting (values, permutation, ranks, top-k
columns, top-k membership, soft_topk, sort_loss) against the dense formulas of
diffalg.sorting.reference in float64, values and gradients, with the compiled kernel on and off,
on random and adversarial inputs."""
import pytest
import torch

from diffalg.distributions import distribution_names
from diffalg._native import find_c_compiler
from diffalg.sorting import reference
from diffalg.sorting import diff_sort, soft_sort, soft_rank, soft_permutation, soft_topk
from diffalg.sorting import soft_topk_mask, sort_loss, permutation_targets, compiled_pass
from diffalg.sorting import SortingNetwork

NETWORKS = ("odd_even", "bitonic")
MODES = [pytest.param("on", marks=pytest.mark.skipif(find_c_compiler() is None,
                                                     reason="no C compiler")), "off"]


def reference_outputs(x, network, steepness, distribution, dim=-1, descending=False, k=2):
    "Every output of `diff_sort` by the reference: descending = the ascending sort of -x."
    rows = x.movedim(dim, -1)
    sign = -1.0 if descending else 1.0
    P = reference.network_permutation(sign * rows, network, steepness, distribution)
    values = sign * reference.network_values(sign * rows, network, steepness, distribution)
    top = reference.topk_columns(P, k, descending)
    return {"values": values.movedim(-1, dim), "permutation": P,
            "ranks": reference.permutation_ranks(P).movedim(-1, dim), "topk": top,
            "topk_mask": top.sum(-1).movedim(-1, dim)}


def engine_outputs(x, network, steepness, distribution, dim=-1, descending=False, k=2):
    "Every output of `diff_sort` (values first, as a user who asks for them first)."
    r = diff_sort(x, network, steepness, distribution, dim=dim, descending=descending)
    return {"values": r.values, "permutation": r.permutation, "ranks": r.ranks, "topk": r.topk(k),
            "topk_mask": r.topk_mask(k)}


def assert_same(x, engine, ref, rtol=1e-9, atol=1e-10):
    "Equal outputs, and equal gradients of a random linear function of each output."
    gen = torch.Generator().manual_seed(0)
    for name in ref:
        torch.testing.assert_close(engine[name], ref[name], rtol=rtol, atol=atol, msg=name)
        g = torch.randn(ref[name].shape, generator=gen, dtype=ref[name].dtype)
        got, = torch.autograd.grad(engine[name], x, g, retain_graph=True)
        want, = torch.autograd.grad(ref[name], x, g, retain_graph=True)
        scale = max(1.0, want.abs().max().item())
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol * scale, msg=f"grad {name}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("n", [2, 5, 8])
@pytest.mark.parametrize("distribution", distribution_names())
@pytest.mark.parametrize("network", NETWORKS)
def test_every_output_equals_reference(network, distribution, n, descending, mode):
    torch.manual_seed(n)
    x = (torch.randn(3, n, dtype=torch.float64) * 2).requires_grad_()
    with compiled_pass(mode):
        engine = engine_outputs(x, network, 3.0, distribution, descending=descending)
    ref = reference_outputs(x, network, 3.0, distribution, descending=descending)
    assert_same(x, engine, ref)


def adversarial(kind, n):
    "Inputs that stress the engine: ties, one value everywhere, huge and tiny magnitudes."
    torch.manual_seed(7)
    if kind == "ties":
        return torch.randint(0, 3, (4, n)).double()
    if kind == "all_equal":
        return torch.full((4, n), 0.25, dtype=torch.float64)
    if kind == "huge":
        return torch.randn(4, n, dtype=torch.float64) * 1e6
    if kind == "tiny":
        return torch.randn(4, n, dtype=torch.float64) * 1e-8
    if kind == "mixed":
        scales = torch.logspace(-6, 6, n, dtype=torch.float64)
        return torch.randn(4, n, dtype=torch.float64) * scales
    return torch.arange(n, dtype=torch.float64).flip(0).repeat(4, 1)        # reversed order


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["ties", "all_equal", "huge", "tiny", "mixed", "reversed"])
@pytest.mark.parametrize("distribution", ["cauchy", "logistic", "optimal"])
@pytest.mark.parametrize("network", NETWORKS)
def test_adversarial_inputs(network, distribution, kind, mode):
    x = adversarial(kind, 7).requires_grad_()
    with compiled_pass(mode):
        engine = engine_outputs(x, network, 10.0, distribution, k=3)
    ref = reference_outputs(x, network, 10.0, distribution, k=3)
    for out in engine.values():
        assert torch.isfinite(out).all()
    scale = x.detach().abs().max().item()
    rtol, atol = 1e-9, 1e-10 * max(1.0, scale)
    assert_same(x, engine, ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("network", NETWORKS)
def test_dim_and_leading_dimensions(network, descending, mode):
    torch.manual_seed(3)
    x = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    with compiled_pass(mode):
        engine = engine_outputs(x, network, 4.0, "cauchy", dim=1, descending=descending, k=3)
    ref = reference_outputs(x, network, 4.0, "cauchy", dim=1, descending=descending, k=3)
    assert engine["values"].shape == x.shape and engine["permutation"].shape == (2, 3, 6, 6)
    assert engine["topk"].shape == (2, 3, 6, 3)
    assert_same(x, engine, ref)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("network,n", [("odd_even", 70), ("bitonic", 130), ("bitonic", 100)])
def test_large_n_takes_the_fast_paths(network, n, mode):
    "Banded odd-even products (n >= 64), butterfly (padded N >= 128) and block bitonic forms."
    torch.manual_seed(n)
    x = torch.randn(2, n, dtype=torch.float64, requires_grad=True)
    with compiled_pass(mode):
        r = diff_sort(x, network, 5.0)
        engine = {"values": r.values, "permutation": r.permutation, "ranks": r.ranks}
    P = reference.network_permutation(x, network, 5.0)
    ref = {"values": reference.network_values(x, network, 5.0), "permutation": P,
           "ranks": reference.permutation_ranks(P)}
    assert_same(x, engine, ref)


@pytest.mark.parametrize("mode", MODES)
def test_functional_forms_and_sort_loss(mode):
    torch.manual_seed(4)
    x = torch.randn(3, 9, dtype=torch.float64, requires_grad=True)
    targets = torch.randn(3, 9, dtype=torch.float64)
    with compiled_pass(mode):
        engine = {"values": soft_sort(x, "bitonic", 6.0, "reciprocal"),
                  "ranks": soft_rank(x, "bitonic", 6.0, "reciprocal"),
                  "permutation": soft_permutation(x, "bitonic", 6.0, "reciprocal"),
                  "soft_topk": soft_topk(x, 4, "bitonic", 6.0, "reciprocal"),
                  "soft_topk_asc": soft_topk(x, 4, "bitonic", 6.0, "reciprocal", descending=False),
                  "topk_mask": soft_topk_mask(x, 4, "bitonic", 6.0, "reciprocal"),
                  "loss": sort_loss(x, targets, "odd_even", 6.0, "logistic", reduction="none")}
    P = reference.network_permutation(x, "bitonic", 6.0, "reciprocal")
    P_down = reference.network_permutation(-x, "bitonic", 6.0, "reciprocal")
    eps = torch.finfo(torch.float64).eps
    P_loss = reference.network_permutation(x, "odd_even", 6.0, "logistic")
    T = permutation_targets(targets).double()
    loss = torch.nn.functional.binary_cross_entropy(P_loss * (1 - 2 * eps) + eps, T,
                                                    reduction="none").mean((-2, -1))
    ref = {"values": reference.network_values(x, "bitonic", 6.0, "reciprocal"),
           "ranks": reference.permutation_ranks(P), "permutation": P,
           "soft_topk": reference.topk_columns(P_down, 4, descending=True),
           "soft_topk_asc": reference.topk_columns(P, 4),
           "topk_mask": reference.topk_columns(P, 4).sum(-1), "loss": loss}
    assert_same(x, engine, ref)


@pytest.mark.parametrize("mode", MODES)
def test_network_without_a_plan_and_tensor_steepness(mode):
    "A network that is not made of adjacent pairs, and a tensor steepness: the general path."
    net = SortingNetwork(4, [[(0, 2), (1, 3)], [(0, 1), (2, 3)], [(1, 2)]], "custom")
    assert net.is_sorting_network()
    torch.manual_seed(5)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    with compiled_pass(mode):
        engine = engine_outputs(x, net, 3.0, "gaussian")
        tensor_steep = diff_sort(x, "bitonic", torch.tensor(3.0, dtype=torch.float64)).values
    assert_same(x, engine, reference_outputs(x, net, 3.0, "gaussian"))
    assert_same(x, {"values": tensor_steep},
                {"values": reference.network_values(x, "bitonic", 3.0)})


def test_size_one_is_refused_by_both():
    x = torch.randn(3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="`x` must have size >= 2"):
        diff_sort(x)
    with pytest.raises(ValueError, match="`x` must have size >= 2"):
        reference.network_values(x)
    with pytest.raises(ValueError, match="`x` must have size >= 2"):
        reference.network_permutation(x)


def test_reference_formulas():
    "The reference itself: hard limit, doubly stochastic, x @ P = values, ranks and top-k."
    torch.manual_seed(6)
    for network in NETWORKS:
        x = torch.randn(4, 7, dtype=torch.float64)
        P = reference.network_permutation(x, network, 1e8, "logistic")
        torch.testing.assert_close(P, permutation_targets(x).double())
        P = reference.network_permutation(x, network, 2.0)
        ones = torch.ones(4, 7, dtype=torch.float64)
        torch.testing.assert_close(P.sum(-1), ones)
        torch.testing.assert_close(P.sum(-2), ones)
        torch.testing.assert_close((x.unsqueeze(-2) @ P).squeeze(-2),
                                   reference.network_values(x, network, 2.0))
    with pytest.raises(ValueError, match="`k` must be >= 1"):
        reference.topk_columns(P, 0)
    with pytest.raises(TypeError, match="`x` must be a torch.Tensor"):
        reference.network_values([1.0, 2.0])
