"GenDR's distributions (Petersen et al., CVPR 2022) in the shared registry diffalg.distributions."
import math

import pytest
import torch

from diffalg.distributions import cdf, distribution_names, get_distribution, pdf, relaxed_step

GENDR = ("hard", "cubic_hermite", "wigner_semicircle", "gudermannian", "gumbel_max", "gumbel_min",
         "exponential", "exponential_rev", "gamma", "gamma_rev", "levy", "levy_rev")
SMOOTH = [n for n in GENDR if n != "hard"]
SYMMETRIC = ("cubic_hermite", "wigner_semicircle", "gudermannian")
MIRRORS = {"gumbel_min": "gumbel_max", "exponential_rev": "exponential", "gamma_rev": "gamma",
           "levy_rev": "levy"}
# (name, shape, shift) settings, GenDR's defaults and others
SETTINGS = [(n, None, None) for n in GENDR] + [
    ("gamma", 0.5, 0.0), ("gamma", 3.0, 1.5), ("gamma_rev", 0.5, 0.7), ("exponential", None, 2.0),
    ("exponential_rev", None, -1.0), ("levy", None, 0.3), ("levy_rev", None, 1.0)]


def test_names_and_aliases_of_gendr():
    for name in GENDR:
        assert get_distribution(name).name == name
    # the chapters' loops over distribution_names() keep the sorting papers' set; gendr=True adds
    # GenDR's families after it
    assert set(distribution_names(gendr=True)) - set(distribution_names()) == set(GENDR)
    assert distribution_names(gendr=True)[:len(distribution_names())] == distribution_names()
    assert get_distribution("heaviside").name == "hard"
    assert get_distribution("hyperbolic_secant").name == "gudermannian"


@pytest.mark.parametrize("name,shape,shift", SETTINGS)
def test_cdf_is_monotone_with_limits(name, shape, shift, device):
    x = torch.linspace(-30, 30, 6001, dtype=torch.float64, device=device)
    F = cdf(x, name, shape=shape, shift=shift)
    assert F.device == x.device and F.dtype == x.dtype
    assert bool(((F >= 0) & (F <= 1)).all()) and bool((F[1:] >= F[:-1]).all())
    inf = torch.tensor([-math.inf, math.inf], dtype=torch.float64, device=device)
    assert cdf(inf, name, shape=shape, shift=shift).tolist() == [0.0, 1.0]
    far = cdf(torch.tensor([-1e12, 1e12], dtype=torch.float64, device=device), name,
              shape=shape, shift=shift)
    assert far[0] < 1e-5 and far[1] > 1 - 1e-5
    assert torch.isfinite(pdf(inf, name, shape=shape, shift=shift)).all()


@pytest.mark.parametrize("name", distribution_names(gendr=True))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_has_finite_gradients_far_out(name, dtype, device):
    "No nan from inf * 0 in a saturated step (the Gumbel laws' exp(-exp(-x)) gave one below -88)."
    x = torch.tensor([-1e30, -1e6, -1e3, -720.0, -100.0, -1.0, 0.0, 1.0, 100.0, 720.0, 1e3, 1e6,
                      1e30], dtype=dtype, device=device, requires_grad=True)
    for steepness in (1.0, 1e4):
        y = get_distribution(name)._step(x, steepness)
        g, = torch.autograd.grad(y.sum(), x)
        assert bool(torch.isfinite(y).all()) and bool(torch.isfinite(g).all()), (steepness, g)
        assert bool((g >= 0).all()) and float(g[0]) < 1e-20 and float(g[-1]) < 1e-20


@pytest.mark.parametrize("name,shape,shift", [s for s in SETTINGS if s[0] != "hard"])
def test_pdf_is_the_derivative_of_cdf(name, shape, shift, device):
    # away from the kinks at the support's edges (+-1, and -shift or shift)
    x = torch.linspace(-7.013, 7.017, 701, dtype=torch.float64, device=device)
    d = get_distribution(name, shape=shape, shift=shift)
    edges = torch.tensor([-1.0, 1.0, -d.__dict__.get("shift", 0.0), d.__dict__.get("shift", 0.0)],
                         dtype=torch.float64, device=device)
    x = x[(x[:, None] - edges).abs().min(1).values > 1e-2].requires_grad_()
    (grad,) = torch.autograd.grad(d.cdf(x).sum(), x)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad, d.pdf(x.detach()), atol=1e-9, rtol=1e-7)


def test_hard_is_the_step_with_zero_gradient():
    x = torch.tensor([-2.0, -1e-9, 0.0, 1e-9, 2.0], dtype=torch.float64, requires_grad=True)
    F = cdf(x, "hard")
    assert F.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    (g,) = torch.autograd.grad(F.sum(), x)
    assert g.tolist() == [0.0] * 5 == pdf(x.detach(), "hard").tolist()


@pytest.mark.parametrize("name", SYMMETRIC)
def test_symmetric_laws_are_symmetric(name, device):
    x = torch.linspace(-5, 5, 1001, dtype=torch.float64, device=device)
    torch.testing.assert_close(cdf(x, name) + cdf(-x, name), torch.ones_like(x), atol=1e-14,
                               rtol=0)
    torch.testing.assert_close(pdf(x, name), pdf(-x, name), atol=1e-14, rtol=0)
    assert get_distribution(name).symmetric


@pytest.mark.parametrize("rev", sorted(MIRRORS))
@pytest.mark.parametrize("shape,shift", [(None, None), (0.5, 0.4), (3.0, -1.2)])
def test_reversed_laws_mirror_their_originals(rev, shape, shift, device):
    if "gamma" not in rev:
        shape = None
    if rev == "gumbel_min":
        shift = None
    x = torch.linspace(-8, 8, 1601, dtype=torch.float64, device=device)
    F_rev = cdf(x, rev, shape=shape, shift=shift)
    F = cdf(-x, MIRRORS[rev], shape=shape, shift=shift)
    torch.testing.assert_close(F_rev, 1 - F, atol=1e-14, rtol=0)
    torch.testing.assert_close(pdf(x, rev, shape=shape, shift=shift),
                               pdf(-x, MIRRORS[rev], shape=shape, shift=shift), atol=1e-14, rtol=0)
    assert not get_distribution(rev).symmetric


def _scipy_law(name, shape, shift):
    st = pytest.importorskip("scipy.stats")
    s = 0.0 if shift is None else shift
    p = 2.0 if shape is None else shape
    return {"gudermannian": st.hypsecant(), "gumbel_max": st.gumbel_r(),
            "gumbel_min": st.gumbel_l(), "wigner_semicircle": st.semicircular(),
            "exponential": st.expon(loc=-s),
            "gamma": st.gamma(p, loc=-s), "levy": st.levy(loc=-s)}[name]


@pytest.mark.parametrize("name,shape,shift", [
    ("gudermannian", None, None), ("gumbel_max", None, None), ("gumbel_min", None, None),
    ("wigner_semicircle", None, None), ("exponential", None, None), ("exponential", None, 1.3),
    ("gamma", None, None), ("gamma", 0.5, 0.0), ("gamma", 4.5, 2.0), ("levy", None, None),
    ("levy", None, 0.5)])
def test_agrees_with_scipy(name, shape, shift):
    law = _scipy_law(name, shape, shift)
    x = torch.linspace(-6, 12, 1801, dtype=torch.float64)
    torch.testing.assert_close(cdf(x, name, shape=shape, shift=shift),
                               torch.from_numpy(law.cdf(x.numpy())), atol=1e-10, rtol=0)
    torch.testing.assert_close(pdf(x, name, shape=shape, shift=shift),
                               torch.from_numpy(law.pdf(x.numpy())), atol=1e-10, rtol=0)


def test_bad_parameters_name_the_argument():
    with pytest.raises(ValueError, match="`shape`"):
        get_distribution("gamma", shape=0.0)
    with pytest.raises(ValueError, match="`shape`"):
        get_distribution("gamma_rev", shape=math.nan)
    with pytest.raises(ValueError, match="`shift`"):
        get_distribution("levy", shift=math.inf)
    with pytest.raises(TypeError, match="`shift`"):
        get_distribution("exponential", shift="1")
    with pytest.raises(ValueError, match="`shape`"):
        get_distribution("cauchy", shape=2.0)          # a law without a shape


@pytest.mark.parametrize("name", GENDR)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_follow_the_input(name, dtype, device):
    x = torch.linspace(-3, 3, 61, device=device, dtype=dtype)
    for out in (cdf(x, name), pdf(x, name), relaxed_step(x, 2.0, name)):
        assert out.dtype == dtype and out.device == x.device
    torch.testing.assert_close(relaxed_step(x, 2.0, name).double(),
                               relaxed_step(x.double(), 2.0, name), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", SMOOTH)
def test_a_sorting_network_accepts_the_new_names(name, device):
    from diffalg.sorting import diff_sort
    torch.manual_seed(0)
    x = torch.randn(3, 6, dtype=torch.float64, device=device, requires_grad=True)
    y = diff_sort(x, steepness=50.0, distribution=name).values
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", ["hard", "gudermannian", "gamma_rev", "levy", "gumbel_min"])
def test_the_renderer_accepts_the_new_names(name):
    from diffalg.rendering import Camera, camera_position, icosphere, render_silhouette
    v, f = icosphere(1)
    v = v.double().requires_grad_()
    cam = Camera(camera_position(3.0, 0.0, 0.0))
    img = render_silhouette(v, f, cam, 16, tau=0.02, distribution=name)
    assert torch.isfinite(img).all() and 0 < img.sum() < img.numel()
    if name != "hard":
        img.sum().backward()
        assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["gudermannian", "gumbel_max", "gamma", "levy_rev"])
def test_a_relaxed_program_accepts_the_new_names(name, device):
    from diffalg.relax import bubble_sort
    x = torch.tensor([[0.3, -1.2, 0.5, 2.0]], dtype=torch.float64, device=device,
                     requires_grad=True)
    s, P, swaps = bubble_sort(x, steepness=20.0, distribution=name)
    assert torch.isfinite(s).all() and torch.isfinite(P).all()
    swaps.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_parametrized_objects_pass_through_the_chapters():
    from diffalg.sorting import diff_sort
    g = get_distribution("gamma_rev", shape=0.5, shift=1.0)
    x = torch.tensor([[2.0, -1.0, 0.5]], dtype=torch.float64)
    a = diff_sort(x, steepness=5.0, distribution=g).values
    b = diff_sort(x, steepness=5.0, distribution="gamma_rev").values     # shape 2, shift 0
    assert torch.isfinite(a).all() and not torch.allclose(a, b)
