"""The renderers behave like PyTorch's own operators: compiled with `torch.compile(fullgraph=True)`
they equal eager (values and gradients), dynamo sees no graph break, meta and fake tensors give the
output shapes, the custom operators pass `opcheck`, dtypes and devices follow the vertices,
multi-part results are named tuples, and bad meshes get clear errors."""
import os
import subprocess
import sys
import time
import warnings

import pytest
import torch
from torch_native import (assert_compiled_matches_eager, assert_fake_shapes, assert_meta_shapes,
                          assert_no_graph_breaks, no_cuda_sync)

import diffalg
from diffalg.distributions import get_distribution
from diffalg.rendering import (Camera, Mesh, MeshEdges, Projection, SoftRasterizer,
                               camera_position, coverage_margin, get_tconorm, hard_silhouette,
                               icosphere, load_mesh, mesh_edges, render_rgb, render_silhouette)
from diffalg.rendering._engine import _silhouette_tiles
from diffalg.rendering.reference import ProjectedFaces, dense_silhouette, project_faces

TEAPOT = os.path.join(os.path.dirname(__file__), "data", "teapot.obj")
OPS = torch.ops.diffalg


def _scene(device, dtype=torch.float64, subdivisions=1):
    "A small icosphere (80 faces) and an eye position that sees it from an oblique angle."
    v, f = icosphere(subdivisions, dtype=dtype, device=device)
    eye = camera_position(3.0, 20.0, 30.0).to(device=device, dtype=dtype)
    return v, f, eye


# The operators of the chapter, as functions of tensors (the camera is made from `eye` inside, so
# that meta and fake copies of every input reach the renderer).
RENDER = {
    "render_silhouette": lambda v, f, eye: render_silhouette(v, f, Camera(eye), 12, tau=0.05),
    "render_silhouette_max_squared": lambda v, f, eye: render_silhouette(
        v, f, Camera(eye), (10, 14), tau=0.01, tconorm="max", squared=True, distribution="cauchy"),
    "hard_silhouette": lambda v, f, eye: hard_silhouette(v, f, Camera(eye), 12),
    "render_rgb": lambda v, f, eye: render_rgb(v, f, Camera(eye), 12, tau=0.05, gamma=0.01),
    "SoftRasterizer": lambda v, f, eye: SoftRasterizer(Camera(eye), 12, tau=0.05)(v, f),
    "SoftRasterizer_rgb": lambda v, f, eye: SoftRasterizer(Camera(eye), 12, tau=0.05,
                                                           mode="rgb")(v, f),
}
DIFFERENTIABLE = [name for name in RENDER if name != "hard_silhouette"]


# ---------------------------------------------------------------- torch.compile

@pytest.mark.parametrize("name", list(RENDER))
def test_compiled_matches_eager(name, device):
    v, f, eye = _scene(device)
    backward = name in DIFFERENTIABLE
    assert_compiled_matches_eager(RENDER[name], v.requires_grad_(backward), f, eye,
                                  backward=backward, rtol=1e-7, atol=1e-9)


def test_compiled_gradient_for_the_camera(device):
    "Pose estimation differentiates the eye position: compiled equals eager for it too."
    v, f, eye = _scene(device)
    assert_compiled_matches_eager(RENDER["render_silhouette"], v, f, eye.requires_grad_())


@pytest.mark.parametrize("name", list(RENDER))
def test_no_graph_breaks(name):
    v, f, eye = _scene("cpu")
    assert_no_graph_breaks(RENDER[name], v.requires_grad_(), f, eye)


def test_batched_meshes_and_cameras_compile(device):
    v, f, eye = _scene(device)
    eyes = camera_position(3.0, torch.tensor([10.0, 40.0]), torch.tensor([0.0, 90.0]))
    eyes = eyes.to(device=device, dtype=torch.float64)
    fn = lambda v, f, eye: render_silhouette(v, f, Camera(eye), 10, tau=0.05)    # noqa: E731
    out = assert_compiled_matches_eager(fn, v.expand(2, -1, -1).clone().requires_grad_(), f, eyes)
    assert out[0].shape == (2, 10, 10)


@pytest.mark.parametrize("setting, values", [("tau", (0.1, 0.05, 0.02)), ("p", (2.0, 3.0, 4.0))])
def test_a_new_setting_compiles_again_without_error(setting, values):
    "A float that changes between calls is traced as a symbol by dynamo; the renderer takes it."
    v, f, eye = _scene("cpu")
    cam = Camera(eye)

    def step(v, x):
        kw = {setting: x, "tau": 0.05} if setting == "p" else {setting: x}
        return render_silhouette(v, f, cam, 12, tconorm="yager", **kw).square().mean()

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    for x in values:
        torch.testing.assert_close(compiled(v, x), step(v, x), rtol=1e-9, atol=1e-12)


def test_inductor_forward_and_backward():
    "The default backend, once, at a small size (the time is the first call's, compile included)."
    v, f, eye = _scene("cpu", torch.float32, subdivisions=2)
    fn = lambda v, f, eye: render_silhouette(v, f, Camera(eye), 24, tau=0.02)   # noqa: E731
    start = time.perf_counter()
    assert_compiled_matches_eager(fn, v.requires_grad_(), f, eye, backend="inductor", rtol=1e-5,
                                  atol=1e-5)
    elapsed = time.perf_counter() - start
    print(f"inductor compile and first run: {elapsed:.1f} s")
    assert elapsed < 300


# ---------------------------------------------------------------- meta and fake tensors

@pytest.mark.parametrize("name", list(RENDER))
def test_meta_shapes(name):
    v, f, eye = _scene("cpu")
    assert_meta_shapes(RENDER[name], v, f, eye)


@pytest.mark.parametrize("name", list(RENDER))
def test_fake_shapes_without_validation(name):
    "Under FakeTensorMode with validation off, any read of a value would raise."
    v, f, eye = _scene("cpu")
    assert_fake_shapes(RENDER[name], v.requires_grad_(name in DIFFERENTIABLE), f, eye,
                       validate=False, backward=name in DIFFERENTIABLE)


def test_fake_shapes_of_half_precision():
    v, f, eye = _scene("cpu", torch.float16)
    assert_fake_shapes(RENDER["render_silhouette"], v.requires_grad_(), f, eye, validate=False)


# ---------------------------------------------------------------- the custom operators

def _projected(device="cpu", batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    v, f, eye = _scene(device)
    if batch > 1:
        v = v + 0.1 * torch.randn(batch, *v.shape, generator=g, dtype=v.dtype).to(device)
    tri, depth, drawn = project_faces(v, f, Camera(eye))
    return tri.detach(), depth.detach(), drawn


SILHOUETTE_SETTINGS = [
    ("logistic", 0.25, "probabilistic", None, 0.05, False, 0.3, 4, 1 << 20, 1e9),
    ("cauchy", 0.25, "yager", 2.0, 0.01, True, 0.2, 8, 300, 1e9),      # chunks of 300 pairs
    ("logistic_art", 0.5, "max", None, 0.05, False, 0.3, 5, 1 << 20, 1.0),   # checkpointed
]


@pytest.mark.parametrize("settings", SILHOUETTE_SETTINGS)
@pytest.mark.parametrize("batch", [1, 2])
def test_opcheck_soft_silhouette(settings, batch):
    tri, _, drawn = _projected(batch=batch)
    args = (tri.requires_grad_(), drawn, 9, 12, *settings)
    torch.library.opcheck(OPS.soft_silhouette.default, args)
    grad = torch.rand(batch, 9, 12, dtype=tri.dtype)
    torch.library.opcheck(OPS.soft_silhouette_backward.default,
                          (grad, tri.detach(), drawn, 9, 12, *settings))


@pytest.mark.parametrize("batch", [1, 2])
def test_opcheck_soft_rgb(batch):
    tri, depth, drawn = _projected(batch=batch)
    g = torch.Generator().manual_seed(1)
    colours = torch.rand(batch, tri.shape[1], 3, 3, generator=g, dtype=tri.dtype)
    tensors = [tri, drawn, (1 / depth), colours, torch.ones(3, dtype=tri.dtype)]
    settings = (9, 12, "logistic", 0.25, "probabilistic", None, 0.05, False, 0.01, 0.1, 100.0,
                0.3, 4, 1 << 20, 1e9)
    args = tuple(t.requires_grad_() if t.is_floating_point() else t for t in tensors) + settings
    torch.library.opcheck(OPS.soft_rgb.default, args)
    grad = torch.rand(batch, 9, 12, 4, dtype=tri.dtype)
    torch.library.opcheck(OPS.soft_rgb_backward.default,
                          (grad, *[t.detach() for t in tensors], *settings))


@pytest.mark.parametrize("tile", [3, 8])
def test_opcheck_hard_silhouette(tile):
    tri, _, drawn = _projected(batch=2)
    torch.library.opcheck(OPS.hard_silhouette.default, (tri, drawn, 10, 11, tile))


def test_operators_equal_the_engine():
    "Called directly, the operators give the eager renderer's images and gradients."
    v, f, eye = _scene("cpu")
    tri, depth, drawn = _projected()
    margin = coverage_margin("logistic", 0.05)
    eager = render_silhouette(v, f, Camera(eye), (9, 12), tau=0.05, tile=4)
    settings = ("logistic", 0.25, "probabilistic", None, 0.05, False, margin, 4, 1 << 20, 1e9)
    assert torch.equal(OPS.soft_silhouette(tri, drawn, 9, 12, *settings), eager)
    hard = hard_silhouette(v, f, Camera(eye), (9, 12))
    assert torch.equal(OPS.hard_silhouette(tri, drawn, 9, 12, 8), hard)
    t = tri.clone().requires_grad_()
    OPS.soft_silhouette(t, drawn, 9, 12, *settings).square().sum().backward()
    t2 = tri.clone().requires_grad_()
    engine = _silhouette_tiles(t2, drawn, 9, 12, get_distribution("logistic"),
                               get_tconorm("probabilistic"), 0.05, False, margin, 4, 1 << 20, 1e9)
    engine.square().sum().backward()
    assert torch.equal(t.grad, t2.grad)


# ---------------------------------------------------------------- the pairs' derivatives

def _pairs_vs_engine(tri, drawn, H, W, name, tconorm, p, tau, squared, tile, chunk, seed=0):
    "Image and gradient of `soft_silhouette_pairs` and of the eager engine for one weighting."
    margin = coverage_margin(name, tau, squared)
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(tri.shape[0], H, W, dtype=tri.dtype, generator=g)
    a, b = tri.clone().requires_grad_(), tri.clone().requires_grad_()
    out = OPS.soft_silhouette_pairs(a, drawn, H, W, name, 0.25, tconorm, p, tau, squared, margin,
                                    tile, chunk)[0]
    (out * w).sum().backward()
    ref = _silhouette_tiles(b, drawn, H, W, get_distribution(name), get_tconorm(tconorm, p), tau,
                            squared, margin, tile, chunk, 1e12)
    (ref * w).sum().backward()
    return out, ref, a.grad, b.grad


PARAMETRIC = ("hamacher", "yager", "frank", "aczel-alsina", "dombi", "schweizer-sklar")


@pytest.mark.parametrize("tconorm,p", [(n, 2.0 if n in PARAMETRIC else None)
                                       for n in ("max", "probabilistic", "einstein") + PARAMETRIC])
def test_pairs_operator_equals_the_engine_for_every_tconorm(tconorm, p):
    "Values bit for bit and gradients to rounding, float64, two meshes in a batch, in chunks."
    tri, _, drawn = _projected(batch=2)
    out, ref, ga, gb = _pairs_vs_engine(tri, drawn, 11, 13, "logistic", tconorm, p, 0.03, False,
                                        4, 500)
    assert torch.equal(out, ref)
    torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12)
    assert ga.abs().max() > 0


@pytest.mark.parametrize("name", ["gaussian", "cauchy", "laplace", "logistic_art", "uniform",
                                  "gumbel_max", "exponential_rev", "levy"])
@pytest.mark.parametrize("squared", [False, True])
def test_pairs_operator_equals_the_engine_for_distributions(name, squared):
    tri, _, drawn = _projected()
    tau = 1e-3 if squared else 0.03
    out, ref, ga, gb = _pairs_vs_engine(tri, drawn, 12, 10, name, "probabilistic", None, tau,
                                        squared, 5, 1 << 20, seed=1)
    assert torch.equal(out, ref)
    torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12)


def test_pairs_operator_keeps_the_tiles_faces_and_jacobians():
    "Non-empty tiles by face count, faces padded with -1, and 6 numbers per (pixel, face) pair."
    tri, _, drawn = _projected(batch=2)
    H, W, tile, chunk = 11, 13, 4, 400
    margin = coverage_margin("logistic", 0.03)
    img, tiles, slot, jac = OPS.soft_silhouette_pairs(tri, drawn, H, W, "logistic", 0.25,
                                                      "probabilistic", None, 0.03, False, margin,
                                                      tile, chunk)
    counts = (slot >= 0).sum(1)
    assert tiles.unique().numel() == tiles.numel() and bool((counts[1:] <= counts[:-1]).all())
    assert bool((counts > 0).all()) and int(tiles.max()) < 2 * 3 * 4        # B x 3 x 4 tiles
    ranks = torch.arange(slot.shape[1])
    assert torch.equal(slot >= 0, ranks < counts[:, None])            # faces first, then -1
    from diffalg.rendering._engine import _chunk_end
    s, pairs, c = 0, 0, counts.tolist()
    while s < len(c):
        e = _chunk_end(c, s, tile * tile, chunk)
        pairs, s = pairs + (e - s) * tile * tile * c[s], e
    assert jac.numel() == 6 * pairs
    empty = OPS.soft_silhouette_pairs(tri, torch.zeros_like(drawn), H, W, "logistic", 0.25,
                                      "probabilistic", None, 0.03, False, margin, tile, chunk)
    assert empty[0].abs().max() == 0 and all(t.numel() == 0 for t in empty[1:])
    g = torch.rand(2, H, W, dtype=tri.dtype)
    assert OPS.soft_silhouette_pairs_backward(g, tri, *empty[1:], tile, chunk).abs().max() == 0


@pytest.mark.parametrize("batch", [1, 2])
def test_opcheck_soft_silhouette_pairs(batch):
    tri, _, drawn = _projected(batch=batch)
    torch.library.opcheck(OPS.soft_silhouette_pairs.default,
                          (tri.requires_grad_(), drawn, 9, 12, "cauchy", 0.25, "yager", 2.0,
                           0.01, True, 0.2, 8, 300))


def _ops_in_graph(fn, *inputs):
    "The diffalg operators in the graph that dynamo hands its backend for `fn(*inputs)`."
    seen = set()

    def backend(gm, example_inputs):
        seen.update(str(n.target).removesuffix(".default") for n in gm.graph.nodes
                    if "diffalg" in str(n.target))
        return gm.forward
    torch._dynamo.reset()
    torch.compile(fn, fullgraph=True, backend=backend)(*inputs)
    return seen


def test_compiled_silhouette_keeps_pairs_only_when_a_gradient_is_needed():
    v, f, eye = _scene("cpu")
    fn = RENDER["render_silhouette"]
    assert _ops_in_graph(fn, v.clone().requires_grad_(), f, eye) == {
        "diffalg.soft_silhouette_pairs"}
    assert _ops_in_graph(fn, v, f, eye) == {"diffalg.soft_silhouette"}
    with torch.no_grad():
        assert _ops_in_graph(fn, v.clone().requires_grad_(), f, eye) == {
            "diffalg.soft_silhouette"}


def test_compiled_silhouette_gradient_with_inductor_equals_eager():
    "The backward pass over the pairs, compiled by inductor (unbacked sizes), equals eager."
    v, f, eye = _scene("cpu", subdivisions=2)
    fn = RENDER["render_silhouette_max_squared"]
    assert_compiled_matches_eager(fn, v.requires_grad_(), f, eye, backend="inductor", rtol=1e-7,
                                  atol=1e-9)


def test_compiled_renderer_needs_named_settings():
    "A distribution the operator cannot rebuild by name is refused while compiling."
    from diffalg.distributions import Logistic

    class Steeper(Logistic):
        def _cdf(self, x): return torch.sigmoid(2 * x)

    v, f, eye = _scene("cpu")
    with pytest.raises(TypeError, match="registered distribution"):
        render_silhouette(v.to("meta"), f.to("meta"), Camera(eye.to("meta")), 8,
                          distribution=Steeper())


# ---------------------------------------------------------------- dtypes and devices

# Largest difference to the float64 image, and relative difference (in norm) of the gradient for
# the vertices, per dtype: half precision rounds the vertices (bfloat16 to 8 significant bits), and
# the colour image's gradient has a few ill-conditioned pixel-face pairs (clamped barycentrics far
# outside a face) where even float32 differs from float64 by a few percent.
TOLERANCE = {
    "silhouette": {torch.float16: (2e-3, 0.2), torch.bfloat16: (2e-2, 0.35),
                   torch.float32: (1e-5, 1e-3), torch.float64: (0.0, 0.0)},
    "rgb": {torch.float16: (2e-3, 0.2), torch.bfloat16: (2e-2, 0.2),
            torch.float32: (1e-5, 0.06), torch.float64: (0.0, 0.0)},
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64],
                         ids=str)
@pytest.mark.parametrize("name", ["render_silhouette", "render_rgb", "SoftRasterizer"])
def test_dtype_follows_the_vertices(name, dtype, device):
    v, f, _ = _scene(device, subdivisions=2)
    eye = camera_position(3.0, 17.0, 31.0).to(device)            # the camera stays float32
    ref_v = v.clone().requires_grad_()
    ref = RENDER[name](ref_v, f, eye)
    ref.square().sum().backward()
    vd = v.to(dtype).requires_grad_()
    out = RENDER[name](vd, f, eye)
    assert out.dtype == dtype and out.device == v.device and out.shape == ref.shape
    out.double().square().sum().backward()
    assert vd.grad.dtype == dtype
    img_tol, grad_tol = TOLERANCE["rgb" if "rgb" in name else "silhouette"][dtype]
    assert float((out.detach().double() - ref).abs().max()) <= img_tol
    rel = (vd.grad.double() - ref_v.grad).norm() / ref_v.grad.norm()
    assert float(rel) <= grad_tol


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64],
                         ids=str)
def test_hard_silhouette_dtype(dtype, device):
    v, f, eye = _scene(device, subdivisions=2)
    out = hard_silhouette(v.to(dtype), f, Camera(eye.float()), 16)
    assert out.dtype == dtype
    assert torch.equal(out.double(), hard_silhouette(v, f, Camera(eye), 16))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64],
                         ids=str)
@pytest.mark.parametrize("name", list(RENDER))
def test_integer_bool_and_complex_vertices_are_refused(name, dtype):
    v, f, eye = _scene("cpu")
    with pytest.raises(TypeError, match="`vertices`.*float16, bfloat16, float32 or float64"):
        RENDER[name]((v * 3).to(dtype), f, eye)


def test_reference_follows_the_dtype_too():
    v, f, eye = _scene("cpu")
    ref = dense_silhouette(v, f, Camera(eye), 10, tau=0.05)
    half = dense_silhouette(v.half(), f, Camera(eye.float()), 10, tau=0.05)
    assert half.dtype == torch.float16 and float((half.double() - ref).abs().max()) < 5e-3


def test_camera_converts_once_per_dtype_and_device():
    v, f, eye = _scene("cpu")
    cam = Camera(eye.float())
    first = cam._tensors(torch.float64, torch.device("cpu"))
    assert first[0].dtype == torch.float64
    assert cam._tensors(torch.float64, torch.device("cpu"))[0] is first[0]      # cached
    with torch.no_grad():
        cam.eye.mul_(2.0)                                  # changed in place: converted again
    again = cam._tensors(torch.float64, torch.device("cpu"))
    assert again[0] is not first[0] and torch.allclose(again[0], 2 * first[0])
    learnable = Camera(eye.float().requires_grad_())                # never cached: it changes
    assert learnable._tensors(torch.float64, torch.device("cpu"))[0].requires_grad
    assert not learnable._copies


def test_camera_on_the_host_renders_vertices_on_the_device(device):
    v, f, eye = _scene("cpu")
    cam = Camera(eye)                                      # on the CPU
    out = render_silhouette(v.to(device), f.to(device), cam, 10, tau=0.05)
    assert out.device.type == torch.device(device).type
    torch.testing.assert_close(out.cpu(), render_silhouette(v, f, cam, 10, tau=0.05))


# ---------------------------------------------------------------- bad meshes

def test_bad_faces_get_clear_errors():
    v, f, eye = _scene("cpu")
    cam = Camera(eye)
    with pytest.raises(TypeError, match="`faces` must be an integer tensor"):
        render_silhouette(v, f.double(), cam, 8)
    with pytest.raises(ValueError, match=r"`faces` must have shape \(F, 3\)"):
        render_silhouette(v, f[:, :2], cam, 8)
    with pytest.raises(ValueError, match=r"`faces` must index vertices in \[0, 42\)"):
        render_silhouette(v, f + 1, cam, 8)
    with pytest.raises(ValueError, match=r"`faces` must index vertices"):
        render_silhouette(v, f - 1, cam, 8)
    with pytest.raises(TypeError, match="`faces` must be a torch.Tensor"):
        render_silhouette(v, f.tolist(), cam, 8)


def test_face_range_check_follows_the_validation_switch():
    "With validation off, the range check (a read of the faces' values) is skipped."
    v, f, eye = _scene("cpu")
    with diffalg.validate_args(False):
        with pytest.raises((IndexError, RuntimeError)) as error:
            render_silhouette(v, f + 1, Camera(eye), 8)
    assert "must index vertices" not in str(error.value)


def test_empty_meshes_get_a_value_error():
    v, f, eye = _scene("cpu")
    cam = Camera(eye)
    with pytest.raises(ValueError, match="`faces` is empty"):
        render_silhouette(v, f[:0], cam, 8)
    with pytest.raises(ValueError, match="`vertices` is empty"):
        render_silhouette(v[:0], f[:0], cam, 8)
    with pytest.raises(ValueError, match="`faces` is empty"):
        hard_silhouette(v, f[:0], cam, 8)
    with pytest.raises(ValueError, match="`faces` is empty"):
        render_rgb(v, f[:0], cam, 8)


# ---------------------------------------------------------------- results that read like torch's

def test_multi_part_results_are_named_tuples():
    mesh = icosphere(1)
    assert isinstance(mesh, Mesh) and mesh.vertices.shape == (42, 3) and mesh.faces.shape == (80, 3)
    v, f = mesh                                            # unpacks like a tuple
    assert repr(mesh).startswith("Mesh(vertices=tensor(")
    assert isinstance(load_mesh(TEAPOT), Mesh)
    edges = mesh_edges(f)
    assert isinstance(edges, MeshEdges) and edges.edges.shape == (120, 2)
    assert edges.face_pairs.shape == (120, 2)
    cam = Camera(camera_position(3.0, 0.0, 0.0))
    proj = cam.project(v)
    assert isinstance(proj, Projection) and proj.xy.shape == (1, 42, 2)
    assert proj.depth.shape == (1, 42)
    faces = project_faces(v, f, cam)
    assert isinstance(faces, ProjectedFaces) and faces.triangles.shape == (1, 80, 3, 2)
    assert faces.depths.shape == (1, 80, 3) and faces.drawn.dtype == torch.bool


def test_named_tuples_pass_through_compile():
    v, f, eye = _scene("cpu")

    def fn(v, f, eye):
        proj = project_faces(*Mesh(v, f), Camera(eye))
        return proj.triangles.sum() + Camera(eye).project(v).depth.sum()

    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(fn, fullgraph=True, backend="eager")(v, f, eye),
                               fn(v, f, eye))


# ---------------------------------------------------------------- CUDA: host synchronization

def _pose_step(verts, faces, angles, target):
    "One step of the pose estimation of the chapter: render from differentiable angles."
    eye = camera_position(4.5, angles[:, 0], angles[:, 1])
    sil = render_silhouette(verts, faces, Camera(eye), 24, tau=0.05, eps=1e-2,
                            cull_backfaces=True)
    loss = ((sil - target) ** 2).mean(dim=(1, 2)).sum()
    loss.backward()
    return loss


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_camera_and_projection_do_not_synchronize_cuda():
    "Default validation (CPU tensors only): making cameras and projecting reads nothing back."
    verts, faces = load_mesh(TEAPOT, device="cuda")
    angles = torch.tensor([[20.0, 30.0], [10.0, -40.0]], device="cuda", requires_grad=True)
    project_faces(verts, faces, Camera(camera_position(4.5, angles[:, 0], angles[:, 1])))
    with no_cuda_sync():
        eye = camera_position(4.5, angles[:, 0], angles[:, 1])
        tri, depth, drawn = project_faces(verts, faces, Camera(eye))
        tri.sum().backward()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_pose_step_synchronizes_only_in_the_tiles_cuda():
    """A pose-estimation step with the default validation: the only synchronizations are the
    tiles' (their sizes depend on the data, as torch.nonzero's do), none from the checks."""
    verts, faces = load_mesh(TEAPOT, device="cuda")
    angles = torch.tensor([[20.0, 30.0], [10.0, -40.0]], device="cuda", requires_grad=True)
    target = torch.zeros(2, 24, 24, device="cuda")
    _pose_step(verts, faces, angles, target)                 # warm-up: copies, caches
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _pose_step(verts, faces, angles, target)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert syncs, "the tiles read their sizes back: expected at least one synchronization"
    assert {os.path.basename(w.filename) for w in syncs} == {"_engine.py"}


# ---------------------------------------------------------------- the hand-written backward pass

@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("light", [False, True])
def test_signed_distance_function_is_traced_whole(squared, light):
    "The engine's custom autograd function compiles without a graph break, forward and backward."
    from diffalg.rendering._engine import _SignedDistance
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(2, 7, 2, generator=g, dtype=torch.float64)
    tris = torch.rand(2, 3, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    fn = lambda p, t: _SignedDistance.apply(p, t, squared, light)    # noqa: E731
    assert_no_graph_breaks(fn, pts, tris)
    assert_compiled_matches_eager(fn, pts, tris)


# ---------------------------------------------------------------- import stays cheap

def test_import_does_not_load_the_compiler():
    "Registering the operators and marking the constants must not import torch._dynamo (~1 s)."
    code = ("import sys, diffalg.rendering, diffalg.rendering._ops; "
            "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tail_point_is_marked_as_torch_compiler_marks_constants():
    "The marker set by hand is the one that torch.compiler.assume_constant_result sets."
    from diffalg.rendering._engine import _tail_point
    marked = torch.compiler.assume_constant_result(lambda: 0.0)
    assert marked._dynamo_marked_constant is _tail_point._dynamo_marked_constant is True
