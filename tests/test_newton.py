"Tests of diffalg.newton: Hessian and empirical-Fisher Newton losses (Petersen et al., 2024)."
import pytest
import torch
from torch import nn

from diffalg.newton import newton_step, fisher_precondition, loss_hessian
from diffalg.newton import hessian_newton_loss, fisher_newton_loss
from diffalg.newton import HessianNewtonLoss, FisherNewtonLoss

F64 = torch.float64


def spd(m, device, seed=0, shift=0.5):
    gen = torch.Generator().manual_seed(seed)
    Q = torch.randn(m, m, generator=gen, dtype=F64)
    return (Q @ Q.T + shift * torch.eye(m, dtype=F64)).to(device)


def quadratic(A, c):
    "Per-sample quadratic 1/2 (y - c_i)^T A (y - c_i): Hessian A, gradient A (y - c_i), min c_i."
    return lambda y: 0.5 * torch.einsum("bi,ij,bj->b", y - c, A, y - c)


def pairwise_logistic(y):
    "A smooth convex ranking loss on scores (B, n): sum_{i<j} softplus(y_i - y_j) (increasing)."
    diff = y[:, :, None] - y[:, None, :]
    mask = torch.triu(torch.ones(y.shape[1], y.shape[1], dtype=torch.bool, device=y.device), 1)
    return nn.functional.softplus(diff)[:, mask].sum(1)


def reference_hessian_step(y, loss_fn, lam):
    "Independent reference: per-sample Hessian by torch.autograd.functional.hessian, dense solve."
    steps = []
    for i in range(y.shape[0]):
        f = lambda v: loss_fn(torch.cat([y[:i], v[None], y[i + 1:]]))[i]
        H = torch.autograd.functional.hessian(f, y[i])
        g = torch.autograd.functional.jacobian(f, y[i])
        eye = torch.eye(len(g), dtype=y.dtype, device=y.device)
        steps.append(torch.linalg.solve(H + lam * eye, g))
    return torch.stack(steps)


# --- Hessian variant ------------------------------------------------------------------------------

def test_hessian_target_is_exact_minimizer_of_quadratic_as_lambda_to_0(device):
    A = spd(5, device)
    c = torch.randn(7, 5, dtype=F64, device=device)
    y = torch.randn(7, 5, dtype=F64, device=device)
    errors = []
    for lam in (1e-1, 1e-3, 1e-6, 1e-9):
        z = y - newton_step(y, quadratic(A, c), tikhonov=lam)
        errors.append((z - c).abs().max().item())
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 1e-7


def test_hessian_step_tends_to_scaled_gradient_step_as_lambda_grows(device):
    A = spd(4, device)
    c = torch.randn(3, 4, dtype=F64, device=device)
    y = torch.randn(3, 4, dtype=F64, device=device)
    g = (y - c) @ A
    rel = []
    for lam in (1e1, 1e3, 1e5):
        d = newton_step(y, quadratic(A, c), tikhonov=lam)
        rel.append(((lam * d - g).norm() / g.norm()).item())
    assert rel == sorted(rel, reverse=True)
    assert rel[-1] < 1e-3


@pytest.mark.parametrize("method", ["exact", "cg", "finite_difference"])
def test_hessian_step_matches_independent_reference(device, method):
    torch.manual_seed(0)
    y = torch.randn(4, 6, dtype=F64, device=device)
    d = newton_step(y, pairwise_logistic, tikhonov=0.3, method=method)
    atol = 1e-6 if method == "finite_difference" else 1e-8
    assert torch.allclose(d, reference_hessian_step(y, pairwise_logistic, 0.3), atol=atol)


def test_exact_and_cg_agree_also_for_large_outputs(device):
    torch.manual_seed(1)
    loss = lambda y: torch.logsumexp(y, 1) + 0.1 * (y ** 4).sum(1)  # convex, non-quadratic
    y = torch.randn(3, 80, dtype=F64, device=device)
    exact = newton_step(y, loss, tikhonov=0.05, method="exact")
    auto = newton_step(y, loss, tikhonov=0.05)  # m = 80 > 64: conjugate gradients
    cg = newton_step(y, loss, tikhonov=0.05, method="cg", cg_max_iter=200)
    assert torch.allclose(exact, cg, atol=1e-8) and torch.allclose(exact, auto, atol=1e-6)


def test_cg_negative_curvature_falls_back_to_gradient_step(device):
    y = torch.randn(2, 3, dtype=F64, device=device)
    concave = lambda y: -0.5 * (y ** 2).sum(1)  # H = -I, g = -y
    assert torch.allclose(newton_step(y, concave, tikhonov=0.5, method="cg"), -y / 0.5)
    # the exact step is (H + lam I)^-1 g, uphill here
    assert torch.allclose(newton_step(y, concave, tikhonov=0.5, method="exact"), -y / (0.5 - 1))


def test_hessian_newton_loss_value_and_gradient(device):
    torch.manual_seed(2)
    y = torch.randn(5, 4, dtype=F64, device=device, requires_grad=True)
    loss = hessian_newton_loss(y, pairwise_logistic, tikhonov=0.2, reduction="sum")
    d = reference_hessian_step(y.detach(), pairwise_logistic, 0.2)
    assert torch.allclose(loss, 0.5 * (d ** 2).sum())
    loss.backward()
    assert torch.allclose(y.grad, d, atol=1e-8)
    y.grad = None
    hessian_newton_loss(y, pairwise_logistic, lam=0.2).backward()  # mean over the batch
    assert torch.allclose(y.grad, d / 5, atol=1e-8)


def test_scalar_sum_loss_gives_same_step(device):
    y = torch.randn(4, 5, dtype=F64, device=device)
    per = newton_step(y, pairwise_logistic, tikhonov=0.1)
    tot = newton_step(y, lambda v: pairwise_logistic(v).sum(), tikhonov=0.1)
    assert torch.allclose(per, tot)


def test_event_shape_dtype_and_no_inplace(device):
    y = torch.randn(2, 3, 4, device=device, requires_grad=True)  # float32, event shape (3, 4)
    y0 = y.detach().clone()
    loss_fn = lambda v: (v.sin() + v ** 2).flatten(1).sum(1)
    for crit in (HessianNewtonLoss(loss_fn, tikhonov=1.0), FisherNewtonLoss(loss_fn, tikhonov=1.0)):
        y.grad = None
        crit(y).backward()
        assert y.grad.shape == y.shape and y.grad.dtype == torch.float32
        assert y.grad.device == y.device
        assert torch.equal(y.detach(), y0)


# --- Fisher variant -------------------------------------------------------------------------------

def test_fisher_matches_hand_worked_batch(device):
    # l_i(y) = 1/2 ||y - c_i||^2 at y = 0 with c = -g: gradients g_1 = (1, 0), g_2 = (0, 2).
    # F = 1/2 (g_1 g_1^T + g_2 g_2^T) = diag(1/2, 2); lambda = 1/2: F + lambda I = diag(1, 5/2).
    # Steps: d_1 = (1, 0), d_2 = (0, 2 / (5/2)) = (0, 0.8).
    c = -torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=F64, device=device)
    y = torch.zeros(2, 2, dtype=F64, device=device, requires_grad=True)
    loss_fn = lambda v: 0.5 * ((v - c) ** 2).sum(1)
    loss = fisher_newton_loss(y, loss_fn, tikhonov=0.5)
    # the value: the original loss, mean
    assert torch.allclose(loss, torch.tensor((0.5 + 2.0) / 2, dtype=F64, device=device))
    loss.backward()
    expected = torch.tensor([[1.0, 0.0], [0.0, 0.8]], dtype=F64, device=device)
    assert torch.allclose(y.grad, expected / 2)  # 1/B from reduction='mean'


def test_fisher_hand_worked_single_sample_woodbury(device):
    # B = 1 < m = 2: Woodbury branch. g = (3, 4), F = g g^T, (F + 5 I)^-1 g = g / (25 + 5).
    g = torch.tensor([[3.0, 4.0]], dtype=F64, device=device)
    assert torch.allclose(fisher_precondition(g, 5.0), g / 30)
    y = torch.zeros(1, 2, dtype=F64, device=device, requires_grad=True)
    fisher_newton_loss(y, lambda v: (v * g).sum(), tikhonov=5.0, reduction="sum").backward()
    assert torch.allclose(y.grad, g / 30)


@pytest.mark.parametrize("B,m", [(8, 3), (3, 8), (5, 5)])
def test_fisher_precondition_matches_dense_formula(device, B, m):
    g = torch.randn(B, m, dtype=F64, device=device)
    lam = 0.7
    A = g.T @ g / B + lam * torch.eye(m, dtype=F64, device=device)
    assert torch.allclose(fisher_precondition(g, lam), torch.linalg.solve(A, g.T).T, atol=1e-10)


def test_fisher_tends_to_scaled_gradient_as_lambda_grows(device):
    g = torch.randn(6, 4, dtype=F64, device=device)
    assert torch.allclose(1e6 * fisher_precondition(g, 1e6), g, rtol=1e-4, atol=1e-6)


# --- gradients through the wrappers into a network ------------------------------------------------

@pytest.mark.parametrize("variant", ["hessian", "fisher"])
def test_gradients_through_wrappers_into_network(device, variant):
    """The parameter gradient is J^T d: checked against the gradient of 1/2||z0 - f(theta)||^2
    (z0 frozen), gradchecked."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 4)).to(device, F64)
    x = torch.randn(6, 3, dtype=F64, device=device)
    wrapper = HessianNewtonLoss if variant == "hessian" else FisherNewtonLoss
    crit = wrapper(pairwise_logistic, tikhonov=0.3, reduction="sum")
    crit(net(x)).backward()
    got = [p.grad.clone() for p in net.parameters()]
    y0 = net(x).detach()
    z0 = y0 - newton_step(y0, pairwise_logistic, tikhonov=0.3, curvature=variant)
    params = [p.detach().clone().requires_grad_(True) for p in net.parameters()]

    def surrogate(*ps):
        h = torch.tanh(x @ ps[0].T + ps[1])
        return 0.5 * ((z0 - (h @ ps[2].T + ps[3])) ** 2).sum()

    assert torch.autograd.gradcheck(surrogate, params)
    want = torch.autograd.grad(surrogate(*params), params)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-10)


def test_module_passes_extra_arguments_and_keeps_original_loss(device):
    A = spd(3, device)
    c = torch.randn(4, 3, dtype=F64, device=device)
    y = torch.randn(4, 3, dtype=F64, device=device, requires_grad=True)
    loss_fn = lambda v, target: 0.5 * torch.einsum("bi,ij,bj->b", v - target, A, v - target)
    crit = HessianNewtonLoss(loss_fn, lambda_=1e-9, reduction="none")
    out = crit(y, c)
    assert out.shape == (4,)
    assert torch.allclose(crit.last_loss, loss_fn(y, c).detach())
    out.sum().backward()
    assert torch.allclose(y.detach() - y.grad, c, atol=1e-6)  # z* = minimizer
    assert "tikhonov=1e-09" in repr(crit)


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [hessian_newton_loss, fisher_newton_loss])
def test_bad_input(device, fn):
    y = torch.randn(3, 2, device=device)
    ok = lambda v: (v ** 2).sum(1)
    for lam in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="tikhonov"):
            fn(y, ok, tikhonov=lam)
    with pytest.raises(ValueError, match="lam"):
        fn(y, ok, lam=0)
    with pytest.raises(TypeError, match="required"):
        fn(y, ok)
    with pytest.raises(TypeError, match="once"):
        fn(y, ok, tikhonov=1.0, lambda_=1.0)
    with pytest.raises(ValueError, match="at least 2 dimension"):
        fn(torch.randn(3, device=device), ok, tikhonov=1.0)
    with pytest.raises(TypeError, match="floating"):
        fn(torch.ones(3, 2, dtype=torch.long, device=device), ok, tikhonov=1.0)
    with pytest.raises(ValueError, match="finite"):
        fn(torch.tensor([[1.0, float("nan")]], device=device), ok, tikhonov=1.0)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        fn(y, lambda v: v ** 2, tikhonov=1.0)
    with pytest.raises(ValueError, match="non-finite"):
        fn(y, lambda v: (v ** 2).sum(1) / 0, tikhonov=1.0)
    with pytest.raises(TypeError, match="callable"):
        fn(y, "mse", tikhonov=1.0)
    with pytest.raises(ValueError, match="reduction"):
        fn(y, ok, tikhonov=1.0, reduction="average")
    with pytest.raises(ValueError, match="gradient"):
        fn(torch.zeros(3, 2, device=device), lambda v: v.abs().sqrt().sum(1), tikhonov=1.0)


def test_bad_input_hessian_specific(device):
    y = torch.randn(3, 2, dtype=F64, device=device)
    with pytest.raises(ValueError, match="method"):
        hessian_newton_loss(y, pairwise_logistic, tikhonov=1.0, method="lbfgs")
    with pytest.raises(ValueError, match="cg_max_iter"):
        hessian_newton_loss(y, pairwise_logistic, tikhonov=1.0, method="cg", cg_max_iter=0)
    with pytest.raises(ValueError, match="singular"):  # H = -I, H + 1*I = 0
        hessian_newton_loss(y, lambda v: -0.5 * (v ** 2).sum(1), tikhonov=1.0, method="exact")
    with pytest.raises(ValueError, match="curvature"):
        newton_step(y, pairwise_logistic, tikhonov=1.0, curvature="gauss-newton")


def test_fisher_scalar_loss_needs_sum_reduction(device):
    y = torch.randn(3, 2, device=device)
    with pytest.raises(ValueError, match="per-sample"):
        fisher_newton_loss(y, lambda v: (v ** 2).sum(), tikhonov=1.0)
    # the Hessian variant's Newton loss is per sample even when the wrapped loss is a scalar sum
    newton = hessian_newton_loss(y, lambda v: (v ** 2).sum(), tikhonov=1.0, reduction="none")
    assert newton.shape == (3,)


class _OnceDifferentiableSquare(torch.autograd.Function):
    "y^2 with a backward that autograd cannot differentiate again."
    @staticmethod
    def forward(ctx, y):
        ctx.save_for_backward(y)
        return y ** 2

    @staticmethod
    def backward(ctx, grad):
        y, = ctx.saved_tensors
        return (2 * y * grad).detach()


def test_hessian_needs_double_backward_fisher_does_not(device):
    y = torch.randn(3, 2, dtype=F64, device=device, requires_grad=True)
    loss_fn = lambda v: _OnceDifferentiableSquare.apply(v).sum(1)
    with pytest.raises(ValueError, match="finite_difference"):
        hessian_newton_loss(y, loss_fn, tikhonov=1.0)
    with pytest.raises(ValueError, match="finite_difference"):
        loss_hessian(y, loss_fn)
    fisher_newton_loss(y, loss_fn, tikhonov=1.0, reduction="sum").backward()
    g = 2 * y.detach()
    eye = torch.eye(2, dtype=F64, device=device)
    assert torch.allclose(y.grad, torch.linalg.solve(g.T @ g / 3 + eye, g.T).T)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_outputs(device, dtype):
    """The linear algebra runs in float32 for half-precision outputs; gradients come back in the
    output's dtype."""
    torch.manual_seed(4)
    y64 = torch.randn(6, 3, dtype=F64, device=device)
    loss_fn = lambda v: (v ** 2 + v.sin()).sum(1)
    for wrapper in (hessian_newton_loss, fisher_newton_loss):
        ref = y64.clone().requires_grad_(True)
        wrapper(ref, loss_fn, tikhonov=0.5).backward()
        y = y64.to(dtype).requires_grad_(True)
        wrapper(y, loss_fn, tikhonov=0.5).backward()
        assert y.grad.dtype == dtype
        assert torch.allclose(y.grad.double(), ref.grad, rtol=5e-2, atol=5e-3)


@pytest.mark.parametrize("method", ["exact", "cg"])
def test_works_under_no_grad(device, method):
    """Evaluation code often runs under torch.no_grad(): the step (and the loss values) must still
    be computed."""
    y = torch.randn(4, 5, dtype=F64, device=device)
    with torch.no_grad():
        d = newton_step(y, pairwise_logistic, tikhonov=0.3, method=method)
        value = hessian_newton_loss(y, pairwise_logistic, tikhonov=0.3, method=method,
                                    reduction="sum")
        fisher = fisher_newton_loss(y, pairwise_logistic, tikhonov=0.3)
    ref = reference_hessian_step(y, pairwise_logistic, 0.3)
    assert torch.allclose(d, ref, atol=1e-8) and torch.allclose(value, 0.5 * (ref ** 2).sum())
    assert torch.allclose(fisher, pairwise_logistic(y).mean()) and not fisher.requires_grad


def smooth_loss(y):
    "A smooth, non-quadratic, non-separable loss per sample (B,) with a non-constant Hessian."
    return torch.sin(y[:, 0] * y[:, 1]) + y.pow(4).sum(1) / 4 + torch.logsumexp(y, 1)


@pytest.mark.parametrize("dtype, tol", [(F64, 1e-7), (torch.float32, 2e-3)])
def test_finite_difference_hessian_matches_exact(device, dtype, tol):
    torch.manual_seed(5)
    y = torch.randn(6, 4, dtype=dtype, device=device)
    H_exact = loss_hessian(y, smooth_loss)
    H_fd = loss_hessian(y, smooth_loss, method="finite_difference")
    assert H_fd.shape == (6, 4, 4) and H_fd.dtype == dtype and H_fd.device == y.device
    assert torch.allclose(H_fd, H_fd.transpose(1, 2))
    assert torch.allclose(H_fd, H_exact, atol=tol, rtol=tol)
    # and against an independent reference, sample by sample
    for i in range(2):
        ref = torch.autograd.functional.hessian(lambda v: smooth_loss(v[None])[0], y[i])
        assert torch.allclose(H_exact[i], ref, atol=tol, rtol=tol)


def test_finite_difference_needs_first_derivatives_only(device):
    """A loss whose backward is not twice differentiable: the finite-difference Hessian still gives
    its Newton loss."""
    y = torch.randn(3, 2, dtype=F64, device=device, requires_grad=True)
    loss_fn = lambda v: _OnceDifferentiableSquare.apply(v).sum(1)
    H = loss_hessian(y, loss_fn, method="finite_difference")
    assert torch.allclose(H, 2 * torch.eye(2, dtype=F64, device=device).expand(3, 2, 2), atol=1e-8)
    hessian_newton_loss(y, loss_fn, tikhonov=0.5, method="finite_difference",
                        reduction="sum").backward()
    assert torch.allclose(y.grad, 2 * y.detach() / 2.5, atol=1e-8)     # (2 I + 0.5 I)^-1 2 y
    square = lambda v, w: _OnceDifferentiableSquare.apply(v - w).sum(1)
    crit = HessianNewtonLoss(square, tikhonov=0.5,
                             method="finite_difference", reduction="none")
    w = torch.ones(3, 2, dtype=F64, device=device)
    want = 0.5 * ((2 * (y.detach() - w) / 2.5) ** 2).sum(1)
    assert torch.allclose(crit(y.detach(), w), want, atol=1e-8)


def test_loss_hessian_bad_input(device):
    y = torch.randn(3, 2, dtype=F64, device=device)
    with pytest.raises(ValueError, match="method"):
        loss_hessian(y, smooth_loss, method="cg")
    with pytest.raises(ValueError, match="shape"):
        loss_hessian(y[0], smooth_loss)
    with pytest.raises(TypeError, match="callable"):
        loss_hessian(y, "loss")


def test_modules_share_argument_handling():
    "Both modules check the loss, the regularizer (and its aliases) and the reduction alike."
    for cls in (HessianNewtonLoss, FisherNewtonLoss):
        crit = cls(smooth_loss, lam=0.25, reduction="sum")
        assert crit.tikhonov == 0.25 and crit.reduction == "sum" and crit.last_loss is None
        assert "tikhonov=0.25, reduction='sum'" in repr(crit)
        with pytest.raises(ValueError, match="tikhonov"):
            cls(smooth_loss, tikhonov=-1.0)
        with pytest.raises(ValueError, match="reduction"):
            cls(smooth_loss, tikhonov=1.0, reduction="avg")
        with pytest.raises(TypeError, match="callable"):
            cls(3, tikhonov=1.0)
    module = HessianNewtonLoss(smooth_loss, tikhonov=1.0, method="finite_difference")
    assert "method='finite_difference'" in repr(module)


def test_wraps_the_books_relaxed_sorting_losses(device):
    """The exact Hessian through diffalg.sorting's network (double backward) and NeuralSort; finite
    differences agree where unsaturated."""
    from diffalg.sorting import sort_loss, neuralsort_permutation
    torch.manual_seed(6)
    y, v = torch.randn(4, 5, dtype=F64, device=device), torch.randn(4, 5, dtype=F64, device=device)
    losses = [lambda s: sort_loss(s, v, steepness=2.0, distribution="logistic", reduction="none"),
              lambda s: -(torch.nn.functional.one_hot(v.argsort(-1), 5).transpose(-2, -1)
                          .to(s.dtype) * neuralsort_permutation(s).log()).sum((-2, -1))]
    for loss_fn in losses:
        H = loss_hessian(y, loss_fn)
        ref = torch.autograd.functional.hessian(lambda s: loss_fn(s[None].expand(4, 5))[0], y[0])
        assert torch.allclose(H[0], ref, atol=1e-8)
        assert torch.allclose(loss_hessian(y, loss_fn, method="finite_difference"), H, atol=1e-5)
        d = newton_step(y, loss_fn, tikhonov=1.0)
        assert torch.allclose(d, reference_hessian_step(y, loss_fn, 1.0), atol=1e-8)
