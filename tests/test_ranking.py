"diffalg.ranking: the shared scorer and metrics of the ranking experiments."
import math

import pytest
import torch

from diffalg.data import digits_numbers
from diffalg.ranking import NumberScorer, evaluate_ranking, evaluation_sets, ranking_accuracy


def test_accuracy_by_hand():
    v = torch.tensor([[10., 30., 20.], [1., 2., 3.], [5., 4., 6.]])
    s = torch.tensor([[0., 2., 1.], [3., 2., 1.], [0., 1., 2.]])
    em, ew = ranking_accuracy(s, v)
    assert em == pytest.approx(1 / 3)
    # row 0 all 3 positions; row 1 only the middle; row 2 only the last
    assert ew == pytest.approx((3 + 1 + 1) / 9)


def test_accuracy_is_invariant_to_monotone_maps(device):
    v = torch.randn(50, 7, device=device)
    em, ew = ranking_accuracy(torch.exp(3 * v) + 1, v)
    assert (em, ew) == (1.0, 1.0)


def test_chance_level():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(20_000, 4, generator=g)
    em, ew = ranking_accuracy(torch.randn(20_000, 4, generator=g), v)
    assert em == pytest.approx(1 / math.factorial(4), abs=0.01)
    assert ew == pytest.approx(1 / 4, abs=0.01)


def test_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        ranking_accuracy(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(TypeError, match="`scores` must be a torch.Tensor"):
        ranking_accuracy([1, 2], torch.zeros(2))


def test_scorer_shapes_and_devices(device):
    torch.manual_seed(0)
    model = NumberScorer(channels=4, hidden=8).to(device)
    x = torch.rand(2, 3, 1, 8, 32, device=device)
    model(x)  # initializes the lazy layer
    out = model(x)
    assert out.shape == (2, 3) and out.device.type == device.type
    with pytest.raises(ValueError, match="one channel"):
        model(torch.rand(2, 3, 8, 32, device=device))


def test_evaluation_sets_are_fixed_and_evaluate_runs():
    test = digits_numbers("test", n_numbers=300)
    a, b = evaluation_sets(test, 4, n_sets=20), evaluation_sets(test, 4, n_sets=20)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    torch.manual_seed(0)
    model = NumberScorer(channels=4, hidden=8)
    em, ew = evaluate_ranking(model, a, batch_size=7)
    assert 0 <= em <= ew <= 1 and model.training
