"""The introduction's operators behave like PyTorch's own: the distributions' `cdf`, `pdf` and
`relaxed_step`, `ranking_accuracy` and `NumberScorer` compile with `torch.compile(fullgraph=True)`
to the eager results in float64, without graph breaks, run on meta and fake tensors without
reading values, and a CUDA training step does not wait for the GPU; `ranking_accuracy` rejects
non-finite scores under the validation switch."""
import time

import pytest
import torch
from torch_native import (assert_compiled_matches_eager, assert_fake_shapes, assert_meta_shapes,
                          assert_no_graph_breaks, no_cuda_sync)

import diffalg
from diffalg import NumberScorer, get_distribution, ranking_accuracy, relaxed_step
from diffalg.distributions import Distribution, Logistic, distribution_names
from diffalg.ranking import RankingAccuracy, evaluate_ranking

F64 = torch.float64


def _x(device, *shape, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    x = (3 * torch.randn(*shape, dtype=F64, generator=g)).to(device)
    return x.requires_grad_(grad)


class SteepLogistic(Logistic):
    "A distribution that overrides `_step` only: its slope comes from autograd (torch.func)."
    name = "steep_logistic_test"

    def _step(self, x, steepness):
        return torch.sigmoid(2 * x * steepness)


def _scorer(device):
    "A small materialized `NumberScorer` as a function of images and its parameters."
    torch.manual_seed(0)
    model = NumberScorer(channels=2, hidden=4).to(device=device, dtype=F64)
    model(torch.zeros(1, 1, 8, 16, dtype=F64, device=device))       # materialize the lazy layer
    names = [n for n, _ in model.named_parameters()]

    def run(images, *params):
        return torch.func.functional_call(model, dict(zip(names, params)), (images,))
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 1, 8, 16, dtype=F64, generator=g).to(device).requires_grad_()
    return run, (images, *params)


CASES = {
    **{f"cdf {name}": ((lambda name: lambda x: get_distribution(name).cdf(x))(name),
                       lambda d: (_x(d, 3, 5),)) for name in distribution_names()},
    **{f"pdf {name}": ((lambda name: lambda x: get_distribution(name).pdf(x))(name),
                       lambda d: (_x(d, 3, 5),)) for name in distribution_names()},
    "relaxed_step": (lambda x: relaxed_step(x, 2.0, "gaussian"), lambda d: (_x(d, 3, 5),)),
    "relaxed_step, tensor steepness": (lambda x, s: relaxed_step(x, s, "logistic_art"),
                                       lambda d: (_x(d, 3, 5), _x(d, 5, seed=1).abs() + 0.5)),
    "relaxed_step, float32": (lambda x: relaxed_step(x, 4.0, "cauchy"),
                              lambda d: (_x(d, 4).float().detach().requires_grad_(),)),
    "_dstep by autograd": (lambda x: SteepLogistic()._dstep(x, 3.0),
                           lambda d: (_x(d, 3, 5, grad=False),)),
    "ranking_accuracy": (ranking_accuracy,
                         lambda d: (_x(d, 4, 5, grad=False), _x(d, 4, 5, seed=1, grad=False))),
    "NumberScorer": _scorer,
}


def _case(name, device):
    entry = CASES[name]
    if name == "NumberScorer":
        return entry(device)
    fn, inputs = entry
    return fn, inputs(device)


@pytest.mark.parametrize("name", list(CASES))
def test_compiled_matches_eager(name, device):
    fn, inputs = _case(name, device)
    tol = 1e-5 if "float32" in name else 1e-9
    assert_compiled_matches_eager(fn, *inputs, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", list(CASES))
def test_no_graph_breaks(name):
    fn, inputs = _case(name, "cpu")
    assert_no_graph_breaks(fn, *inputs)


@pytest.mark.parametrize("name", list(CASES))
def test_meta_shapes(name):
    fn, inputs = _case(name, "cpu")
    assert_meta_shapes(fn, *inputs)


@pytest.mark.parametrize("name", list(CASES))
def test_fake_shapes_without_host_reads(name):
    fn, inputs = _case(name, "cpu")
    assert_fake_shapes(fn, *inputs, validate=False)


def test_relaxed_step_compiles_with_inductor(device):
    "The default backend, at a small size, for the chapter's relaxed comparison."
    torch._dynamo.reset()
    t0 = time.perf_counter()
    for name in ("logistic", "logistic_art", "reciprocal"):
        assert_compiled_matches_eager(lambda x: relaxed_step(x, 2.0, name), _x(device, 3, 4),
                                      backend="inductor", rtol=1e-9, atol=1e-11)
    print(f"inductor, relaxed_step, 3 distributions: {time.perf_counter() - t0:.1f} s")


# ---------------------------------------------------------------- ranking_accuracy
def test_ranking_accuracy_rejects_non_finite_scores():
    values = torch.tensor([[3.0, 1.0, 2.0]])
    for bad in (float("nan"), float("inf"), -float("inf")):
        scores = torch.tensor([[1.0, bad, 0.0]])
        with pytest.raises(ValueError, match="`scores` must contain only finite"):
            ranking_accuracy(scores, values)
        with pytest.raises(ValueError, match="`values` must contain only finite"):
            ranking_accuracy(values, scores)
        with diffalg.validate_args(False):               # the switch turns the read off
            assert ranking_accuracy(scores, values).exact_match.shape == ()


def test_ranking_accuracy_returns_named_tensors():
    v = torch.tensor([[3.0, 1.0, 2.0], [1.0, 2.0, 3.0]], dtype=F64)
    out = ranking_accuracy(torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]], dtype=F64), v)
    assert isinstance(out, RankingAccuracy) and out._fields == ("exact_match", "elementwise")
    assert out.exact_match.dtype == F64 and out.exact_match.shape == ()
    em, ew = out
    assert float(em) == 0.5 and abs(float(ew) - 4 / 6) < 1e-12
    assert repr(out).startswith("diffalg.ranking.RankingAccuracy(\nexact_match=tensor(0.5000")
    assert ranking_accuracy(v.half(), v).exact_match.dtype == torch.float32


def test_evaluate_ranking_gives_python_floats():
    model = NumberScorer(channels=2, hidden=4)
    images, values = torch.rand(5, 3, 1, 8, 16), torch.randn(5, 3)
    out = evaluate_ranking(model, (images, values), batch_size=2)
    assert isinstance(out, RankingAccuracy) and all(type(a) is float for a in out)


def test_custom_distributions_differentiate_while_compiling():
    assert SteepLogistic._step is not Distribution._step
    x = _x("cpu", 4)
    want = 2 * 3.0 * torch.sigmoid(6 * x) * (1 - torch.sigmoid(6 * x))
    torch.testing.assert_close(SteepLogistic()._dstep(x.detach(), 3.0), want)


# ---------------------------------------------------------------- a GPU
def test_a_training_step_does_not_synchronize_with_the_gpu(device):
    if device.type != "cuda":
        pytest.skip("host-device synchronization is a CUDA matter")
    torch.manual_seed(0)
    model = NumberScorer(channels=4, hidden=8).to(device)
    images = torch.rand(4, 5, 1, 8, 16, device=device)
    values = torch.randn(4, 5, device=device)
    model(images)                                        # materialize the lazy layer
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    torch.cuda.synchronize()
    with no_cuda_sync():
        for _ in range(2):
            s = model(images)
            want = (values[:, :, None] < values[:, None, :]).float()
            p = relaxed_step(s[:, None, :] - s[:, :, None], 4.0, "cauchy")   # P(s_i < s_j)
            loss = torch.nn.functional.binary_cross_entropy(p, want)
            opt.zero_grad()
            loss.backward()
            opt.step()
            accuracy = ranking_accuracy(s.detach(), values)
    assert accuracy.exact_match.device.type == "cuda"
