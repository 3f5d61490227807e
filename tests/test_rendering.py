"""Tests of diffalg.rendering: the hard limit, t-conorm axioms and formulas, gradients, batching,
bad input."""
import math
import os

import numpy as np
import pytest
import torch
import trimesh

from diffalg.distributions import distribution_names
from diffalg.rendering import (Camera, camera_position, get_tconorm, hard_silhouette, icosphere,
                               load_mesh, render_rgb, render_silhouette, signed_distance,
                               tconorm_names, laplacian_loss, flatten_loss, from_trimesh,
                               coverage_margin)

TEAPOT = os.path.join(os.path.dirname(__file__), "data", "teapot.obj")


def _random_mesh(seed, n_faces=8, dtype=torch.float64):
    "Random triangles around the origin (a triangle soup), inside the view of a camera at z = 4."
    g = torch.Generator().manual_seed(seed)
    vertices = (torch.rand(3 * n_faces, 3, generator=g, dtype=dtype) * 2 - 1) * 1.4
    faces = torch.arange(3 * n_faces).reshape(n_faces, 3)
    return vertices, faces


def _reference_hard(vertices, faces, eye_z, fov, H, W):
    "Independent reference: perspective projection on the z axis, then a barycentric inside test."
    v = vertices.double().cpu().numpy()
    f = 1 / math.tan(math.radians(fov) / 2)
    depth = eye_z - v[:, 2]
    sx, sy = f * v[:, 0] / depth, f * v[:, 1] / depth
    xs = (2 * np.arange(W) + 1 - W) / H
    ys = (H - 1 - 2 * np.arange(H)) / H
    px, py = np.meshgrid(xs, ys)
    out = np.zeros((H, W), bool)
    for a, b, c in faces.cpu().numpy():
        (x1, y1), (x2, y2), (x3, y3) = (sx[a], sy[a]), (sx[b], sy[b]), (sx[c], sy[c])
        det = (y2 - y3) * (x1 - x3) + (x3 - x2) * (y1 - y3)
        if det == 0:
            continue
        l1 = ((y2 - y3) * (px - x3) + (x3 - x2) * (py - y3)) / det
        l2 = ((y3 - y1) * (px - x3) + (x1 - x3) * (py - y3)) / det
        out |= (l1 >= 0) & (l2 >= 0) & (1 - l1 - l2 >= 0)
    return torch.as_tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------- hard limit

@pytest.mark.parametrize("distribution", distribution_names())
@pytest.mark.parametrize("tconorm", ["max", "probabilistic", "einstein"])
@pytest.mark.parametrize("squared", [False, True])
def test_tau_to_zero_is_hard_rasterization(distribution, tconorm, squared, device):
    vertices, faces = _random_mesh(0)
    vertices, faces = vertices.to(device), faces.to(device)
    cam = Camera(torch.tensor([0.0, 0.0, 4.0], dtype=torch.float64, device=device), fov=40.0)
    ref = _reference_hard(vertices, faces, 4.0, 40.0, 24, 32)
    assert 0.1 < float(ref.mean()) < 0.9                      # a non-trivial picture
    tau = 1e-20 if squared else 1e-10
    sil = render_silhouette(vertices, faces, cam, (24, 32), tau=tau, distribution=distribution,
                            tconorm=tconorm, squared=squared, tile=8)[0].cpu()
    assert torch.allclose(sil, ref, atol=1e-3), float((sil - ref).abs().max())
    hard = hard_silhouette(vertices, faces, cam, (24, 32))[0].cpu()
    assert torch.equal(hard, ref)


@pytest.mark.parametrize("tconorm", tconorm_names())
def test_hard_limit_every_tconorm(tconorm, device):
    vertices, faces = _random_mesh(1)
    cam = Camera(torch.tensor([0.0, 0.0, 4.0], dtype=torch.float64, device=device), fov=40.0)
    ref = _reference_hard(vertices, faces, 4.0, 40.0, 16, 16)
    sil = render_silhouette(vertices.to(device), faces.to(device), cam, 16, tau=1e-10,
                            tconorm=tconorm)[0].cpu()
    assert torch.allclose(sil, ref, atol=1e-3)


def test_signed_distance_matches_brute_force(device):
    g = torch.Generator().manual_seed(3)
    tris = torch.rand(5, 3, 2, generator=g, dtype=torch.float64).to(device)
    pts = (torch.rand(50, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2).to(device)
    d = signed_distance(pts, tris)
    # brute force: distance to the boundary sampled densely along each edge
    s = torch.linspace(0, 1, 20001, dtype=torch.float64, device=device)
    for k in range(5):
        a, b, c = tris[k]
        boundary = torch.cat([a + s[:, None] * (b - a), b + s[:, None] * (c - b),
                              c + s[:, None] * (a - c)])
        dist = torch.cdist(pts, boundary).amin(1)
        assert torch.allclose(d[:, k].abs(), dist, atol=1e-4)


# ---------------------------------------------------------------- t-conorms

def _closed_forms():
    "Textbook t-conorm formulas (Klement, Mesiar, Pap 2000), written independently of the package."
    return {
        "max": lambda a, b, p: max(a, b),
        "probabilistic": lambda a, b, p: a + b - a * b,
        "einstein": lambda a, b, p: (a + b) / (1 + a * b),
        "hamacher": lambda a, b, p: (a + b + (p - 2) * a * b) / (1 + (p - 1) * a * b),
        "yager": lambda a, b, p: min(1.0, (a ** p + b ** p) ** (1 / p)),
        "frank": lambda a, b, p: 1 - math.log(1 + (p ** (1 - a) - 1) * (p ** (1 - b) - 1) / (p - 1),
                                              p),
        "aczel-alsina": lambda a, b, p: 1 - math.exp(
            -((-math.log(1 - a)) ** p + (-math.log(1 - b)) ** p) ** (1 / p)),
        "dombi": lambda a, b, p: 1 / (1 + ((a / (1 - a)) ** p + (b / (1 - b)) ** p) ** (-1 / p)),
        "schweizer-sklar": lambda a, b, p: 1 - max(0.0, (1 - a) ** p + (1 - b) ** p - 1) ** (1 / p),
    }

PARAMS = {"max": [None], "probabilistic": [None], "einstein": [None], "hamacher": [0.0, 0.5, 3.0],
          "yager": [0.5, 1.0, 2.0, 5.0], "frank": [0.1, 2.0, 50.0], "aczel-alsina": [0.5, 2.0],
          "dombi": [0.5, 2.0], "schweizer-sklar": [-2.0, 0.5, 2.0]}
CASES = [(n, p) for n in tconorm_names() for p in PARAMS[n]]


@pytest.mark.parametrize("name,p", CASES)
def test_tconorm_formula(name, p, device):
    t = get_tconorm(name, p)
    ref = _closed_forms()[name]
    pp = t.p
    for a, b in [(0.1, 0.2), (0.3, 0.6), (0.5, 0.5), (0.9, 0.05), (0.7, 0.8)]:
        got = float(t(torch.tensor(a, dtype=torch.float64, device=device),
                      torch.tensor(b, dtype=torch.float64, device=device)))
        assert got == pytest.approx(ref(a, b, pp), abs=1e-9), (a, b)


@pytest.mark.parametrize("name,p", CASES)
def test_tconorm_axioms(name, p, device):
    t = get_tconorm(name, p)
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.rand(200, generator=g, dtype=torch.float64).to(device) for _ in range(3))
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    assert torch.allclose(t(a, b), t(b, a), atol=1e-12)                               # commutative
    assert torch.allclose(t(a, zero), a, atol=1e-9)                          # 0 is the identity
    assert torch.allclose(t(a, one), one, atol=1e-6)                                  # 1 absorbs
    assert torch.allclose(t(t(a, b), c), t(a, t(b, c)), atol=1e-7)                   # associative
    assert torch.allclose(t.reduce(torch.stack([a, b, c], -1)), t(t(a, b), c), atol=1e-7)
    lo, hi = torch.minimum(b, c), torch.maximum(b, c)
    assert bool((t(a, lo) <= t(a, hi) + 1e-12).all())                                 # monotone
    assert bool((t(a, b) >= torch.maximum(a, b) - 1e-12).all())              # max is the smallest


def test_tconorm_bad_input():
    with pytest.raises(ValueError, match="tconorm"):
        get_tconorm("lukasiewicz-ish")
    with pytest.raises(TypeError, match="tconorm"):
        get_tconorm(3)
    with pytest.raises(ValueError, match="p"):
        get_tconorm("hamacher", -1.0)
    with pytest.raises(ValueError, match="p"):
        get_tconorm("schweizer-sklar", 0.0)
    with pytest.raises(ValueError, match="p"):
        get_tconorm("einstein", 2.0)


# ---------------------------------------------------------------- gradients

def _tiny(device):
    vertices = torch.tensor([[0.0, 0.8, 0.1], [-0.7, -0.5, 0.0], [0.8, -0.4, -0.2],
                             [0.1, 0.0, 0.7]],
                            dtype=torch.float64, device=device)
    faces = torch.tensor([[0, 1, 2], [0, 3, 1], [1, 3, 2], [2, 3, 0]], device=device)
    return vertices, faces


@pytest.mark.parametrize("distribution,tconorm,squared", [("logistic", "probabilistic", False),
                                                          ("gaussian", "einstein", False),
                                                          ("cauchy", "probabilistic", True),
                                                          ("logistic_art", "hamacher", False)])
def test_gradcheck_silhouette(distribution, tconorm, squared, device):
    vertices, faces = _tiny(device)
    eye = torch.tensor([0.3, 0.4, 3.0], dtype=torch.float64, device=device)
    tau = 0.01 if squared else 0.1

    def f(v, e):
        return render_silhouette(v, faces, Camera(e), 6, tau=tau, distribution=distribution,
                                 tconorm=tconorm, squared=squared, eps=1e-300, tile=4)
    assert torch.autograd.gradcheck(f, (vertices.clone().requires_grad_(),
                                        eye.clone().requires_grad_()), eps=1e-6, atol=1e-5)


def test_gradcheck_rgb(device):
    vertices, faces = _tiny(device)
    colors = torch.rand(4, 3, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(0)).to(device)
    eye = torch.tensor([0.3, 0.4, 3.0], dtype=torch.float64, device=device)

    def f(v, e, c):
        return render_rgb(v, faces, Camera(e), 5, colors=c, tau=0.1, gamma=0.05, eps=1e-300, tile=4,
                          light_direction=(0.2, 0.5, 1.0))
    args = (vertices.clone().requires_grad_(), eye.clone().requires_grad_(),
            colors.clone().requires_grad_())
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-5)


def test_gradients_flow_and_are_finite(device):
    v, f = icosphere(1, device=device)
    v = v.requires_grad_()
    eye = camera_position(4.0, 10.0, 20.0).to(device).requires_grad_()
    for tconorm in tconorm_names():
        for distribution in distribution_names():
            sil = render_silhouette(v, f, Camera(eye), 12, tau=0.03, distribution=distribution,
                                    tconorm=tconorm, eps=1e-3)
            gv, ge = torch.autograd.grad(sil.sum(), (v, eye))
            assert bool(torch.isfinite(gv).all()) and bool(torch.isfinite(ge).all()), \
                (tconorm, distribution)
            # nilpotent t-conorms (yager, schweizer-sklar p>0) may saturate at 1
            if get_tconorm(tconorm).strict:
                assert float(gv.abs().sum()) > 0, (tconorm, distribution)


# ---------------------------------------------------------------- batching

def test_batch_equals_one_by_one(device):
    v, f = icosphere(2, device=device)
    g = torch.Generator().manual_seed(0)
    verts = (v[None] * (1 + 0.1 * torch.rand(3, v.shape[0], 1, generator=g)).to(device))
    eyes = camera_position(3.0, torch.tensor([0.0, 20.0, -30.0]),
                           torch.tensor([0.0, 45.0, 200.0])).to(device)
    colors = torch.rand(3, v.shape[0], 3, generator=g).to(device)
    batch_sil = render_silhouette(verts, f, Camera(eyes), (20, 28), tau=0.02)
    batch_rgb = render_rgb(verts, f, Camera(eyes), (20, 28), colors=colors, tau=0.02)
    for i in range(3):
        one = render_silhouette(verts[i], f, Camera(eyes[i]), (20, 28), tau=0.02)
        assert torch.allclose(batch_sil[i], one[0], atol=1e-6)
        rgb = render_rgb(verts[i], f, Camera(eyes[i]), (20, 28), colors=colors[i], tau=0.02)
        assert torch.allclose(batch_rgb[i], rgb[0], atol=1e-6)
    # one mesh, many cameras
    shared = render_silhouette(v, f, Camera(eyes), 16, tau=0.02)
    assert shared.shape == (3, 16, 16)
    assert torch.allclose(shared[1], render_silhouette(v, f, Camera(eyes[1]), 16, tau=0.02)[0],
                          atol=1e-6)


def test_tiles_do_not_change_the_image(device):
    v, f = icosphere(2, device=device)
    cam = Camera(camera_position(2.5, 10.0, 20.0).to(device))
    ref = render_silhouette(v, f, cam, 40, tau=0.02, eps=1e-9, tile=64)
    for tile, chunk in [(8, 1 << 20), (16, 4096), (5, 100)]:
        assert torch.allclose(render_silhouette(v, f, cam, 40, tau=0.02, eps=1e-9, tile=tile,
                                                chunk_elements=chunk), ref, atol=1e-6)
    # the bounding-box margin only drops coverage below eps
    assert torch.allclose(render_silhouette(v, f, cam, 40, tau=0.02, eps=1e-4), ref, atol=1e-3)


def test_checkpointed_chunks_give_the_same_gradient(device):
    v, f = icosphere(1, dtype=torch.float64, device=device)
    cam = Camera(camera_position(2.5, 10.0, 20.0).to(device=device, dtype=torch.float64))
    grads = []
    for limit in (1e12, 1.0):                     # 1 byte forces checkpointing
        vv = v.clone().requires_grad_()
        render_silhouette(vv, f, cam, 24, tau=0.03, memory_limit=limit).pow(2).sum().backward()
        grads.append(vv.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-10)
    colors = torch.rand(v.shape[0], 3, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(0)).to(device)
    grads = []
    for limit in (1e12, 1.0):
        vv, cc = v.clone().requires_grad_(), colors.clone().requires_grad_()
        render_rgb(vv, f, cam, 16, colors=cc, tau=0.03, gamma=0.05,
                   memory_limit=limit).pow(2).sum().backward()
        grads.append((vv.grad, cc.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-10) and \
        torch.allclose(grads[0][1], grads[1][1], atol=1e-10)


def test_points_behind_the_camera_are_dropped(device):
    v, f = _tiny(device)
    # inside the mesh's extent
    cam = Camera(torch.tensor([0.0, 0.0, 0.2], dtype=torch.float64, device=device))
    sil = render_silhouette(v, f, cam, 8, tau=0.05)
    assert bool(torch.isfinite(sil).all())


# ---------------------------------------------------------------- meshes

def test_load_mesh_from_file_and_trimesh(tmp_path, device):
    path = tmp_path / "tri.obj"
    path.write_text("v 0 0 0\nv 2 0 0\nv 0 2 0\nf 1 2 3\n")
    v, f = load_mesh(path, normalize=False, device=device)
    assert v.device.type == device.type and f.tolist() == [[0, 1, 2]]
    assert torch.allclose(v.cpu(), torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 2, 0]]))
    v2, f2 = from_trimesh(trimesh.creation.box(), device=device)
    assert v2.shape == (8, 3) and f2.shape == (12, 3)


def test_teapot_renders(device):
    v, f = load_mesh(TEAPOT, device=device)
    assert f.shape[0] == 2464 and float(v.norm(dim=-1).max()) == pytest.approx(1.0, abs=1e-5)
    sil = render_silhouette(v, f, Camera(camera_position(3.0, 20.0, 30.0).to(device)), 32)
    assert 0.05 < float(sil.mean()) < 0.6


def test_regularizers(device):
    v, f = icosphere(2, dtype=torch.float64, device=device)
    noisy = v + 0.05 * torch.randn(v.shape, generator=torch.Generator().manual_seed(0),
                                   dtype=torch.float64).to(device)
    assert float(laplacian_loss(noisy, f)) > float(laplacian_loss(v, f))
    assert float(flatten_loss(noisy, f)) > float(flatten_loss(v, f))
    small_v, small_f = icosphere(0, dtype=torch.float64, device=device)
    x = (small_v + 0.01 * torch.randn(small_v.shape, generator=torch.Generator().manual_seed(1),
                                      dtype=torch.float64).to(device))
    assert torch.autograd.gradcheck(lambda y: (laplacian_loss(y, small_f),
                                               flatten_loss(y, small_f)),
                                    (x.requires_grad_(),), eps=1e-6, atol=1e-6)


# ---------------------------------------------------------------- bad input

def test_bad_input(device):
    v, f = icosphere(1, device=device)
    cam = Camera(camera_position(3.0, 0.0, 0.0).to(device))
    with pytest.raises(ValueError, match="faces"):
        render_silhouette(v, f + 100, cam)
    with pytest.raises(ValueError, match="faces"):
        render_silhouette(v, f[:, :2], cam)
    with pytest.raises(TypeError, match="faces"):
        render_silhouette(v, f.float(), cam)
    with pytest.raises(ValueError, match="vertices"):
        render_silhouette(v[:, :2], f, cam)
    with pytest.raises(ValueError, match="vertices"):
        render_silhouette(v * float("inf"), f, cam)
    with pytest.raises(ValueError, match="tau"):
        render_silhouette(v, f, cam, tau=-1.0)
    with pytest.raises(ValueError, match="distribution"):
        render_silhouette(v, f, cam, distribution="student-t")
    with pytest.raises(ValueError, match="tconorm"):
        render_silhouette(v, f, cam, tconorm="minimum")
    with pytest.raises(ValueError, match="image_size"):
        render_silhouette(v, f, cam, image_size=(4, 4, 4))
    with pytest.raises(ValueError, match="batch"):
        render_silhouette(v.expand(2, -1, -1), f,
                          Camera(camera_position(3.0, torch.zeros(3), torch.zeros(3)).to(device)))
    with pytest.raises(ValueError, match="gamma"):
        render_rgb(v, f, cam, gamma=0.0)
    with pytest.raises(ValueError, match="eye"):
        Camera(torch.tensor([0.0, 1.0], device=device))
    with pytest.raises(ValueError, match="eps"):
        coverage_margin("logistic", 0.1, eps=0.0)


def test_backface_culling_keeps_the_hard_silhouette_of_closed_meshes(device):
    v, f = icosphere(2, dtype=torch.float64, device=device)
    v = v * torch.tensor([1.0, 0.6, 0.8], dtype=torch.float64, device=device)
    cams = Camera(camera_position(3.0, torch.tensor([0.0, 40.0]), torch.tensor([10.0, 100.0])).to(
        device=device, dtype=torch.float64))
    full = hard_silhouette(v, f, cams, 24)
    culled = render_silhouette(v, f, cams, 24, tau=1e-10, cull_backfaces=True)
    assert torch.allclose(culled, full, atol=1e-3)
    tri = torch.tensor([[-0.5, -0.5, 0.0], [0.5, -0.5, 0.0], [0.0, 0.5, 0.0]], dtype=torch.float64,
                       device=device)
    front = Camera(torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64, device=device))
    ccw = torch.tensor([[0, 1, 2]], device=device)
    assert float(render_silhouette(tri, ccw, front, 16, tau=1e-10,
                                   cull_backfaces=True).max()) > 0.99
    assert float(render_silhouette(tri, ccw.flip(1), front, 16, tau=1e-10,
                                   cull_backfaces=True).max()) < 1e-6


# ------------------------------------------------------- the same image as PyTorch3D's formula

@pytest.mark.parametrize("sigma", [1e-4, 1e-3])
def test_same_image_as_pytorch3d_soft_silhouette_formula(sigma, device):
    """SoftRas/PyTorch3D's soft silhouette (sigmoid of the signed squared distance over sigma,
    probabilistic union, faces beyond coverage 1e-4 dropped) is
    render_silhouette(tau=sigma, squared=True)."""
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    from pytorch3d_formula import soft_silhouette
    v, f = icosphere(2, dtype=torch.float64, device=device)
    v = v * torch.tensor([1.0, 0.7, 1.2], dtype=torch.float64, device=device)
    cam = Camera(camera_position(3.5, torch.tensor([25.0], dtype=torch.float64, device=device),
                                 torch.tensor([40.0], dtype=torch.float64, device=device)))
    xy, depth = cam.project(v)
    ref = soft_silhouette(xy[0][f].cpu().numpy(), depth[0][f].cpu().numpy(), 40, 48, sigma=sigma)
    ours = render_silhouette(v, f, cam, (40, 48), tau=sigma, squared=True)[0].cpu().numpy()
    assert 0.1 < ref.mean() < 0.9
    # faces whose coverage is below 1e-4 at a pixel may still be counted by the tiled renderer
    assert np.abs(ours - ref).max() < 1e-3
    assert np.abs(ours - ref).mean() < 1e-5


@pytest.mark.parametrize("renderer", ["engine", "dense"])
def test_near_face_without_coverage_does_not_black_out_the_face_behind(renderer, device):
    """A thin triangle in front of a square, at a small gamma: in the triangle's bounding box
    but far from it, its coverage is 0 (or tiny), and the pixel must still show the square's
    colour mix, never black. Red triangle, green square, no shading, composited over white: every
    pixel's red + green is 2 - alpha, its blue 1 - alpha."""
    from diffalg.rendering.reference import dense_rgb
    v = torch.tensor([[-1, -1, -0.5], [1, -1, -0.5], [1, 1, -0.5], [-1, 1, -0.5],
                      [-0.6, -0.6, 0.5], [0.6, 0.6, 0.5], [-0.55, -0.5, 0.5]],
                     dtype=torch.float64, device=device)
    f = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6]], device=device)
    col = torch.tensor([[0, 1, 0]] * 4 + [[1, 0, 0]] * 3, dtype=torch.float64, device=device)
    cam = Camera(camera_position(4.0, 0.0, 0.0).to(device))
    kw = dict(tau=0.01, gamma=1e-4, colors=col, ambient=1.0, diffuse=0.0)
    if renderer == "engine":
        img = render_rgb(v, f, cam, 48, **kw)
    else:
        kw.pop("colors")
        img = dense_rgb(v, f, cam, 48, colors=col, **kw)
    rgb, alpha = img[0, ..., :3], img[0, ..., 3]
    assert bool(torch.isfinite(img).all())
    torch.testing.assert_close(rgb[..., 0] + rgb[..., 1], 2 - alpha, atol=1e-6, rtol=0)
    torch.testing.assert_close(rgb[..., 2], 1 - alpha, atol=1e-6, rtol=0)
    assert float((alpha > 0.99).float().mean()) > 0.5                 # the square fills most
