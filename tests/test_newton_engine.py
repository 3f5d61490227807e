"""Engine == reference for diffalg.newton, in float64: every public operator (newton_step,
loss_hessian, fisher_precondition, hessian_newton_loss, fisher_newton_loss, HessianNewtonLoss,
FisherNewtonLoss), values and gradients w.r.t. y, for each curvature, method and reduction, on
random and adversarial inputs and on the sorting and relaxation chapters' losses."""
import pytest
import torch
from torch import nn

from diffalg.newton import newton_step, loss_hessian, fisher_precondition
from diffalg.newton import hessian_newton_loss, fisher_newton_loss
from diffalg.newton import HessianNewtonLoss, FisherNewtonLoss
from diffalg.newton import reference as ref
from diffalg.sorting import sort_loss, permutation_targets
from diffalg.sorting import neuralsort_permutation, softsort_permutation
from diffalg.relax import shortest_path

F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


# --- losses ---------------------------------------------------------------------------------------

def convex(y):
    "Strictly convex (Hessian >= I), non-quadratic, couples the outputs; any m >= 1."
    flat = y.flatten(1)
    pair = nn.functional.softplus(flat[:, 0] - flat[:, -1])
    return torch.logsumexp(flat, 1) + pair + flat.pow(4).sum(1) / 4 + flat.pow(2).sum(1) / 2


def indefinite(y):
    "A saddle: eigenvalues of both signs (about 2 and -2 near 0), non-quadratic; m >= 2."
    return y[:, 0] ** 2 - y[:, 1] ** 2 + torch.sin(y).sum(1) + 0.05 * y.pow(4).sum(1)


def pairwise_logistic(y):
    "Convex, singular along y + c 1 (a shift changes nothing): sum_{i<j} softplus(y_i - y_j)."
    diff = y[:, :, None] - y[:, None, :]
    mask = torch.triu(torch.ones(y.shape[1], y.shape[1], dtype=torch.bool), 1)
    return nn.functional.softplus(diff)[:, mask].sum(1)


def cross_entropy(P, values):
    Q = permutation_targets(values).to(P.dtype)
    return -(Q * P.clamp_min(1e-12).log()).sum((-2, -1)) / P.shape[-1]


def sorting_case(kind, B, n, seed, scale=1.0, steepness=10.0):
    "Scores (B, n) and a loss of the sorting chapter with its true values bound in."
    y = scale * torch.randn(B, n, generator=gen(seed), dtype=F64)
    v = torch.randn(B, n, generator=gen(seed + 100), dtype=F64)
    if kind in ("logistic", "cauchy"):
        return y, lambda s: sort_loss(s, v, steepness=steepness, distribution=kind,
                                      reduction="none")
    perm = neuralsort_permutation if kind == "neuralsort" else softsort_permutation
    return y, lambda s: cross_entropy(perm(s, tau=1.0), v)


def path_case(B, size, seed):
    "Positive cost maps (B, size, size) and the relaxed Bellman-Ford path loss against true paths."
    costs = 0.5 + torch.rand(B, size, size, generator=gen(seed), dtype=F64)
    target = shortest_path(0.5 + torch.rand(B, size, size, generator=gen(seed + 1), dtype=F64),
                           hard=True)[1]
    loss = lambda c: ((shortest_path(c, steepness=1.0)[1] - target) ** 2).mean((-2, -1))
    return costs, loss


def smooth_case(loss, B, shape, seed, scale=1.0):
    return scale * torch.randn(B, *shape, generator=gen(seed), dtype=F64), loss


CASES = {  # name: (y, loss_fn, H + lambda I positive definite for lambda >= 0.3)
    "convex": (*smooth_case(convex, 5, (4,), 0), True),
    "convex event shape": (*smooth_case(convex, 3, (2, 3), 1), True),
    "convex scalar sum": (*smooth_case(lambda y: convex(y).sum(), 4, (3,), 2), True),
    "convex batch 1": (*smooth_case(convex, 1, (5,), 3), True),
    "convex output dim 1": (*smooth_case(convex, 6, (1,), 4), True),
    "convex batch 1, dim 1": (*smooth_case(convex, 1, (1,), 5), True),
    "indefinite": (*smooth_case(indefinite, 6, (3,), 6), False),
    "pairwise logistic": (*smooth_case(pairwise_logistic, 4, (5,), 7), True),
    "sorting network (logistic)": (*sorting_case("logistic", 4, 5, 8), False),
    "sorting network (logistic, steepness 2)": (*sorting_case("logistic", 4, 5, 8, steepness=2.0),
                                                False),
    "sorting network (Cauchy)": (*sorting_case("cauchy", 4, 5, 9), False),
    "NeuralSort": (*sorting_case("neuralsort", 4, 5, 10), True),
    "SoftSort": (*sorting_case("softsort", 3, 4, 11), True),
    "shortest path": (*path_case(3, 3, 12), False),
}
SMOOTH = [k for k in CASES if not k.startswith(("sorting", "NeuralSort", "SoftSort", "shortest"))]
CONVEX = [k for k, (_, _, pd) in CASES.items() if pd]
# Finite differences are only as accurate as the gradient: the logistic network at steepness 10
# saturates (entries of P near 1e-12, gradients ~ 1/P), documented in the chapter; its milder
# steepness-2 version is in the list.
FD_CASES = [k for k in CASES if k != "sorting network (logistic)"]


def close(got, want, rtol=1e-7, atol=1e-9):
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)


def value_and_grad(fn, y, *args, **kwargs):
    "fn(y, ...) and the gradient of its sum w.r.t. a fresh copy of y."
    leaf = y.clone().requires_grad_(True)
    value = fn(leaf, *args, **kwargs)
    grad, = torch.autograd.grad(value.sum(), leaf)
    return value.detach(), grad


def fd_tolerance(name):
    "Finite differences: about eps^(2/3) relative on smooth losses, looser through the algorithms."
    return 1e-5 if name in SMOOTH else 1e-4


# --- the step and the Hessian ---------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("method", ["exact", "auto"])
def test_hessian_step_equals_reference(name, method):
    y, loss_fn, _ = CASES[name]
    want = ref.newton_step(y, loss_fn, 0.5)
    got = newton_step(y, loss_fn, tikhonov=0.5, method=method)
    close(got, want, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("name", FD_CASES)
def test_finite_difference_step_equals_reference(name):
    y, loss_fn, _ = CASES[name]
    tol = fd_tolerance(name)
    close(newton_step(y, loss_fn, tikhonov=0.5, method="finite_difference"),
          ref.newton_step(y, loss_fn, 0.5), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", CONVEX)
def test_cg_step_equals_reference_where_positive_definite(name):
    y, loss_fn, _ = CASES[name]
    assert torch.linalg.eigvalsh(ref.loss_hessian(y, loss_fn)).min() > -0.3
    close(newton_step(y, loss_fn, tikhonov=0.5, method="cg"), ref.newton_step(y, loss_fn, 0.5),
          rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("name", list(CASES))
def test_fisher_step_equals_reference(name):
    y, loss_fn, _ = CASES[name]
    close(newton_step(y, loss_fn, tikhonov=0.05, curvature="fisher"),
          ref.newton_step(y, loss_fn, 0.05, curvature="fisher"))


# finite differences only where the loss is smooth enough for them (a saturated relaxation's
# gradient is too steep for its Hessian to be taken by differences; FD_CASES lists the others)
HESSIAN_CASES = [(name, "exact") for name in CASES] + [(name, "finite_difference")
                                                      for name in CASES if name in FD_CASES]


@pytest.mark.parametrize("name,method", HESSIAN_CASES)
def test_loss_hessian_equals_reference(name, method):
    y, loss_fn, _ = CASES[name]
    want = ref.loss_hessian(y, loss_fn)
    tol = fd_tolerance(name) if method == "finite_difference" else 1e-10
    got = loss_hessian(y, loss_fn, method=method)
    assert got.shape == want.shape
    close(got, want, rtol=tol, atol=tol * (1 + want.abs().max().item()))


@pytest.mark.parametrize("B,m", [(8, 3), (3, 8), (5, 5), (1, 1), (1, 6), (6, 1)])
def test_fisher_precondition_equals_reference(B, m):
    g = torch.randn(B, m, generator=gen(B * 10 + m), dtype=F64)
    want = torch.linalg.solve(ref.fisher_matrix(g) + 0.3 * torch.eye(m, dtype=F64), g.T).T
    close(fisher_precondition(g, 0.3), want, rtol=1e-9, atol=1e-12)


# --- the losses: values and gradients -------------------------------------------------------------

@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_hessian_newton_loss_equals_reference(name, reduction):
    y, loss_fn, _ = CASES[name]
    v1, g1 = value_and_grad(hessian_newton_loss, y, loss_fn, tikhonov=0.5, reduction=reduction)
    v2, g2 = value_and_grad(ref.hessian_newton_loss, y, loss_fn, 0.5, reduction=reduction)
    close(v1, v2)
    close(g1, g2)


@pytest.mark.parametrize("name", CONVEX)
@pytest.mark.parametrize("method", ["cg", "finite_difference"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_hessian_newton_loss_methods_equal_reference(name, method, reduction):
    y, loss_fn, _ = CASES[name]
    v1, g1 = value_and_grad(hessian_newton_loss, y, loss_fn, tikhonov=0.5, reduction=reduction,
                            method=method)
    v2, g2 = value_and_grad(ref.hessian_newton_loss, y, loss_fn, 0.5, reduction=reduction)
    tol = fd_tolerance(name) if method == "finite_difference" else 1e-7
    close(v1, v2, rtol=tol, atol=tol)
    close(g1, g2, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_fisher_newton_loss_equals_reference(name, reduction):
    y, loss_fn, _ = CASES[name]
    scalar = loss_fn(y).dim() == 0
    if scalar and reduction != "sum":
        with pytest.raises(ValueError, match="per-sample"):
            fisher_newton_loss(y, loss_fn, tikhonov=0.05, reduction=reduction)
        return
    v1, g1 = value_and_grad(fisher_newton_loss, y, loss_fn, tikhonov=0.05, reduction=reduction)
    v2, g2 = value_and_grad(ref.fisher_newton_loss, y, loss_fn, 0.05, reduction=reduction)
    close(v1, v2)
    close(g1, g2)


@pytest.mark.parametrize("variant", ["hessian", "fisher"])
def test_modules_with_extra_arguments_equal_reference(variant):
    "The modules pass targets on to the loss; value, gradient and last_loss as the reference's."
    y = torch.randn(4, 5, generator=gen(20), dtype=F64)
    v = torch.randn(4, 5, generator=gen(21), dtype=F64)
    loss_fn = lambda s, t: sort_loss(s, t, steepness=4.0, distribution="logistic", reduction="none")
    module = (HessianNewtonLoss if variant == "hessian" else FisherNewtonLoss)(loss_fn, lam=0.4)
    reference = ref.hessian_newton_loss if variant == "hessian" else ref.fisher_newton_loss
    v1, g1 = value_and_grad(module, y, v)
    v2, g2 = value_and_grad(reference, y, lambda s: loss_fn(s, v), 0.4)
    close(v1, v2)
    close(g1, g2)
    want_last = loss_fn(y, v) if variant == "hessian" else loss_fn(y, v).mean()
    close(module.last_loss, want_last)


# --- adversarial inputs ---------------------------------------------------------------------------

@pytest.mark.parametrize("tikhonov", [1e-8, 1e8])
@pytest.mark.parametrize("curvature", ["hessian", "fisher"])
def test_tiny_and_huge_tikhonov(tikhonov, curvature):
    "lambda -> 0: the Newton (or Fisher) step; lambda -> inf: g / lambda. Relative agreement."
    y, loss_fn, _ = CASES["convex"]
    want = ref.newton_step(y, loss_fn, tikhonov, curvature=curvature)
    close(newton_step(y, loss_fn, tikhonov=tikhonov, curvature=curvature), want,
          rtol=1e-6, atol=1e-6 * want.abs().max().item())
    if curvature == "hessian":
        close(newton_step(y, loss_fn, tikhonov=tikhonov, method="cg"), want,
              rtol=1e-6, atol=1e-6 * want.abs().max().item())


@pytest.mark.parametrize("tikhonov", [1e-6, 1e-2])
def test_singular_hessian_direction(tikhonov):
    "NeuralSort's and a pairwise loss's Hessians are singular along y + c 1; g has no part there."
    for name in ("pairwise logistic", "NeuralSort"):
        y, loss_fn, _ = CASES[name]
        want = ref.newton_step(y, loss_fn, tikhonov)
        close(newton_step(y, loss_fn, tikhonov=tikhonov, method="exact"), want, rtol=1e-6,
              atol=1e-6 * want.abs().max().item())


@pytest.mark.parametrize("tikhonov", [0.3, 1.0, 1.5])
def test_indefinite_hessian_exact_step_points_uphill_like_reference(tikhonov):
    "Below the most negative curvature the exact step is the reference's, uphill or not."
    y, loss_fn, _ = CASES["indefinite"]
    assert torch.linalg.eigvalsh(ref.loss_hessian(y, loss_fn)).min() < -tikhonov
    d = newton_step(y, loss_fn, tikhonov=tikhonov, method="exact")
    close(d, ref.newton_step(y, loss_fn, tikhonov), rtol=1e-8, atol=1e-8)
    v1, g1 = value_and_grad(hessian_newton_loss, y, loss_fn, tikhonov=tikhonov, method="exact")
    v2, g2 = value_and_grad(ref.hessian_newton_loss, y, loss_fn, tikhonov)
    close(v1, v2, rtol=1e-8, atol=1e-8)
    close(g1, g2, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("kind", ["logistic", "cauchy", "neuralsort", "softsort"])
@pytest.mark.parametrize("scale", [1e-6, 1e3])
def test_sorting_losses_at_tiny_and_huge_scores(kind, scale):
    "Near-ties (tiny scores) and saturated relaxations (huge scores): exact step and Fisher loss."
    y, loss_fn = sorting_case(kind, 3, 4, 30, scale=scale)
    want = ref.newton_step(y, loss_fn, 1.0)
    close(newton_step(y, loss_fn, tikhonov=1.0, method="exact"), want, rtol=1e-8,
          atol=1e-10 * (1 + want.abs().max().item()))
    v1, g1 = value_and_grad(fisher_newton_loss, y, loss_fn, tikhonov=0.1)
    v2, g2 = value_and_grad(ref.fisher_newton_loss, y, loss_fn, 0.1)
    close(v1, v2)
    close(g1, g2, rtol=1e-7, atol=1e-12)


def test_sorting_scores_with_ties():
    "Equal scores inside a problem: the relaxed losses are smooth there, the steps agree."
    y = torch.tensor([[0.0, 0.0, 1.0, 1.0, 2.0], [3.0, 3.0, 3.0, 3.0, 3.0]], dtype=F64)
    v = torch.randn(2, 5, generator=gen(40), dtype=F64)
    for kind in ("logistic", "cauchy"):
        loss_fn = lambda s: sort_loss(s, v, steepness=10.0, distribution=kind, reduction="none")
        close(newton_step(y, loss_fn, tikhonov=1.0), ref.newton_step(y, loss_fn, 1.0))


@pytest.mark.parametrize("method", ["exact", "cg", "finite_difference"])
def test_under_no_grad_equals_reference(method):
    y, loss_fn, _ = CASES["convex"]
    with torch.no_grad():
        d = newton_step(y, loss_fn, tikhonov=0.5, method=method)
        value = hessian_newton_loss(y, loss_fn, tikhonov=0.5, method=method, reduction="none")
    want = ref.newton_step(y, loss_fn, 0.5)
    tol = 1e-5 if method == "finite_difference" else 1e-8
    close(d, want, rtol=tol, atol=tol)
    close(value, 0.5 * want.pow(2).flatten(1).sum(1), rtol=tol, atol=tol)


def test_reference_hessian_is_diagonal_block_of_full_hessian():
    "The oracle itself: its blocks are the diagonal blocks of the batch's full Hessian."
    y, loss_fn, _ = CASES["sorting network (logistic)"]
    B, m = y.shape
    full = torch.autograd.functional.hessian(lambda s: loss_fn(s).sum(), y).reshape(B * m, B * m)
    close(torch.block_diag(*ref.loss_hessian(y, loss_fn)), full, rtol=1e-10, atol=1e-10)
