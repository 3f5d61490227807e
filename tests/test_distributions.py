"Properties of every distribution in diffalg.distributions, on CPU and (when present) CUDA."
import math

import pytest
import torch

from diffalg import distributions as D
from diffalg.distributions import cdf, get_distribution, pdf, relaxed_step

NAMES = D.distribution_names()
SYMMETRIC = NAMES  # all registered distributions are symmetric about 0


def test_registry_has_the_papers_distributions():
    for name in ("logistic", "logistic_art", "gaussian", "cauchy", "reciprocal", "optimal",
                 "uniform", "laplace", "triangular"):
        assert name in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_cdf_is_a_cdf(name, device):
    x = torch.linspace(-50, 50, 20001, dtype=torch.float64, device=device)
    F = cdf(x, name)
    assert F.device == x.device and F.dtype == x.dtype
    assert bool(((F >= 0) & (F <= 1)).all())
    assert bool((F[1:] >= F[:-1]).all()), "CDF must be non-decreasing"
    ends = cdf(torch.tensor([-math.inf, math.inf], dtype=torch.float64, device=device), name)
    assert ends.tolist() == [0.0, 1.0]
    # far-out values approach the limits
    far = cdf(torch.tensor([-1e9, 1e9], dtype=torch.float64, device=device), name)
    assert far[0] < 1e-6 and far[1] > 1 - 1e-6


@pytest.mark.parametrize("name", SYMMETRIC)
def test_symmetry(name, device):
    x = torch.linspace(-20, 20, 4001, dtype=torch.float64, device=device)
    torch.testing.assert_close(cdf(x, name) + cdf(-x, name), torch.ones_like(x),
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(pdf(x, name), pdf(-x, name), atol=1e-12, rtol=0)
    zero = torch.zeros(1, dtype=torch.float64, device=device)
    assert cdf(zero, name).item() == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_density_is_derivative_of_cdf(name, device):
    # avoid the kinks of uniform (+-1/2), optimal (+-1/4) and the ART spike at 0
    x = torch.cat([torch.linspace(-8, -0.6, 300), torch.linspace(0.6, 8, 300),
                   torch.tensor([-0.3, -0.1, 0.1, 0.2, 0.3])])
    x = x.to(device=device, dtype=torch.float64)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(cdf(x, name).sum(), x)
    torch.testing.assert_close(grad, pdf(x.detach(), name), atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("uniform",)])
def test_density_integrates_to_one(name):
    # trapezoid rule on a fine grid plus the analytic tail mass 1 - F(L) + F(-L)
    L = 200.0
    x = torch.linspace(-L, L, 2_000_000, dtype=torch.float64)  # even: 0 is no grid point (ART)
    mass = torch.trapezoid(pdf(x, name), x).item()
    ends = cdf(torch.tensor([-L, L], dtype=torch.float64), name)
    tails = 1 - ends[1].item() + ends[0].item()
    assert mass + tails == pytest.approx(1.0, abs=5e-3 if name == "logistic_art" else 1e-6)


# Reference values computed by hand from the published formulas (float64).
REFERENCE = {
    # name: [(x, F(x), f(x)), ...]
    "logistic": [(0.0, 0.5, 0.25),
                 (2.0, 1 / (1 + math.exp(-2)), math.exp(-2) / (1 + math.exp(-2)) ** 2)],
    "gaussian": [(0.0, 0.5, 1 / math.sqrt(2 * math.pi)),
                 (1.0, 0.8413447460685429, math.exp(-0.5) / math.sqrt(2 * math.pi))],
    "cauchy": [(0.0, 0.5, 1 / math.pi), (1.0, 0.75, 1 / (2 * math.pi)),
               (-3.0, 0.5 - math.atan(3) / math.pi, 1 / (10 * math.pi))],
    "reciprocal": [(0.0, 0.5, 0.25), (2.0, 0.5 * (2 / 4 + 1), 1 / 16),
                   (-6.0, 0.5 * (-6 / 8 + 1), 1 / 64)],
    "optimal": [(0.0, 0.5, 1.0), (0.25, 0.75, 1.0), (0.1, 0.6, 1.0), (1.0, 1 - 1 / 16, 1 / 16),
                (-2.0, 1 / 32, 1 / 64)],
    "uniform": [(0.0, 0.5, 1.0), (0.25, 0.75, 1.0), (0.7, 1.0, 0.0), (-0.7, 0.0, 0.0)],
    "triangular": [(0.0, 0.5, 1.0), (0.5, 0.875, 0.5), (-0.25, 0.28125, 0.75), (1.5, 1.0, 0.0),
                   (-1.0, 0.0, 0.0)],
    "laplace": [(0.0, 0.5, 0.5), (1.0, 1 - 0.5 * math.exp(-1), 0.5 * math.exp(-1)),
                (-2.0, 0.5 * math.exp(-2), 0.5 * math.exp(-2))],
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_formulas_at_fixed_points(name, device):
    pts = REFERENCE[name]
    x = torch.tensor([p[0] for p in pts], dtype=torch.float64, device=device)
    expected_cdf = torch.tensor([p[1] for p in pts], dtype=torch.float64)
    expected_pdf = torch.tensor([p[2] for p in pts], dtype=torch.float64)
    torch.testing.assert_close(cdf(x, name).cpu(), expected_cdf, atol=1e-12, rtol=0)
    torch.testing.assert_close(pdf(x, name).cpu(), expected_pdf, atol=1e-12, rtol=0)


@pytest.mark.parametrize("art_lambda", [0.0, 0.25, 0.5])
def test_logistic_art_matches_the_dsn_formula(art_lambda, device):
    # DSN (ICML 2021): alpha = sigmoid(beta * x / (|x| + eps)^lambda), the steepness applied after
    # the replacement
    x = torch.tensor([-3.0, -0.2, 0.01, 0.5, 4.0], dtype=torch.float64, device=device)
    beta = 7.0
    expected = torch.sigmoid(beta * x / (x.abs() + 1e-10) ** art_lambda)
    for name in ("logistic_art", "logistic_phi"):
        torch.testing.assert_close(relaxed_step(x, beta, name, art_lambda=art_lambda), expected)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "logistic_art"])
def test_step_is_cdf_of_scaled_input(name, device):
    x = torch.randn(100, dtype=torch.float64, device=device)
    torch.testing.assert_close(relaxed_step(x, 3.5, name), cdf(3.5 * x, name))
    # a tensor steepness broadcasts
    beta = torch.tensor([[1.0], [10.0]], dtype=torch.float64, device=device)
    torch.testing.assert_close(relaxed_step(x, beta, name), cdf(beta * x, name))


@pytest.mark.parametrize("name", NAMES)
def test_hard_limit(name, device):
    x = torch.tensor([-1.0, -0.01, 0.01, 1.0], dtype=torch.float64, device=device)
    p = relaxed_step(x, 1e8, name)
    torch.testing.assert_close(p, (x > 0).double(), atol=1e-4, rtol=0)


def test_monotonic_flag_is_the_heavy_tailed_set():
    monotonic = {n for n in NAMES if get_distribution(n).monotonic}
    assert monotonic == {"cauchy", "reciprocal", "optimal"}
    # heavy tails: x^2 f(x) stays bounded away from 0 far out; light tails: it vanishes
    x = torch.tensor([1e3], dtype=torch.float64)
    for n in NAMES:
        tail = (x * x * pdf(x, n)).item()
        assert (tail > 1e-3) == get_distribution(n).monotonic, n


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("name", NAMES)
def test_low_precision_inputs(name, dtype, device):
    x = torch.linspace(-5, 5, 101, device=device)
    out = relaxed_step(x.to(dtype), 2.0, name)
    assert out.dtype == dtype and out.device == x.device
    ref = relaxed_step(x.double(), 2.0, name)
    tol = {torch.float16: 2e-3, torch.bfloat16: 1e-2, torch.float32: 1e-6}[dtype]
    torch.testing.assert_close(out.double(), ref, atol=tol, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name):
    x = torch.tensor([-2.0, -0.7, 0.3, 0.9, 3.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: relaxed_step(v, 1.5, name), (x,))


def test_input_is_not_modified():
    x = torch.randn(10)
    before = x.clone()
    for n in NAMES:
        relaxed_step(x, 3.0, n); cdf(x, n); pdf(x, n)
    assert torch.equal(x, before)


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="`distribution` must be one of") as e:
        get_distribution("sigmoid")
    for n in NAMES:
        assert n in str(e.value)


@pytest.mark.parametrize("bad, err, match", [
    ([0.1, 0.2], TypeError, "`x` must be a torch.Tensor"),
    (torch.tensor([1, 2]), TypeError, "floating-point"),
    (torch.tensor([0.0, float("nan")]), ValueError, "NaN"),
])
def test_bad_x(bad, err, match):
    with pytest.raises(err, match=match):
        relaxed_step(bad, 1.0)


@pytest.mark.parametrize("steepness",
                         [0.0, -1.0, float("inf"), float("nan"), torch.tensor([1.0, -2.0])])
def test_bad_steepness(steepness):
    with pytest.raises(ValueError, match="`steepness` must be finite and > 0"):
        relaxed_step(torch.zeros(3), steepness)


def test_bad_art_lambda_and_types():
    with pytest.raises(ValueError, match="`art_lambda` must be in"):
        get_distribution("logistic_art", art_lambda=1.5)
    with pytest.raises(TypeError, match="`distribution` must be a name"):
        get_distribution(3)
    with pytest.raises(TypeError, match="`steepness` must be a real number"):
        relaxed_step(torch.zeros(2), "10")


def test_register_a_new_distribution():
    class StudentT2(D.Distribution):
        name, tail = "test_student_t2", "polynomial (1/|x|^3)"
        def _cdf(self, x): return 0.5 + x / (2 * torch.sqrt(2 + x * x))
        def _pdf(self, x): return (2 + x * x).pow(-1.5)
    try:
        D.register_distribution(StudentT2)
        assert "test_student_t2" in D.distribution_names()
        x = torch.tensor([0.0, 1.0], dtype=torch.float64)
        expected = 0.5 + 2 * x / (2 * torch.sqrt(2 + 4 * x * x))
        torch.testing.assert_close(relaxed_step(x, 2.0, "test_student_t2"), expected)
    finally:
        D._REGISTRY.pop("test_student_t2", None)
    with pytest.raises(TypeError):
        D.register_distribution(int)
