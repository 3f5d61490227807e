"""Tests of diffalg.sorting.projection (fast soft sort and rank, Blondel et al., ICML 2020)."""
import itertools
import math

import numpy as np
import pytest
import torch

from diffalg.sorting import fast_soft_rank, fast_soft_sort

REGS = ("l2", "kl")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)



def _check_projection(mu, z, w, log_domain):
    """Brute force: `mu` is the (Euclidean, or KL when `log_domain`) projection of `z` onto the
    permutahedron of `w` iff it lies in it and <d, nu - mu> <= 0 for every vertex nu (every
    permutation of w), with d = z - mu (Euclidean) or z - log mu (KL)."""
    mu, z, w = (np.asarray(a, dtype=np.float64) for a in (mu, z, w))
    d = z - (np.log(mu) if log_domain else mu)
    scale = 1.0 + np.abs(w).max() + np.abs(z).max()
    assert abs(mu.sum() - w.sum()) < 1e-9 * scale
    prefix_mu = np.cumsum(np.sort(mu)[::-1])
    prefix_w = np.cumsum(np.sort(w)[::-1])
    assert np.all(prefix_mu <= prefix_w + 1e-9 * scale)
    vertices = np.array(list(itertools.permutations(w)))
    assert np.max((vertices - mu) @ d) <= 1e-8 * scale * (1 + np.abs(d).max())


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6])
@pytest.mark.parametrize("strength", [0.1, 1.0, 10.0])
def test_projection_brute_force(n, strength):
    gen = torch.Generator().manual_seed(10 * n + int(strength))
    x = torch.randn(4, n, generator=gen, dtype=torch.float64) * 2
    x[0, : n // 2] = x[0, n - n // 2:]                    # a row with ties
    rho = torch.arange(n, 0, -1, dtype=torch.float64)
    for row in x:
        xr = row.unsqueeze(0)
        sort_l2 = fast_soft_sort(xr, strength, "l2", "descending")[0]
        _check_projection(sort_l2, rho / strength, row, log_domain=False)
        sort_kl = fast_soft_sort(xr, strength, "kl", "descending")[0]
        _check_projection(sort_kl.exp(), rho / strength, row.exp(), log_domain=True)
        _check_projection(fast_soft_rank(xr, strength, "l2")[0], row / strength, rho, False)
        _check_projection(fast_soft_rank(xr, strength, "kl")[0], row / strength, rho, True)


@pytest.mark.parametrize("reg", REGS)
def test_ascending_is_negated_descending(reg):
    x = torch.randn(3, 7, dtype=torch.float64)
    torch.testing.assert_close(fast_soft_sort(x, 0.5, reg),
                               -fast_soft_sort(-x, 0.5, reg, "descending"))
    torch.testing.assert_close(fast_soft_rank(x, 0.5, reg),
                               fast_soft_rank(-x, 0.5, reg, "descending"))


@pytest.mark.parametrize("reg", REGS)
def test_against_torchsort(reg):
    torchsort = pytest.importorskip("torchsort")
    x = torch.randn(8, 12, dtype=torch.float64, requires_grad=True)
    for ours, theirs in ((fast_soft_sort, torchsort.soft_sort),
                         (fast_soft_rank, torchsort.soft_rank)):
        for strength in (0.1, 1.0, 3.0):
            a = ours(x, strength, reg)
            b = theirs(x, regularization=reg, regularization_strength=strength)
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
            cot = torch.randn_like(a)
            ga, = torch.autograd.grad(a, x, cot)
            gb, = torch.autograd.grad(b, x, cot)
            torch.testing.assert_close(ga, gb, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("direction", ["ascending", "descending"])
def test_gradcheck(reg, direction, device):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 6, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    for op in (fast_soft_sort, fast_soft_rank):
        for strength in (0.3, 2.0):
            assert torch.autograd.gradcheck(lambda v: op(v, strength, reg, direction), (x,))


@pytest.mark.parametrize("reg", REGS)
def test_limits(reg):
    x = torch.randn(5, 9, dtype=torch.float64)
    hard_rank = (x.argsort(-1).argsort(-1) + 1).to(x.dtype)
    torch.testing.assert_close(fast_soft_sort(x, 1e-4, reg), x.sort(-1).values)
    torch.testing.assert_close(fast_soft_rank(x, 1e-4, reg), hard_rank)
    big = fast_soft_sort(x, 1e9, reg)
    expected = (x.mean(-1, keepdim=True) if reg == "l2"
                else math.log(9) - (-x).logsumexp(-1, keepdim=True))
    torch.testing.assert_close(big, expected.expand_as(x))
    if reg == "l2":
        torch.testing.assert_close(fast_soft_rank(x, 1e9, reg), torch.full_like(x, 5.0))


@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("scale", [1.0, 1e4, 1e8])
def test_ties_and_large_magnitudes_are_finite(reg, scale, device):
    x = torch.tensor([[1.0, 1.0, 1.0, -2.0, -2.0, 3.0], [0.0] * 6], dtype=torch.float64)
    x = (x * scale).to(device).requires_grad_(True)
    for op in (fast_soft_sort, fast_soft_rank):
        for strength in (1e-3, 1.0, 1e3):
            out = op(x, strength, reg)
            grad, = torch.autograd.grad((out * torch.arange(6.0, device=device)).sum(), x)
            assert out.isfinite().all() and grad.isfinite().all()
    ranks = fast_soft_rank(x.detach(), 1e-3, reg)
    torch.testing.assert_close(ranks[1], torch.full_like(ranks[1], 3.5))   # all tied


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (4, 3), (256, 100)])
def test_shapes_dtype_device(shape, dtype, device):
    x = torch.randn(shape, dtype=dtype, device=device)
    before = x.clone()
    for op in (fast_soft_sort, fast_soft_rank):
        for reg in REGS:
            out = op(x, 0.5, reg)
            assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    torch.testing.assert_close(fast_soft_rank(x, 0.5).sum(-1),
                               torch.full(shape[:1], shape[1] * (shape[1] + 1) / 2,
                                          dtype=dtype, device=device))
    assert torch.equal(x, before)                               # inputs not modified


def test_large_batch_runs():
    x = torch.randn(256, 100, requires_grad=True)
    fast_soft_rank(x, 1.0, "kl").sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.shape == x.shape


def test_bad_input():
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match="regularization"):
        fast_soft_sort(x, regularization="l1")
    with pytest.raises(ValueError, match="regularization_strength"):
        fast_soft_rank(x, 0.0)
    with pytest.raises(ValueError, match="regularization_strength"):
        fast_soft_sort(x, -1.0)
    with pytest.raises(ValueError, match="values"):
        fast_soft_sort(torch.randn(4))
    with pytest.raises(ValueError, match="values"):
        fast_soft_rank(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="direction"):
        fast_soft_rank(x, direction="up")
    with pytest.raises(TypeError, match="values"):
        fast_soft_sort(torch.arange(4).view(2, 2))
    with pytest.raises(TypeError, match="values"):
        fast_soft_sort([[1.0, 2.0]])
    with pytest.raises(ValueError, match="values"):
        fast_soft_sort(torch.tensor([[1.0, float("nan")]]))
