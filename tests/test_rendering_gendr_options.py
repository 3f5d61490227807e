"""Tests of GenDR's renderer options: surface textures, the `hard` choice, anti-aliasing,
double-sided faces, near/far clipping (diffalg.rendering.options, render_rgb, render_silhouette)."""
import pytest
import torch

from diffalg.rendering import (Camera, SoftRasterizer, camera_position, get_tconorm,
                               hard_silhouette, icosphere, render_rgb, render_silhouette)
from diffalg.rendering.options import dense_textured_rgb, surface_texel

QUAD_V = [[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]]
QUAD_F = [[0, 1, 2], [0, 2, 3]]
EXACT = 1e-300                  # eps: the engine skips no face, as the reference
TRI_V = [[-0.83, -0.71, 0.0], [0.77, -0.52, 0.0], [-0.13, 0.81, 0.0]]


def _quad(device, dtype=torch.float64):
    return (torch.tensor(QUAD_V, dtype=dtype, device=device),
            torch.tensor(QUAD_F, device=device))


def _camera(device, **kw):
    return Camera(camera_position(5.0, 0.0, 0.0).to(device), **kw)


def test_surface_texel_uses_every_texel_once():
    for R in (1, 2, 5):
        w = torch.distributions.Dirichlet(torch.ones(3)).sample((40000,))
        idx = surface_texel(w, R)
        assert set(idx.unique().tolist()) == set(range(R * R))
        share = torch.bincount(idx, minlength=R * R).double() / len(idx)
        assert torch.allclose(share, torch.full_like(share, 1 / R**2), atol=0.02)  # equal areas


def test_surface_texel_is_gendr_order():
    "Row from w1, column from w0, the far half-cells folded back: GenDR's rule, point by point."
    R = 4
    w = torch.distributions.Dirichlet(torch.ones(3)).sample((500,)).double()
    for wk, k in zip(w.tolist(), surface_texel(w, R).tolist()):
        col, row = int(wk[0] * R), int(wk[1] * R)
        if (wk[0] + wk[1]) * R - col - row <= 1:
            assert k == row * R + col
        else:
            assert k == (R - 1 - row) * R + (R - 1 - col)


def test_textured_quad_renders_its_texture(device):
    v, f = _quad(device)
    tex = torch.zeros(2, 2, 2, 3, dtype=torch.float64, device=device)
    tex[:, 0, 1, 0] = 1.0                                      # corner v0: red
    tex[:, 1, 0, 1] = 1.0                                      # corner v1: green
    tex[:, 0, 0, 2] = 1.0                                      # corner v2: blue
    img = render_rgb(v, f, _camera(device), 32, tau=1e-3, ambient=1.0, diffuse=0.0,
                     textures=tex, texture_type="surface")[0, ..., :3].cpu()
    # screen corners of the quad at +-0.746: pixel (row 27, col 27) is next to v1 of face 0
    # (green), pixel (4, 4) next to v2 of face 1 (blue), (27, 5) next to v0 of face 0 (red)
    assert torch.allclose(img[27, 27], torch.tensor([0.0, 1, 0], dtype=img.dtype), atol=1e-3)
    assert torch.allclose(img[4, 4], torch.tensor([0.0, 0, 1], dtype=img.dtype), atol=1e-3)
    assert torch.allclose(img[27, 5], torch.tensor([1.0, 0, 0], dtype=img.dtype), atol=1e-3)
    assert img[16, 16].sum() < 1e-3                            # the black middle texel


def test_textures_fast_equals_reference_with_gradients(device):
    v, f = _quad(device)
    v = v.requires_grad_()
    g = torch.Generator().manual_seed(0)
    tex = torch.rand(2, 3, 3, 3, generator=g, dtype=torch.float64).to(device).requires_grad_()
    cam = Camera(camera_position(3.0, 20.0, 70.0).to(device))
    kw = dict(tau=0.02, light_direction=(-1.0, 1.0, 1.0))
    fast = render_rgb(v, f, cam, 20, textures=tex, texture_type="surface", eps=EXACT, **kw)
    ref = dense_textured_rgb(v, f, cam, tex, 20, **kw)
    assert (fast - ref).abs().max() < 1e-9
    gf = torch.autograd.grad(fast.square().sum(), (v, tex))
    gr = torch.autograd.grad(ref.square().sum(), (v, tex))
    for a, b in zip(gf, gr):
        assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-8)
    assert gf[1].abs().sum() > 0


@pytest.mark.parametrize("distribution,tconorm", [("logistic", "einstein"), ("gaussian", "max"),
                                                   ("uniform", "yager")])
def test_textures_batched_mesh_equals_reference(device, distribution, tconorm):
    v, f = icosphere(1)
    v, f = v.double().to(device), f.to(device)
    g = torch.Generator().manual_seed(1)
    tex = torch.rand(2, len(f), 4, 4, 3, generator=g, dtype=torch.float64).to(device)
    cam = Camera(camera_position(3.0, torch.tensor([10.0, -30.0]), 20.0).to(device))
    kw = dict(tau=0.03, gamma=0.05, distribution=distribution, tconorm=tconorm)
    fast = render_rgb(v, f, cam, (12, 14), textures=tex, texture_type="surface", eps=EXACT, **kw)
    ref = dense_textured_rgb(v, f, cam, tex, (12, 14), **kw)
    assert fast.shape == (2, 12, 14, 4) and (fast - ref).abs().max() < 1e-9


def test_vertex_colours_unchanged_by_texture_type(device):
    v, f = icosphere(1)
    v, f = v.to(device), f.to(device)
    cam = Camera(camera_position(3.0, 10.0, 20.0).to(device))
    colors = (v + 1) / 2
    assert torch.equal(render_rgb(v, f, cam, 16, colors=colors),
                       render_rgb(v, f, cam, 16, colors=colors, texture_type="vertex"))
    one = torch.ones(len(f), 1, 1, 3, device=device) * 0.7     # R = 1: one grey texel per face
    a = render_rgb(v, f, cam, 16, textures=one, texture_type="surface")
    b = render_rgb(v, f, cam, 16)                              # grey vertex colours
    assert torch.allclose(a, b, atol=1e-5)


def _exact_coverage(tri, H):
    "Area fraction (H, H) of each pixel square of [-1, 1]^2 inside `tri` (3, 2): polygon clipping."
    out = torch.zeros(H, H, dtype=torch.float64)
    pts = tri.tolist()
    for r in range(H):
        for c in range(H):
            x0, y0 = -1 + 2 * c / H, 1 - 2 * (r + 1) / H
            poly = [(x0, y0), (x0 + 2 / H, y0), (x0 + 2 / H, y0 + 2 / H), (x0, y0 + 2 / H)]
            for k in range(3):
                (ax, ay), (bx, by) = pts[k], pts[(k + 1) % 3]
                s = [(bx - ax) * (q[1] - ay) - (by - ay) * (q[0] - ax) for q in poly]
                new = []
                for i in range(len(poly)):
                    j = (i + 1) % len(poly)
                    if s[i] >= 0:
                        new.append(poly[i])
                    if (s[i] >= 0) != (s[j] >= 0):
                        t = s[i] / (s[i] - s[j])
                        new.append((poly[i][0] + t * (poly[j][0] - poly[i][0]),
                                    poly[i][1] + t * (poly[j][1] - poly[i][1])))
                poly = new
                if not poly:
                    break
            area = sum(poly[i][0] * poly[i - 1][1] - poly[i - 1][0] * poly[i][1]
                       for i in range(len(poly)))
            out[r, c] = abs(area) / 2 * (H / 2) ** 2
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_anti_aliasing_halves_edge_error(device, seed):
    g = torch.Generator().manual_seed(seed)
    v = (torch.rand(3, 3, generator=g, dtype=torch.float64) * 1.6 - 0.8) * torch.tensor([1, 1, 0])
    f = torch.tensor([[0, 1, 2]])
    cam = _camera("cpu", projection="orthographic")
    xy = cam.project(v)[0][0]
    if (xy[1] - xy[0])[0] * (xy[2] - xy[0])[1] - (xy[1] - xy[0])[1] * (xy[2] - xy[0])[0] < 0:
        f = f.flip(-1)
    H = 20
    exact = _exact_coverage(xy[f[0]], H)
    edge = (exact > 0) & (exact < 1)
    cam = _camera(device, projection="orthographic")
    err = {}
    for aa in (False, True):
        img = render_silhouette(v.to(device), f.to(device), cam, H, tconorm="hard",
                                anti_aliasing=aa)[0].cpu()
        err[aa] = float((img - exact).abs()[edge].mean())
    assert err[True] <= 0.5 * err[False], err                  # halved, or better


def test_hard_tconorm_is_the_hard_silhouette(device):
    v, f = icosphere(2)
    v, f = v.to(device), f.to(device)
    cam = Camera(camera_position(3.0, 15.0, 40.0).to(device))
    soft = render_silhouette(v, f, cam, 24, tconorm="hard")
    assert torch.equal(soft, hard_silhouette(v, f, cam, 24))
    assert get_tconorm("heaviside").name == "hard"


def test_back_face_vanishes_unless_double_side(device):
    v = torch.tensor(TRI_V, dtype=torch.float64, device=device)
    back = torch.tensor([[2, 1, 0]], device=device)             # clockwise on screen
    cam = _camera(device)
    assert render_silhouette(v, back, cam, 16, double_side=False).max() == 0
    assert render_silhouette(v, back, cam, 16, double_side=True).max() > 0.9
    assert render_silhouette(v, back.flip(-1), cam, 16, double_side=False).max() > 0.9
    rgb = SoftRasterizer(cam, 16, mode="rgb", double_side=False)(v, back)
    assert rgb[..., 3].max() == 0 and torch.allclose(rgb[..., :3], torch.ones_like(rgb[..., :3]))


@pytest.mark.parametrize("near,far,seen", [(1.0, 4.0, False), (1.0, 6.0, True),
                                           (5.5, 9.0, False), (4.0, 5.5, True)])
def test_near_far_clipping(device, near, far, seen):
    v = torch.tensor(TRI_V, dtype=torch.float64, device=device)  # depth 5 from the camera
    f = torch.tensor([[0, 1, 2]], device=device)
    cam = _camera(device, near=near, far=far)
    for img in (render_silhouette(v, f, cam, 16), render_rgb(v, f, cam, 16)[..., 3]):
        assert bool(img.max() > 0.9) == seen


def test_gradients_finite_with_all_options(device):
    v, f = icosphere(1)
    v, f = v.to(device).requires_grad_(), f.to(device)
    tex = torch.rand(len(f), 2, 2, 3, device=device, requires_grad=True)
    cam = Camera(camera_position(3.0, 10.0, 20.0).to(device))
    img = render_rgb(v, f, cam, 12, tau=0.02, textures=tex, texture_type="surface",
                     anti_aliasing=True, double_side=False)
    assert img.shape == (1, 12, 12, 4)
    gv, gt = torch.autograd.grad(img.sum(), (v, tex))
    assert torch.isfinite(gv).all() and torch.isfinite(gt).all() and gv.abs().sum() > 0


def test_bad_input(device):
    v, f = _quad(device)
    cam = _camera(device)
    with pytest.raises(ValueError, match="textures"):
        render_rgb(v, f, cam, 8, textures=torch.rand(2, 2, 3, 3), texture_type="surface")
    with pytest.raises(ValueError, match="textures"):
        render_rgb(v, f, cam, 8, textures=torch.rand(3, 2, 2, 3), texture_type="surface")
    with pytest.raises(ValueError, match="textures"):
        render_rgb(v, f, cam, 8, texture_type="surface")
    with pytest.raises(ValueError, match="textures"):
        render_rgb(v, f, cam, 8, textures=torch.rand(2, 2, 2, 3))
    with pytest.raises(ValueError, match="texture_type"):
        render_rgb(v, f, cam, 8, texture_type="uv")
    with pytest.raises(TypeError, match="double_side"):
        render_silhouette(v, f, cam, 8, double_side="yes")
    with pytest.raises(TypeError, match="anti_aliasing"):
        SoftRasterizer(cam, 8, anti_aliasing=1)
    for near, far in ((2.0, 1.0), (1.0, 1.0)):
        with pytest.raises(ValueError, match="far"):
            Camera(camera_position(5.0, 0.0, 0.0), near=near, far=far)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_follow_the_vertices(device, dtype):
    v, f = _quad(device, dtype)
    tex = torch.rand(2, 2, 2, 3, dtype=torch.float64, device=device)
    cam = _camera(device)
    img = render_rgb(v, f, cam, 8, textures=tex, texture_type="surface", anti_aliasing=True)
    sil = render_silhouette(v, f, cam, 8, anti_aliasing=True, tconorm="hard")
    for x in (img, sil):
        assert x.dtype == dtype and x.device.type == device.type
    assert img.shape == (1, 8, 8, 4) and sil.shape == (1, 8, 8)


def test_new_options_compile_in_one_graph():
    "hard, anti_aliasing and double_side keep the silhouette a single graph under torch.compile."
    v, f = icosphere(1)
    cam = Camera(camera_position(3.0, 10.0, 20.0))

    def fn(v):
        return render_silhouette(v, f, cam, 12, tconorm="hard", anti_aliasing=True,
                                 double_side=False)
    torch._dynamo.reset()
    assert torch.equal(torch.compile(fn, fullgraph=True)(v), fn(v))


def test_operator_path_refuses_a_non_default_shape_or_shift():
    """The renderer's operators (torch.compile, meta and fake tensors) rebuild the distribution
    by name: a GenDR shape or shift other than the default is refused there, not dropped."""
    from diffalg.distributions import get_distribution
    from diffalg.rendering import Camera, camera_position, icosphere, render_silhouette
    v, f = icosphere(1)
    cam = Camera(camera_position(4.0, torch.tensor([10.0]), torch.tensor([20.0])))
    dist = get_distribution("gamma", shape=0.5, shift=1.0)
    eager = render_silhouette(v, f, cam, 16, distribution=dist)
    assert eager.shape == (1, 16, 16)
    with pytest.raises(TypeError, match="default shape and shift"):
        render_silhouette(v.to("meta"), f.to("meta"), cam, 16, distribution=dist)
    default = render_silhouette(v.to("meta"), f.to("meta"), cam, 16,
                                distribution=get_distribution("gamma"))
    assert default.shape == (1, 16, 16)
