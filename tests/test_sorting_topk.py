"""Tests of diffalg.sorting.topk (top-k network and loss) and diffalg.sorting.baselines
(NeuralSort, SoftSort)."""
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
    net = DiffTopkNet("bitonic", 9, 3, steepness=3.0)
    assert torch.autograd.gradcheck(lambda x: net(x)[1], (x,))


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
        ce = torch.nn.functional.cross_entropy(logits, labels)
        torch.testing.assert_close(loss, ce, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", ["sm", "smce", "sort"])
def test_topk_loss_finite_with_preselection(method, mode, device):
    torch.manual_seed(2)
    logits = torch.randn(8, 20, device=device, requires_grad=True)
    labels = torch.randint(20, (8,), device=device)
    fn = TopKCrossEntropyLoss(method, 2.0, [0.5, 0.0, 0.0, 0.0, 0.5], n=20, m=8, top1_mode=mode,
                              device=device)
    loss = fn(logits, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_topk_loss_prefers_label_in_topk():
    "A label ranked 2nd costs less under p_k = (0, 1) (top-2) than a label ranked last."
    logits = torch.tensor([[3.0, 2.0, 0.0, -1.0]])
    fn = TopKCrossEntropyLoss("odd_even", 4.0, [0.0, 1.0], n=4, top1_mode="sort")
    assert fn(logits, torch.tensor([1])) < fn(logits, torch.tensor([3]))


def test_topk_bad_inputs():
    with pytest.raises(ValueError, match="`p_k` must be"):
        TopKCrossEntropyLoss("bitonic", 2.0, [0.7, 0.7])
    with pytest.raises(ValueError, match="`diffsort_method` must be one of"):
        TopKCrossEntropyLoss("sinkhorn_sort", 2.0, [1.0])
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


def test_soft_topk_orientation_shapes_and_hard_limit():
    "Column j is the soft one-hot of the j-th largest entry; the sorted dimension moves to -2."
    from diffalg.sorting import soft_topk, soft_topk_mask
    x = torch.tensor([[0.3, -1.0, 2.0, 0.9, 0.0]], dtype=torch.float64)
    T = soft_topk(x, 3, steepness=1e7, distribution="logistic")
    order = x.argsort(-1, descending=True)[0, :3]
    hard = torch.nn.functional.one_hot(order, 5).T.double()[None]
    torch.testing.assert_close(T, hard)
    y = torch.randn(2, 7, 4, dtype=torch.float64)
    for descending in (True, False):
        T = soft_topk(y, 2, "bitonic", 5.0, dim=1, descending=descending)
        assert T.shape == (2, 4, 7, 2)
        torch.testing.assert_close(T, RelaxedSort(y, "bitonic", 5.0, dim=1,
                                                  descending=descending).topk(2))
        mask = soft_topk_mask(y, 2, "bitonic", 5.0, dim=1, descending=descending)
        torch.testing.assert_close(T.sum(-1), mask.movedim(1, -1))
    yg = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: soft_topk(z, 3, "odd_even", 3.0), (yg,))


def test_soft_topk_bad_inputs():
    from diffalg.sorting import soft_topk
    x = torch.randn(3, 5)
    with pytest.raises(ValueError, match="`k` must be <= 5"):
        soft_topk(x, 6)
    with pytest.raises(ValueError, match="`k` must be >= 1"):
        soft_topk(x, 0)
    with pytest.raises(TypeError, match="`k` must be an int"):
        soft_topk(x, 2.0)
    with pytest.raises(TypeError, match="`x` must be a torch.Tensor"):
        soft_topk([1.0, 2.0], 1)
    with pytest.raises(ValueError, match="`steepness` must be finite and > 0"):
        soft_topk(x, 2, steepness=0.0)
    with pytest.raises(ValueError, match="`dim` must be <= 1"):
        soft_topk(x, 2, dim=2)
    with pytest.raises(TypeError, match="`descending` must be a bool"):
        soft_topk(x, 2, descending=1)


@pytest.mark.parametrize("name", ["NeuralSort", "SoftSort"])
def test_neuralsort_softsort_modules(name, device):
    import diffalg.sorting as ds
    module, fn = getattr(ds, name), getattr(ds, name.lower() + "_permutation")
    torch.manual_seed(3)
    x = torch.randn(2, 6, 3, device=device, dtype=torch.float64)
    m = module(tau=0.7, dim=1)
    assert isinstance(m, torch.nn.Module) and m.tau == 0.7 and m.dim == 1
    torch.testing.assert_close(m(x), fn(x, tau=0.7, dim=1))
    assert m(x).shape == (2, 3, 6, 6)
    assert repr(module(0.5)) == f"{name}(tau=0.5, dim=-1)"
    xg = torch.randn(2, 5, device=device, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module(0.5), (xg,))


@pytest.mark.parametrize("name", ["NeuralSort", "SoftSort"])
def test_neuralsort_softsort_bad_inputs(name):
    import diffalg.sorting as ds
    module = getattr(ds, name)
    with pytest.raises(ValueError, match="`tau` must be finite and > 0"):
        module(tau=0.0)
    with pytest.raises(ValueError, match="`tau` must be finite and > 0"):
        module(tau=float("inf"))
    with pytest.raises(TypeError, match="`tau` must be a real number"):
        module(tau="1")
    with pytest.raises(TypeError, match="`tau` must be a real number"):
        module(tau=torch.tensor(1.0))
    with pytest.raises(TypeError, match="`dim` must be an int"):
        module(dim=0.5)
    m = module()
    with pytest.raises(TypeError, match="`scores` must be a torch.Tensor"):
        m([1.0, 2.0])
    with pytest.raises(ValueError, match="`dim` must be >= -1"):
        module(dim=-2)(torch.randn(4))
    with pytest.raises(ValueError, match="`scores` must contain only finite values"):
        m(torch.tensor([1.0, float("nan")]))
