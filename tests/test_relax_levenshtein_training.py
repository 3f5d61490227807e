"""Levenshtein-distance supervision (diffalg.relax.edit_supervision): batches, loss, reader."""
import pytest
import torch
import torch.nn.functional as F
from diffalg.relax import (CharReader, edit_distance, edit_distance_loss, letter_pools,
                           reading_accuracy, string_batch, train_reader)
from diffalg.relax import best_renaming


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
    x, hidden, dist = string_batch(images, symbols, 7, 5, 2, torch.Generator().manual_seed(1))
    assert x.shape == (7, 2, 5, 8, 8) and hidden.shape == (7, 2, 5)
    assert torch.equal(dist, edit_distance(hidden[:, 0], hidden[:, 1], 2))
    # every image shown carries its symbol
    flat = x.reshape(-1, 8, 8)
    rows = (flat.unsqueeze(1) == images.unsqueeze(0)).flatten(2).all(-1).float().argmax(1)
    assert torch.equal(symbols[rows], hidden.reshape(-1))


@pytest.mark.parametrize("pair", [([0, 1, 1, 0], [1, 1, 1]), ([1, 0], [0, 1]), ([0], [0, 0, 0]),
                                  ([1, 1, 0, 1], [1, 1, 0, 1])])
def test_loss_equals_hard_distance_at_high_steepness(pair, device):
    a, b = (F.one_hot(torch.tensor([s], device=device), 2).double() for s in pair)
    true = torch.tensor([float(_naive_distance(*pair))], device=device, dtype=torch.float64)
    assert edit_distance_loss(a, b, true, steepness=500.0) < 1e-6
    assert edit_distance_loss(a, b, true + 1, steepness=500.0) == pytest.approx(1.0, abs=1e-4)


def test_loss_gradients_finite_and_follow_device(device):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 2, 6, 3, generator=g).to(device).requires_grad_()
    dist = torch.tensor([1.0, 2.0, 3.0, 4.0], device=device)
    p = logits.softmax(-1)
    loss = edit_distance_loss(p[:, 0], p[:, 1, :5], dist)
    loss.backward()
    assert loss.device == logits.device and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_bad_inputs_raise():
    p = torch.full((2, 3, 2), 0.5)
    d = torch.zeros(2)
    with pytest.raises(ValueError, match="distances"):
        edit_distance_loss(p, p, torch.zeros(3))
    with pytest.raises(ValueError, match="probs_a"):
        edit_distance_loss(p[0], p[0], d[:1])
    with pytest.raises(ValueError, match="alphabet"):
        letter_pools((3, 3))
    with pytest.raises(ValueError, match="symbols"):
        string_batch(torch.rand(5, 8, 8), torch.zeros(4, dtype=torch.long), 2, 3, 2)
    with pytest.raises(TypeError, match="x"):
        edit_distance(torch.zeros(3), torch.zeros(3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="y"):
        edit_distance(torch.zeros(3, dtype=torch.long), torch.full((3,), 5), 2)
    with pytest.raises(ValueError, match="supervision"):
        train_reader(letter_pools()["train"], 2, supervision="labels")


def test_renaming_is_found():
    class Swapped(torch.nn.Module):          # reads symbol s as 1 - s, from a marker pixel
        def forward(self, images):
            return torch.stack([images[..., 0, 0], 1 - images[..., 0, 0]], -1)
    symbols = torch.tensor([0, 1, 1, 0, 1])
    images = torch.zeros(5, 8, 8)
    images[:, 0, 0] = symbols.float()
    assert best_renaming(Swapped(), (images, symbols)).tolist() == [1, 0]
    acc = reading_accuracy(Swapped(), (images, symbols), (images, symbols), n_strings=20)
    raw = reading_accuracy(Swapped(), (images, symbols), None, n_strings=20)
    assert acc == {"char": 1.0, "string": 1.0} and raw["char"] == 0.0


def test_short_training_learns_from_distances_only():
    pools = letter_pools((3, 8))
    reader, losses = train_reader(pools["train"], 2, "levenshtein", steps=50, seed=0)
    assert len(losses) == 50 and sum(losses[-10:]) < sum(losses[:10])
    acc = reading_accuracy(reader, pools["test"], pools["train"], n_strings=100)
    assert acc["char"] > 0.85
