"""Tests of the compiled network pass (diffalg.sorting._kernel, _kernel_ops) against the PyTorch
in-place path and the out-of-place layer path."""
import contextlib
import multiprocessing
import os
import subprocess
import sys
import tempfile
import warnings

import pytest
import torch

import diffalg.sorting._kernel as sc
import diffalg.sorting._kernel_ops as ops
from diffalg.distributions import get_distribution
from diffalg.sorting import RelaxedSort, diff_sort, soft_sort
from diffalg.sorting._engine_values import _network_values
from diffalg.sorting._operators import values_pass
from diffalg.sorting.networks import get_sorting_network

CAUCHY = get_distribution("cauchy")
needs_kernel = pytest.mark.skipif(sc.find_c_compiler() is None, reason="no C compiler")
pytestmark = needs_kernel


def run(mode, x, network, steepness, g=None, gw=None):
    "Values, weights and the gradient of <values, g> + <weights, gw> under `mode`."
    with sc.compiled_pass(mode):
        xr = x.clone().requires_grad_()
        v, w = values_pass(xr, network, steepness, CAUCHY, True)
        loss = (v * (g if g is not None else 0)).sum() + (w * (gw if gw is not None else 0)).sum()
        grad, = torch.autograd.grad(loss, xr) if (g is not None or gw is not None) else (None,)
        return v.detach(), w.detach(), grad


@pytest.mark.parametrize("kind", ["bitonic", "odd_even"])
@pytest.mark.parametrize("n", [2, 3, 5, 8, 37, 64, 100, 128, 257, 1000])
def test_kernel_equals_both_torch_paths_float64(kind, n):
    torch.manual_seed(n)
    network = get_sorting_network(kind, n)
    x = torch.randn(5, n, dtype=torch.float64) * 2
    g = torch.randn(5, n, dtype=torch.float64)
    gw = torch.randn(5, network.depth, n, dtype=torch.float64)
    for grads in ((g, None), (None, gw), (g, gw)):
        v1, w1, g1 = run("on", x, network, 7.0, *grads)
        v2, w2, g2 = run("off", x, network, 7.0, *grads)
        assert torch.allclose(v1, v2, atol=1e-12) and torch.allclose(w1, w2, atol=1e-12)
        assert torch.allclose(g1, g2, atol=1e-10)
    # out-of-place, autograd throughout
    ref_v, ref_w = _network_values(x, network, 7.0, CAUCHY)
    assert torch.allclose(v1, ref_v, atol=1e-12) and torch.allclose(w1, ref_w, atol=1e-12)


@pytest.mark.parametrize("kind", ["bitonic", "odd_even"])
@pytest.mark.parametrize("n", [3, 16, 100, 256])
def test_kernel_float32_error_like_torch(kind, n):
    "float32: both paths' errors against float64 are of the same size."
    torch.manual_seed(0)
    network = get_sorting_network(kind, n)
    x = torch.randn(8, n)
    g, gw = torch.randn(8, n), torch.randn(8, network.depth, n)
    exact = run("off", x.double(), network, 10.0, g.double(), gw.double())
    kern, ours = run("on", x, network, 10.0, g, gw), run("off", x, network, 10.0, g, gw)
    for a, b, e in zip(kern, ours, exact):
        assert a.dtype == torch.float32
        err_kernel, err_torch = (a.double() - e).abs().max(), (b.double() - e).abs().max()
        assert err_kernel <= 4 * err_torch + 1e-5 * max(1.0, e.abs().max().item())


@pytest.mark.parametrize("kind,n", [("bitonic", 6), ("bitonic", 8), ("odd_even", 5)])
def test_kernel_gradcheck_and_double_backward(kind, n):
    network = get_sorting_network(kind, n)
    x = torch.randn(3, n, dtype=torch.float64, requires_grad=True)
    with sc.compiled_pass("on"):
        with_w = lambda t: values_pass(t, network, 3.0, CAUCHY, True)
        assert torch.autograd.gradcheck(with_w, (x,))
        values_only = lambda t: values_pass(t, network, 3.0, CAUCHY)
        assert torch.autograd.gradcheck(values_only, (x,))
        assert torch.autograd.gradgradcheck(with_w, (x,))


def test_kernel_used_by_public_api_and_input_untouched():
    torch.manual_seed(1)
    x = torch.randn(3, 40, 6).transpose(1, 2)           # not contiguous; sorted along dim 1
    keep = x.clone()
    with sc.compiled_pass("on"):
        r = diff_sort(x, "bitonic", 12.0, dim=1, descending=True)
        on = (r.values, r.permutation, r.ranks, r.topk_mask(4))
    with sc.compiled_pass("off"):
        r = diff_sort(x, "bitonic", 12.0, dim=1, descending=True)
        off = (r.values, r.permutation, r.ranks, r.topk_mask(4))
    assert torch.equal(x, keep)
    for a, b in zip(on, off):
        assert a.shape == b.shape and torch.allclose(a, b, atol=2e-5)
    with sc.compiled_pass("on"):                         # hard limit: equals torch.sort
        assert torch.allclose(soft_sort(keep, "odd_even", 1e4, dim=1), keep.sort(1).values,
                              atol=1e-3)


@contextlib.contextmanager
def restored_threads():
    "The block may change torch's thread count; it is restored afterwards."
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def on_threads(monkeypatch, fn):
    """fn() on one thread (no split), then split over 2 and over 3 threads, on OpenMP threads (where
    the library has them) and on Python threads; the results."""
    out = []
    lib = sc.compiled_library()
    with restored_threads():
        for n_threads, threshold in ((1, 2 ** 62), (2, 1), (3, 1)):
            for openmp in sorted({lib.openmp, False}):
                torch.set_num_threads(n_threads)
                monkeypatch.setattr(sc, "_THREADED_MIN", threshold)
                monkeypatch.setattr(lib, "openmp", openmp)
                out.append(fn())
    return out


def openmp_compiles():
    "Whether the C compiler builds and links a program with -fopenmp."
    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/t.c", "w") as f:
            f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
        cmd = [sc.find_c_compiler(), "-fopenmp", "-o", f"{d}/t", f"{d}/t.c"]
        return subprocess.run(cmd, capture_output=True).returncode == 0


def test_library_has_openmp_where_the_compiler_has_it():
    """The jobs run on OpenMP threads wherever the compiler supports -fopenmp, and the library
    then shares PyTorch's OpenMP runtime where that is libgomp (the Linux wheels)."""
    lib = sc.compiled_library()
    assert lib.openmp == openmp_compiles()
    torch_gomp = False
    if sys.platform == "linux":
        with open("/proc/self/maps") as f:
            torch_gomp = any("/torch/lib/libgomp" in line for line in f)
    if lib.openmp and torch_gomp:
        # one runtime: the thread count that PyTorch sets is the one the kernel's OpenMP reads
        with restored_threads():
            for k in (1, 3, 2):
                torch.set_num_threads(k)
                assert lib.openmp_threads() == k


def _sort_in_child(x, queue):
    queue.put(soft_sort(x, "bitonic").tolist())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_splits_its_calls_over_python_threads():
    """libgomp's threads do not survive a fork: a child of a process whose kernel calls ran on
    OpenMP threads must not enter an OpenMP region (it would wait for ever). It runs the jobs on
    Python threads, with the same result."""
    torch.manual_seed(0)
    x = torch.randn(64, 256)
    with restored_threads():
        torch.set_num_threads(2)
        ours = soft_sort(x, "bitonic")            # two jobs: on OpenMP threads where built so
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_sort_in_child, args=(x, queue))
        child.start()
        try:
            theirs = queue.get(timeout=60)
        finally:
            child.join(5)
            if child.is_alive():
                child.kill()
    assert torch.equal(torch.tensor(theirs), ours)


def test_rows_split_over_threads_give_identical_results(monkeypatch):
    torch.manual_seed(2)
    network = get_sorting_network("bitonic", 100)
    x, g = torch.randn(7, 100), torch.randn(7, 100)
    gw = torch.randn(7, network.depth, 100)
    results = on_threads(monkeypatch, lambda: run("on", x, network, 10.0, g, gw))
    # rows are independent: the same numbers, bit for bit
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def test_empty_batch_and_no_grad():
    network = get_sorting_network("bitonic", 10)
    with sc.compiled_pass("on"):
        v, w = values_pass(torch.zeros(0, 10), network, 5.0, CAUCHY, True)
        assert v.shape == (0, 10) and w.shape == (0, network.depth, 10)
        with torch.no_grad():
            x = torch.randn(2, 10)
            assert torch.allclose(values_pass(x, network, 5.0, CAUCHY),
                                  soft_sort(x, "bitonic", 5.0), atol=1e-6)


def test_applies_only_where_it_should():
    x = torch.randn(2, 8)
    with sc.compiled_pass("on"):
        assert sc.compiled_applies(x, CAUCHY) and sc.compiled_applies(x.double(), CAUCHY)
        assert not sc.compiled_applies(x, get_distribution("logistic"))
        assert not sc.compiled_applies(x.half(), CAUCHY)
        assert not sc.compiled_applies(x.to("meta"), CAUCHY)
    with sc.compiled_pass("off"):
        assert not sc.compiled_applies(x, CAUCHY)


def test_mode_arguments():
    with pytest.raises(ValueError, match="`mode`"):
        sc.set_compiled_pass("fast")
    with pytest.raises(TypeError, match="`mode`"):
        sc.set_compiled_pass(1)
    before = sc.set_compiled_pass("off")
    assert sc.set_compiled_pass(before) == "off"


def test_without_a_compiler(monkeypatch):
    "'auto' falls back to PyTorch with one warning; 'on' raises and says why."
    monkeypatch.setattr(sc, "_STATE", {"mode": "auto", "lib": None, "error": None, "warned": False})
    monkeypatch.setattr(sc, "find_c_compiler", lambda: None)
    x = torch.randn(2, 9, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        out = soft_sort(x, "bitonic")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # once only
        out2 = soft_sort(x, "bitonic")
    with sc.compiled_pass("off"):
        assert torch.allclose(out, soft_sort(x, "bitonic")) and torch.allclose(out2, out)
    out.sum().backward()
    assert x.grad is not None
    with sc.compiled_pass("on"), pytest.raises(RuntimeError, match="not available: no C compiler"):
        soft_sort(x, "bitonic")


def test_library_cached_on_disk(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFALG_CACHE", str(tmp_path))
    monkeypatch.setattr(sc, "_STATE", {"mode": "on", "lib": None, "error": None, "warned": False})
    assert sc.compiled_library() is not None
    files = sorted(p.name for p in tmp_path.iterdir())
    # no leftovers
    assert len(files) == 1 and files[0].startswith("network_pass_") and files[0].endswith(".so")
    def no_build(*args, **kwargs):
        raise AssertionError("the cached library should have been loaded")
    monkeypatch.setattr(sc, "build_shared_library", no_build)
    monkeypatch.setattr(sc, "_STATE", {"mode": "on", "lib": None, "error": None, "warned": False})
    assert sc.compiled_library() is not None
    monkeypatch.undo()
    # a broken file under the library's name is built again
    other = tmp_path / "other"
    other.mkdir()
    (other / sc._library_name(sc.find_c_compiler())).write_bytes(b"not a library")
    monkeypatch.setenv("DIFFALG_CACHE", str(other))
    monkeypatch.setattr(sc, "_STATE", {"mode": "on", "lib": None, "error": None, "warned": False})
    assert sc.compiled_library() is not None
    assert len(list(other.iterdir())) == 1
    x = torch.randn(2, 16)
    with sc.compiled_pass("off"):
        ref = soft_sort(x, "bitonic", 10.0)
    out = ops.network_pass(x, get_sorting_network("bitonic", 16), 10.0)[0]
    assert torch.allclose(out, ref, atol=1e-5)


def matrix_both(kind, n, B, dtype, seed=0):
    """P and the gradient of <P, G> w.r.t. x by the compiled matrix and by the PyTorch path (the
    weights from the same pass)."""
    torch.manual_seed(seed)
    x = torch.randn(B, n, dtype=dtype)
    G = torch.randn(B, n, n, dtype=dtype)
    out = []
    for mode in ("on", "off"):
        with sc.compiled_pass(mode):
            xr = x.clone().requires_grad_()
            P = RelaxedSort(xr, kind, 10.0).permutation
            grad, = torch.autograd.grad((P * G).sum(), xr)
            out.append((P.detach(), grad))
    return out


@pytest.mark.parametrize("kind", ["bitonic", "odd_even"])
@pytest.mark.parametrize("n", [2, 3, 7, 16, 37, 64, 65, 130, 256])
def test_matrix_kernel_equals_torch_path(kind, n):
    (P1, g1), (P2, g2) = matrix_both(kind, n, 3, torch.float64, seed=n)
    assert torch.allclose(P1, P2, atol=1e-12) and torch.allclose(g1, g2, atol=1e-10)
    (P1, g1), (P2, g2) = matrix_both(kind, n, 3, torch.float32, seed=n)
    assert P1.dtype == torch.float32 and torch.allclose(P1, P2, atol=1e-5)
    assert torch.allclose(g1, g2, atol=1e-4 * max(1.0, g2.abs().max().item()))
    assert torch.allclose(P1.sum(-1), torch.ones(3, n), atol=1e-5)
    assert torch.allclose(P1.sum(-2), torch.ones(3, n), atol=1e-5)


@pytest.mark.parametrize("kind,n", [("bitonic", 6), ("bitonic", 8), ("odd_even", 5)])
def test_matrix_kernel_gradcheck(kind, n):
    """Direct weights, with different values on the two wires of a pair: the kernel reads each
    pair's lower wire."""
    network = get_sorting_network(kind, n)
    w = torch.rand(2, network.depth, n, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w_: ops.network_matrix(w_, network), (w,))
    assert torch.autograd.gradgradcheck(lambda w_: ops.network_matrix(w_, network), (w,))
    lo_only = torch.zeros_like(w)
    for t, layer in enumerate(network.layers):
        for a, b in layer:
            lo_only[:, t, min(a, b)] = 1
    g, = torch.autograd.grad(ops.network_matrix(w, network).pow(2).sum(), w)
    # only the lower wires' weights are read
    assert torch.equal(g * (1 - lo_only), torch.zeros_like(g))


@pytest.mark.parametrize("B", [1, 2, 5])
def test_matrix_split_over_threads(monkeypatch, B):
    """Rows over threads, and for a batch smaller than the thread count, column tiles over threads
    too (own gradient buffers)."""
    network = get_sorting_network("odd_even", 200)            # 4 column tiles
    torch.manual_seed(B)
    w = torch.rand(B, network.depth, 200, dtype=torch.float64, requires_grad=True)
    G = torch.randn(B, 200, 200, dtype=torch.float64)
    def once():
        P = ops.network_matrix(w, network)
        return P.detach(), torch.autograd.grad(P, w, G)[0]
    results = on_threads(monkeypatch, once)
    with restored_threads():
        torch.set_num_threads(3)
        jobs = sc._matrix_jobs(B, 200, 1)
    covered = sorted((b, k) for b0, b1, k0, k1 in jobs for b in range(b0, b1)
                     for k in range(k0, k1))
    # every (row, tile) exactly once
    assert len(jobs) >= 3 and covered == [(b, k) for b in range(B) for k in range(4)]
    for P, g in results[1:]:
        # each entry computed by one thread, the same way
        assert torch.equal(P, results[0][0])
        # partial sums over tiles: another order of additions
        assert torch.allclose(g, results[0][1], atol=1e-12)


def test_matrix_subnormals_flushed_only_inside_kernel():
    """An odd-even P at n = 256 has entries below float32's smallest normal number; the kernel
    flushes them, within its call only."""
    torch.manual_seed(0)
    x = torch.randn(2, 256)
    with sc.compiled_pass("off"):
        ref = RelaxedSort(x, "odd_even", 10.0).permutation
    P = RelaxedSort(x, "odd_even", 10.0).permutation
    tiny = torch.finfo(torch.float32).tiny
    # the PyTorch path has subnormal entries
    assert ((ref != 0) & (ref.abs() < tiny)).any()
    assert not ((P != 0) & (P.abs() < tiny)).any()
    assert (P - ref).abs().max() < 1e-6
    # the caller's thread still computes subnormals
    sub = torch.tensor([tiny], dtype=torch.float32) / 4
    assert sub.item() > 0


@pytest.mark.parametrize("kind,n", [("odd_even", 70), ("bitonic", 100)])
def test_matrix_backward_in_segments(monkeypatch, kind, n):
    """With less room for the row differences the backward pass recomputes segments from
    checkpoints: the same gradient."""
    network = get_sorting_network(kind, n)
    torch.manual_seed(n)
    w = torch.rand(3, network.depth, n, dtype=torch.float64, requires_grad=True)
    G = torch.randn(3, n, n, dtype=torch.float64)
    whole = torch.autograd.grad(ops.network_matrix(w, network), w, G)[0]
    per_layer = max(len(layer) for layer in network.layers)
    for K in (1, 2, 5, network.depth - 1):
        monkeypatch.setattr(ops, "_SEGMENT_BYTES", K * ops._TILE * 8 * per_layer)
        grad = torch.autograd.grad(ops.network_matrix(w, network), w, G)[0]
        assert torch.allclose(grad, whole, atol=1e-12)


def test_matrix_kernel_on_a_custom_network():
    """Any network of pair layers: comparators whose minimum goes to the higher wire, an empty
    layer, idle wires."""
    from diffalg.sorting.networks import SortingNetwork
    layers = [[(0, 3), (5, 1)], [], [(2, 4)], [(1, 0), (3, 2), (5, 4)], [(0, 5)]]
    net = SortingNetwork(6, layers, "custom")
    torch.manual_seed(4)
    x = torch.randn(4, 6, dtype=torch.float64)
    G = torch.randn(4, 6, 6, dtype=torch.float64)
    out = {}
    for mode in ("on", "off"):
        with sc.compiled_pass(mode):
            xr = x.clone().requires_grad_()
            P = RelaxedSort(xr, net, 3.0, "logistic").permutation
            out[mode] = (P.detach(), torch.autograd.grad((P * G).sum(), xr)[0])
    assert torch.allclose(out["on"][0], out["off"][0], atol=1e-12)
    assert torch.allclose(out["on"][1], out["off"][1], atol=1e-10)
    assert sc.compiled_matrix_applies(x)
    assert not sc.compiled_applies(x, get_distribution("logistic"))


def test_mode_from_environment(monkeypatch):
    for value, mode in (("", "auto"), ("auto", "auto"), ("OFF", "off"), ("0", "off"),
                        ("false", "off"), ("on", "on"), ("1", "on")):
        monkeypatch.setenv("DIFFALG_COMPILED", value)
        assert sc._mode_from_env() == mode
    monkeypatch.delenv("DIFFALG_COMPILED")
    assert sc._mode_from_env() == "auto"
    monkeypatch.setenv("DIFFALG_COMPILED", "fast")
    with pytest.warns(RuntimeWarning, match="DIFFALG_COMPILED='fast'"):
        assert sc._mode_from_env() == "auto"


def test_kernel_entry_points_check_their_arguments():
    net = get_sorting_network("bitonic", 8)
    x = torch.randn(2, 8)
    with pytest.raises(ValueError, match=r"`x` must have shape \(B, 8\), got \(2, 7\)"):
        ops.network_pass(torch.randn(2, 7), net, 10.0)
    with pytest.raises(TypeError, match="`x` must be a float32 or float64 CPU tensor"):
        ops.network_pass(x.half(), net, 10.0)
    with pytest.raises(TypeError, match="`x` must be a torch.Tensor"):
        ops.network_pass([1.0, 2.0], net, 10.0)
    with pytest.raises(ValueError, match="`steepness`"):
        ops.network_pass(x, net, 0.0)
    with pytest.raises(TypeError, match="`network` must be a SortingNetwork"):
        ops.network_pass(x, "bitonic", 10.0)
    from diffalg.sorting.networks import SortingNetwork
    with pytest.raises(ValueError, match="no in-place plan"):
        ops.network_pass(torch.randn(2, 3), SortingNetwork(3, [[(0, 2)], [(0, 1)], [(1, 2)]]), 10.0)
    with pytest.raises(ValueError, match=r"`gw` must have shape \(2, 6, 8\)"):
        ops.network_pass_backward(x, net, 10.0, None, torch.zeros(2, 5, 8))
    with pytest.raises(ValueError, match=r"`g` must have shape \(2, 8\)"):
        ops.network_pass_backward(x, net, 10.0, torch.zeros(3, 8))
    with pytest.raises(ValueError, match=r"`w` must have shape \(B, 6, 8\), got \(2, 6, 9\)"):
        ops.network_matrix(torch.rand(2, 6, 9), net)
    # the entry points themselves do not depend on the mode
    with sc.compiled_pass("off"):
        assert torch.allclose(ops.network_pass(x, net, 10.0)[0], soft_sort(x, "bitonic", 10.0),
                              atol=1e-5)


def test_matrix_gradient_buffers_are_contiguous():
    "Weights in a permuted (dense, non-contiguous) layout: the gradient comes back right."
    net = get_sorting_network("odd_even", 7)
    base = torch.rand(7, 2, net.depth, dtype=torch.float64)
    # (2, depth, 7) view with permuted strides
    w = base.permute(1, 2, 0).requires_grad_()
    G = torch.randn(2, 7, 7, dtype=torch.float64)
    g1, = torch.autograd.grad(ops.network_matrix(w, net), w, G)
    w2 = w.detach().contiguous().requires_grad_()
    g2, = torch.autograd.grad(ops.network_matrix(w2, net), w2, G)
    assert torch.equal(g1, g2)
