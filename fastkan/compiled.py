"""The spline path of one-output layers on the CPU, as TorchInductor kernels: no basis tensor at all.

A layer with one output and a basis of ``-d**2`` on a frozen grid computes
``out[n] = sum over i, k of w[k, i] * basis(-d[n, k, i]**2)``, a plain
reduction: TorchInductor compiles it (and the two reductions of its backward)
into one vectorised loop each, with no (N, in, G) tensor ever written. The
seed-300k forward took 0.34x plain-fastkan's time with it, round by round
(README, "Fastest on every configuration?"). Compiling needs a C++ compiler; where
it fails, the first call warns once and the layer keeps the eager path.
``ENABLED = False`` (or ``FASTKAN_COMPILE=0`` in the environment) always
takes the eager path.
"""

from __future__ import annotations

import os
import types
import warnings

import torch
from torch import Tensor

from . import fused

ENABLED = os.environ.get("FASTKAN_COMPILE", "1") != "0"

# At or below this many basis values per call (batch x inputs x centres) the plain composition is
# faster: each compiled call costs tens of microseconds before it starts. Measured forward +
# backward on [256 -> 1] layers with 8 centres, 1 thread: 32 rows (65536 values) took 1.14x plain's
# time, 64 rows 0.85x, 128 rows 0.49x. fastkan.fused.PLAIN_ELEMENTS, if lower, wins.
PLAIN_ELEMENTS = 1 << 16
_KERNELS: dict = {}
_broken: list[str] = []  # why compiling failed on this machine, once it has


def _reductions(of_neg_square, derivative, scale: float, dtype: torch.dtype):
    """The forward reduction of a basis ``of_neg_square`` (argument ``scale * -d**2``) with that ``derivative``,
    and its two backward ones."""
    # A tensor, not the float: compiled with dynamic=True, a Python number in the closure became a
    # symbolic input, and the seed-300k forward took 12.1 ms against 7.3 ms with the constant.
    scale = torch.tensor(-scale, dtype=dtype)

    def forward(u: Tensor, c: Tensor, inv_h: Tensor, w: Tensor) -> Tensor:
        """u (N, in), c (G,), w (G, in) -> (N,)."""
        d = (u[:, None, :] - c[:, None]) * inv_h
        return (of_neg_square((d * d) * scale) * w).sum((1, 2))

    # Two kernels, not one returning both gradients: one would keep the (N, G, in) basis in a buffer
    # for the two reductions (32 MB for the seed's layer, measured), and took no less time.
    def weight_grad(u: Tensor, c: Tensor, inv_h: Tensor, go: Tensor) -> Tensor:
        """grad_w (G, in) for the output gradient go (N,)."""
        d = (u[:, None, :] - c[:, None]) * inv_h
        return (of_neg_square((d * d) * scale) * go[:, None, None]).sum(0)

    def input_grad(u: Tensor, c: Tensor, inv_h: Tensor, w: Tensor, go: Tensor) -> Tensor:
        """grad_u (N, in) for the output gradient go (N,); u clamped to the grid +- fused._FAR h."""
        d = (u[:, None, :] - c[:, None]) * inv_h
        return (derivative(of_neg_square((d * d) * scale)) * w * d).sum(1) * (go[:, None] * (-2.0 * inv_h))

    return forward, weight_grad, input_grad


def _own_code(fn):
    # Dynamo keeps compiled graphs, and its limit of recompilations, per code object: each basis,
    # dtype and thread count gets its own, so that many of them in one process do not push later
    # ones back to eager.
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def _kernels(basis, dtype: torch.dtype):
    """(forward, weight_grad, input_grad) for this basis and dtype, compiled and tried once on a small input;
    None if that fails."""
    # Inductor builds the torch thread count into its CPU kernels, and nothing would recompile them
    # when it changes: a thread count is part of the key.
    key = (basis.name, dtype, torch.get_num_threads())
    if key not in _KERNELS:
        k = tuple(torch.compile(_own_code(f), dynamic=True, fullgraph=True)
                  for f in _reductions(basis.of_neg_square, basis.of_neg_square_derivative,
                                     basis.neg_square_scale, dtype))
        # Compiled here for symbolic sizes (and without grad, as autograd calls them), so later calls of
        # any size but 0 and 1 reuse the code; a failure surfaces now, in forward, where the eager path
        # can still take over.
        u, c = torch.randn(3, 5, dtype=dtype), torch.linspace(-1, 1, basis.num_grids, dtype=dtype)
        w, inv_h = torch.randn(c.numel(), 5, dtype=dtype), torch.tensor(2.0, dtype=dtype)
        try:
            with torch.no_grad():
                go = torch.randn(3, dtype=dtype)
                k[0](u, c, inv_h, w)
                k[1](u, c, inv_h, go)
                k[2](u, c, inv_h, w, go)
        except Exception as e:  # noqa: BLE001: whatever the compiler's failure, the eager path works
            _broken.append(f"{type(e).__name__}: {e}")
            warnings.warn(f"fastkan could not compile its CPU kernels and takes the eager path: {_broken[0][:500]}",
                          RuntimeWarning, stacklevel=4)
            k = None
        _KERNELS[key] = k
    return _KERNELS[key]


def available(u: Tensor) -> bool:
    """Whether a call on ``u`` may take the compiled kernels (the basis and weight checked by the caller)."""
    # Inside a model the user compiles, the eager path is traced and fused by that compilation.
    return ENABLED and not _broken and u.device.type == "cpu" and not fused._is_compiling()


class OneOutput(torch.autograd.Function):
    """u (N, in), weight (1, in * G) -> (N, 1), through the compiled reductions."""

    @staticmethod
    def forward(ctx, u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, kernels) -> Tensor:
        w = weight.view(u.shape[1], grid.numel()).t().contiguous()
        ctx.kernels = kernels
        ctx.save_for_backward(u, grid, h, weight)
        # detach(): a Parameter would be compiled for its own type and fixed size.
        return kernels[0](u.detach(), grid.detach(), 1.0 / h, w)[:, None]

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        fused._refuse_double_backward()
        u, grid, h, weight = ctx.saved_tensors
        in_dim, g = u.shape[1], grid.numel()
        go, c, inv_h = grad_out[:, 0].contiguous(), grid.detach(), 1.0 / h
        need_u, _, _, need_w = ctx.needs_input_grad[:4]
        grad_u = grad_w = None
        if need_w:
            grad_w = ctx.kernels[1](u.detach(), c, inv_h, go).t().reshape(1, in_dim * g)
        if need_u:
            # As in fastkan.fused: an infinite d**2 would give a capped basis value times an unbounded d.
            # Forward needs no clamp (an infinite d**2 gives the capped value either way), and clamping
            # every d there cost it a quarter of its time.
            far = float(fused._FAR * h)  # this path runs on the CPU only: reading h costs nothing
            v = u.clamp(float(grid.min()) - far, float(grid.max()) + far)
            grad_u = ctx.kernels[2](v, c, inv_h, weight.view(in_dim, g).t().contiguous(), go)
        return grad_u, None, None, grad_w, None


def one_output(u: Tensor, basis, weight: Tensor) -> Tensor | None:
    """The compiled one-output spline (N, 1), or None where this machine cannot compile it."""
    kernels = _kernels(basis, u.dtype)
    return None if kernels is None else OneOutput.apply(u, basis.grid, basis.denominator, weight, kernels)
