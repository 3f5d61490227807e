"Tests of diffalg.relax.terrain: the procedural terrain maps and the cost network."

import pytest
import torch

from diffalg.relax.algorithms import shortest_path
from diffalg.relax.terrain import TERRAINS, TerrainCostNet, terrain_maps


def test_terrain_maps_shapes_and_costs():
    images, costs, ids = terrain_maps(5, size=9, cell=4, seed=2)
    assert images.shape == (5, 3, 36, 36) and costs.shape == ids.shape == (5, 9, 9)
    assert images.dtype == torch.float32 and bool((images >= 0).all() and (images <= 1).all())
    assert torch.equal(costs, torch.tensor([t[1] for t in TERRAINS])[ids])
    assert set(ids.unique().tolist()) <= set(range(len(TERRAINS)))


def test_terrain_maps_reproducible_and_seed_dependent():
    a, b = terrain_maps(3, seed=7), terrain_maps(3, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(terrain_maps(3, seed=8)[1], a[1])


def test_terrain_textures_differ_between_grass_and_forest():
    "Grass and forest have nearly the same colour; their texture must tell them apart."
    images, _, ids = terrain_maps(20, size=12, cell=6, seed=0)
    patches = images.unfold(2, 6, 6).unfold(3, 6, 6)  # (n, 3, 12, 12, 6, 6)
    std = patches.std((-2, -1)).mean(1)  # texture strength per cell
    grass, forest = [k for k, t in enumerate(TERRAINS) if t[0] in ("grass", "forest")]
    assert std[ids == forest].mean() > 2 * std[ids == grass].mean()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_maps=0), "n_maps"),
        (dict(n_maps=2, size=1), "size"),
        (dict(n_maps=2, cell=3), "cell"),
        (dict(n_maps=2, seed=-1), "seed"),
    ],
)
def test_terrain_maps_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        terrain_maps(**kwargs)


def test_cost_net(device):
    torch.manual_seed(0)
    net = TerrainCostNet(cell=4, channels=8).to(device)
    images, costs, _ = terrain_maps(2, size=6, cell=4)
    pred = net(images.to(device))
    assert pred.shape == (2, 6, 6) and bool((pred > 0).all()) and pred.device.type == device.type
    _, path = shortest_path(pred, steepness=2.0)
    path.sum().backward()
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in net.parameters())
    with pytest.raises(ValueError, match="images"):
        net(torch.rand(1, 3, 10, 10, device=device))
    with pytest.raises(TypeError, match="images"):
        net([1, 2])
