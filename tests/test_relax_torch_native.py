"""The relaxation chapter's operators behave like PyTorch's own: `torch.compile(fullgraph=True)`
forward and backward equal eager in float64, no graph break, meta and fake tensors give the
shapes, no host read with validation off, no host-device synchronization in a CUDA training step;
loops without early exits give the same expectation; empty inputs are rejected by name; results
are named tuples."""
import time

import pytest
import torch
from torch_native import (assert_compiled_matches_eager, assert_fake_shapes, assert_meta_shapes,
                          assert_no_graph_breaks, no_cuda_sync)

import diffalg
from diffalg.relax import (ArgmaxResult, BubbleSortResult, KnockoutResult, Relaxation,
                           ShortestPathResult, argmax, bubble_sort, bubble_sort_program, knockout,
                           levenshtein, shortest_path, shortest_path_program)
from diffalg.relax import _engine as engine

F64 = torch.float64


def _x(device, *shape, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, dtype=F64, generator=g)).to(device).requires_grad_()


def _costs(device, *shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, dtype=F64, generator=g) * 4 + 1).to(device).requires_grad_()


def _symbols(device, *shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(*shape, dtype=F64, generator=g), -1).to(device) \
        .requires_grad_()


def relaxed_program(x, hard=False):
    "A bit of every operation of `Relaxation`: if_, while_, for_, argmin (both), min, read, write."
    R = Relaxation(4.0, hard=hard)
    s = R.if_(R.gt(x[..., 0], x[..., 1]), {"a": x}, lambda s: {"a": s["a"] * 2})

    def body(s, t):
        s["v"], s["n"] = s["v"] - 1.0, s["n"] + 1

    start = {"v": x[..., 0].abs() + 1.5, "n": torch.zeros_like(x[..., 0])}
    loop = R.while_(lambda s: R.and_(R.gt(s["v"], 0.0), R.ne(s["v"], 5.0)), body, start,
                    max_iter=6)
    w, w2 = R.argmin(s["a"]), R.argmin(s["a"], method="tournament")
    low = R.min(x, method="tournament")
    total = R.for_(range(3), lambda t, i: t + x[..., i], torch.zeros_like(x[..., 0]))
    return (w, w2, low, loop["n"], R.read(x, w), R.write(x, w2, low),
            R.position(loop["n"], 8), total, R.max(x, mask=x > -1.0))


# name -> (function of the inputs, inputs on a device)
CASES = {
    "Relaxation program": (relaxed_program, lambda d: (_x(d, 3, 5),)),
    "Relaxation program, hard": (lambda x: relaxed_program(x, hard=True), lambda d: (_x(d, 3, 5),)),
    "bubble_sort": (lambda x: bubble_sort(x, steepness=3.0), lambda d: (_x(d, 3, 5),)),
    "bubble_sort, batch shape": (lambda x: bubble_sort(x, distribution="cauchy"),
                                 lambda d: (_x(d, 2, 2, 4),)),
    "bubble_sort, logistic_art": (lambda x: bubble_sort(x, distribution="logistic_art"),
                                  lambda d: (_x(d, 3, 4),)),
    "bubble_sort, hard": (lambda x: bubble_sort(x, hard=True), lambda d: (_x(d, 3, 5),)),
    "bubble_sort_program": (lambda x: bubble_sort_program(x, steepness=3.0),
                            lambda d: (_x(d, 2, 4),)),
    "argmax": (lambda x: argmax(x, steepness=2.0), lambda d: (_x(d, 3, 5),)),
    "argmax, hard": (lambda x: argmax(x, hard=True), lambda d: (_x(d, 3, 5),)),
    "levenshtein": (lambda a, b: levenshtein(a, b, steepness=4.0),
                    lambda d: (_symbols(d, 2, 3, 4), _symbols(d, 2, 4, 4, seed=1))),
    "levenshtein, hard": (lambda a, b: levenshtein(a, b, hard=True),
                          lambda d: (_symbols(d, 2, 3, 4), _symbols(d, 2, 4, 4, seed=1))),
    "shortest_path": (lambda c: shortest_path(c, steepness=2.0), lambda d: (_costs(d, 2, 3, 3),)),
    "shortest_path, pairwise": (lambda c: shortest_path(c, method="pairwise", n_iter=6, n_trace=6),
                                lambda d: (_costs(d, 2, 3, 4),)),
    "shortest_path, hard": (lambda c: shortest_path(c, hard=True), lambda d: (_costs(d, 2, 3, 4),)),
    "shortest_path_program": (lambda c: shortest_path_program(c, n_iter=5, n_trace=5),
                              lambda d: (_costs(d, 2, 3, 3),)),
    "knockout": (lambda x: knockout(Relaxation(2.0), x, x > -1.0), lambda d: (_x(d, 3, 5),)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_compiled_matches_eager(name, device):
    fn, inputs = CASES[name]
    assert_compiled_matches_eager(fn, *inputs(device), rtol=1e-9, atol=1e-11)


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


def test_fake_shapes_with_the_default_validation():
    fn, inputs = CASES["bubble_sort"]
    assert_fake_shapes(fn, *inputs("cpu"), validate=True)


# ---------------------------------------------------------------- the autograd functions trace
def test_hand_written_autograd_functions_trace_whole():
    R = Relaxation(3.0, "cauchy")
    x = _x("cpu", 3, 5)
    rows = torch.cat([torch.eye(5, dtype=F64).expand(3, 5, 5), x.detach().unsqueeze(-1)], -1)
    rows.requires_grad_()
    for fn, inp in ((lambda x: engine._BubbleSort.apply(x, R, 1e-6), x),
                    (lambda r: engine._RelaxedPass.apply(r, 4, R), rows),
                    (lambda x: engine._bubble_sort_rows(x, R, 1e-6), x)):
        assert_no_graph_breaks(fn, inp)
        assert_compiled_matches_eager(fn, inp, rtol=1e-9, atol=1e-11)


# ---------------------------------------------------------------- loops without early exits
def _stopping_sort(device):
    "Sets that need one swap: every one stops after two passes, early in eager mode on the CPU."
    x = 2 * torch.arange(6.0, dtype=F64) + 0.1 * _x("cpu", 4, 6).detach()
    x[:, [2, 3]] = x[:, [3, 2]]
    return x.to(device).requires_grad_()


def test_loops_run_all_iterations_with_the_same_result(monkeypatch):
    "The early exit changes nothing: eager (stops), eager without it, compiled (all iterations)."
    x = _stopping_sort("cpu")
    calls = []

    def halving(x):
        def body(s, t):
            calls.append(t)
            s["x"], s["n"] = s["x"] / 2, s["n"] + 1
        R = Relaxation(4.0)
        start = {"x": x[:, 0].abs() + 2.0, "n": torch.zeros_like(x[:, 0])}
        return R.while_(lambda s: R.gt(s["x"], 1.0), body, start, max_iter=40, epsilon=1e-3)["n"]

    sort = lambda v: bubble_sort(v, steepness=4.0)  # noqa: E731
    assert len(engine._bubble_forward(x.detach(), Relaxation(4.0), 1e-6)[2][0]) < 7
    halving(x)
    assert len(calls) < 40                                  # eager on the CPU stops early
    want = [assert_compiled_matches_eager(f, x, rtol=1e-12, atol=1e-14) for f in (sort, halving)]
    monkeypatch.setattr(engine, "_stops_early", lambda t: False)
    monkeypatch.setattr(diffalg.relax.program, "_stops_early", lambda t: False)
    calls.clear()
    for f, w in zip((sort, halving), want):                # eager, all iterations
        got = f(x)
        for a, b in zip(got if isinstance(got, tuple) else (got,), w):
            torch.testing.assert_close(a.detach(), b, rtol=1e-12, atol=1e-14)
    assert len(calls) == 40


def test_stops_early_only_in_eager_mode_on_the_cpu():
    from diffalg.relax._engine import _stops_early
    assert _stops_early(torch.zeros(1))
    assert not _stops_early(torch.zeros(1, device="meta"))
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode() as mode:
        assert not _stops_early(mode.from_tensor(torch.zeros(1)))


def test_result_dtype_is_torchs_rule_for_real_tensors():
    from itertools import product
    dtypes = (torch.bool, torch.uint8, torch.int32, torch.int64, torch.float16, torch.bfloat16,
              torch.float32, torch.float64)
    for da, db, sa, sb in product(dtypes, dtypes, ((), (2,)), ((), (2,))):
        a, b = torch.zeros(sa, dtype=da), torch.zeros(sb, dtype=db)
        assert engine._result_dtype(a, b) == torch.result_type(a, b), (da, db, sa, sb)


def test_value_checks_are_skipped_while_compiling_and_when_switched_off():
    bad = torch.tensor([[1.0, float("nan"), 0.0]])
    with pytest.raises(ValueError, match="finite"):
        bubble_sort(bad)
    with diffalg.validate_args(False):
        bubble_sort(bad)
        shortest_path(-torch.ones(1, 2, 2))
    torch._dynamo.reset()
    torch.compile(lambda x: bubble_sort(x), fullgraph=True, backend="aot_eager")(bad)


# ---------------------------------------------------------------- edge cases
@pytest.mark.parametrize("call, name", [
    (lambda: bubble_sort(torch.zeros(3, 0)), "x"),
    (lambda: bubble_sort(torch.zeros(0), hard=True), "x"),
    (lambda: bubble_sort_program(torch.zeros(2, 0)), "x"),
    (lambda: argmax(torch.zeros(0)), "x"),
    (lambda: argmax(torch.zeros(4, 0), hard=True), "x"),
    (lambda: knockout(Relaxation(), torch.zeros(2, 0)), "x"),
    (lambda: levenshtein(torch.zeros(2, 3, 0), torch.zeros(2, 4, 0)), "a"),
    (lambda: levenshtein(torch.zeros(0), torch.zeros(0)), "a"),
    (lambda: shortest_path(torch.ones(1, 1)), "costs"),
    (lambda: shortest_path(torch.ones(2, 0, 3)), "costs"),
    (lambda: shortest_path_program(torch.ones(0, 0)), "costs"),
])
def test_empty_inputs_are_rejected_by_name(call, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        call()


def test_empty_batches_and_sequences_are_fine():
    assert bubble_sort(torch.zeros(0, 4)).permutation.shape == (0, 4, 4)
    assert bubble_sort(torch.zeros(0, 4), hard=True).swaps.shape == (0,)
    assert argmax(torch.zeros(0, 3)).onehot.shape == (0, 3)
    assert shortest_path(torch.ones(0, 3, 3)).path.shape == (0, 3, 3)
    assert shortest_path(torch.ones(0, 3, 3), hard=True).distances.shape == (0, 3, 3)
    b = torch.eye(3).expand(2, 3, 3)
    assert torch.equal(levenshtein(torch.zeros(2, 0, 3), b), torch.tensor([3.0, 3.0]))


# ---------------------------------------------------------------- results like torch.return_types
def test_results_are_named_tuples_that_print_like_torch():
    x = torch.tensor([[2.0, 0.0, 1.0]])
    out = bubble_sort(x, hard=True)
    assert isinstance(out, BubbleSortResult) and out._fields == ("values", "permutation", "swaps")
    values, permutation, swaps = out
    assert torch.equal(values, out.values) and torch.equal(out.swaps, torch.tensor([2.0]))
    text = repr(out)
    assert text.startswith("diffalg.relax.algorithms.BubbleSortResult(\nvalues=tensor(")
    assert "\npermutation=tensor(" in text and text.endswith("swaps=tensor([2.]))")
    assert isinstance(bubble_sort_program(x), BubbleSortResult)
    assert argmax(x)._fields == ("values", "onehot") and isinstance(argmax(x), ArgmaxResult)
    assert isinstance(knockout(Relaxation(), x), KnockoutResult)
    c = torch.ones(1, 3, 3)
    for out in (shortest_path(c), shortest_path_program(c)):
        assert isinstance(out, ShortestPathResult) and out._fields == ("distances", "path")
    assert "torch.return_types.sort(\nvalues=" in repr(torch.sort(x))   # the model


def test_compiled_functions_return_the_named_tuples():
    torch._dynamo.reset()
    x = torch.randn(2, 4)
    out = torch.compile(lambda v: bubble_sort(v), fullgraph=True, backend="aot_eager")(x)
    assert isinstance(out, BubbleSortResult)
    out = torch.compile(lambda c: shortest_path(c), fullgraph=True, backend="aot_eager")(x + 3)
    assert isinstance(out, ShortestPathResult)


# ---------------------------------------------------------------- Inductor, and a GPU
def test_bubble_sort_compiles_with_inductor(device):
    "The default backend, at a small size: values and gradients as in eager mode."
    torch._dynamo.reset()
    x = _x(device, 4, 3)
    t0 = time.perf_counter()
    assert_compiled_matches_eager(lambda v: bubble_sort(v, steepness=3.0), x, backend="inductor",
                                  rtol=1e-9, atol=1e-11)
    print(f"inductor, bubble_sort (4, 3) forward + backward: {time.perf_counter() - t0:.1f} s")


def test_a_training_step_does_not_synchronize_with_the_gpu(device):
    if device.type != "cuda":
        pytest.skip("host-device synchronization is a CUDA matter")
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 1).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    feats = torch.randn(8, 5, 6, device=device)
    costs = torch.rand(4, 6, 6, device=device) + 1
    target = torch.zeros(4, 6, 6, device=device)
    torch.cuda.synchronize()
    with no_cuda_sync():
        for _ in range(2):
            scores = model(feats).squeeze(-1)
            loss = bubble_sort(scores, steepness=4.0).swaps.mean()
            loss = loss + argmax(scores).values.mean()
            path = shortest_path(costs * model.weight.abs().mean(), steepness=2.0).path
            loss = loss + (path - target).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
