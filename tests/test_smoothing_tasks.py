"diffalg.smoothing black boxes: hard permutation, ranking losses, grid path, pose, variance."
import math

import pytest
import torch

from diffalg.relax import shortest_path, terrain_maps
from diffalg.rendering import icosphere
from diffalg.smoothing import (gradient_variance, grid_shortest_path, hard_permutation,
                               silhouette_of_pose, smoothed_ranking_loss)
from diffalg.sorting import permutation_targets


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_hard_permutation_orientation():
    values = torch.randint(0, 1000, (6, 7))
    values = values + torch.arange(7) * 1000          # distinct
    P = hard_permutation(values.double())
    assert torch.equal(P, permutation_targets(values).double())
    assert torch.equal(values.double().unsqueeze(-2) @ P, values.double().sort(-1).values[:, None])


@pytest.mark.parametrize("d", [0.0, 0.05, 0.2])
def test_ranking_error_of_two_is_the_flip_probability(d):
    x = torch.tensor([[0.0, d]], dtype=torch.float64, requires_grad=True)
    err = smoothed_ranking_loss(x, torch.tensor([[1, 2]]), 0.1, 2 ** 14, "qmc+antithetic",
                                generator=gen(0))
    err.sum().backward()
    t = d / (0.1 * math.sqrt(2))
    assert abs(err.item() - 0.5 * math.erfc(t / math.sqrt(2))) < 5e-3
    slope = math.exp(-t * t / 2) / math.sqrt(2 * math.pi) / (0.1 * math.sqrt(2))
    torch.testing.assert_close(x.grad, torch.tensor([[slope, -slope]], dtype=torch.float64),
                               atol=0.05, rtol=0.02)


def test_ranking_losses_shapes_and_errors():
    scores, values = torch.randn(4, 5), torch.rand(4, 5).argsort(-1)
    for loss in ("error", "bce"):
        out = smoothed_ranking_loss(scores, values, loss=loss, generator=gen(1))
        assert out.shape == (4,) and (out >= 0).all()
    with pytest.raises(ValueError, match="`loss` must be one of"):
        smoothed_ranking_loss(scores, values, loss="hinge")
    with pytest.raises(ValueError, match="`scores`"):
        smoothed_ranking_loss(torch.randn(5), values[0])


def test_grid_shortest_path_matches_the_relaxed_solver_in_hard_mode():
    _, costs, _ = terrain_maps(24, seed=5)
    costs = costs.double() + 1e-3 * torch.rand(costs.shape, generator=gen(2), dtype=torch.float64)
    assert torch.equal(grid_shortest_path(costs), shortest_path(costs, hard=True).path)
    lead = grid_shortest_path(costs.reshape(2, 12, 12, 12))
    assert torch.equal(lead.reshape(24, 12, 12), grid_shortest_path(costs))


def test_grid_shortest_path_small_grids():
    assert torch.equal(grid_shortest_path(torch.ones(2, 2)), torch.tensor([[1.0, 0.0],
                                                                            [0.0, 1.0]]))
    c = torch.ones(1, 3, 5)
    assert grid_shortest_path(c).sum().item() == 5
    with pytest.raises(ValueError, match="`costs`"):
        grid_shortest_path(torch.ones(4))


def test_silhouette_of_pose_batches_leading_dims():
    f = silhouette_of_pose(*icosphere(1), distance=4.0, image_size=16)
    a = torch.tensor([[[10.0, 20.0], [30.0, -40.0]]], dtype=torch.float64)
    s = f(a)
    assert s.shape == (1, 2, 16, 16) and s.dtype == torch.float64
    assert torch.equal(s[0, 1], f(a[0, 1]))
    assert 0 < s.mean() < 1
    with pytest.raises(ValueError, match="`image_size`"):
        silhouette_of_pose(*icosphere(1), image_size=0)


def step(z):
    return (z > 0).to(z.dtype)


def test_gradient_variance_falls_as_one_over_samples():
    x, g = torch.tensor([0.2, -0.1], dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    v16 = gradient_variance(step, x, g, 0.5, 16, batch_dims=0, copies=400)
    v64 = gradient_variance(step, x, g, 0.5, 64, batch_dims=0, copies=400)
    assert 2.8 < v16 / v64 < 5.5


def test_leave_one_out_pays_for_a_one_signed_upstream_gradient():
    _, costs, _ = terrain_maps(2, seed=1)
    costs = costs.double()
    y = grid_shortest_path(costs)
    box = lambda z: grid_shortest_path(z.clamp_min(0.1))        # noqa: E731
    plain = gradient_variance(box, costs, -y, 1.0, 32, None, batch_dims=1, copies=60, seed=3)
    loo = gradient_variance(box, costs, -y, 1.0, 32, "loo", batch_dims=1, copies=60, seed=4)
    assert plain / loo > 2


def test_relaxed_path_as_control_variate_for_the_squared_error():
    # the mixed-sign case where no baseline pays; the relaxed Bellman-Ford follows the paths
    _, costs, _ = terrain_maps(1, seed=2)
    costs = costs.double()
    y = grid_shortest_path(costs)
    box = lambda z: grid_shortest_path(z.clamp_min(0.1))                  # noqa: E731
    relaxed = lambda z: shortest_path(z.clamp_min(0.1), 8.0).path         # noqa: E731
    mean = box(costs + torch.randn(512, *costs.shape, dtype=torch.float64, generator=gen(0)))
    g = 2 * (mean.mean(0) - y)
    plain = gradient_variance(box, costs, g, 1.0, 16, None, batch_dims=1, copies=12, seed=1)
    cv = gradient_variance(box, costs, g, 1.0, 16, "loo", batch_dims=1, copies=12, seed=2,
                           control_variate=relaxed, chunk=6)
    assert plain / cv > 3, plain / cv


def test_gradient_variance_bad_input():
    x, g = torch.zeros(3), torch.ones(3)
    with pytest.raises(ValueError, match="`copies` must be >= 2"):
        gradient_variance(step, x, g, 0.5, 8, copies=1)
    with pytest.raises(ValueError, match="`chunk` must be >= 1"):
        gradient_variance(step, x, g, 0.5, 8, copies=4, chunk=0)
    with pytest.raises(ValueError, match="`sigma`"):
        gradient_variance(step, x, g, 0.0, 8)
