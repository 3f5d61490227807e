"""Helpers for the tests that check that diffalg's operators behave like torch's own: compiled
with `torch.compile(fullgraph=True)` they equal eager, dynamo sees no graph break, meta and fake
tensors give the output shapes and dtypes, and nothing reads a tensor's values on the host.

Each helper takes `fn(*inputs)`, a function of tensors (and other arguments) that returns a
tensor or a (nested) tuple/list of tensors; tensor inputs that require grad are differentiated.
"""
import contextlib

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import diffalg


def tensors(out):
    "The tensors of a (nested) output, in order."
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in tensors(o)]
    raise TypeError(f"output of type {type(out).__name__} holds no tensors")


def _fresh(inputs):
    "Copies of the tensor inputs (leaves again where they required grad)."
    return [t.detach().clone().requires_grad_(t.requires_grad) if isinstance(t, torch.Tensor)
            else t for t in inputs]


def _run(fn, inputs, backward):
    inputs = _fresh(inputs)
    outs = tensors(fn(*inputs))
    grads = []
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    if backward and leaves:
        diff = [o for o in outs if o.requires_grad]
        seeds = [torch.linspace(-1, 1, o.numel(), dtype=o.dtype, device=o.device).view_as(o)
                 for o in diff]
        grads = torch.autograd.grad(diff, leaves, seeds, allow_unused=True)
        grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves)]
    return [o.detach() for o in outs], list(grads)


def assert_compiled_matches_eager(fn, *inputs, backend="aot_eager", backward=True, rtol=1e-7,
                                  atol=1e-9):
    """`torch.compile(fn, fullgraph=True, backend=backend)` gives the outputs and input gradients
    of eager `fn` (a fixed linear combination of the outputs is differentiated)."""
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend=backend)
    eager_out, eager_grads = _run(fn, inputs, backward)
    comp_out, comp_grads = _run(compiled, inputs, backward)
    assert len(eager_out) == len(comp_out)
    for e, c in zip(eager_out + eager_grads, comp_out + comp_grads):
        torch.testing.assert_close(c, e, rtol=rtol, atol=atol)
    return comp_out


def graph_breaks(fn, *inputs):
    "The number of graph breaks that dynamo reports for `fn(*inputs)`, with their reasons."
    torch._dynamo.reset()
    explained = torch._dynamo.explain(fn)(*inputs)
    return explained.graph_break_count, [str(b.reason)[:300] for b in explained.break_reasons]


def assert_no_graph_breaks(fn, *inputs):
    count, reasons = graph_breaks(fn, *inputs)
    assert count == 0, f"{count} graph break(s): {reasons}"


def _meta(x):
    return x.to("meta") if isinstance(x, torch.Tensor) else x


def assert_meta_shapes(fn, *inputs):
    """`fn` on meta copies of the inputs returns meta tensors with the shapes and dtypes of its
    outputs on the real inputs."""
    want = tensors(fn(*_fresh(inputs)))
    with torch.no_grad():
        got = tensors(fn(*[_meta(t) for t in inputs]))
    assert [(g.shape, g.dtype, g.device.type) for g in got] == \
        [(w.shape, w.dtype, "meta") for w in want]


def assert_fake_shapes(fn, *inputs, validate=False, backward=True):
    """`fn` under `FakeTensorMode`, forward (and backward), gives the shapes and dtypes of its
    outputs (and input gradients) on the real inputs. A fake tensor has no values: any `.item()`,
    `bool(tensor)` or `.tolist()` in the forward or backward raises. With `validate=False` the
    value checks are off, so this proves that the operator itself reads no values."""
    want_out, want_grads = _run(fn, inputs, backward)
    setting = diffalg.validate_args(False) if not validate else contextlib.nullcontext()
    with setting, FakeTensorMode(allow_non_fake_inputs=False) as mode:
        fake = [mode.from_tensor(t) if isinstance(t, torch.Tensor) else t for t in inputs]
        got_out, got_grads = _run(fn, fake, backward)
    shape = [(t.shape, t.dtype) for t in want_out + want_grads]
    assert [(t.shape, t.dtype) for t in got_out + got_grads] == shape


@contextlib.contextmanager
def no_cuda_sync():
    "Raise on any host-device synchronization inside the block (CUDA only)."
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(0)
