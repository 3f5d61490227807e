"""Tests of diffalg.sorting.sinkhorn (Cuturi, Teboul, Vert, NeurIPS 2019)."""
import pytest
import torch

from diffalg.sorting import permutation_targets, sinkhorn_plan, sinkhorn_sort


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)



@pytest.mark.parametrize("epsilon,iterations,atol", [(1e-1, 200, 1e-10), (1e-2, 1000, 1e-3)])
def test_plan_marginals(epsilon, iterations, atol, device):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, generator=gen, dtype=torch.float64).to(device)
    plan = sinkhorn_plan(x, epsilon, iterations)
    ones = torch.ones(3, 7, dtype=torch.float64, device=device)
    torch.testing.assert_close(plan.sum(-2), ones)                 # columns: exact
    torch.testing.assert_close(plan.sum(-1), ones, atol=atol, rtol=0)
    assert (plan >= 0).all()
    # the row marginals converge with the iterations (slowly for a small epsilon)
    early = (sinkhorn_plan(x, epsilon, iterations // 10).sum(-1) - 1).abs().max()
    assert (plan.sum(-1) - 1).abs().max() <= early


def test_converges_to_hard_permutation():
    gen = torch.Generator().manual_seed(1)
    jitter = 0.1 * torch.rand(1, 6, generator=gen, dtype=torch.float64)
    x = torch.randperm(6, generator=gen).double().view(1, 6) + jitter
    hard = permutation_targets(x).double()
    errors = [(sinkhorn_plan(x, eps, 2000) - hard).abs().max().item()
              for eps in (1e-1, 1e-2, 1e-3)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-2
    out = sinkhorn_sort(x, 1e-3, 2000)
    torch.testing.assert_close(out.values, x.sort(-1).values, atol=1e-2, rtol=0)
    torch.testing.assert_close(out.ranks, (x.argsort(-1).argsort(-1) + 1).double(),
                               atol=1e-2, rtol=0)


def test_gradcheck(device):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: sinkhorn_sort(v, 0.1, 20).values, (x,))
    assert torch.autograd.gradcheck(lambda v: sinkhorn_sort(v, 0.05, 20).ranks, (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1,), (2,), (5,), (2, 3, 6)])
def test_shapes_dtype_device(shape, dtype, device):
    x = torch.randn(shape, dtype=dtype, device=device)
    before = x.clone()
    out = sinkhorn_sort(x, 0.05, 50)
    n = shape[-1]
    assert out.values.shape == x.shape and out.ranks.shape == x.shape
    assert out.permutation.shape == (*shape, n)
    for t in out:
        assert t.dtype == dtype and t.device == x.device and t.isfinite().all()
    assert ((out.ranks >= 1 - 1e-5) & (out.ranks <= n + 1e-5)).all()
    assert torch.equal(x, before)


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_ties_and_large_magnitudes_are_finite(scale):
    x = (torch.tensor([[1.0, 1.0, -1.0, 2.0], [0.0, 0.0, 0.0, 0.0]]) * scale).requires_grad_()
    out = sinkhorn_sort(x, 1e-2)
    grad, = torch.autograd.grad(out.values.sum() + out.ranks.pow(2).sum(), x)
    assert grad.isfinite().all()
    torch.testing.assert_close(out.ranks[1], torch.full((4,), 2.5), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.ranks[0, :2], torch.full((2,), 2.5), atol=1e-3, rtol=0)


def test_bad_input():
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn_sort(x, epsilon=0.0)
    with pytest.raises(ValueError, match="iterations"):
        sinkhorn_sort(x, iterations=0)
    with pytest.raises(TypeError, match="iterations"):
        sinkhorn_plan(x, iterations=2.5)
    with pytest.raises(ValueError, match="values"):
        sinkhorn_sort(torch.tensor(1.0))
    with pytest.raises(TypeError, match="values"):
        sinkhorn_sort(torch.arange(4))
    with pytest.raises(ValueError, match="values"):
        sinkhorn_sort(torch.tensor([1.0, float("inf")]))
