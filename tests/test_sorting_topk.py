"Tests of diffalg.sorting.topk (top-k network and loss) and diffalg.sorting.baselines (NeuralSort, SoftSort)."
import pytest
import torch

from diffalg.sorting.relaxed import RelaxedSort
from diffalg.sorting.baselines import neuralsort_permutation, softsort_permutation
from diffalg.sorting.topk import DiffTopkNet, TopKCrossEntropyLoss

METHODS = ("bitonic", "odd_even", "bitonic__non_sparse", "neuralsort", "softsort")


@pytest.mark.parametrize("kind", ["bitonic", "odd_even"])
@pytest.mark.parametrize("n,k", [(5, 1), (7, 3), (16, 5), (33, 4)])
def test_topk_columns_equal_full_matrix(kind, n, k, device):
    torch.manual_seed(n)
    x = torch.randn(3, n, device=device, dtype=torch.float64)
    _, X = DiffTopkNet(kind, n, k, steepness=4.0)(x)
    P = RelaxedSort(x, kind, 4.0).permutation
    torch.testing.assert_close(X, P[..., n - k:])


def test_topk_gradcheck(device):
    x = torch.randn(2, 9, device=device, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: DiffTopkNet("bitonic", 9, 3, steepness=3.0)(x)[1], (x,))


@pytest.mark.parametrize("fn", [neuralsort_permutation, softsort_permutation])
def test_baselines_hard_limit_and_columns(fn, device):
    torch.manual_seed(0)
    x = torch.randn(4, 6, device=device, dtype=torch.float64)
    hard = torch.nn.functional.one_hot(x.argsort(-1), 6).transpose(-2, -1).double()
    torch.testing.assert_close(fn(x, tau=1e-4), hard)
    P = fn(x, tau=0.5)
    torch.testing.assert_close(P.sum(-2), torch.ones(4, 6, device=device, dtype=torch.float64))
    xg = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda z: fn(z, tau=0.7), (xg,))


def test_topk_loss_reduces_to_cross_entropy():
    torch.manual_seed(1)
    logits, labels = torch.randn(16, 10, dtype=torch.float64), torch.randint(10, (16,))
    for method in METHODS:
        loss = TopKCrossEntropyLoss(method, 2.0, [1.0], n=10)(logits, labels)
        torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, labels), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", ["sm", "smce", "sort"])
def test_topk_loss_finite_with_preselection(method, mode, device):
    torch.manual_seed(2)
    logits = torch.randn(8, 20, device=device, requires_grad=True)
    labels = torch.randint(20, (8,), device=device)
    loss = TopKCrossEntropyLoss(method, 2.0, [0.5, 0.0, 0.0, 0.0, 0.5], n=20, m=8, top1_mode=mode, device=device)(logits, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_topk_loss_prefers_label_in_topk():
    "A label ranked 2nd costs less under p_k = (0, 1) (top-2) than a label ranked last."
    logits = torch.tensor([[3.0, 2.0, 0.0, -1.0]])
    fn = TopKCrossEntropyLoss("odd_even", 4.0, [0.0, 1.0], n=4, top1_mode="sort")
    assert fn(logits, torch.tensor([1])) < fn(logits, torch.tensor([3]))


def test_topk_bad_inputs():
    with pytest.raises(ValueError, match="`p_k` must be"):
        TopKCrossEntropyLoss("bitonic", 2.0, [0.7, 0.7])
    with pytest.raises(ValueError, match="`diffsort_method` must be one of"):
        TopKCrossEntropyLoss("splitter_selection", 2.0, [1.0])
    with pytest.raises(ValueError, match="`inverse_temperature` must be finite and > 0"):
        TopKCrossEntropyLoss("bitonic", 0.0, [1.0])
    with pytest.raises(ValueError, match="`m` must be < `n`"):
        TopKCrossEntropyLoss("bitonic", 2.0, [0.5, 0.5], n=10, m=10)
    with pytest.raises(ValueError, match="`top1_mode` must be one of"):
        TopKCrossEntropyLoss("bitonic", 2.0, [1.0], top1_mode="max")
    fn = TopKCrossEntropyLoss("bitonic", 2.0, [0.5, 0.5], n=10)
    with pytest.raises(ValueError, match="`outputs` must have n = 10 classes"):
        fn(torch.randn(4, 9), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="`labels` must be an integer tensor"):
        fn(torch.randn(4, 10), torch.zeros(4))
    with pytest.raises(ValueError, match="`k` must be <= 6"):
        DiffTopkNet("odd_even", 6, 7)
    with pytest.raises(ValueError, match="`vectors` must have size 6"):
        DiffTopkNet("odd_even", 6, 2)(torch.randn(2, 5))
