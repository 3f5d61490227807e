"diffalg.smoothing: unbiasedness against closed forms, variance reduction, agreement, bad input."
import math

import pytest
import torch

from diffalg.distributions import get_distribution
from diffalg.smoothing import NOISE, Smoothed, estimate_jacobian, inverse_cdf, score, smooth

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]
VRS = ["", "loo", "antithetic", "qmc", "qmc+antithetic", "qmc+loo"]
LIGHT = ["gaussian", "logistic", "laplace", "triangular", "uniform"]   # finite mean


def step(z):
    return (z > 0).to(z.dtype)


def sort_values(z):
    return torch.sort(z, -1).values


def gen(seed, device="cpu"):
    return torch.Generator(device=device).manual_seed(seed)


@pytest.mark.parametrize("name", sorted(NOISE))
def test_noise_moments(name):
    u = (torch.arange(1, 20001, dtype=torch.float64) - 0.5) / 20000
    e = inverse_cdf(u, name)
    torch.testing.assert_close(get_distribution(name).cdf(e), u)
    if name != "uniform":       # E[psi] = 0 and E[e psi] = 1 (integration by parts)
        assert abs(score(e, name).mean().item()) < 1e-6
        assert abs((e * score(e, name)).mean().item() - 1) < 0.05


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(set(NOISE) - {"uniform"}))
def test_expected_step_is_the_cdf(name, device):
    # E[step(x + sigma e)] = F(x / sigma); its derivative is mu(x / sigma) / sigma
    sigma = 0.5
    x = torch.tensor([-0.4, 0.0, 0.3], dtype=torch.float64, device=device).requires_grad_()
    y = smooth(step, x, sigma, 2 ** 14, name, "qmc+antithetic", batch_dims=1,
               generator=gen(0, device))
    d = get_distribution(name)
    torch.testing.assert_close(y, d.cdf(x.detach() / sigma), atol=0.02, rtol=0)
    y.sum().backward()
    torch.testing.assert_close(x.grad, d.pdf(x.detach() / sigma) / sigma, atol=0.06, rtol=0)


def test_uniform_step_uses_the_boundary_term():
    x = torch.tensor([[-0.1], [0.05], [0.4]], dtype=torch.float64).requires_grad_()
    y = smooth(step, x, 0.5, 64, "uniform", generator=gen(0))
    y.sum().backward()
    torch.testing.assert_close(x.grad.squeeze(), torch.tensor([2.0, 2.0, 0.0],
                                                              dtype=torch.float64))


@pytest.mark.parametrize("device", DEVICES)
def test_expected_sort_of_two_numbers(device):
    sigma = 0.4
    pairs = torch.tensor([[0.0, 0.3], [1.0, -0.5], [0.2, 0.2]], dtype=torch.float64,
                         device=device)
    x = pairs.clone().requires_grad_()
    y = smooth(sort_values, x, sigma, 2 ** 14, variance_reduction="qmc+antithetic",
               generator=gen(1, device))
    s = sigma * math.sqrt(2)                     # x2 - x1 + noise difference ~ N(d, s^2)
    d = pairs[:, 1] - pairs[:, 0]
    t = d / s
    Phi = 0.5 * (1 + torch.erf(t / math.sqrt(2)))
    phi = torch.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    expected_min = pairs[:, 0] - s * (phi - t * (1 - Phi))       # E[x1 + min(0, D)]
    torch.testing.assert_close(y[:, 0], expected_min, atol=0.01, rtol=0)
    y[:, 0].sum().backward()
    torch.testing.assert_close(x.grad, torch.stack([Phi, 1 - Phi], -1), atol=0.03, rtol=0)


# The triangular score has E[psi^2] = inf: no tolerance holds without antithetic pairs, so
# triangular is checked with the reductions that pair its samples only.
LINEAR_CASES = [(name, vr) for name in LIGHT for vr in VRS
                if name != "triangular" or "antithetic" in vr]


@pytest.mark.parametrize("name, vr", LINEAR_CASES)
def test_linear_function(name, vr):
    A = torch.randn(3, 4, dtype=torch.float64, generator=gen(2))
    x = torch.randn(2, 4, dtype=torch.float64, generator=gen(3)).requires_grad_()
    y = smooth(lambda z: z @ A.T, x, 0.3, 2 ** 12, name, vr or None, generator=gen(4))
    torch.testing.assert_close(y, x.detach() @ A.T, atol=0.05, rtol=0)
    g = torch.randn(2, 3, dtype=torch.float64, generator=gen(5))
    y.backward(g)
    torch.testing.assert_close(x.grad, g @ A, atol=0.25 * (g @ A).abs().max().item(), rtol=0)


@pytest.mark.parametrize("name", sorted(NOISE))
@pytest.mark.parametrize("vr", VRS)
def test_package_equals_reference(name, vr):
    x = torch.randn(5, dtype=torch.float64, generator=gen(6))
    g = torch.randn(5, dtype=torch.float64, generator=gen(7))
    xg = x.clone().requires_grad_()
    smooth(sort_values, xg, 0.2, 16, name, vr or None, generator=gen(8)).backward(g)
    opts = {k: True for k in vr.split("+") if k}
    J = estimate_jacobian(sort_values, x, 0.2, 16, name, generator=gen(8), **opts)
    torch.testing.assert_close(xg.grad, g @ J)


def permutation(z):
    return torch.nn.functional.one_hot(z.argsort(-1), z.shape[-1]).transpose(-2, -1)


def _variance(vr, samples=32, copies=400, seed=0):
    "Total gradient variance on a sorting problem whose output level is far from 0."
    x = torch.tensor([0.1, -0.3, 0.25, 0.05, -0.1], dtype=torch.float64)
    g = 1 + 0.3 * torch.randn(5, 5, dtype=torch.float64, generator=gen(42))   # level ~5
    xb = x.expand(copies, 5).clone().requires_grad_()
    y = smooth(permutation, xb, 0.2, samples, "gaussian", vr or None, generator=gen(seed))
    y.backward(g.expand(copies, 5, 5))
    return xb.grad.var(0).sum().item()


@pytest.mark.parametrize("device", DEVICES)
def test_a_map_is_one_problem_with_batch_dims_1(device):
    """f couples all cells of a (H, W) map: every output cell is 1{sum of the map > 0}. With
    batch_dims=1 the gradient of each cell is the closed form H W phi(m / s) / s, s = sigma sqrt(HW)
    (every output cell moves with every input cell); with the default batch_dims = x.dim() - 1
    each row is a problem of its own and sees only its W outputs: 1/H of it."""
    H, W, sigma = 3, 4, 0.5
    x = torch.tensor([[0.3] * W, [-0.2] * W, [0.1] * W], dtype=torch.float64, device=device)
    x = torch.stack([x, -x])                                       # (2, H, W): two maps
    f = lambda z: (z.sum((-2, -1), keepdim=True) > 0).to(z.dtype).expand(z.shape)   # noqa: E731
    s = sigma * math.sqrt(H * W)
    m = x.sum((-2, -1))
    pdf = torch.exp(-0.5 * (m / s) ** 2) / math.sqrt(2 * math.pi)
    expected = (H * W * pdf / s)[:, None, None].expand(x.shape)
    grads = {}
    for batch_dims in (1, None):
        xg = x.clone().requires_grad_()
        y = smooth(f, xg, sigma, 2 ** 16, variance_reduction="loo", batch_dims=batch_dims,
                   generator=gen(5, device))
        y.sum().backward()
        grads[batch_dims] = xg.grad
    torch.testing.assert_close(grads[1], expected, atol=0.1 * expected.max().item(), rtol=0)
    torch.testing.assert_close(grads[None], expected / H, atol=0.1 * expected.max().item() / H,
                               rtol=0)


@pytest.mark.parametrize("vr", ["loo", "antithetic", "qmc+antithetic"])
def test_variance_reduction_reduces_variance(vr):
    plain = [_variance("", seed=s) for s in range(3)]
    reduced = [_variance(vr, seed=s) for s in range(3)]
    assert max(reduced) < min(plain) / 2, (plain, reduced)


def test_all_estimators_agree_with_many_samples():
    x = torch.tensor([[0.1, -0.3, 0.25, 0.05]], dtype=torch.float64)
    grads = {}
    for vr in VRS:
        xg = x.clone().requires_grad_()
        y = smooth(sort_values, xg, 0.3, 2 ** 14, variance_reduction=vr or None,
                   generator=gen(9))
        y.backward(torch.tensor([[1.0, -1.0, 2.0, 0.5]], dtype=torch.float64))
        grads[vr] = xg.grad
    ref = grads["qmc+antithetic"]
    for vr, grad in grads.items():
        torch.testing.assert_close(grad, ref, atol=0.1, rtol=0, msg=vr)


def test_same_generator_same_result_and_batch_independence():
    x = torch.randn(3, 4, dtype=torch.float64, generator=gen(10))
    a = smooth(sort_values, x, 0.1, 8, generator=gen(11))
    b = smooth(sort_values, x, 0.1, 8, generator=gen(11))
    assert torch.equal(a, b)
    m = Smoothed(sort_values, 0.1, 8, variance_reduction="qmc")
    assert m(x, gen(1)).shape == (3, 4) and "samples=8" in repr(m)


def test_float32_and_integer_outputs():
    x = torch.randn(2, 5, requires_grad=True)
    y = smooth(lambda z: z.argsort(-1), x, 0.1, 16)
    assert y.dtype == torch.float32
    y.sum().backward()
    assert x.grad.shape == x.shape and torch.isfinite(x.grad).all()


def test_bad_input():
    x = torch.randn(4, 5)
    with pytest.raises(ValueError, match="`sigma` must be finite and > 0"):
        smooth(sort_values, x, -1.0)
    with pytest.raises(TypeError, match="`sigma` must be a real number"):
        smooth(sort_values, x, torch.tensor(0.1))
    with pytest.raises(ValueError, match="`samples` must be >= 2 for the leave-one-out"):
        smooth(sort_values, x, 0.1, samples=1, variance_reduction="loo")
    smooth(sort_values, x, 0.1, samples=1, variance_reduction=None)       # fine without
    with pytest.raises(ValueError, match="`samples` must be even"):
        smooth(sort_values, x, 0.1, samples=5, variance_reduction="antithetic")
    with pytest.raises(ValueError, match="`variance_reduction` must be one of"):
        smooth(sort_values, x, 0.1, variance_reduction="importance")
    with pytest.raises(TypeError, match="`variance_reduction` must be None"):
        smooth(sort_values, x, 0.1, variance_reduction=3)
    with pytest.raises(ValueError, match="`estimator` must be one of"):
        smooth(sort_values, x, 0.1, estimator="reinforce")
    with pytest.raises(ValueError, match="`distribution` must be one of"):
        smooth(sort_values, x, 0.1, distribution="student")
    with pytest.raises(ValueError, match="has no density usable"):
        smooth(sort_values, x, 0.1, distribution="logistic_art")
    with pytest.raises(ValueError, match="`f` must return a tensor of shape"):
        smooth(lambda z: z[0], x, 0.1)
    with pytest.raises(TypeError, match="`f` must return a torch.Tensor"):
        smooth(lambda z: 1.0, x, 0.1)
    with pytest.raises(TypeError, match="`x` must be a floating-point tensor"):
        smooth(sort_values, torch.ones(3, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match="`batch_dims` must be <= 2"):
        smooth(sort_values, x, 0.1, batch_dims=3)
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator"):
        smooth(sort_values, x, 0.1, generator=0)
    with pytest.raises(ValueError, match="`sigma` must be finite and > 0"):
        Smoothed(sort_values, 0.0)


# --- the control variate: a differentiable relative h of f (REBAR / RELAX with a relaxation) ---

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("vr", ["", "loo", "antithetic", "qmc+loo"])
def test_control_variate_equal_to_f_is_exact_for_linear_f(vr, device):
    A = torch.randn(5, 3, dtype=torch.float64, generator=gen(0)).to(device)
    lin = lambda z: z @ A                                                 # noqa: E731
    x = torch.randn(4, 5, dtype=torch.float64, generator=gen(1)).to(device)
    xg = x.clone().requires_grad_()
    y = smooth(lin, xg, 0.3, 8, variance_reduction=vr or None, control_variate=lin,
               generator=gen(2, device))
    y.backward(torch.ones(4, 3, dtype=torch.float64, device=device))
    torch.testing.assert_close(xg.grad, A.sum(1).expand(4, 5))
    assert torch.equal(xg.detach(), x)                                     # input untouched


@pytest.mark.parametrize("name", ["gaussian", "logistic", "cauchy"])
def test_control_variate_keeps_the_expected_step_the_density(name):
    # E[step(x + sigma e)] has derivative mu(x / sigma) / sigma whatever the control variate
    sigma, x = 0.5, torch.tensor([-0.4, 0.0, 0.3], dtype=torch.float64)
    soft = lambda z: torch.sigmoid(z / 0.2)                               # noqa: E731
    xg = x.clone().requires_grad_()
    smooth(step, xg, sigma, 2 ** 14, name, "qmc+loo", batch_dims=1, generator=gen(0),
           control_variate=soft).sum().backward()
    expected = get_distribution(name).pdf(x / sigma) / sigma
    torch.testing.assert_close(xg.grad, expected, atol=0.03, rtol=0)


def test_control_variate_reduces_the_variance_of_a_quantizer():
    quant = lambda z: torch.floor(4 * z) / 4                              # noqa: E731
    x = torch.tensor([-0.4, 0.0, 0.3], dtype=torch.float64)
    for seed in range(3):
        grads = []
        for h in (None, lambda z: z):
            xb = x.expand(300, 3).clone().requires_grad_()
            smooth(quant, xb, 0.5, 32, control_variate=h, batch_dims=2,
                   generator=gen(seed)).sum().backward()
            grads.append(xb.grad)
        torch.testing.assert_close(grads[1].mean(0), torch.ones(3, dtype=torch.float64),
                                   atol=0.02, rtol=0)
        assert grads[1].var(0).sum() < grads[0].var(0).sum() / 20


def test_control_variate_float32_module_and_bad_input():
    x = torch.randn(3, 4, requires_grad=True)
    soft_sort = lambda z: (z.unsqueeze(-1) - z.unsqueeze(-2)).sigmoid().sum(-2)   # noqa: E731
    m = Smoothed(lambda z: z.argsort(-1).argsort(-1), 0.2, 16, control_variate=soft_sort)
    m(x, gen(0)).sum().backward()
    assert x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
    with pytest.raises(TypeError, match="`control_variate` must be None or a callable"):
        smooth(sort_values, x, 0.1, control_variate="relaxed")
    with pytest.raises(ValueError, match="`control_variate` needs a differentiable density"):
        smooth(sort_values, x, 0.1, distribution="laplace", control_variate=sort_values)
    with pytest.raises(ValueError, match="`control_variate` needs a differentiable density"):
        smooth(sort_values, x, 0.1, second_order=True, control_variate=sort_values)
    with pytest.raises(ValueError, match="`control_variate` must return the shape"):
        smooth(sort_values, x, 0.1, control_variate=lambda z: z[..., :1]).sum().backward()
    with pytest.raises(TypeError, match="`control_variate` must be differentiable"):
        smooth(sort_values, x, 0.1, control_variate=lambda z: z.detach() * 2).sum().backward()
