"""The Newton losses behave like PyTorch's own operators: `torch.compile(fullgraph=True)` forward
and backward equal eager in float64 (the derivatives come from torch.func while compiling), no
graph break, meta and fake tensors give the shapes, no host read with validation off, no
host-device synchronization in a CUDA training step."""
import time

import pytest
import torch
from torch_native import (assert_compiled_matches_eager, assert_fake_shapes, assert_meta_shapes,
                          assert_no_graph_breaks, no_cuda_sync)

from diffalg.newton import (FisherNewtonLoss, HessianNewtonLoss, fisher_newton_loss,
                            fisher_precondition, hessian_newton_loss, loss_hessian, newton_step)
from diffalg.newton import _engine as engine

F64 = torch.float64


def pairwise_logistic(y, values):
    "Sum of softplus(y_i - y_j) over the pairs with v_i < v_j, per sample (B,)."
    want = (values[:, :, None] < values[:, None, :]).to(y.dtype)
    return (torch.nn.functional.softplus(y[:, :, None] - y[:, None, :]) * want).sum((1, 2))


def smooth(y, scale):
    "A convex loss of outputs with event shape (B, 2, 3), per sample."
    z = y.flatten(1) * scale.flatten(1)
    return torch.logsumexp(z, 1) + 0.5 * (z ** 2).sum(1) + 0.1 * (z ** 4).sum(1)


def smooth_sum(y, scale):
    "The scalar sum of `smooth` over the batch."
    return smooth(y, scale).sum()


def _inputs(device, shape=(6, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(*shape, dtype=F64, generator=g).to(device).requires_grad_()
    v = torch.randn(*shape, dtype=F64, generator=g).to(device)
    return y, v


def _module(crit):
    "The module's loss and what it keeps of the last call (`last_loss`)."
    def run(y, v):
        return crit(y, v), crit.last_loss
    return run


def _event(device):
    y, v = _inputs(device, (5, 2, 3), seed=1)
    return y, v.abs() + 0.5


CASES = {
    "HessianNewtonLoss": (_module(HessianNewtonLoss(pairwise_logistic, tikhonov=1.0)), _inputs),
    "HessianNewtonLoss, cg": (
        _module(HessianNewtonLoss(pairwise_logistic, tikhonov=1.0, method="cg")), _inputs),
    "HessianNewtonLoss, cg capped": (_module(HessianNewtonLoss(
        smooth, lam=0.5, method="cg", cg_max_iter=3, reduction="none")), _event),
    "HessianNewtonLoss, finite_difference": (_module(HessianNewtonLoss(
        pairwise_logistic, tikhonov=1.0, method="finite_difference", reduction="sum")), _inputs),
    "HessianNewtonLoss, event shape, sum loss": (_module(HessianNewtonLoss(
        smooth_sum, tikhonov=0.3, reduction="sum")), _event),
    "FisherNewtonLoss": (_module(FisherNewtonLoss(pairwise_logistic, tikhonov=0.1)), _inputs),
    "FisherNewtonLoss, m > B, none": (_module(FisherNewtonLoss(
        pairwise_logistic, tikhonov=0.1, reduction="none")),
        lambda d: _inputs(d, (3, 5))),
    "FisherNewtonLoss, sum loss": (_module(FisherNewtonLoss(
        smooth_sum, lambda_=0.2, reduction="sum")), _event),
    "hessian_newton_loss": (lambda y, v: hessian_newton_loss(
        y, lambda s: pairwise_logistic(s, v), tikhonov=torch.tensor(0.5)), _inputs),
    "fisher_newton_loss": (lambda y, v: fisher_newton_loss(
        y, lambda s: pairwise_logistic(s, v), lam=0.1, reduction="none"), _inputs),
    "newton_step": (lambda y, v: newton_step(y, lambda s: pairwise_logistic(s, v), 1.0), _inputs),
    "newton_step, fisher": (lambda y, v: newton_step(
        y, lambda s: pairwise_logistic(s, v), 1.0, curvature="fisher"), _inputs),
    "loss_hessian": (lambda y, v: loss_hessian(y, lambda s: smooth(s, v)), _event),
    "loss_hessian, finite_difference": (lambda y, v: loss_hessian(
        y, lambda s: smooth(s, v), method="finite_difference"), _event),
    "fisher_precondition": (lambda y, v: fisher_precondition(y * v, 0.3), _inputs),
}


@pytest.mark.parametrize("name", list(CASES))
def test_compiled_matches_eager(name, device):
    fn, inputs = CASES[name]
    tol = 1e-6 if "finite_difference" in name else 1e-9     # differences of gradients
    assert_compiled_matches_eager(fn, *inputs(device), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", list(CASES))
def test_no_graph_breaks(name):
    fn, inputs = CASES[name]
    assert_no_graph_breaks(fn, *inputs("cpu"))


@pytest.mark.parametrize("name", list(CASES))
def test_meta_shapes(name):
    fn, inputs = CASES[name]
    assert_meta_shapes(fn, *inputs("cpu"))


@pytest.mark.parametrize("name", list(CASES))
def test_fake_shapes_without_host_reads(name):
    fn, inputs = CASES[name]
    assert_fake_shapes(fn, *inputs("cpu"), validate=False)


def test_inject_gradient_traces_whole():
    y, v = _inputs("cpu")
    direction = torch.randn(6, 4, dtype=F64)
    fn = lambda y, v: engine._InjectGradient.apply(y, v.sum(1), direction)  # noqa: E731
    assert_no_graph_breaks(fn, y, v)
    assert_compiled_matches_eager(fn, y, v)


def test_newton_losses_compile_with_inductor(device):
    "The default backend, at a small size: loss and gradient as in eager mode."
    torch._dynamo.reset()
    y, v = _inputs(device, (4, 3))
    crit = HessianNewtonLoss(pairwise_logistic, tikhonov=1.0)
    t0 = time.perf_counter()
    assert_compiled_matches_eager(crit, y, v, backend="inductor", rtol=1e-9, atol=1e-11)
    print(f"inductor, HessianNewtonLoss (4, 3) forward + backward: "
          f"{time.perf_counter() - t0:.1f} s")


# ---------------------------------------------------------------- the branch-free forms
def test_dense_step_marks_singular_samples_without_reading_the_flag():
    H = torch.eye(3, dtype=F64).repeat(4, 1, 1)
    H[1] = -0.5 * torch.eye(3, dtype=F64)                  # H + 0.5 I = 0: singular
    g = torch.randn(4, 3, dtype=F64)
    d = engine._dense_step(H, g, 0.5)
    assert torch.isnan(d[1]).all() and torch.isfinite(d[[0, 2, 3]]).all()
    torch.testing.assert_close(d[0], g[0] / 1.5)


def test_spd_solve_without_reading_the_flag():
    g = torch.randn(8, 3, dtype=F64)
    A = g.T @ g / 8 + 0.3 * torch.eye(3, dtype=F64)
    L, info = torch.linalg.cholesky_ex(A)
    torch.testing.assert_close(engine._spd_solve_unread(A, g.T, 0.3, L, info),
                               engine._spd_solve(A, g.T, 0.3))
    broken = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64)     # indefinite: no Cholesky
    L, info = torch.linalg.cholesky_ex(broken)
    assert int(info) != 0
    x = engine._spd_solve_unread(broken, torch.ones(2, 1, dtype=F64), 2.0, L, info)
    torch.testing.assert_close(x, torch.linalg.solve(broken + 2 * torch.eye(2, dtype=F64),
                                                  torch.ones(2, 1, dtype=F64)))


def test_conjugate_gradients_without_early_exit_give_the_same_steps(monkeypatch):
    y, v = _inputs("cpu", (6, 5))
    crit = HessianNewtonLoss(pairwise_logistic, tikhonov=1.0, method="cg", cg_max_iter=30)
    want = crit(y, v)
    monkeypatch.setattr(engine, "_reads_flags", lambda x: False)
    torch.testing.assert_close(crit(y, v), want, rtol=1e-12, atol=1e-14)


def test_value_checks_wait_for_eager_mode():
    y, v = _inputs("cpu")
    y_bad = y.detach().clone()
    y_bad[0, 0] = float("nan")
    crit = FisherNewtonLoss(pairwise_logistic, tikhonov=0.1)
    with pytest.raises(ValueError, match="`y` must contain only finite"):
        crit(y_bad, v)
    torch._dynamo.reset()
    out = torch.compile(crit, fullgraph=True, backend="aot_eager")(y_bad, v)
    assert not torch.isfinite(out)                       # not checked while compiling


# ---------------------------------------------------------------- a GPU
def test_a_training_step_does_not_synchronize_with_the_gpu(device):
    if device.type != "cuda":
        pytest.skip("host-device synchronization is a CUDA matter")
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 1).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    feats, values = torch.randn(8, 5, 6, device=device), torch.randn(8, 5, device=device)
    losses = [HessianNewtonLoss(pairwise_logistic, tikhonov=1.0),
              HessianNewtonLoss(pairwise_logistic, tikhonov=1.0, method="cg"),
              FisherNewtonLoss(pairwise_logistic, tikhonov=0.1)]
    torch.cuda.synchronize()
    with no_cuda_sync():
        for crit in losses:
            loss = crit(model(feats).squeeze(-1), values)
            opt.zero_grad()
            loss.backward()
            opt.step()
