"diffalg.smoothing second order: the double backward of smooth against the reference, closed forms."
import pytest
import torch

from diffalg.distributions import get_distribution
from diffalg.newton import HessianNewtonLoss, newton_step
from diffalg.smoothing import (SECOND_ORDER, Smoothed, estimate_hessian, estimate_jacobian,
                               hessian_weights, score, score_derivative, smooth)


def gen(seed, device="cpu"):
    return torch.Generator(device=device).manual_seed(seed)


def sort_values(z):
    return torch.sort(z, -1).values


def double_backward_hessian(f, x, g, sigma, samples, name, vr, seed):
    "The Hessian of <g, f_sigma> at x (n,), column by column from smooth's double backward."
    xg = x.clone().requires_grad_()
    y = smooth(f, xg, sigma, samples, name, vr, batch_dims=0, second_order=True,
               generator=gen(seed, x.device))
    grad, = torch.autograd.grad(y, xg, g, create_graph=True)
    return torch.stack([torch.autograd.grad(grad[j], xg, retain_graph=True)[0]
                        for j in range(len(x))])


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_score_derivative_is_the_derivative_of_the_score(name):
    e = torch.linspace(-6, 6, 121, dtype=torch.float64, requires_grad=True)
    d, = torch.autograd.grad(score(e, name).sum(), e)
    torch.testing.assert_close(score_derivative(e.detach(), name), d)
    w = hessian_weights(e.detach().reshape(-1, 1), name)            # (S, 1, 1): mu''/mu
    # E[mu''/mu] = 0 under mu: checked on a fine quantile grid
    from diffalg.smoothing import inverse_cdf
    u = (torch.arange(1, 40001, dtype=torch.float64) - 0.5) / 40000
    ww = hessian_weights(inverse_cdf(u, name).reshape(-1, 1), name)
    assert w.shape == (121, 1, 1) and abs(ww.mean().item()) < 1e-3


@pytest.mark.parametrize("vr", ["", "loo", "qmc", "qmc+loo"])
@pytest.mark.parametrize("name", SECOND_ORDER)
def test_double_backward_equals_reference(name, vr, device):
    torch.manual_seed(0)
    x = torch.randn(5, dtype=torch.float64, device=device)
    g = torch.randn(5, dtype=torch.float64, device=device)
    H = double_backward_hessian(sort_values, x, g, 0.3, 48, name, vr, seed=7)
    ref = estimate_hessian(sort_values, x.cpu(), 0.3, 48, name, loo="loo" in vr,
                           qmc="qmc" in vr, generator=gen(7))
    if device.type == "cpu":                         # the same samples: equal to rounding
        torch.testing.assert_close(H, torch.einsum("k,kij->ij", g, ref))
    assert H.device == x.device and H.dtype == x.dtype
    torch.testing.assert_close(H, H.T)               # symmetric weights, symmetric estimate


@pytest.mark.parametrize("name", ["gaussian", "logistic"])
def test_quadratic_keeps_its_hessian(name):
    a = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = smooth(lambda z: (z @ a) ** 2, x, 0.3, 2 ** 14, name, "qmc+loo", second_order=True,
               generator=gen(0))
    grad, = torch.autograd.grad(y.sum(), x, create_graph=True)
    torch.testing.assert_close(grad, 2 * (x.detach() @ a)[:, None] * a, atol=0.1, rtol=0.05)
    H = torch.stack([torch.autograd.grad(grad[:, j].sum(), x, retain_graph=True)[0]
                     for j in range(3)], -1)
    torch.testing.assert_close(H, 2 * torch.outer(a, a).expand(4, 3, 3), atol=0.3, rtol=0.05)


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_smoothed_step_second_derivative(name):
    x = torch.tensor([0.3, -0.2], dtype=torch.float64)
    H = estimate_hessian(lambda z: (z[:, :1] > 0).double(), x, 0.5, 2 ** 14, name, loo=True,
                         qmc=True, generator=gen(0))
    x1 = x[0].clone().requires_grad_()
    d1, = torch.autograd.grad(get_distribution(name).cdf(x1 / 0.5), x1, create_graph=True)
    d2, = torch.autograd.grad(d1, x1)
    torch.testing.assert_close(H[0, 0, 0], d2, atol=0.02, rtol=0)


def test_baseline_reduces_hessian_variance():
    x = torch.tensor([0.2, 0.1], dtype=torch.float64)
    f = lambda z: (z[:, :1] > 0).double() + 3.0                      # noqa: E731  a large level
    plain = torch.stack([estimate_hessian(f, x, 0.5, 64, generator=gen(s))[0, 0, 0]
                         for s in range(200)])
    loo = torch.stack([estimate_hessian(f, x, 0.5, 64, loo=True, generator=gen(s))[0, 0, 0]
                       for s in range(200)])
    assert plain.var() > 5 * loo.var()


def test_hessian_newton_loss_through_smooth_equals_the_formula():
    "Newton step of a linear loss <a, E f(y)> = (sum_k a_k H_k + lam I)^-1 (a^T J), same samples."
    torch.manual_seed(1)
    y = torch.randn(1, 4, dtype=torch.float64)
    a = torch.randn(4, dtype=torch.float64)

    def loss(z):
        p = smooth(sort_values, z, 0.4, 64, variance_reduction="loo", second_order=True,
                   generator=gen(3))
        return p @ a
    d = newton_step(y, loss, 2.0, method="exact")
    J = estimate_jacobian(sort_values, y[0], 0.4, 64, loo=True, generator=gen(3))
    H = torch.einsum("k,kij->ij", a, estimate_hessian(sort_values, y[0], 0.4, 64, loo=True,
                                                      generator=gen(3)))
    H = (H + H.T) / 2
    expected = torch.linalg.solve(H + 2.0 * torch.eye(4, dtype=torch.float64), a @ J)
    torch.testing.assert_close(d[0], expected)
    out = HessianNewtonLoss(loss, tikhonov=2.0, method="exact")(y.clone().requires_grad_())
    assert torch.isfinite(out)


def test_first_order_refuses_a_second_derivative():
    x = torch.randn(3, 4, requires_grad=True)
    y = smooth(sort_values, x, 0.3, 16)
    grad, = torch.autograd.grad(y.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="cannot be differentiated again; pass second_order"):
        grad.sum().backward()
    x.grad = None
    smooth(sort_values, x, 0.3, 16).sum().backward()                 # one backward is fine
    assert x.grad is not None and x.grad.shape == x.shape


def test_second_order_inputs_left_alone_and_module():
    x = torch.randn(2, 5)
    before = x.clone()
    m = Smoothed(sort_values, 0.2, 16, "logistic", second_order=True)
    xg = x.clone().requires_grad_()
    grad, = torch.autograd.grad(m(xg, gen(0)).sum(), xg, create_graph=True)
    grad.pow(2).sum().backward()
    assert torch.equal(x, before) and xg.grad.shape == x.shape
    assert torch.isfinite(xg.grad).all()


@pytest.mark.parametrize("name", ["laplace", "uniform", "triangular", "reciprocal"])
def test_second_order_needs_a_smooth_full_density(name):
    with pytest.raises(ValueError, match="`second_order=True` needs a twice differentiable"):
        smooth(sort_values, torch.randn(5), 0.1, 8, name, second_order=True)
    with pytest.raises(ValueError, match="`distribution` must be one of"):
        score_derivative(torch.randn(3), name)


def test_second_order_type():
    with pytest.raises(TypeError, match="`second_order` must be a bool"):
        smooth(sort_values, torch.randn(5), 0.1, 8, second_order="yes")
    with pytest.raises(TypeError, match="`second_order` must be a bool"):
        Smoothed(sort_values, 0.1, 8, second_order=1)
