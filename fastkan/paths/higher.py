"""Derivatives of any order of a spline path, as two closed autograd Functions.

For a basis whose every derivative is known in closed form (``bases.NTH_DERIVATIVES``; the
Gaussian's ``k``-th is ``(-1)**k H_k(d) exp(-d**2)``, H_k the Hermite polynomial), write
``D_k(u) = d**k/du**k basis((u - grid) / h)``: (N, in) -> (N, in, G). Then

- ``derivative(u, k)`` is D_k, and its input gradient is ``contract(u, grad, k + 1)``;
- ``contract(u, m, k)`` is ``(D_k(u) * m).sum(-1)``: (N, in), whose gradients are
  ``grad * contract(u, m, k + 1)`` and ``grad[..., None] * D_k(u)``.

Each is one autograd node that recomputes its few passes from u, where the plain composition
records and keeps some five (N, in, G) tensors per level of differentiation. Both backwards are
built of the two Functions again, so a gradient of any order (a physics-informed loss's Laplacian,
then the step's backward through it) stays within them. ``spline_double_backward`` is every fast
path's backward under ``create_graph=True`` (docs/design/paths.md).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .. import modes
from ..bases import nth_derivative_of

Nth = Callable[[Tensor, int], Tensor]

# Each kernel is one TorchInductor loop on the CPU. A Poisson-2d step (the Laplacian's loss, then
# its backward) on FastKAN([2, 64, 64, 1]) with 1024 points took 0.67x plain-fastkan's time with
# them, 1.24x where autograd took the plain composition (python -m perf.pde_step, with and without
# --no-higher; docs/design/paths.md). FASTKAN_COMPILE=0 keeps them eager, as it does
# fastkan.paths.compiled's kernels; so does COMPILED = False.
COMPILED = os.environ.get("FASTKAN_COMPILE", "1") != "0"
# False: every second derivative differentiates the plain composition, as before these Functions
# existed (python -m perf.pde_step --no-higher compares the two).
ENABLED = True
# At or below this many values (N x in x G) a compiled call's fixed cost outweighs its gain.
EAGER_VALUES = 1 << 14
_LOG = logging.getLogger("fastkan")
_KERNELS: dict = {}
_broken: list[str] = []


def _values(u: Tensor, grid: Tensor, inv_h: Tensor, nth: Nth, k: int) -> Tensor:
    """D_k(u): (N, in) -> (N, in, G)."""
    out = nth((u[..., None] - grid) * inv_h, k)
    return out if k == 0 else out.mul_(inv_h**k)


def _contracted(u: Tensor, m: Tensor, grid: Tensor, inv_h: Tensor, nth: Nth, k: int) -> Tensor:
    """(D_k(u) * m).sum(-1): (N, in)."""
    return _values(u, grid, inv_h, nth, k).mul_(m).sum(-1)


def _kernel(which, nth: Nth, k: int, dtype: torch.dtype):
    """``which`` (``_values`` or ``_contracted``) for this basis, order and dtype, compiled with its own
    code object (``modes.own_code``) and tried once; None where that fails."""
    key = (which, nth, k, dtype, torch.get_num_threads())
    if key not in _KERNELS:
        _LOG.log(
            logging.INFO if _KERNELS else logging.WARNING,
            "fastkan: compiling CPU kernels for derivatives of order %d (seconds, once per process; "
            "FASTKAN_COMPILE=0 turns it off)",
            k,
        )
        fn = modes.own_code(which)
        compiled = torch.compile(lambda *a: fn(*a, nth, k), dynamic=True, fullgraph=True)
        u, grid = torch.randn(3, 5, dtype=dtype), torch.linspace(-1, 1, 4, dtype=dtype)
        args = (u, torch.randn(3, 5, 4, dtype=dtype)) if which is _contracted else (u,)
        try:
            with torch.no_grad():
                compiled(*args, grid, torch.tensor(1.5, dtype=dtype))
        except Exception as e:  # whatever the compiler's failure, the eager functions work
            _broken.append(f"{type(e).__name__}: {e}")
            warnings.warn(f"fastkan takes its derivatives eagerly: {_broken[0][:500]}", RuntimeWarning, stacklevel=2)
            compiled = None
        _KERNELS[key] = compiled
    return _KERNELS[key]


def _run(which, u: Tensor, tensors: tuple, grid: Tensor, h: Tensor, nth: Nth, k: int) -> Tensor:
    """``which(u, *tensors, grid, 1 / h, nth, k)`` on detached tensors, compiled where it pays."""
    u, tensors, grid, inv_h = u.detach(), tuple(t.detach() for t in tensors), grid.detach(), 1.0 / h.detach()
    fast = (
        COMPILED
        and not _broken
        and u.device.type == "cpu"
        and u.numel() * grid.numel() > EAGER_VALUES
        and not modes.is_compiling()
    )
    kernel = _kernel(which, nth, k, u.dtype) if fast else None
    with torch.no_grad():
        if kernel is not None:
            return kernel(u, *tensors, grid, inv_h)
        return which(u, *tensors, grid, inv_h, nth, k)


class _Derivative(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: Tensor, grid: Tensor, h: Tensor, nth: Nth, k: int) -> Tensor:
        ctx.save_for_backward(u, grid, h)
        ctx.nth, ctx.k = nth, k
        return _run(_values, u, (), grid, h, nth, k)

    @staticmethod
    def backward(ctx, grad: Tensor):
        u, grid, h = ctx.saved_tensors
        return contract(u, grad, grid, h, ctx.nth, ctx.k + 1), None, None, None, None


class _Contract(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: Tensor, m: Tensor, grid: Tensor, h: Tensor, nth: Nth, k: int) -> Tensor:
        ctx.save_for_backward(u, m, grid, h)
        ctx.nth, ctx.k = nth, k
        return _run(_contracted, u, (m,), grid, h, nth, k)

    @staticmethod
    def backward(ctx, grad: Tensor):
        u, m, grid, h = ctx.saved_tensors
        need_u, need_m = ctx.needs_input_grad[:2]
        grad_u = grad * contract(u, m, grid, h, ctx.nth, ctx.k + 1) if need_u else None
        grad_m = grad[..., None] * derivative(u, grid, h, ctx.nth, ctx.k) if need_m else None
        return grad_u, grad_m, None, None, None, None


def derivative(u: Tensor, grid: Tensor, h: Tensor, nth: Nth, k: int = 0) -> Tensor:
    """D_k(u) (N, in) -> (N, in, G), differentiable to any order in u (grid and h taken as constants)."""
    return _Derivative.apply(u, grid, h, nth, k)


def contract(u: Tensor, m: Tensor, grid: Tensor, h: Tensor, nth: Nth, k: int) -> Tensor:
    """``(D_k(u) * m).sum(-1)`` for m (N, in, G) -> (N, in), differentiable to any order in u and m."""
    return _Contract.apply(u, m, grid, h, nth, k)


def spline(u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, nth: Nth) -> Tensor:
    """``basis(u).flatten(-2) @ weight.T``: (N, in) -> (N, out), differentiable to any order."""
    return torch.nn.functional.linear(derivative(u, grid, h, nth).flatten(-2), weight)


def spline_gradients(
    needs: Sequence[bool], grad_out: Tensor, u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, nth: Nth
) -> tuple[Tensor | None, ...]:
    """The (u, grid, h, weight) gradients of ``spline`` for grad_out (N, out), themselves
    differentiable (under ``torch.enable_grad``); grid and h get none (the caller checks they are frozen)."""
    need_u, _, _, need_w = needs[:4]
    n, in_dim = u.shape
    grad_u = grad_w = None
    with torch.enable_grad():
        if need_w:
            grad_w = grad_out.t().mm(derivative(u, grid, h, nth).reshape(n, -1))
        if need_u:
            grad_u = contract(u, grad_out.mm(weight).view(n, in_dim, -1), grid, h, nth, 1)
    return grad_u, None, None, grad_w


_will_execute = getattr(torch._C, "_will_engine_execute_node", None)


def wanted(ctx) -> tuple[bool, ...]:
    """Which of a Function's inputs the running backward wants a gradient for: ``ctx.needs_input_grad``,
    less those whose node this graph task will not run. A gradient asked of the input alone
    (``torch.autograd.grad(out, x, create_graph=True)``) then builds no weight gradient: on
    kanbench-10m that was a fifth of the grad2 step. The engine cannot answer for a leaf (a weight
    passed as it is) under ``autograd.grad``; such an input counts as wanted."""
    needs = list(ctx.needs_input_grad)
    if _will_execute is not None:
        for i, (node, _) in enumerate(ctx.next_functions):
            if needs[i] and node is not None:
                try:
                    needs[i] = _will_execute(node)
                except RuntimeError:
                    pass
    return tuple(needs)


def _nth(grid: Tensor, h: Tensor, fn: Callable[[Tensor], Tensor]):
    """The basis' ``nth_derivative`` where these Functions can take its derivatives: a frozen grid and width."""
    return None if not ENABLED or grid.requires_grad or h.requires_grad else nth_derivative_of(fn)


def differentiable_spline(u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """``modes.plain_spline``, by these Functions where the basis has them: for a backward's graph
    (not for torch.func or torch.export, which need plain operations)."""
    nth = _nth(grid, h, fn)
    return modes.plain_spline(u, grid, h, weight, fn) if nth is None else spline(u, grid, h, weight, nth)


def spline_double_backward(
    needs: Sequence[bool],
    grad_out: Tensor,
    u: Tensor,
    grid: Tensor,
    h: Tensor,
    weight: Tensor,
    fn: Callable[[Tensor], Tensor],
) -> tuple[Tensor | None, ...]:
    """(u, grid, h, weight) gradients of a fast spline path under ``create_graph=True``: by these
    Functions where the basis has them, else by the plain composition (``modes.differentiate``)."""
    nth = _nth(grid, h, fn)
    if nth is not None:
        return spline_gradients(needs, grad_out, u, grid, h, weight, nth)
    return modes.differentiate(lambda *a: modes.plain_spline(*a, fn), (u, grid, h, weight), needs[:4], grad_out)


def double_backward(ctx, grad_out: Tensor, fn: Callable[[Tensor], Tensor], extra: int) -> tuple[Tensor | None, ...]:
    """A fast path's backward under ``create_graph=True``, for a Function whose inputs are (u, grid, h,
    weight) and ``extra`` more, and whose saved tensors begin with those four."""
    u, grid, h, weight = ctx.saved_tensors[:4]
    return (*spline_double_backward(wanted(ctx), grad_out, u, grid, h, weight, fn), *(None,) * extra)
