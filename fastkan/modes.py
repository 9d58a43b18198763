"""What each PyTorch mode needs of the fast paths, decided in one place.

The fast paths are autograd Functions whose forward and backward are written by hand (and, on the
CPU and on CUDA, run compiled kernels). Where a mode cannot use them, the layer takes the plain
composition of torch operations instead, which every mode understands:

- ``torch.func`` transforms (``grad``, ``vmap``, ``jacrev``): a Function needs ``setup_context`` and
  a vmap rule there;
- ``torch.export``: the traced program must be built from ATen operations (the fast paths write
  into buffers with ``out=``);
- ``torch.compile``: Inductor compiles the plain composition with the rest of the model, into
  fewer and better loops than it makes of our fast paths traced;
- autocast: the fast paths compute in the input's dtype; the plain composition computes the basis
  in float32 and its products in the autocast dtype, as ``nn.Linear`` would.

A second derivative (``create_graph=True``) is decided in backward: each fast path's backward then
takes fastkan.paths.higher's Functions (bases with every derivative registered) or differentiates the
plain composition of the same inputs (``differentiate``), so its gradient is itself
differentiable. See docs/design/paths.md.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

# torch.compiler.is_compiling is new in torch 2.3; with older versions a compiled layer breaks its
# graph at the clamp bound and the thread count (still correct).
is_compiling: Callable[[], bool] = getattr(torch.compiler, "is_compiling", lambda: False)
is_exporting: Callable[[], bool] = getattr(torch.compiler, "is_exporting", lambda: False)
transforms_active: Callable[[], bool] = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


COMPILING = "torch.compile is tracing"


def own_code(fn):
    """A copy of ``fn`` with its own code object, for the kernels fastkan compiles itself: Dynamo keeps
    compiled graphs, and its limit of recompilations, per code object, so that each basis, order,
    dtype and thread count gets its own and many of them in one process do not push later ones back
    to eager."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def plain_reason(x: Tensor) -> str | None:
    """Why a call on ``x`` must take the plain composition in the current mode, or None."""
    # Dynamo folds is_compiling, is_exporting and the autocast state while tracing; the transforms'
    # check it would put into the compiled graph, to run at every call, so it comes after them.
    # Autocast comes before compiling: a compiled call under autocast must not take the operator
    # (fastkan.dispatch.operator), which returns the input's dtype.
    if is_exporting():
        return "torch.export is tracing"
    device = x.device.type
    if device in ("cpu", "cuda") and _autocast(device):
        return f"autocast on {device} is on"
    if is_compiling():
        # Inductor fuses the plain composition into a few loops with the rest of the model; our fast
        # paths, traced instead, are Python loops over blocks that it cannot fuse as well: compiled,
        # they took 5.18x our eager time on seed-300k and 1.19x on kanbench-10m, the plain
        # composition 2.05x and 0.95x (docs/results/modes.md). fastkan.dispatch.operator keeps
        # the one-output kernels as an operator inside the compiled model.
        return COMPILING
    if transforms_active():
        return "a torch.func transform (grad, vmap, jacrev) is active"
    return None


def _autocast(device: str) -> bool:
    try:
        return torch.is_autocast_enabled(device)
    except TypeError:  # torch before 2.4
        return torch.is_autocast_cpu_enabled() if device == "cpu" else torch.is_autocast_enabled()


def differentiate(
    plain: Callable[..., Tensor], inputs: Sequence, needs: Sequence[bool], grad_out: Tensor
) -> tuple[Tensor | None, ...]:
    """The gradients of ``plain(*inputs)`` for the inputs that ``needs`` asks for, with their graph.

    For a fast path's backward under ``create_graph=True``: ``inputs`` are its saved inputs, still
    attached to the forward's graph, so the result can be differentiated again (second derivatives,
    gradient penalties, physics-informed losses).
    """
    wanted = [x for x, n in zip(inputs, needs) if n and isinstance(x, Tensor) and x.requires_grad]
    with torch.enable_grad():
        out = plain(*inputs)
        grads = torch.autograd.grad(out, wanted, grad_out, create_graph=True, allow_unused=True) if wanted else ()
    by_id = {id(x): g for x, g in zip(wanted, grads)}
    result = []
    for x, n in zip(inputs, needs):
        g = by_id.get(id(x)) if n and isinstance(x, Tensor) else None
        result.append(torch.zeros_like(x) if g is None and n and isinstance(x, Tensor) else g)
    return tuple(result)


def plain_spline(u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """``fn((u - grid) / h)`` flattened, times the spline weight: (N, in) -> (N, out)."""
    return torch.nn.functional.linear(fn((u[..., None] - grid) / h).flatten(-2), weight)


def warmup(model: torch.nn.Module, example: Tensor) -> None:
    """Run ``model`` forward and backward once on ``example``, so that whatever its first call builds
    (fastkan.paths.compiled's CPU kernels, Triton's autotuning) is built now; no ``.grad`` is touched."""
    x = example.detach().requires_grad_(example.is_floating_point())
    with torch.enable_grad():
        out = model(x)
        params = [p for p in model.parameters() if p.requires_grad]
        inputs = ([x] if x.requires_grad else []) + params
        if inputs and out.requires_grad:
            torch.autograd.grad(out.float().sum(), inputs, allow_unused=True)


#: The fast paths, as the columns of the modes table (the names of fastkan.explain.PATHS).
PATH_NAMES = ("small node", "compiled one-output", "row blocks", "local", "Triton", "fused blocks")

#: What each mode runs on each fast path: ``native`` (the path itself), ``plain`` (the plain
#: composition), ``plain, compiled`` (the plain composition, compiled with the model), ``native,
#: operator`` (the path as a torch.library operator, opaque to the compiler), or
#: ``native + higher`` (the path forward; backward by fastkan.paths.higher for a basis with every
#: derivative registered, else by the plain composition). The README's table of modes is this one
#: (tests/test_explain.py); tests/test_layer.py and tests/test_higher.py check each mode on each path.
MODES = (
    ("eager", ("native",) * 6),
    (
        "`torch.compile(model, fullgraph=True)`",
        ("plain, compiled", "native, operator", *("plain, compiled",) * 4),
    ),
    ("`torch.export.export`", ("plain",) * 6),
    ("`torch.func.grad`, `vmap`, `jacrev`", ("plain",) * 6),
    ("second derivatives (`create_graph=True`)", ("native + higher",) * 6),
    ("CPU or CUDA autocast", ("plain",) * 6),
    ("`DistributedDataParallel`", ("native",) * 6),
)
