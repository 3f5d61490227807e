"diffalg.smoothing.dijkstra_path: equal to the Bellman-Ford black box and chapter 2's hard paths."
import pytest
import torch

from diffalg.relax import shortest_path
from diffalg.smoothing import dijkstra_path, grid_shortest_path, neighbour_table, smooth


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 2), (5, 5), (8, 8), (3, 7), (6, 4), (1, 5), (5, 1)])
def test_equal_to_bellman_ford(shape, dtype, device):
    g = torch.Generator().manual_seed(sum(shape))
    c = (torch.rand(64, *shape, generator=g, dtype=dtype) * 5 + 0.1).to(device)
    before = c.clone()
    p = dijkstra_path(c)
    assert p.shape == c.shape and p.dtype == dtype and p.device == c.device
    assert torch.equal(c, before) and not p.requires_grad
    assert torch.equal(p, grid_shortest_path(c))
    if min(shape) > 1:
        assert torch.equal(p, shortest_path(c, hard=True).path.to(dtype))
    cost = (p * c).sum((-2, -1))
    assert torch.all(cost <= (grid_shortest_path(c) * c).sum((-2, -1)) + 1e-6)


def test_known_paths():
    c = torch.full((1, 3, 3), 10.0)
    c[0, 1, 1] = 1.0                                   # the diagonal through the cheap centre
    p = dijkstra_path(c)[0]
    assert p.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    line = dijkstra_path(torch.ones(1, 5))
    assert line.tolist() == [[1, 1, 1, 1, 1]]


def test_leading_dims_and_grad_input():
    c = torch.rand(2, 3, 6, 6, requires_grad=True) + 0.1
    p = dijkstra_path(c)
    assert p.shape == (2, 3, 6, 6) and not p.requires_grad
    assert torch.equal(p.reshape(6, 6, 6), dijkstra_path(c.detach().reshape(6, 6, 6)))


def test_neighbour_table():
    t = neighbour_table(4, 5)
    assert t.shape == (20, 8)
    inside = t < 20
    assert inside.sum().item() == 2 * (4 * 4 + 5 * 3) + 2 * 2 * 3 * 4   # 8-neighbour edges
    i, j = divmod(7, 5)
    for k in t[7][t[7] < 20].tolist():
        assert max(abs(k // 5 - i), abs(k % 5 - j)) == 1


def test_smoothed_dijkstra_gradient():
    c = torch.rand(4, 5, 5, dtype=torch.float64) * 3 + 0.5
    cg = c.clone().requires_grad_()
    p = smooth(lambda z: dijkstra_path(z.clamp_min(0.1)), cg, 0.3, 32,
               variance_reduction="qmc+antithetic", batch_dims=1,
               generator=torch.Generator().manual_seed(0))
    assert p.shape == c.shape and ((p >= 0) & (p <= 1)).all()
    p.sum().backward()
    assert cg.grad.shape == c.shape and torch.isfinite(cg.grad).all()


def test_bad_input():
    with pytest.raises(ValueError, match=r"`costs` must have at least 2 dimension"):
        dijkstra_path(torch.rand(5))
    with pytest.raises(TypeError, match="`costs` must be"):
        dijkstra_path([[1.0, 2.0], [3.0, 4.0]])
