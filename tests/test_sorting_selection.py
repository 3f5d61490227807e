"""Tests of the splitter selection network and the smooth top-k SVM (diffalg.sorting.topk):
the 0-1 principle, random inputs, the relaxed top-k through the network, the loss against its
definition, limits, gradients, bad input and torch.compile. The comparisons with the original
`difftopk` are in tests/test_originals.py."""
from itertools import combinations

import pytest
import torch

from diffalg.sorting import (DiffTopkNet, RelaxedSort, SmoothTopKSVMLoss, TopKCrossEntropyLoss,
                             get_sorting_network, log_elementary_symmetric, selects_top,
                             smooth_topk_svm_loss, soft_topk, splitter_selection_network)
from torch_native import assert_compiled_matches_eager, assert_fake_shapes, assert_meta_shapes


@pytest.mark.parametrize("n", range(2, 13))
def test_selects_top_k_by_the_zero_one_principle(n):
    for k in range(1, n + 1):
        assert selects_top(splitter_selection_network(n, k), k), (n, k)


@pytest.mark.parametrize("n,k", [(13, 1), (50, 3), (100, 5), (257, 10), (300, 64)])
def test_random_inputs_with_ties(n, k):
    torch.manual_seed(n)
    net = splitter_selection_network(n, k)
    for x in (torch.randn(200, n), torch.randint(0, 4, (200, n)).float()):
        out = net.apply(x)
        assert torch.equal(out[:, -k:], x.sort(-1).values[:, -k:])
        assert torch.equal(out.sort(-1).values, x.sort(-1).values)      # a permutation


def test_not_more_than_asked():
    net = splitter_selection_network(16, 3)
    assert not net.is_sorting_network()
    assert not selects_top(net, 4)
    assert splitter_selection_network(16, 3) is net                     # cached
    assert net.name == "splitter_selection" and net.n == 16


@pytest.mark.parametrize("n", [16, 100, 1000])
def test_fewer_comparators_than_bitonic_for_small_k(n):
    bitonic = get_sorting_network("bitonic", n).size
    sizes = [splitter_selection_network(n, k).size for k in (1, 2, 5)]
    assert sizes == sorted(sizes) and sizes[-1] < bitonic
    assert splitter_selection_network(n, 1).depth == (n - 1).bit_length()   # one splitter


def test_relaxed_topk_through_the_network(device):
    torch.manual_seed(0)
    x = torch.randn(3, 40, dtype=torch.float64, device=device, requires_grad=True)
    net = splitter_selection_network(40, 4)
    T = soft_topk(x, 4, network=net, steepness=6.0)
    ones = torch.ones(3, 4, dtype=torch.float64, device=device)
    torch.testing.assert_close(T.sum(-2), ones)                         # columns sum to 1
    torch.testing.assert_close(T, RelaxedSort(x, net, 6.0).topk(4))
    sharp = soft_topk(x, 4, network=net, steepness=1e6)
    exact = torch.nn.functional.one_hot(x.argsort(-1, descending=True)[:, :4], 40)
    torch.testing.assert_close(sharp, exact.transpose(-1, -2).double(), atol=1e-4, rtol=0)
    assert torch.autograd.gradcheck(lambda z: soft_topk(z, 4, network=net, steepness=3.0),
                                    (x[:1, :].detach().requires_grad_(),))
    _, X = DiffTopkNet("splitter_selection", 40, 4, steepness=6.0)(x)
    torch.testing.assert_close(X, T.flip(-1))


def test_topk_loss_with_the_selection_network():
    torch.manual_seed(1)
    logits = torch.randn(6, 12, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(12, (6,))
    fn = TopKCrossEntropyLoss("splitter_selection", 2.0, [0.3, 0.3, 0.4], n=12, m=8,
                              top1_mode="sort")
    assert torch.autograd.gradcheck(lambda z: fn(z, labels), (logits,))


def test_bad_network_arguments():
    with pytest.raises(ValueError, match="`k` must be <= 10"):
        splitter_selection_network(10, 11)
    with pytest.raises(ValueError, match="`n` must be >= 2"):
        splitter_selection_network(1, 1)
    with pytest.raises(TypeError, match="`k` must be an int"):
        splitter_selection_network(10, 2.5)
    with pytest.raises(ValueError, match="exceeds `max_n`"):
        selects_top(splitter_selection_network(30, 2), 2)


# ---------------------------------------------------------------- the smooth top-k SVM
def by_sets(s, y, k, tau, alpha):
    "The loss by its definition: log-sum-exp over every k-set of classes."
    sets = list(combinations(range(s.shape[1]), k))
    total = torch.stack([(alpha * (y not in S) + s[:, list(S)].mean(-1)) / tau for S in sets])
    mine = torch.stack([s[:, list(S)].mean(-1) / tau for S in sets if y in S])
    return tau * (total.logsumexp(0) - mine.logsumexp(0))


@pytest.mark.parametrize("k,tau,alpha", [(1, 1.0, 1.0), (2, 0.1, 1.0), (4, 3.0, 0.5),
                                         (6, 1.0, 0.0)])
def test_svm_equals_its_definition(k, tau, alpha, device):
    torch.manual_seed(k)
    s = torch.randn(5, 8, dtype=torch.float64, device=device)
    for y in range(8):
        labels = torch.full((5,), y, device=device)
        want = by_sets(s, y, k, tau, alpha).mean()
        torch.testing.assert_close(smooth_topk_svm_loss(s, labels, k, tau, alpha), want)


def test_log_elementary_symmetric_equals_sums_over_sets(device):
    x = torch.randn(2, 7, dtype=torch.float64, device=device)
    E = log_elementary_symmetric(x, 7)
    for r in range(8):
        brute = torch.stack([x[:, list(S)].sum(-1) for S in combinations(range(7), r)], -1)
        torch.testing.assert_close(E[:, r], brute.logsumexp(-1))


def test_svm_limits_and_stability():
    torch.manual_seed(2)
    s = torch.randn(16, 10, dtype=torch.float64)
    labels = torch.randint(10, (16,))
    rest = torch.stack([torch.cat([s[i, :y], s[i, y + 1:]]) for i, y in enumerate(labels)])
    rest = rest.sort(-1, descending=True).values
    hinge = (rest[:, :3].mean(-1) + 1.0 - (s[torch.arange(16), labels]
                                            + rest[:, :2].sum(-1)) / 3).clamp_min(0)
    torch.testing.assert_close(smooth_topk_svm_loss(s, labels, 3, 1e-5), hinge.mean(),
                               atol=1e-3, rtol=0)
    assert smooth_topk_svm_loss(s, labels, 3, 1.0) >= hinge.mean()     # smoothing adds
    for scale in (1e4, 1e8):
        big = (scale * torch.randn(8, 10)).requires_grad_()
        loss = smooth_topk_svm_loss(big, torch.randint(10, (8,)), 5)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(big.grad).all()
    z = s[:3, :6].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: smooth_topk_svm_loss(t, labels[:3] % 6, 2, 0.7),
                                    (z,))
    assert torch.autograd.gradgradcheck(lambda t: smooth_topk_svm_loss(t, labels[:3] % 6, 2),
                                        (z,))


def test_svm_module_and_bad_input():
    s, labels = torch.randn(4, 6), torch.tensor([0, 1, 2, 5])
    s0 = s.clone()
    assert torch.equal(SmoothTopKSVMLoss(2, 0.5)(s, labels), smooth_topk_svm_loss(s, labels, 2,
                                                                                  0.5))
    assert torch.equal(s, s0)
    with pytest.raises(ValueError, match="`k` must be < the number of classes"):
        smooth_topk_svm_loss(s, labels, 6)
    with pytest.raises(ValueError, match="`tau` must be finite and > 0"):
        smooth_topk_svm_loss(s, labels, 2, 0.0)
    with pytest.raises(ValueError, match="`alpha` must be finite and >= 0"):
        SmoothTopKSVMLoss(2, alpha=float("nan"))
    with pytest.raises(ValueError, match="`labels` must be an integer tensor"):
        smooth_topk_svm_loss(s, labels.float(), 2)
    with pytest.raises(ValueError, match="`labels` must be class indices in"):
        smooth_topk_svm_loss(s, labels + 1, 2)
    with pytest.raises(ValueError, match="`scores` must contain only finite"):
        smooth_topk_svm_loss(torch.full((4, 6), float("nan")), labels, 2)


def test_svm_and_selection_behave_like_torch_ops():
    s = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 3, 8, 4])
    fn = lambda z, y: smooth_topk_svm_loss(z, y, 3, 0.5)                # noqa: E731
    assert_compiled_matches_eager(fn, s, labels)
    assert_meta_shapes(fn, s, labels)
    assert_fake_shapes(fn, s, labels)
    net = splitter_selection_network(9, 3)
    top = lambda z: soft_topk(z, 3, network=net, steepness=4.0)        # noqa: E731
    assert_compiled_matches_eager(top, s)
    assert_fake_shapes(top, s)


def test_selection_loss_compiles_when_the_size_is_known():
    "With n (or m) given, the network is built at construction and the loss compiles whole."
    torch.manual_seed(8)
    labels = torch.randint(10, (4,))
    for kw, C in ((dict(n=10), 10), (dict(n=14, m=10), 14)):
        fn = TopKCrossEntropyLoss("splitter_selection", 2.0, [0.5, 0.0, 0.5], **kw)
        logits = torch.randn(4, C, dtype=torch.float64, requires_grad=True)
        assert_compiled_matches_eager(lambda z, y: fn(z, y), logits, labels)
