"Tests of diffalg.relax (relaxed operations) and diffalg.relax.algorithms (worked algorithms)."

import heapq

import pytest
import torch

from diffalg.distributions import distribution_names
from diffalg.relax.program import Relaxation, T_NORMS, t_norm, t_conorm
from diffalg.relax.algorithms import NEIGHBOURS, argmax, bubble_sort, levenshtein, shortest_path

SMOOTH = [d for d in distribution_names() if d != "uniform"]  # uniform has kinks: no gradcheck


# ---------------------------------------------------------------- plain-Python references
def bubble_reference(values):
    a, idx, swaps, swapped, n = list(values), list(range(len(values))), 0, True, len(values)
    while swapped:
        swapped = False
        for i in range(n - 1):
            if a[i] > a[i + 1]:
                a[i], a[i + 1], idx[i], idx[i + 1] = a[i + 1], a[i], idx[i + 1], idx[i]
                swaps, swapped = swaps + 1, True
        n -= 1
    return a, idx, swaps


def argmax_reference(values):
    best, arg = values[0], 0
    for i, v in enumerate(values):
        if v > best:
            best, arg = v, i
    return best, arg


def levenshtein_reference(s, t):
    row = list(range(len(t) + 1))
    for i in range(1, len(s) + 1):
        new = [i]
        for j in range(1, len(t) + 1):
            new.append(min(row[j] + 1, new[j - 1] + 1, row[j - 1] + (s[i - 1] != t[j - 1])))
        row = new
    return row[-1]


def dijkstra_reference(costs):
    H, W = len(costs), len(costs[0])
    dist = [[float("inf")] * W for _ in range(H)]
    dist[0][0] = costs[0][0]
    heap = [(costs[0][0], 0, 0)]
    while heap:
        dv, y, x = heapq.heappop(heap)
        if dv > dist[y][x]:
            continue
        for dy, dx in NEIGHBOURS:
            v, u = y + dy, x + dx
            if 0 <= v < H and 0 <= u < W and dv + costs[v][u] < dist[v][u]:
                dist[v][u] = dv + costs[v][u]
                heapq.heappush(heap, (dist[v][u], v, u))
    cell, path = (H - 1, W - 1), {(H - 1, W - 1)}
    while cell != (0, 0):
        y, x = cell
        k = min(
            (dist[y + dy][x + dx], k)
            for k, (dy, dx) in enumerate(NEIGHBOURS)
            if 0 <= y + dy < H and 0 <= x + dx < W
        )[1]
        cell = (y + NEIGHBOURS[k][0], x + NEIGHBOURS[k][1])
        path.add(cell)
    return dist, path


# ---------------------------------------------------------------- core operations
@pytest.mark.parametrize("name", distribution_names())
def test_conditions_every_distribution(name, device):
    a = torch.tensor([-1.0, 0.0, 2.0], device=device)
    R = Relaxation(steepness=2.0, distribution=name)
    assert torch.allclose(R.lt(a, 0.0) + R.gt(a, 0.0), torch.ones(3, device=device))
    assert R.eq(a, 0.0)[1] == 1 and bool((R.eq(a, 0.0)[[0, 2]] < 1).all())
    assert torch.allclose(R.ne(a, 0.0), 1 - R.eq(a, 0.0))
    big = Relaxation(steepness=1e5, distribution=name)
    assert torch.allclose(
        big.lt(a, 0.0)[[0, 2]], torch.tensor([1.0, 0.0], device=device), atol=1e-3
    )
    assert R.lt(a, 0.0).device == device


def test_hard_conditions_and_logic(device):
    H = Relaxation(hard=True)
    a, b = torch.tensor([0.0, 1.0, 2.0], device=device), torch.ones(3, device=device)
    assert H.lt(a, b).tolist() == [1, 0, 0] and H.le(a, b).tolist() == [1, 1, 0]
    assert H.gt(a, b).tolist() == [0, 0, 1] and H.ge(a, b).tolist() == [0, 1, 1]
    assert H.eq(a, b).tolist() == [0, 1, 0] and H.ne(a, b).tolist() == [1, 0, 1]
    p, q = torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([0.0, 1.0, 0.0, 1.0])
    for name in T_NORMS:
        R = Relaxation(tnorm=name, hard=True)
        assert R.and_(p, q).tolist() == [0, 0, 0, 1] and R.or_(p, q).tolist() == [0, 1, 1, 1]
        assert R.not_(p).tolist() == [1, 1, 0, 0]


@pytest.mark.parametrize("name", list(T_NORMS))
def test_tnorm_properties(name):
    torch.manual_seed(0)
    p, q, r = torch.rand(3, 100)
    assert torch.allclose(t_norm(p, q, name), t_norm(q, p, name))  # commutative
    assert bool((t_norm(p, q, name) <= torch.minimum(p, q) + 1e-6).all())  # bounded by min
    assert torch.allclose(t_norm(p, torch.ones_like(p), name), p, atol=1e-6)  # neutral element 1
    assert bool(
        (t_norm(p, q, name) <= t_norm(torch.maximum(p, r), q, name) + 1e-6).all()
    )  # monotone
    assert torch.allclose(
        t_conorm(p, q, name), 1 - t_norm(1 - p, 1 - q, name), atol=1e-6
    )  # De Morgan


def test_if_runs_branches_on_copies_and_merges():
    R = Relaxation(steepness=1.0)
    state = {"x": torch.tensor([1.0, 2.0]), "items": [torch.zeros(2), torch.ones(2)]}

    def then(s):
        s["x"] = s["x"] * 10
        s["items"][0] = s["items"][0] + 1

    p = torch.tensor([0.25, 1.0])
    out = R.if_(p, state, then)
    assert torch.allclose(out["x"], torch.tensor([0.25 * 10 + 0.75 * 1, 20.0]))
    assert torch.allclose(out["items"][0], p) and out["items"][1] is state["items"][1]
    assert torch.equal(state["x"], torch.tensor([1.0, 2.0]))  # input state untouched
    with pytest.raises(ValueError, match="same keys"):
        R.if_(p, state, lambda s: {"y": s["x"]})
    with pytest.raises(ValueError, match="batch shape"):
        R.if_(torch.ones(2, 3), state, then)
    with pytest.raises(TypeError, match="condition"):
        R.if_(0.5, state, then)


def test_if_merges_number_and_integer_leaves():
    """Leaves that are plain numbers or integer tensors in both branches merge into their (float)
    expectation."""
    p = torch.tensor([0.25, 1.0])
    out = Relaxation().if_(
        p, {"k": 1, "i": torch.tensor([1, 1])}, lambda s: {"k": 3, "i": torch.tensor([2, 5])}
    )
    assert torch.allclose(out["k"], torch.tensor([1.5, 3.0])) and torch.allclose(
        out["i"], torch.tensor([1.25, 5.0])
    )
    hard = Relaxation(hard=True).if_(
        torch.tensor([0.0, 1.0]), {"i": torch.tensor([1, 1])}, lambda s: {"i": torch.tensor([2, 5])}
    )
    assert hard["i"].dtype == torch.int64 and hard["i"].tolist() == [1, 5]


def test_while_exact_expectation():
    """Loop with a constant continue probability p: E[iterations] = p (1 - p^T) / (1 - p)
    (truncated geometric)."""
    R = Relaxation()
    p, T = 0.6, 30

    def body(s, t):
        s["n"] = s["n"] + 1

    out = R.while_(
        lambda s: torch.full((2,), p), body, {"n": torch.zeros(2)}, max_iter=T, epsilon=0.0
    )
    expected = sum(t * p**t * (1 - p) for t in range(T)) + T * p**T
    assert torch.allclose(out["n"], torch.full((2,), expected))
    with pytest.raises(ValueError, match="epsilon"):
        R.while_(lambda s: torch.ones(1), body, {"n": torch.zeros(1)}, epsilon=2.0)


def test_while_hard_and_early_exit_batch():
    H, R = Relaxation(hard=True), Relaxation(steepness=3.0)

    def halvings(Rx, x):
        def body(s, t):
            s["x"], s["c"] = s["x"] / 2, s["c"] + 1

        return Rx.while_(
            lambda s: Rx.gt(s["x"], 1.0), body, {"x": x, "c": torch.zeros_like(x)}, max_iter=50
        )["c"]

    x = torch.tensor([0.5, 3.0, 1000.0], dtype=torch.float64)
    assert halvings(H, x).tolist() == [0, 2, 10]
    soft = halvings(R, x)
    assert torch.equal(torch.cat([halvings(R, v[None]) for v in x]), soft)


def test_selection_and_arrays(device):
    torch.manual_seed(0)
    x = torch.randn(5, 7, device=device)
    H = Relaxation(hard=True)
    assert torch.equal(H.argmin(x).argmax(-1), x.argmin(-1)) and torch.equal(
        H.min(x), x.min(-1).values
    )
    assert torch.equal(H.max(x, dim=0), x.max(0).values)
    for name in distribution_names():
        w = Relaxation(1.0, name).argmax(x)
        assert torch.allclose(w.sum(-1), torch.ones(5, device=device)) and bool((w >= 0).all())
        assert torch.allclose(Relaxation(1e5, name).max(x), x.max(-1).values, atol=1e-3)
    arr = torch.randn(5, 7, 3, device=device)
    w = H.argmin(x)
    assert torch.equal(H.read(arr, w), arr[torch.arange(5), x.argmin(-1)])
    new = H.write(arr, w, torch.zeros(5, 3, device=device))
    assert torch.equal(new[torch.arange(5), x.argmin(-1)], torch.zeros(5, 3, device=device))
    with pytest.raises(ValueError, match="array"):
        H.read(arr[:, :3], w)
    with pytest.raises(ValueError, match="array"):  # the same shape check in write
        H.write(arr[:, :3], w, torch.zeros(5, 3, device=device))
    with pytest.raises(TypeError, match="mask"):
        H.argmin(x, mask=torch.ones(7))


@pytest.mark.parametrize("n", [1, 2, 3, 8, 11])
def test_tournament_min_hard_exact_and_relaxed(n, device):
    """The tournament: hard = first minimum (ties included, masks too); relaxed weights sum to 1,
    min = weighted mean."""
    torch.manual_seed(n)
    x = torch.randint(0, 4, (40, n), device=device).double()
    mask = torch.rand(n, device=device) < 0.6
    mask[-1] = True
    H = Relaxation(hard=True)
    for m in (None, mask):
        ref = x if m is None else torch.where(m, x, torch.full_like(x, float("inf")))
        w = H.argmin(x, mask=m, method="tournament")
        assert torch.equal(w.argmax(-1), ref.argmin(-1)) and torch.equal(
            H.min(x, mask=m, method="tournament"), ref.min(-1).values
        )
        for name in distribution_names():
            R = Relaxation(1.5, name)
            w = R.argmin(x, mask=m, method="tournament")
            xs = x if m is None else torch.where(m, x, torch.zeros_like(x))
            torch.testing.assert_close(w.sum(-1), torch.ones(40, dtype=x.dtype, device=device))
            torch.testing.assert_close(R.min(x, mask=m, method="tournament"), (w * xs).sum(-1))
            assert m is None or bool((w[:, ~m] == 0).all())
            xb = x + 0.01 * torch.arange(n, device=device)  # no ties: converges to the min
            big = Relaxation(1e6, name).min(xb, mask=m, method="tournament")
            assert torch.allclose(
                big,
                (xb if m is None else torch.where(m, xb, float("inf"))).min(-1).values,
                atol=1e-3,
            )
    # the axis can be anything; a mask along a middle axis keeps working
    x3 = torch.randn(3, n, 4, dtype=torch.float64, device=device)
    m3 = mask.unsqueeze(-1)
    torch.testing.assert_close(
        Relaxation(2.0).min(x3, dim=1, mask=m3, method="tournament"),
        Relaxation(2.0).min(x3.transpose(1, 2), mask=m3.transpose(0, 1), method="tournament"),
    )


@pytest.mark.parametrize("name", SMOOTH)
def test_tournament_gradcheck(name, device):
    torch.manual_seed(8)
    x = torch.randn(3, 6, dtype=torch.float64, device=device, requires_grad=True)
    mask = torch.tensor([True, True, False, True, True, True], device=device)
    R = Relaxation(2.0, name)
    assert torch.autograd.gradcheck(lambda v: R.min(v, mask=mask, method="tournament"), (x,))
    assert torch.autograd.gradcheck(lambda v: R.argmax(v, method="tournament"), (x,))


@pytest.mark.parametrize(
    "kwargs, match, exc",
    [
        (dict(steepness=0.0), "steepness", ValueError),
        (dict(steepness=float("inf")), "steepness", ValueError),
        (dict(distribution="student"), "distribution", ValueError),
        (dict(tnorm="prod"), "tnorm", ValueError),
        (dict(hard="yes"), "hard", TypeError),
    ],
)
def test_relaxation_bad_arguments(kwargs, match, exc):
    with pytest.raises(exc, match=match):
        Relaxation(**kwargs)


# ---------------------------------------------------------------- hard == reference, exactly
def test_bubble_sort_hard_exact(device):
    torch.manual_seed(1)
    x = torch.randn(20, 9, dtype=torch.float64, device=device)
    x[0] = torch.tensor([3.0, 1.0, 3.0, 2.0, 1.0, 0.0, 0.0, 5.0, -1.0])  # ties
    s, P, k = bubble_sort(x, hard=True)
    for row, srow, Prow, krow in zip(x.cpu(), s.cpu(), P.cpu(), k.cpu()):
        ref, idx, swaps = bubble_reference(row.tolist())
        assert srow.tolist() == ref and krow.item() == swaps
        assert torch.equal(Prow, torch.eye(9, dtype=torch.float64)[idx])


def test_argmax_hard_exact(device):
    torch.manual_seed(2)
    x = torch.randint(0, 5, (30, 6), device=device).double()  # many ties
    m, a = argmax(x, hard=True)
    for row, mi, ai in zip(x.cpu(), m.cpu(), a.cpu()):
        best, arg = argmax_reference(row.tolist())
        assert mi.item() == best and ai.tolist() == [float(i == arg) for i in range(6)]


def test_levenshtein_hard_exact(device):
    torch.manual_seed(3)
    sa, sb = torch.randint(0, 4, (25, 7)), torch.randint(0, 4, (25, 5))
    A = torch.nn.functional.one_hot(sa, 4).double().to(device)
    B = torch.nn.functional.one_hot(sb, 4).double().to(device)
    ref = [levenshtein_reference(s.tolist(), t.tolist()) for s, t in zip(sa, sb)]
    assert levenshtein(A, B, hard=True).cpu().tolist() == ref


def test_shortest_path_hard_exact(device):
    torch.manual_seed(4)
    c = (torch.rand(6, 7, 8, dtype=torch.float64) ** 3 * 9 + 0.5).to(device)
    d, path = shortest_path(c, hard=True)
    for m in ("pairwise", "tournament"):
        for t in ("pairwise", "tournament"):
            dm, pm = shortest_path(c, hard=True, method=m, trace_method=t)
            assert torch.equal(dm, d) and torch.equal(pm, path)
    for ci, di, pi in zip(c.cpu(), d.cpu(), path.cpu()):
        rd, rp = dijkstra_reference(ci.tolist())
        assert di.tolist() == rd
        assert set(pi.unique().tolist()) <= {0.0, 1.0}
        assert {(y, x) for y in range(7) for x in range(8) if pi[y, x] == 1} == rp


# ---------------------------------------------------------------- convergence at large beta
@pytest.mark.parametrize("name", distribution_names())
def test_convergence_large_beta(name, device):
    torch.manual_seed(5)
    x = torch.randn(4, 6, dtype=torch.float64, device=device)
    hs, hP, hk = bubble_sort(x, hard=True)
    s, P, k = bubble_sort(x, steepness=1e5, distribution=name)
    assert (
        torch.allclose(s, hs, atol=1e-3)
        and torch.allclose(P, hP, atol=1e-2)
        and torch.allclose(k, hk, atol=1e-2)
    )
    assert torch.allclose(
        argmax(x, steepness=1e5, distribution=name)[1], argmax(x, hard=True)[1], atol=1e-2
    )
    A = torch.softmax(5 * torch.randn(3, 5, 4, dtype=torch.float64, device=device), -1)
    B = torch.softmax(5 * torch.randn(3, 4, 4, dtype=torch.float64, device=device), -1)
    assert torch.allclose(
        levenshtein(A, B, steepness=1e5, distribution=name), levenshtein(A, B, hard=True), atol=1e-2
    )
    c = torch.rand(2, 5, 5, dtype=torch.float64, device=device) * 4 + 1
    hd, hp = shortest_path(c, hard=True)
    d, p = shortest_path(c, steepness=1e5, distribution=name, n_iter=25, n_trace=25)
    assert torch.allclose(d, hd, atol=1e-2) and torch.allclose(p, hp, atol=1e-2)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", SMOOTH)
def test_gradcheck(name, device):
    torch.manual_seed(6)
    kw = dict(steepness=2.0, distribution=name)
    x = torch.randn(2, 4, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: bubble_sort(v, **kw), (x,))
    assert torch.autograd.gradcheck(lambda v: argmax(v, **kw), (x,))
    a = torch.randn(1, 3, 3, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(1, 2, 3, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda u, v: levenshtein(u.softmax(-1), v.softmax(-1), **kw), (a, b)
    )
    c = (torch.rand(1, 3, 3, dtype=torch.float64, device=device) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: shortest_path(v, n_iter=5, n_trace=5, **kw), (c,))
    assert torch.autograd.gradcheck(
        lambda v: shortest_path(
            v, n_iter=5, n_trace=5, method="pairwise", trace_method="tournament", **kw
        ),
        (c,),
    )


def test_bubble_sort_hand_written_backward(device):
    """The relaxed pass has a hand-written backward: check it per output, with two batch
    dimensions, and in no_grad."""
    torch.manual_seed(9)
    x = torch.randn(2, 3, 5, dtype=torch.float64, device=device, requires_grad=True)
    for k in range(3):
        assert torch.autograd.gradcheck(
            lambda v: bubble_sort(v, steepness=1.5, distribution="logistic_art")[k], (x,)
        )
    with torch.no_grad():
        s, P, swaps = bubble_sort(x, steepness=1.5)
    torch.testing.assert_close(s, bubble_sort(x.detach(), steepness=1.5)[0])


@pytest.mark.parametrize("n", [1, 2, 3, 6])
@pytest.mark.parametrize("epsilon", [0.0, 1e-6, 0.3])
@pytest.mark.parametrize("name", ["logistic", "cauchy", "logistic_art"])
def test_bubble_sort_node_equals_program(n, epsilon, name, device):
    """The one-node relaxed bubble sort equals the program over the relaxed state
    (`Relaxation.while_`, passes), values and gradients."""
    from diffalg.relax._engine import _bubble_sort_rows as _bubble_sort_program
    from diffalg.relax.algorithms import _relaxation

    torch.manual_seed(n)
    x = (2 * torch.randn(5, n, dtype=torch.float64, device=device)).requires_grad_()
    x = torch.cat(
        [x, torch.arange(float(n), dtype=torch.float64, device=device)[None]]
    )  # a sorted row: early exit
    s, P, k = bubble_sort(x, steepness=3.0, distribution=name, epsilon=epsilon)
    rows, swaps = _bubble_sort_program(x, _relaxation(3.0, name, False), epsilon)
    torch.testing.assert_close(s, rows[..., -1], rtol=0, atol=1e-12)
    torch.testing.assert_close(P, rows[..., :-1], rtol=0, atol=1e-12)
    torch.testing.assert_close(k, swaps, rtol=0, atol=1e-12)
    ws, wP, wk = torch.randn_like(s), torch.randn_like(P), torch.randn_like(k)
    (g1,) = torch.autograd.grad((ws * s).sum() + (wP * P).sum() + (wk * k).sum(), x)
    (g2,) = torch.autograd.grad(
        (ws * rows[..., -1]).sum() + (wP * rows[..., :-1]).sum() + (wk * swaps).sum(), x
    )
    torch.testing.assert_close(g1, g2, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["logistic", "cauchy", "logistic_art"])
def test_bubble_sort_second_derivatives(name, device):
    """With create_graph=True the hand-written backward is itself differentiable (Newton losses
    need Hessians)."""
    torch.manual_seed(10)
    x = torch.randn(2, 4, dtype=torch.float64, device=device, requires_grad=True)
    for k in range(3):
        assert torch.autograd.gradgradcheck(
            lambda v: bubble_sort(v, steepness=1.5, distribution=name)[k], (x,)
        )
    # and the first-order path is unchanged by it
    (g1,) = torch.autograd.grad(bubble_sort(x, steepness=1.5, distribution=name)[2].sum(), x)
    (g2,) = torch.autograd.grad(
        bubble_sort(x, steepness=1.5, distribution=name)[2].sum(), x, create_graph=True
    )
    torch.testing.assert_close(g1, g2.detach())


def test_gradients_finite(device):
    x = torch.tensor([[0.0, 0.0, 1e-9, 5.0, -3.0]], device=device, requires_grad=True)
    for name in distribution_names():
        s, P, k = bubble_sort(x, steepness=8.0, distribution=name)
        (g,) = torch.autograd.grad(s.sum() + P.sum() + k.sum(), x)
        assert bool(torch.isfinite(g).all()), name


# ---------------------------------------------------------------- batch == items one by one
def _batch_vs_items(fn, *inputs):
    inputs = [t.detach().requires_grad_() for t in inputs]
    out = fn(*inputs)
    out = out if isinstance(out, tuple) else (out,)
    grads = torch.autograd.grad(sum(o.sum() for o in out), inputs)
    for i in range(inputs[0].shape[0]):
        items = [t[i : i + 1].detach().requires_grad_() for t in inputs]
        o = fn(*items)
        o = o if isinstance(o, tuple) else (o,)
        g = torch.autograd.grad(sum(v.sum() for v in o), items)
        for v, w in zip(o, out):
            torch.testing.assert_close(v, w[i : i + 1], rtol=1e-12, atol=1e-12)
        for v, w in zip(g, grads):
            torch.testing.assert_close(v, w[i : i + 1], rtol=1e-12, atol=1e-12)


def test_batch_equals_items(device):
    torch.manual_seed(7)
    dt = dict(dtype=torch.float64, device=device)
    _batch_vs_items(lambda v: bubble_sort(v, steepness=3.0, epsilon=1e-3), torch.randn(4, 6, **dt))
    _batch_vs_items(
        lambda v: argmax(v, steepness=3.0, distribution="cauchy"), torch.randn(4, 6, **dt)
    )
    _batch_vs_items(
        lambda u, v: levenshtein(u.softmax(-1), v.softmax(-1), steepness=3.0),
        torch.randn(3, 4, 3, **dt),
        torch.randn(3, 5, 3, **dt),
    )
    _batch_vs_items(
        lambda v: shortest_path(v, steepness=3.0, distribution="gaussian", n_iter=8, n_trace=8),
        torch.rand(3, 4, 5, **dt) + 0.5,
    )
    _batch_vs_items(
        lambda v: shortest_path(
            v, steepness=3.0, n_iter=8, n_trace=8, method="pairwise", trace_method="tournament"
        ),
        torch.rand(3, 4, 5, **dt) + 0.5,
    )
    _batch_vs_items(
        lambda v: Relaxation(3.0, "laplace").argmin(
            v, mask=torch.tensor([True, False, True, True, True]), method="tournament"
        ),
        torch.randn(4, 5, **dt),
    )


# ---------------------------------------------------------------- bad input
def test_bad_inputs():
    x = torch.randn(2, 5)
    with pytest.raises(TypeError, match="`x`"):
        bubble_sort([1.0, 2.0])
    with pytest.raises(ValueError, match="`x`"):
        bubble_sort(torch.tensor([1.0, float("inf")]))
    with pytest.raises(ValueError, match="steepness"):
        argmax(x, steepness=0.0)
    with pytest.raises(ValueError, match="distribution"):
        argmax(x, distribution="nope")
    with pytest.raises(ValueError, match="`a`"):
        levenshtein(torch.randn(2, 3, 4), torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="`costs`"):
        shortest_path(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="n_iter"):
        shortest_path(torch.ones(3, 3), n_iter=0)
    with pytest.raises(TypeError, match="`costs`"):
        shortest_path(torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="trace_method"):
        shortest_path(torch.ones(3, 3), trace_method="heap")
    with pytest.raises(ValueError, match="method"):
        Relaxation().argmin(x, method="knockout")
