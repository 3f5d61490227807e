"""The fast renderer equals the dense reference (diffalg.rendering.reference), in float64.

`render_silhouette`, `render_rgb` and `hard_silhouette` (tiles, chunks, checkpointing, the
hand-written signed-distance backward) against `dense_silhouette`, `dense_rgb` and
`dense_hard_silhouette` (every pixel against every face, plain autograd): values and gradients with
respect to the vertices (and colours), on random meshes and adversarial ones: degenerate and very
thin triangles, faces behind the camera or off-screen, pixels exactly on edges, every distribution
and t-conorm, small and large `tau`, batches of cameras and meshes. `eps=1e-300` makes the engine
skip no face whose coverage is representable, so both compute the same formula.
"""
import os

import pytest
import torch

from diffalg.distributions import distribution_names
from diffalg.rendering import (Camera, SoftRasterizer, camera_position, get_tconorm,
                               hard_silhouette, icosphere, load_mesh, render_rgb,
                               render_silhouette, signed_distance, tconorm_names)
from diffalg.rendering.reference import dense_hard_silhouette, dense_rgb, dense_silhouette
from diffalg.rendering._engine import _SignedDistance, _barycentric, _chunk_end, _edge_terms

TEAPOT = os.path.join(os.path.dirname(__file__), "data", "teapot.obj")
F64 = torch.float64
EXACT = 1e-300          # eps: no face is skipped


def _soup(seed, n_faces=8, spread=1.4, device="cpu"):
    "Random triangles around the origin (a triangle soup), inside the view of a camera at z = 4."
    g = torch.Generator().manual_seed(seed)
    vertices = (torch.rand(3 * n_faces, 3, generator=g, dtype=F64) * 2 - 1) * spread
    return vertices.to(device), torch.arange(3 * n_faces, device=device).reshape(n_faces, 3)


def _cameras(elevations, azimuths, device, distance=4.0, **kw):
    eye = camera_position(distance, torch.tensor(elevations, dtype=F64),
                          torch.tensor(azimuths, dtype=F64))
    return Camera(eye.to(device), **kw)


def _same_image_and_gradient(vertices, faces, cam, size, rgb=False, atol=1e-10, merge=(),
                             engine=None, weight=None, **kw):
    """Engine and reference images agree, and so do the gradients of a random weighting of them.

    `merge`: groups of indices of coincident vertices. Where two vertices coincide the image is not
    differentiable in each of them separately (which edge is the closest is a tie), only in their
    common motion: the gradients of a group are summed before they are compared. `engine`: keyword
    arguments for the engine only (tile, chunk_elements, memory_limit). `weight`: a mask of the
    pixels whose gradients are compared (all by default)."""
    v_engine = vertices.detach().clone().requires_grad_()
    v_ref = vertices.detach().clone().requires_grad_()
    if rgb:
        img = render_rgb(v_engine, faces, cam, size, eps=EXACT, **kw, **(engine or {}))
        ref = dense_rgb(v_ref, faces, cam, size, **kw)
    else:
        img = render_silhouette(v_engine, faces, cam, size, eps=EXACT, **kw, **(engine or {}))
        ref = dense_silhouette(v_ref, faces, cam, size, **kw)
    assert img.shape == ref.shape
    assert torch.allclose(img, ref, atol=atol, rtol=0), float((img - ref).abs().max())
    w = torch.rand(img.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    w = w.to(img.device) if weight is None else w.to(img.device) * weight
    (img * w).sum().backward()            # (checkpointed chunks do not support autograd.grad)
    (ref * w).sum().backward()
    g_engine = torch.zeros_like(vertices) if v_engine.grad is None else v_engine.grad
    g_ref = torch.zeros_like(vertices) if v_ref.grad is None else v_ref.grad
    for group in merge:
        for g in (g_engine, g_ref):
            g[..., group[0], :] = g[..., group, :].sum(-2)
            g[..., group[1:], :] = 0
    assert bool(torch.isfinite(g_engine).all()) and bool(torch.isfinite(g_ref).all())
    scale = max(1.0, float(g_ref.abs().max()))
    assert torch.allclose(g_engine, g_ref, atol=1e-9 * scale, rtol=1e-7), \
        float((g_engine - g_ref).abs().max())
    return img, g_ref


# ---------------------------------------------------------------- every point of the design space

@pytest.mark.parametrize("distribution", distribution_names())
@pytest.mark.parametrize("tconorm", tconorm_names())
def test_every_distribution_and_tconorm(distribution, tconorm, device):
    vertices, faces = _soup(0, device=device)
    cam = _cameras([10.0], [20.0], device, fov=40.0)
    _same_image_and_gradient(vertices, faces, cam, (12, 14), tau=0.05, distribution=distribution,
                             tconorm=tconorm)


@pytest.mark.parametrize("tconorm,p", [("hamacher", 0.5), ("hamacher", 3.0), ("yager", 0.5),
                                       ("yager", 5.0), ("frank", 0.1), ("aczel-alsina", 0.5),
                                       ("dombi", 0.5), ("schweizer-sklar", -2.0),
                                       ("schweizer-sklar", 0.5)])
def test_tconorm_parameters(tconorm, p, device):
    vertices, faces = _soup(1, device=device)
    cam = _cameras([0.0], [0.0], device, fov=40.0)
    _same_image_and_gradient(vertices, faces, cam, 12, tau=0.05, tconorm=tconorm, p=p)


@pytest.mark.parametrize("seed", [2, 3, 4])
@pytest.mark.parametrize("squared", [False, True])
def test_random_meshes(seed, squared, device):
    vertices, faces = _soup(seed, n_faces=20, device=device)
    cam = _cameras([15.0], [-30.0], device)
    tau = 0.002 if squared else 0.03
    _same_image_and_gradient(vertices, faces, cam, (16, 20), tau=tau, squared=squared)


@pytest.mark.parametrize("tau", [1e-4, 1e-3, 0.3, 3.0])
@pytest.mark.parametrize("distribution", ["logistic", "gaussian", "cauchy", "uniform"])
def test_small_and_large_tau(tau, distribution, device):
    vertices, faces = _soup(5, n_faces=6, device=device)
    cam = _cameras([5.0], [10.0], device, fov=40.0)
    _same_image_and_gradient(vertices, faces, cam, 14, tau=tau, distribution=distribution)


def test_closed_mesh_and_backface_culling(device):
    v, f = icosphere(1, dtype=F64, device=device)
    v = v * torch.tensor([1.0, 0.6, 0.8], dtype=F64, device=device)
    cam = _cameras([25.0], [40.0], device, distance=3.0)
    for cull in (False, True):
        _same_image_and_gradient(v, f, cam, 16, tau=0.02, tconorm="einstein", cull_backfaces=cull)


# ---------------------------------------------------------------- batches

def test_batch_of_cameras(device):
    vertices, faces = _soup(6, n_faces=10, device=device)
    cams = _cameras([0.0, 30.0, -20.0], [0.0, 70.0, 200.0], device, fov=40.0)
    img, _ = _same_image_and_gradient(vertices, faces, cams, (10, 12), tau=0.04)
    assert img.shape == (3, 10, 12)


def test_batch_of_meshes_and_cameras(device):
    vertices, faces = _soup(7, n_faces=6, device=device)
    g = torch.Generator().manual_seed(1)
    batch = vertices[None] * (1 + 0.2 * torch.rand(2, 1, 3, generator=g, dtype=F64)).to(device)
    one_cam = _cameras([10.0], [10.0], device, fov=40.0)
    _same_image_and_gradient(batch, faces, one_cam, 10, tau=0.04, tconorm="max")
    two_cams = _cameras([10.0, -10.0], [10.0, 100.0], device, fov=40.0)
    _same_image_and_gradient(batch, faces, two_cams, 10, tau=0.04, distribution="laplace")


# ---------------------------------------------------------------- adversarial geometry

def test_degenerate_and_thin_triangles(device):
    vertices = torch.tensor([
        [-0.5, -0.5, 0.0], [0.5, -0.5, 0.0], [0.0, 0.6, 0.0],          # an ordinary triangle
        [-0.8, 0.2, 0.1], [0.0, 0.2, 0.1], [0.8, 0.2, 0.1],            # collinear: zero area
        [0.3, -0.7, 0.2], [0.3, -0.7, 0.2], [0.6, 0.5, 0.2],           # two equal vertices
        [0.1, 0.1, 0.3], [0.1, 0.1, 0.3], [0.1, 0.1, 0.3],             # a point
        [-0.9, -0.1, 0.0], [0.9, -0.1 + 1e-7, 0.0], [0.9, -0.1, 0.0],  # a needle 1e-7 wide
        [-0.2, -0.9, 0.1], [-0.2 + 1e-9, 0.9, 0.1], [-0.2, 0.9, 0.1],  # thinner still
    ], dtype=F64, device=device)
    faces = torch.arange(18, device=device).reshape(6, 3)
    cam = _cameras([3.0], [7.0], device, distance=3.0)
    for kw in (dict(tau=0.02), dict(tau=0.001, squared=True, tconorm="max"),
               dict(tau=0.05, distribution="cauchy", tconorm="yager")):
        _same_image_and_gradient(vertices, faces, cam, (15, 17), merge=([6, 7], [9, 10, 11]), **kw)
    assert torch.equal(hard_silhouette(vertices, faces, cam, 32),
                       dense_hard_silhouette(vertices, faces, cam, 32))


def test_faces_behind_the_camera_and_off_screen(device):
    vertices = torch.tensor([
        [-0.4, -0.4, 0.0], [0.4, -0.3, 0.0], [0.0, 0.5, 0.0],            # in view
        [-0.3, 0.0, 3.5], [0.3, 0.1, 3.5], [0.0, 0.4, 4.5],              # one vertex behind
        [-0.3, 0.0, 5.0], [0.3, 0.1, 5.0], [0.0, 0.4, 6.0],              # all behind
        [-0.1, -0.1, 3.95], [0.1, -0.1, 3.95], [0.0, 0.1, 3.95],         # closer than near
        [4.0, 4.0, 0.0], [5.0, 4.0, 0.0], [4.5, 5.0, 0.0],               # far off-screen
        [1.2, -0.2, 0.0], [2.5, -0.2, 0.0], [1.8, 0.6, 0.0],             # partly on screen
    ], dtype=F64, device=device)
    faces = torch.arange(18, device=device).reshape(6, 3)
    cam = Camera(torch.tensor([0.0, 0.0, 4.0], dtype=F64, device=device), fov=40.0)
    for kw in (dict(tau=0.02), dict(tau=0.2, distribution="cauchy"),
               dict(tau=0.02, tconorm="dombi")):
        img, _ = _same_image_and_gradient(vertices, faces, cam, (12, 16), **kw)
        assert bool(torch.isfinite(img).all())
    assert torch.equal(hard_silhouette(vertices, faces, cam, 24),
                       dense_hard_silhouette(vertices, faces, cam, 24))


def test_pixels_exactly_on_edges_and_vertices(device):
    """Orthographic camera; vertices and edges through pixel centres (exact binary fractions).

    The images agree everywhere. The unsquared distance |q| has no derivative where q = 0: there the
    reference's autograd gives 0 and the engine's formula q / |q| a unit vector whose direction
    depends on the rounding of q, so gradients are compared at the other pixels; with
    `squared=True` the derivative 2q is 0 on the edge in both, and every pixel is compared."""
    vertices = torch.tensor([[-0.875, -0.875, 0.0], [0.625, -0.375, 0.0], [-0.375, 0.875, 0.0],
                             [0.125, 0.125, 0.0], [0.875, 0.125, 0.0], [0.875, 0.625, 0.0]],
                            dtype=F64, device=device)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]], device=device)
    cam = Camera(torch.tensor([0.0, 0.0, 3.0], dtype=F64, device=device), projection="orthographic")
    from diffalg.rendering.reference import pixel_centres
    d = signed_distance(pixel_centres(8, F64, device), vertices[faces][..., :2])
    off_edges = (d.abs() > 1e-12).all(-1).reshape(1, 8, 8).to(F64)
    assert 0 < float(off_edges.sum()) < 64 - 5              # several pixel centres on an edge
    for kw in (dict(tau=0.05), dict(tau=0.05, tconorm="max"),
               dict(tau=0.05, distribution="uniform", tconorm="yager")):
        _same_image_and_gradient(vertices, faces, cam, 8, weight=off_edges, **kw)
    _same_image_and_gradient(vertices, faces, cam, 8, tau=0.01, squared=True)
    hard = hard_silhouette(vertices, faces, cam, 8)
    assert torch.equal(hard, dense_hard_silhouette(vertices, faces, cam, 8))
    assert float(hard[0, 7, 0]) == 1.0                   # the pixel centre on vertex 0 is inside


# ---------------------------------------------------------------- the engine's own knobs

@pytest.mark.parametrize("tile,chunk,limit", [(1, 1 << 20, 1e12), (3, 50, 1e12), (7, 10, 1.0),
                                              (32, 1 << 20, 1.0)])
def test_tiles_chunks_and_checkpointing(tile, chunk, limit, device):
    v, f = icosphere(1, dtype=F64, device=device)
    cam = _cameras([20.0, -15.0], [30.0, 120.0], device, distance=3.0)
    engine = dict(tile=tile, chunk_elements=chunk, memory_limit=limit)
    _same_image_and_gradient(v, f, cam, (13, 11), tau=0.03, engine=engine)
    _same_image_and_gradient(v, f, cam, (9, 10), rgb=True, tau=0.03, gamma=0.05, engine=engine)


@pytest.mark.parametrize("seed", range(4))
def test_chunks_cover_the_tiles_with_bounded_padding(seed):
    """Chunks partition the sorted tiles; each holds at most chunk_elements pairs (or one tile) and
    pads less than a third unless cutting there would leave a chunk under an eighth of the limit."""
    gen = torch.Generator().manual_seed(seed)
    counts = sorted(torch.randint(1, 60, (int(torch.randint(1, 400, (1,), generator=gen)),),
                                  generator=gen).tolist(), reverse=True)
    P, limit = 64, 1 << 15
    s, chunks = 0, []
    while s < len(counts):
        e = _chunk_end(counts, s, P, limit)
        assert e > s
        chunks.append((s, e))
        s = e
    assert chunks[-1][1] == len(counts)
    for s, e in chunks:
        k = counts[s]
        assert e - s == 1 or (e - s) * P * k <= limit
        low = [i for i in range(s, e) if counts[i] < 0.75 * k]
        if low:             # padded more: only because the cut would have left a small chunk
            assert (low[0] - s) * P * k < limit / 8
    assert len(chunks) >= -(-sum(P * c for c in counts) // limit)   # no fewer than the limit allows


def test_teapot(device):
    v, f = load_mesh(TEAPOT, dtype=F64, device=device)
    assert v.shape == (1292, 3) and f.shape == (2464, 3)
    cam = _cameras([20.0], [30.0], device, distance=3.0)
    _same_image_and_gradient(v, f, cam, 16, tau=0.01)
    assert torch.equal(hard_silhouette(v, f, cam, 48), dense_hard_silhouette(v, f, cam, 48))


# ---------------------------------------------------------------- colour

@pytest.mark.parametrize("distribution,tconorm,squared", [("logistic", "probabilistic", False),
                                                          ("gaussian", "max", False),
                                                          ("cauchy", "einstein", False),
                                                          ("logistic", "probabilistic", True),
                                                          ("uniform", "yager", False)])
def test_rgb(distribution, tconorm, squared, device):
    vertices, faces = _soup(8, n_faces=8, device=device)
    cams = _cameras([10.0, 40.0], [20.0, -60.0], device, fov=40.0)
    g = torch.Generator().manual_seed(2)
    colors = torch.rand(vertices.shape[0], 3, generator=g, dtype=F64).to(device)
    tau = 0.002 if squared else 0.04
    kw = dict(colors=colors, tau=tau, gamma=0.05, distribution=distribution, tconorm=tconorm,
              squared=squared, light_direction=(0.3, 0.5, 1.0), background=(0.2, 0.3, 0.4))
    _same_image_and_gradient(vertices, faces, cams, (10, 12), rgb=True, **kw)
    # and the gradient with respect to the colours
    c_engine, c_ref = colors.clone().requires_grad_(), colors.clone().requires_grad_()
    kw.pop("colors")
    a = render_rgb(vertices, faces, cams, (10, 12), colors=c_engine, eps=EXACT, **kw)
    b = dense_rgb(vertices, faces, cams, (10, 12), colors=c_ref, **kw)
    ga, = torch.autograd.grad(a.sum(), c_engine)
    gb, = torch.autograd.grad(b.sum(), c_ref)
    assert torch.allclose(ga, gb, atol=1e-9)


# ---------------------------------------------------------------- the signed distance

def test_signed_distance_engine_equals_reference(device):
    g = torch.Generator().manual_seed(4)
    tris = (torch.rand(12, 3, 2, generator=g, dtype=F64) * 2 - 1).to(device)
    tris[3, 2] = tris[3, 0]                                       # two equal vertices
    tris[4] = torch.tensor([[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]], dtype=F64)   # collinear
    tris[5, 1] = tris[5, 0] + torch.tensor([1e-9, 0.8], dtype=F64, device=device)  # needle
    pts = (torch.rand(40, 2, generator=g, dtype=F64) * 2.4 - 1.2).to(device)
    pts = torch.cat([pts, tris[0], (tris[0, 0] + tris[0, 1])[None] / 2])   # on vertices, edge
    for squared in (False, True):
        ref_t = tris.clone().requires_grad_()
        ref = signed_distance(pts, ref_t, squared)
        eng_t = tris.clone().requires_grad_()
        eng = _SignedDistance.apply(pts[None], eng_t[None], squared)[0]
        assert torch.allclose(eng, ref, atol=1e-12)
        w = torch.rand(ref.shape, generator=g, dtype=F64).to(device)
        g_ref, = torch.autograd.grad((ref * w).sum(), ref_t)
        g_eng, = torch.autograd.grad((eng * w).sum(), eng_t)
        for g_ in (g_ref, g_eng):                  # coincident vertices: compare their sum
            g_[3, 0] += g_[3, 2]
            g_[3, 2] = 0
        assert torch.allclose(g_eng, g_ref, atol=1e-8)
        d2, inside, bary = _edge_terms(pts[None], tris[None])
        assert torch.allclose(torch.where(inside, d2, -d2)[0] if squared else
                              torch.where(inside, d2.sqrt(), -d2.sqrt())[0], ref.detach(),
                              atol=1e-12)
    assert torch.allclose(_barycentric(pts[None], tris[None])[0, :, :3],
                          _edge_terms(pts[None], tris[None])[2][0, :, :3], atol=1e-6)


def test_light_signed_distance_recomputes_the_same_gradient(device):
    g = torch.Generator().manual_seed(5)
    pts = torch.rand(2, 9, 2, generator=g, dtype=F64).to(device)
    tris = torch.rand(2, 4, 3, 2, generator=g, dtype=F64).to(device)
    for squared in (False, True):
        grads = []
        for light in (False, True):
            t = tris.clone().requires_grad_()
            _SignedDistance.apply(pts, t, squared, light).pow(2).sum().backward()
            grads.append(t.grad)
        assert torch.equal(grads[0], grads[1])


# ---------------------------------------------------------------- the module

def test_soft_rasterizer_is_render_silhouette_and_render_rgb(device):
    v, f = icosphere(1, dtype=F64, device=device)
    cam = _cameras([20.0], [30.0], device, distance=3.0)
    other = _cameras([-10.0, 50.0], [100.0, 250.0], device, distance=3.0)
    kw = dict(tau=0.03, distribution="gaussian", tconorm="einstein", eps=1e-6, tile=4)
    raster = SoftRasterizer(cam, (12, 10), **kw)
    assert torch.equal(raster(v, f), render_silhouette(v, f, cam, (12, 10), **kw))
    assert torch.equal(raster(v, f, camera=other), render_silhouette(v, f, other, (12, 10), **kw))
    colors = torch.rand(v.shape[0], 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    colors = colors.to(device)
    rgb = SoftRasterizer(cam, 9, mode="rgb", gamma=0.01, chunk_elements=64, **kw)
    assert torch.equal(rgb(v, f, colors), render_rgb(v, f, cam, 9, colors=colors, gamma=0.01,
                                                     chunk_elements=64, **kw))
    vv = v.clone().requires_grad_()
    SoftRasterizer(cam, 8)(vv, f).sum().backward()
    assert float(vv.grad.abs().sum()) > 0
    assert isinstance(raster, torch.nn.Module) and "einstein" in repr(raster)


@pytest.mark.parametrize("kwargs,error,name", [
    (dict(image_size=0), ValueError, "image_size"), (dict(image_size=(4, 4, 4)), ValueError,
                                                     "image_size"),
    (dict(tau=0.0), ValueError, "tau"), (dict(distribution="student-t"), ValueError,
                                         "distribution"),
    (dict(tconorm="minimum"), ValueError, "tconorm"), (dict(tconorm="yager", p=-1.0), ValueError,
                                                       "p"),
    (dict(eps=0.7), ValueError, "eps"), (dict(mode="depth"), ValueError, "mode"),
    (dict(gamma=-1.0), ValueError, "gamma"), (dict(ambient=-0.1), ValueError, "ambient"),
    (dict(diffuse="a lot"), ValueError, "diffuse"), (dict(tile=0), ValueError, "tile"),
    (dict(chunk_elements=0), ValueError, "chunk_elements"),
    (dict(memory_limit=0.0), ValueError, "memory_limit"),
    (dict(squared="yes"), TypeError, "squared"), (dict(cull_backfaces=1), TypeError,
                                                  "cull_backfaces"),
])
def test_soft_rasterizer_bad_settings(kwargs, error, name, device):
    cam = _cameras([0.0], [0.0], device)
    with pytest.raises(error, match=name):
        SoftRasterizer(cam, **kwargs)


def test_soft_rasterizer_bad_input(device):
    v, f = icosphere(1, device=device)
    cam = Camera(camera_position(3.0, 0.0, 0.0).to(device))
    raster = SoftRasterizer(cam, 8)
    with pytest.raises(TypeError, match="camera"):
        SoftRasterizer("a camera")
    with pytest.raises(TypeError, match="camera"):
        raster(v, f, camera="a camera")
    with pytest.raises(ValueError, match="colors"):
        raster(v, f, torch.ones_like(v))
    with pytest.raises(ValueError, match="faces"):
        raster(v, f + 1000)
    with pytest.raises(ValueError, match="vertices"):
        raster(v[:, :2], f)
    with pytest.raises(ValueError, match="colors"):
        SoftRasterizer(cam, 8, mode="rgb")(v, f, torch.ones(3, 3, device=device))
    with pytest.raises(ValueError, match="batch"):
        raster(v.expand(2, -1, -1), f, camera=Camera(camera_position(3.0, [0.0, 1.0, 2.0], 0.0)
                                                      .to(device)))


def test_reference_bad_input(device):
    v, f = icosphere(0, device=device)
    cam = Camera(camera_position(3.0, 0.0, 0.0).to(device))
    with pytest.raises(TypeError, match="camera"):
        dense_silhouette(v, f, None)
    with pytest.raises(ValueError, match="image_size"):
        dense_silhouette(v, f, cam, image_size=-2)
    with pytest.raises(ValueError, match="tau"):
        dense_silhouette(v, f, cam, tau=0.0)
    with pytest.raises(ValueError, match="tconorm"):
        dense_silhouette(v, f, cam, tconorm="or")
    with pytest.raises(ValueError, match="gamma"):
        dense_rgb(v, f, cam, gamma=0.0)
    assert get_tconorm("max").name == "max"
