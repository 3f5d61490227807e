"""The engine of diffalg.relax equals its reference programs, in float64.

`bubble_sort` (one autograd node with a hand-written backward) against `bubble_sort_program` (the
relaxed program with `Relaxation.if_` and `while_`), `Relaxation.argmin/min(method="tournament")`
(one tensor operation per round) against `knockout` (match by match), and `shortest_path` (gather
and scatter-add on flattened cells) against `shortest_path_program` (shifted maps): values and
gradients, on random and adversarial inputs (ties, equal values, one or two elements, large and
tiny magnitudes, early exits, masks, batch shapes), for several distributions and t-norms; second
derivatives of the bubble sort.
"""

import ast
import inspect

import pytest
import torch

import diffalg.relax._engine as engine
from diffalg.distributions import distribution_names
from diffalg.relax import (
    NEIGHBOURS,
    Relaxation,
    T_NORMS,
    argmax,
    bubble_sort,
    bubble_sort_program,
    knockout,
    levenshtein,
    shortest_path,
    shortest_path_program,
)
from diffalg.relax import algorithms

F64 = torch.float64
SMOOTH = [d for d in distribution_names() if d != "uniform"]  # uniform has kinks


def close(a, b, atol=1e-12, rtol=0.0):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def weighted_sum(outputs, weights):
    "A scalar that sees every output: sum_k <w_k, output_k>."
    return sum((w * o).sum() for w, o in zip(weights, outputs))


def check_values_and_grads(fast, reference, inputs, atol=1e-12, gatol=1e-10, grads=True):
    """fast(*inputs) == reference(*inputs) (tuples of tensors) to float64 rounding (absolute
    `atol`, relative 1e-11), and the gradients of a random weighting of all outputs."""
    inputs = [t.detach().clone().requires_grad_(grads) for t in inputs]
    out_f, out_r = fast(*inputs), reference(*inputs)
    assert len(out_f) == len(out_r)
    for a, b in zip(out_f, out_r):
        assert a.shape == b.shape and a.dtype == b.dtype
        close(a, b, atol=atol, rtol=1e-11 if atol else 0.0)
    if not grads:
        return
    gen = torch.Generator().manual_seed(123)
    weights = [torch.randn(o.shape, dtype=o.dtype, generator=gen).to(o.device) for o in out_f]
    g_f = torch.autograd.grad(weighted_sum(out_f, weights), inputs, allow_unused=True)
    g_r = torch.autograd.grad(weighted_sum(out_r, weights), inputs, allow_unused=True)
    for a, b in zip(g_f, g_r):
        if a is None or b is None:
            assert a is None and b is None or (a if b is None else b).abs().max() == 0
            continue
        close(a, b, atol=gatol, rtol=1e-9)


# ---------------------------------------------------------------- the layering
def test_engine_imports_nothing_from_the_package():
    "The engine is the lowest layer: it receives a `Relaxation` and imports only torch."
    tree = ast.parse(inspect.getsource(engine))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "." for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "torch" in imported and all(m.split(".")[0] == "torch" for m in imported)


def test_neighbour_order_is_the_window_without_its_centre():
    assert engine._OFFSETS[: engine._CENTRE] + engine._OFFSETS[engine._CENTRE + 1 :] == NEIGHBOURS
    assert engine._OFFSETS[engine._CENTRE] == (0, 0) and len(set(engine._OFFSETS)) == 9


def test_argmax_and_levenshtein_are_their_programs():
    "No engine for these two: the public functions are the relaxed programs themselves."
    assert argmax is algorithms.argmax and levenshtein is algorithms.levenshtein
    assert "_engine" not in inspect.getsource(argmax) + inspect.getsource(levenshtein)


# ---------------------------------------------------------------- bubble sort
def _sorts(**kw):
    return (lambda v: bubble_sort(v, **kw)), (lambda v: bubble_sort_program(v, **kw))


@pytest.mark.parametrize("name", distribution_names())
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_bubble_sort_random(name, n, device):
    torch.manual_seed(n)
    x = 2 * torch.randn(6, n, dtype=F64, device=device)
    check_values_and_grads(*_sorts(steepness=3.0, distribution=name), [x])


@pytest.mark.parametrize("epsilon", [0.0, 1e-6, 1e-3, 0.3, 0.9])
@pytest.mark.parametrize("name", ["logistic", "cauchy", "logistic_art", "gaussian"])
def test_bubble_sort_early_exit(epsilon, name, device):
    "The loop's per-item early exit (epsilon) and the forced exit after n passes."
    torch.manual_seed(3)
    x = torch.randn(5, 6, dtype=F64, device=device)
    x = torch.cat(
        [
            x,
            torch.arange(6.0, dtype=F64, device=device)[None],  # sorted: exits early
            torch.arange(6.0, 0, -1, dtype=F64, device=device)[None],
        ]
    )  # reversed: all passes
    check_values_and_grads(*_sorts(steepness=2.0, distribution=name, epsilon=epsilon), [x])


@pytest.mark.parametrize("shape", [(4,), (1, 4), (2, 3, 4), (1, 1, 2), (3, 1)])
def test_bubble_sort_batch_shapes(shape, device):
    torch.manual_seed(4)
    x = torch.randn(shape, dtype=F64, device=device)
    check_values_and_grads(*_sorts(steepness=4.0, distribution="laplace"), [x])


@pytest.mark.parametrize(
    "case", ["ties", "all_equal", "sorted", "reversed", "huge", "tiny", "mixed_scales", "near_ties"]
)
@pytest.mark.parametrize("name", ["logistic", "cauchy", "uniform", "optimal"])
def test_bubble_sort_adversarial(case, name, device):
    x = {
        "ties": [[3.0, 1.0, 3.0, 2.0, 1.0, 0.0, 0.0]],
        "all_equal": [[2.0] * 6, [0.0] * 6],
        "sorted": [[-3.0, -1.0, 0.0, 0.5, 4.0]],
        "reversed": [[4.0, 0.5, 0.0, -1.0, -3.0]],
        "huge": [[1e6, -2e6, 3e6, 0.0, -1e6]],
        "tiny": [[1e-9, 0.0, -1e-9, 2e-9, 1e-12]],
        "mixed_scales": [[1e4, 1e-4, -1e4, 0.0, 1.0]],
        "near_ties": [[1.0, 1.0 + 1e-12, 1.0 - 1e-12, 1.0]],
    }[case]
    x = torch.tensor(x, dtype=F64, device=device)
    scale = max(1.0, float(x.abs().max()))  # rounding of mixes is relative to the inputs
    for steepness in (0.5, 8.0):
        check_values_and_grads(
            *_sorts(steepness=steepness, distribution=name), [x], atol=1e-12 * scale
        )


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_bubble_sort_hard_exact(n, device):
    "hard=True: the engine (fused rows, exact selection) is the program exactly, ties included."
    torch.manual_seed(n)
    x = torch.randint(0, 3, (20, n), device=device).to(F64)
    for a, b in zip(bubble_sort(x, hard=True), bubble_sort_program(x, hard=True)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["logistic", "cauchy", "gaussian"])
def test_bubble_sort_fused_rows_equal_program(name, device):
    "The fused-row program that the node differentiates for second derivatives."
    torch.manual_seed(5)
    x = torch.randn(3, 5, dtype=F64, device=device)
    R = Relaxation(2.0, name)

    def fused(v):
        rows, swaps = engine._bubble_sort_rows(v, R, 1e-6)
        return rows[..., -1], rows[..., :-1], swaps

    check_values_and_grads(fused, lambda v: bubble_sort_program(v, 2.0, name), [x])


@pytest.mark.parametrize("name", ["logistic", "cauchy", "logistic_art"])
def test_bubble_sort_second_derivatives_equal_program(name, device):
    "Hessian-vector products of every output: engine (create_graph) == program."
    torch.manual_seed(6)
    x = torch.randn(2, 4, dtype=F64, device=device, requires_grad=True)
    v = torch.randn(2, 4, dtype=F64, device=device)
    for k in range(3):
        hv = []
        for sort in _sorts(steepness=1.5, distribution=name, epsilon=1e-4):
            w = torch.randn(sort(x)[k].shape, dtype=F64, generator=torch.Generator().manual_seed(k))
            (g,) = torch.autograd.grad((w.to(device) * sort(x)[k]).sum(), x, create_graph=True)
            hv.append(torch.autograd.grad((g * v).sum(), x)[0])
        close(hv[0], hv[1], atol=1e-9)


def test_relaxed_pass_equals_plain_pass(device):
    "One pass: the in-place node against the recorded pass, with either output's gradient alone."
    torch.manual_seed(7)
    R = Relaxation(2.5, "gaussian")
    rows = torch.randn(3, 6, 7, dtype=F64, device=device)
    for m in (1, 3, 5):
        check_values_and_grads(
            lambda r: engine._RelaxedPass.apply(r, m, R),
            lambda r: engine._plain_pass(R, r, m),
            [rows],
        )
        for k in range(2):
            r = rows.clone().requires_grad_()
            (g_f,) = torch.autograd.grad(engine._RelaxedPass.apply(r, m, R)[k].sum(), r)
            (g_r,) = torch.autograd.grad(engine._plain_pass(R, r, m)[k].sum(), r)
            close(g_f, g_r, atol=1e-12)


def test_all_but_one_product():
    q = torch.tensor([[0.5, 0.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, 1.0]], dtype=F64)
    want = torch.stack([torch.cat([q[:, :i], q[:, i + 1 :]], 1).prod(1) for i in range(4)], 1)
    close(engine._all_but_one_product(q), want, atol=0)
    close(engine._all_but_one_product(q[:, :1]), torch.ones(3, 1, dtype=F64), atol=0)


# ---------------------------------------------------------------- the tournament
def _tournaments(R, mask=None):
    "(engine, reference) returning (weights, minimum) along the last axis."

    def fast(x):
        return R.argmin(x, mask=mask, method="tournament"), R.min(x, mask=mask, method="tournament")

    return fast, (lambda x: knockout(R, x, mask))


@pytest.mark.parametrize("name", distribution_names())
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16])
def test_tournament_random(name, n, device):
    torch.manual_seed(n)
    x = 3 * torch.randn(10, n, dtype=F64, device=device)
    check_values_and_grads(*_tournaments(Relaxation(2.0, name)), [x])


@pytest.mark.parametrize("n", [2, 3, 5, 8, 11])
def test_tournament_masks(n, device):
    "Excluded entries lose every match: masks of every pattern, including the first or last entry."
    torch.manual_seed(n)
    x = torch.randn(6, n, dtype=F64, device=device)
    R = Relaxation(1.5, "cauchy")
    masks = [torch.rand(n, device=device) < 0.5 for _ in range(4)]
    masks += [
        torch.arange(n, device=device) != 0,
        torch.arange(n, device=device) != n - 1,
        torch.arange(n, device=device) == n - 1,
        torch.rand(6, n, device=device) < 0.6,
    ]
    for mask in masks:
        if mask.dim() == 2:
            mask[:, 0] = True
        elif not bool(mask.any()):
            mask[0] = True
        check_values_and_grads(*_tournaments(R, mask), [x])


@pytest.mark.parametrize("case", ["ties", "all_equal", "huge", "tiny"])
@pytest.mark.parametrize("hard", [False, True])
def test_tournament_adversarial(case, hard, device):
    x = {
        "ties": [[1.0, 0.0, 0.0, 2.0, 0.0], [3.0, 3.0, 1.0, 1.0, 1.0]],
        "all_equal": [[5.0] * 7],
        "huge": [[1e8, -1e8, 3e7, 0.0, 2e8, -5e7]],
        "tiny": [[1e-10, -1e-10, 0.0, 3e-10]],
    }[case]
    x = torch.tensor(x, dtype=F64, device=device)
    R = Relaxation(4.0, "logistic", hard=hard)
    check_values_and_grads(*_tournaments(R), [x], grads=not hard)
    if hard:  # the first minimum, as torch.argmin
        assert torch.equal(R.argmin(x, method="tournament").argmax(-1), x.argmin(-1))


def test_tournament_along_a_middle_axis(device):
    "dim and a mask that broadcasts: the engine moves the axis, the reference sees it last."
    torch.manual_seed(9)
    x = torch.randn(3, 6, 4, dtype=F64, device=device)
    mask = torch.tensor([True, False, True, True, False, True], device=device).unsqueeze(-1)
    R = Relaxation(2.0, "gaussian")
    w = R.argmin(x, dim=1, mask=mask, method="tournament")
    w_ref, m_ref = knockout(R, x.transpose(1, 2), mask.transpose(0, 1))
    close(w, w_ref.transpose(1, 2), atol=1e-14)
    close(R.min(x, dim=1, mask=mask, method="tournament"), m_ref, atol=1e-14)


# ---------------------------------------------------------------- shortest path
def _paths(**kw):
    return (lambda c: shortest_path(c, **kw)), (lambda c: shortest_path_program(c, **kw))


@pytest.mark.parametrize("method", ["tournament", "pairwise"])
@pytest.mark.parametrize("trace_method", ["tournament", "pairwise"])
@pytest.mark.parametrize("name", ["logistic", "gaussian", "cauchy", "uniform"])
def test_shortest_path_random(method, trace_method, name, device):
    torch.manual_seed(10)
    c = torch.rand(2, 5, 6, dtype=F64, device=device) * 4 + 1
    check_values_and_grads(
        *_paths(
            steepness=2.0,
            distribution=name,
            n_iter=10,
            n_trace=10,
            method=method,
            trace_method=trace_method,
        ),
        [c],
    )


@pytest.mark.parametrize("tnorm", list(T_NORMS))
def test_shortest_path_tnorms(tnorm, device):
    torch.manual_seed(11)
    c = torch.rand(3, 4, 4, dtype=F64, device=device) * 3 + 0.5
    check_values_and_grads(*_paths(steepness=3.0, tnorm=tnorm), [c])


@pytest.mark.parametrize(
    "shape", [(1, 2), (2, 1), (2, 2), (1, 7), (6, 1), (3, 5), (1, 3, 4), (2, 3, 3, 3)]
)
def test_shortest_path_shapes(shape, device):
    "Tiny maps, single rows and columns, no batch, batch of 1, two leading dimensions."
    torch.manual_seed(12)
    c = torch.rand(shape, dtype=F64, device=device) * 5 + 1
    check_values_and_grads(*_paths(steepness=2.5), [c])
    check_values_and_grads(*_paths(hard=True), [c], atol=0, grads=False)


@pytest.mark.parametrize("case", ["equal_costs", "integer_costs", "huge", "tiny"])
def test_shortest_path_adversarial(case, device):
    "Many equally short paths (ties in every argmin), saturated and nearly flat comparisons."
    torch.manual_seed(13)
    c = (
        {
            "equal_costs": torch.ones(2, 5, 5),
            "integer_costs": torch.randint(1, 3, (3, 6, 6)).float(),
            "huge": torch.rand(2, 4, 5) * 1e5 + 1e4,
            "tiny": torch.rand(2, 4, 5) * 1e-6 + 1e-6,
        }[case]
        .to(F64)
        .to(device)
    )
    scale = float(c.sum(dim=(-2, -1)).max())
    check_values_and_grads(
        *_paths(steepness=2.0, n_iter=12, n_trace=12), [c], atol=1e-12 * max(scale, 1.0), gatol=1e-9
    )
    for method in ("tournament", "pairwise"):
        hard = _paths(hard=True, method=method, trace_method=method)
        check_values_and_grads(*hard, [c], atol=0, grads=False)


def test_shortest_path_hard_defaults(device):
    "hard=True with the default rounds (until nothing changes) and traceback (until the source)."
    torch.manual_seed(14)
    c = torch.rand(4, 7, 8, dtype=F64, device=device) ** 3 * 9 + 0.5
    for a, b in zip(shortest_path(c, hard=True), shortest_path_program(c, hard=True)):
        assert torch.equal(a, b)
