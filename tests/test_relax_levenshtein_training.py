"""Levenshtein-distance supervision (diffalg.relax.edit_supervision): batches, loss, reader."""
import pytest
import torch
import torch.nn.functional as F
from diffalg.relax import (CharReader, edit_distance, edit_distance_loss, letter_pools,
                           reading_accuracy, string_batch, train_reader)


def _naive_distance(a, b):
    "Textbook Wagner-Fischer on Python lists: the oracle."
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        new = [i]
        for j, y in enumerate(b, 1):
            new.append(min(row[j] + 1, new[j - 1] + 1, row[j - 1] + (x != y)))
        row = new
    return row[-1]


def test_edit_distance_matches_wagner_fischer():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 3, (20, 6), generator=g)
    y = torch.randint(0, 3, (20, 4), generator=g)
    d = edit_distance(x, y, 3)
    assert d.shape == (20,)
    assert d.tolist() == [_naive_distance(a.tolist(), b.tolist()) for a, b in zip(x, y)]


def test_string_batch_shapes_and_distances():
    images = torch.rand(30, 8, 8)
    symbols = torch.arange(30) % 2
    x, hidden, targets, dist = string_batch(images, symbols, 7, 5, 2,
                                            torch.Generator().manual_seed(1))
    assert x.shape == (7, 5, 8, 8) and hidden.shape == targets.shape == (7, 5)
    assert torch.equal(dist, edit_distance(hidden, targets, 2))
    assert int(targets.max()) <= 1


@pytest.mark.parametrize("pair", [([0, 1, 1, 0], [1, 1, 1]), ([1, 0], [0, 1]), ([0], [0, 0, 0]),
                                  ([1, 1, 0, 1], [1, 1, 0, 1])])
def test_loss_equals_hard_distance_at_high_steepness(pair, device):
    a, b = (torch.tensor([s], device=device) for s in pair)
    probs = F.one_hot(a, 2).double()
    true = torch.tensor([float(_naive_distance(*pair))], device=device, dtype=torch.float64)
    assert edit_distance_loss(probs, b, true, steepness=500.0) < 1e-6
    wrong = true + 1
    assert edit_distance_loss(probs, b, wrong, steepness=500.0) == pytest.approx(1.0, abs=1e-4)


def test_loss_gradients_finite_and_follow_device(device):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, 3, generator=g).to(device).requires_grad_()
    targets = torch.randint(0, 3, (4, 5), generator=g).to(device)
    dist = torch.tensor([1.0, 2.0, 3.0, 4.0], device=device)
    loss = edit_distance_loss(logits.softmax(-1), targets, dist)
    loss.backward()
    assert loss.device == logits.device and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_bad_inputs_raise():
    p = torch.full((2, 3, 2), 0.5)
    t = torch.zeros(2, 3, dtype=torch.long)
    d = torch.zeros(2)
    with pytest.raises(TypeError, match="targets"):
        edit_distance_loss(p, t.float(), d)
    with pytest.raises(ValueError, match="targets"):
        edit_distance_loss(p, t + 2, d)
    with pytest.raises(ValueError, match="distances"):
        edit_distance_loss(p, t, torch.zeros(3))
    with pytest.raises(ValueError, match="alphabet"):
        letter_pools((3, 3))
    with pytest.raises(ValueError, match="symbols"):
        string_batch(torch.rand(5, 8, 8), torch.zeros(4, dtype=torch.long), 2, 3, 2)
    with pytest.raises(TypeError, match="x"):
        edit_distance(torch.zeros(3), t[0], 2)
    with pytest.raises(ValueError, match="supervision"):
        train_reader(letter_pools()["train"], 2, supervision="labels")


def test_short_training_learns_from_distances_only():
    pools = letter_pools((3, 8))
    reader, losses = train_reader(pools["train"], 2, "levenshtein", steps=60, seed=0)
    assert len(losses) == 60 and sum(losses[-10:]) < sum(losses[:10])
    acc = reading_accuracy(reader, pools["test"], n_strings=100)
    chance = reading_accuracy(CharReader(2), pools["test"], n_strings=100)
    assert acc["char"] > 0.8 and acc["char"] > chance["char"] + 0.2
