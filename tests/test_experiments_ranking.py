"""The ranking experiment: every method and Newton option trains, and its loss is the chapters'
formula (sorting chapter's train_ranking, Newton chapter's losses, relaxation chapter's swaps)."""
import math

import pytest
import torch

import diffalg.data
from diffalg.data import MultiDigitNumbers, digit_pools
from diffalg.experiments import run, make_config
from diffalg.experiments import ranking
from diffalg.newton import HessianNewtonLoss, FisherNewtonLoss
from diffalg.relax import bubble_sort
from diffalg.sorting import diff_sort, sort_loss, permutation_targets
from diffalg.sorting import neuralsort_permutation, softsort_permutation
from diffalg.sorting import fast_soft_rank, sinkhorn_plan
from diffalg.distributions import distribution_names, get_distribution

TINY = {"channels": 3, "hidden": 6, "batch": 4, "eval_sets": 20}
METHODS = ["odd_even", "bitonic", "neuralsort", "softsort", "fast_sort", "sinkhorn", "bubble"]
NEWTON = ["none", "hessian", "fisher"]


def _sorting_chapter_bce(scores, values, method, steepness, distribution):
    "nbs/03_sorting/05_ranking_supervision.ipynb: relaxed_permutation + clamped BCE."
    if method in ("odd_even", "bitonic"):
        P = diff_sort(scores, method, steepness, distribution).permutation
    elif method == "neuralsort":
        P = neuralsort_permutation(scores, 1.0 / steepness)
    else:
        P = softsort_permutation(scores, 1.0 / steepness)
    target = permutation_targets(values).to(P.dtype)
    return torch.nn.functional.binary_cross_entropy(P.clamp(1e-7, 1 - 1e-7), target,
                                                    reduction="none").mean((-2, -1))


def _newton_chapter_ce(P, values):
    "nbs/06_newton/04_ranking_supervision.ipynb: permutation_cross_entropy."
    Q = permutation_targets(values).to(P.dtype)
    return -(Q * P.clamp_min(1e-12).log()).sum((-2, -1)) / P.shape[-1]


def _relax_chapter_swaps(model, images, values, steepness, distribution):
    "nbs/02_relaxation/04_ranking.ipynb: images in true order, expected swaps."
    order = values.argsort(-1)
    ordered = torch.take_along_dim(images, order[:, :, None, None, None], 1)
    return bubble_sort(model(ordered), steepness=steepness, distribution=distribution).swaps


def _direct(cfg):
    "The per-set chapter loss of cfg on scores y, computed without the experiment module."
    s, d = cfg["steepness"], cfg["distribution"]
    if cfg["method"] == "bubble":     # the scores of the images in true order
        return lambda y, v: bubble_sort(torch.take_along_dim(y, v.argsort(-1), -1), s, d).swaps
    if cfg["method"] == "fast_sort":  # Petersen et al. (ICML 2021, App. B.3): MSE of the ranks
        def mse(y, v):
            true = torch.empty_like(y)
            for b in range(y.shape[0]):
                for rank, i in enumerate(sorted(range(y.shape[1]), key=lambda i: float(v[b, i]))):
                    true[b, i] = rank + 1
            r = fast_soft_rank(y, 1.0 / s, cfg["regularization"])
            return ((r - true) ** 2).mean(-1)
        return mse
    if cfg["method"] == "sinkhorn":
        def bce(y, v):
            P = sinkhorn_plan(y, cfg["epsilon"], cfg["sinkhorn_iterations"])
            Q = permutation_targets(v).to(P.dtype)
            return torch.nn.functional.binary_cross_entropy(
                P.clamp(1e-7, 1 - 1e-7), Q, reduction="none").mean((-2, -1))
        return bce
    return lambda y, v: _sorting_chapter_bce(y, v, cfg["method"], s, d)


@pytest.mark.parametrize("newton", NEWTON)
@pytest.mark.parametrize("method", METHODS)
def test_method_trains_and_matches_chapter(method, newton):
    over = {**TINY, "method": method, "newton": newton, "steps": 2}
    if method == "bubble":
        over.update(distribution="logistic", steepness=8.0)
    out = run("ranking", over, progress=False)
    assert len(out["losses"]) == 2 and all(math.isfinite(x) for x in out["losses"])
    cfg = make_config("ranking", over)
    torch.manual_seed(0)
    setup = ranking.build(cfg, torch.device("cpu"))
    images, values = ranking.batch(setup, cfg, 0, 0, 1)
    got = ranking.loss(setup.model, (images, values), cfg)
    scores = setup.model(images)
    per_set = _direct(cfg)
    if newton == "none":
        want = per_set(scores, values).mean()
        if method == "bubble":
            chapter = _relax_chapter_swaps(setup.model, images, values, 8.0, "logistic")
            torch.testing.assert_close(got, chapter.mean(), rtol=1e-5, atol=1e-6)
    else:
        network = method in ("odd_even", "bitonic")
        lam = 0.1 if newton == "fisher" else (30.0 if network else 1.0)
        wrap = FisherNewtonLoss if newton == "fisher" else HessianNewtonLoss
        want = wrap(per_set, tikhonov=lam)(scores, values)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    got.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in setup.model.parameters())


@pytest.mark.parametrize("method", ["odd_even", "neuralsort"])
def test_newton_chapter_losses(method):
    "loss='sort_loss' and 'ce' are the Newton chapter's per-set losses."
    cfg = make_config("ranking", {**TINY, "method": method, "steepness": 1.0})
    scores, values = torch.randn(6, 5, dtype=torch.float64), torch.randperm(30).reshape(6, 5)
    P = ranking.relaxed_permutation(scores, cfg)
    torch.testing.assert_close(ranking.ranking_losses(scores, values, {**cfg, "loss": "ce"}),
                               _newton_chapter_ce(P, values))
    if method == "odd_even":
        want = sort_loss(scores, values, steepness=1.0, distribution="cauchy", reduction="none")
        got = ranking.ranking_losses(scores, values, {**cfg, "loss": "sort_loss"})
        torch.testing.assert_close(got, want)


def test_comparison_methods():
    "The sorting chapter's comparison: the baselines and both networks with every monotonic law."
    methods = ranking.comparison_methods()
    monotonic = {d for d in distribution_names(gendr=True) if get_distribution(d).monotonic}
    assert monotonic == {"cauchy", "reciprocal", "optimal"}
    networks = {(m["method"], m["distribution"]) for m in methods.values()
                if m["method"] in ranking.NETWORKS}
    assert networks == {(n, d) for n in ranking.NETWORKS for d in monotonic}
    others = sorted(m["method"] for m in methods.values() if m["method"] not in ranking.NETWORKS)
    assert others == ["fast_sort", "fast_sort", "neuralsort", "sinkhorn", "softsort"]
    for overrides in methods.values():          # each is a valid config of the experiment
        ranking.resolved_loss(make_config("ranking", {**TINY, **overrides}))


def test_fast_sort_kl_with_ties_and_large_scores():
    "The kl variant keeps finite gradients on tied and large scores (a complaint about torchsort)."
    cfg = make_config("ranking", {**TINY, "method": "fast_sort", "regularization": "kl"})
    scores = torch.tensor([[1e4, 1e4, -1e4, 0.0, 0.0]], dtype=torch.float64,
                          requires_grad=True)
    loss = ranking.ranking_losses(scores, torch.tensor([[3, 4, 0, 1, 2]]), cfg)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(scores.grad).all()


def test_bad_choices():
    for over, match in [({"method": "quick"}, "`method` must be one of"),
                        ({"loss": "mse"}, "goes with method 'fast_sort'"),
                        ({"method": "fast_sort", "loss": "bce"}, "goes with method 'fast_sort'"),
                        ({"method": "fast_sort", "regularization": "l1"},
                         "`regularization` must be one of"),
                        ({"method": "sinkhorn", "epsilon": 0.0},
                         "`epsilon` must be finite and > 0"),
                        ({"method": "sinkhorn", "sinkhorn_iterations": 0},
                         "`sinkhorn_iterations` must be >= 1"),
                        ({"loss": "swaps"}, "goes with method 'bubble'"),
                        ({"method": "softsort", "loss": "sort_loss"}, "needs a sorting"),
                        ({"newton": "bfgs"}, "`newton` must be one of"),
                        ({"dtype": "half"}, "`dtype` must be one of"),
                        ({"lr_schedule": "step"}, "`lr_schedule` must be one of")]:
        with pytest.raises(ValueError, match=match):
            ranking.build(make_config("ranking", {**TINY, **over}), torch.device("cpu"))


def test_shards_and_cosine_schedule():
    cfg = make_config("ranking", {**TINY, "batch": 6, "lr_schedule": "cosine", "steps": 3})
    setup = ranking.build(cfg, torch.device("cpu"))
    images, values = ranking.batch(setup, cfg, 5, 0, 1)
    parts = [ranking.batch(setup, cfg, 5, r, 3) for r in range(3)]
    assert torch.equal(torch.cat([p[1] for p in parts]), values)
    assert torch.equal(torch.cat([p[0] for p in parts]), images)
    assert not torch.equal(ranking.batch(setup, cfg, 6, 0, 1)[1], values)
    with pytest.raises(ValueError, match="divisible"):
        ranking.batch(setup, cfg, 0, 0, 4)
    out = run("ranking", {**TINY, "lr_schedule": "cosine", "steps": 3}, progress=False)
    assert len(out["losses"]) == 3


def _fake_numbers(source, split="train"):
    "A stand-in for diffalg.data.numbers: 28x28 digits (sklearn's, upsampled), 4 per number."
    images, labels = digit_pools()[split]
    big = torch.nn.functional.interpolate(images[:, None], size=(28, 28))[:, 0]
    return MultiDigitNumbers(big, labels, n_digits=4, n_numbers=400,
                             seed=0 if split == "train" else 1)


def test_mnist5k_source(monkeypatch):
    "data='mnist5k' goes through diffalg.data.numbers(source, split); 1 x 28 x 112 images."
    seen = []
    monkeypatch.setattr(diffalg.data, "numbers",
                        lambda source, split: seen.append(source) or _fake_numbers(source, split),
                        raising=False)
    over = {**TINY, "data": "mnist5k", "steps": 1}
    setup = ranking.build(make_config("ranking", over), torch.device("cpu"))
    images, _ = ranking.batch(setup, make_config("ranking", over), 0, 0, 1)
    assert images.shape == (4, 5, 1, 28, 112) and seen == ["mnist5k", "mnist5k"]
    out = run("ranking", over, progress=False)
    assert math.isfinite(out["losses"][0]) and out["config"]["data"] == "mnist5k"


def test_paper_settings():
    assert ranking.PAPER["steps"] == 100_000 and ranking.PAPER["batch"] == 100
    assert ranking.PAPER["lr"] == pytest.approx(10 ** -3.5)
    assert set(ranking.PAPER) <= set(ranking.DEFAULTS)
