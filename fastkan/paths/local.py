"""The spline path of a compact basis on a uniform grid, from the bumps that are not zero.

A basis with compact support (``|d| < radius``: 2 for ``bspline``, 1 for ``hat`` and
``wendland``) is zero at all but ``K = ceil(2 * radius * h / spacing)`` centres around
each input. Where the grid has at least 2K and 16 centres (``LOCAL_RATIO``, ``LOCAL_GRID``),
the layer evaluates the basis on those K distances per input only, (N, in, K), and then either

- scatters them into the (N, in * G) basis, multiplied by the weight as in the dense
  path; backward rebuilds them and takes the input gradient through the basis' registered
  derivative, so only the inputs are kept (``_Scattered``): the basis function runs on K / G
  of the values; or
- multiplies them with the weight columns they select by ``F.embedding_bag`` (a sparse
  product: K / G of the multiply-adds), where many centres per candidate and many outputs
  pay for its fixed costs (a transposed copy of the weight per call, kept for backward,
  and a sorting backward).

In the second, autograd differentiates the K values (and keeps what it needs for that). Either
way the gradients are the plain composition's. Measured forward + backward of one layer, 256
inputs, batch 256, 1 thread (this project's CPU, torch 2.13), against the dense fused path:
``bspline`` with 256 outputs at G = 16 took 27 against 35 ms (scattered), at G = 64 64 against
143 (embedding_bag); with one output at G = 64 13 against 38 (scattered); ``hat`` with 256 outputs
at G = 16 22 against 24 (scattered), at G = 32 26 against 46 (embedding_bag). There is no double
backward: build the layer with ``fused=False`` for higher derivatives, as for ``fastkan.paths.fused``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import modes
from . import higher

# The local path needs at least this many centres per candidate (G >= LOCAL_RATIO * K) and at least
# LOCAL_GRID centres: with 8, the suite measured hat and wendland (K = 2) slower than the dense path
# (grid-8: 1.19x and 1.26x the Gaussian layer's time, against 1.12x and 1.20x;
# docs/results/compact-bases.md) ...
LOCAL_RATIO = 2
LOCAL_GRID = 16
# ... and the sparse product (embedding_bag) this many, with at least SPARSE_OUTPUTS outputs and
# SPARSE_ROWS rows: below, its fixed costs exceed what it saves over the scattered basis.
SPARSE_RATIO = 16
SPARSE_OUTPUTS = 64
SPARSE_ROWS = 64
# Grids whose centres are this close to linspace (relative to the spacing) count as uniform.
_UNIFORM = 1e-5


def uniform_grid(grid: Tensor) -> tuple[float, float] | None:
    """``(first centre, spacing)`` of a uniform grid of at least two centres, else None."""
    values = grid.tolist()
    g = len(values)
    if g < 2:
        return None
    start, spacing = values[0], (values[-1] - values[0]) / (g - 1)
    if not spacing > 0 or any(abs(v - start - i * spacing) > _UNIFORM * spacing for i, v in enumerate(values)):
        return None
    return start, spacing


def candidates(radius: float, h: float, spacing: float) -> int:
    """Centres an input can be within ``radius * h`` of, on a grid of that spacing.

    A width within a millionth above a whole number of spacings (float32 stores an ``h`` of one
    spacing as 1.0000001 spacings) counts as that number: what an input can miss then is a bump
    within a millionth of its support's edge (for ``hat``, at most 1e-6 of its weight).
    """
    return math.ceil(2.0 * radius * h / spacing * (1.0 - 1e-6))


class Geometry(NamedTuple):
    """A frozen uniform grid as the local path needs it."""

    start: float  # the first centre
    spacing: float
    h: float  # the bumps' width
    g: int  # centres
    k: int  # candidates per input
    radius: float  # the support's radius, in centres


def _geometry(grid: Tensor, h: Tensor, radius: float) -> Geometry | None:
    """The geometry of a grid of bumps of width ``h`` and support ``radius``, or None where it is not uniform."""
    found = uniform_grid(grid)
    if found is None:
        return None
    (start, spacing), h = found, float(h)
    return Geometry(start, spacing, h, grid.numel(), candidates(radius, h, spacing), radius * h / spacing)


def plan(u: Tensor, basis) -> Geometry | None:
    """The grid's geometry where a call on u (N, in) takes the local path (CPU, a frozen uniform
    grid, K well below G), else None."""
    radius = getattr(basis, "support", None)  # None also for a RadialBasis pickled before bases had supports
    # Backward takes the input gradient through the registered derivative. Half precisions hold
    # centre numbers exactly only up to 256 (bfloat16): they keep the dense path.
    if (
        radius is None
        or basis.derivative is None
        or u.device.type != "cpu"
        or u.dtype not in (torch.float32, torch.float64)
        or modes.is_compiling()
    ):
        return None
    grid, h = basis.tensors()
    if grid.numel() < LOCAL_GRID or grid.requires_grad or h.requires_grad:
        return None
    geometry = _geometry(grid, h, radius)
    return geometry if geometry is not None and geometry.g >= LOCAL_RATIO * geometry.k else None


def _candidates(u: Tensor, geometry: Geometry, grid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(d, inside, cols)``: the scaled distances (N, in, K) from u (N, in) to its candidate centres,
    whether each candidate is a centre of the grid, and its weight column (N, in * K).

    The candidates come from the uniform geometry; their distances from the grid's own values, which
    a grid made in float32 and cast to float64 holds up to 1e-7 relative off uniform (as much again
    in d, and as the plain composition computes it)."""
    start, spacing, h, g, k, radius = geometry
    n, in_dim = u.shape
    # Centre numbers; clamped just beyond the candidates of any centre, where every bump is zero
    # (and so is its gradient), so that an infinite input gives finite distances.
    s = ((u - start) / spacing).clamp(-radius - 1.0, g - 1 + radius + 1.0)
    first = torch.floor(s.detach() - radius) + 1.0
    c = first[..., None] + torch.arange(k, dtype=u.dtype)  # (N, in, K)
    inside = (c >= 0) & (c < g)  # candidates beyond the grid have no centre
    # where(): a NaN input gives a NaN centre number, which must not become an index.
    index = torch.where(inside, c, 0).long()
    cols = (index + torch.arange(0, in_dim * g, g)[:, None]).view(n, in_dim * k)
    u = u.clamp(start - (radius + 1.0) * spacing, start + (g - 1 + radius + 1.0) * spacing)
    return (u[..., None] - grid[index]) / h, inside, cols


def _double_backward(ctx, grad_out: Tensor, u: Tensor, weight: Tensor) -> tuple:
    """(u, weight, basis, geometry) gradients of the plain composition, with their graph."""
    grid, h = ctx.basis.tensors()
    wanted = higher.wanted(ctx)
    needs = (wanted[0], False, False, wanted[1])
    grad_u, _, _, grad_w = higher.spline_double_backward(needs, grad_out, u, grid, h, weight, ctx.basis.fn)
    return grad_u, grad_w, None, None


class _Scattered(torch.autograd.Function):
    """``B @ weight.T`` with B (N, in * G) zero but for the K candidates' basis values of each input.

    Only u is kept: backward rebuilds the candidates (a pass over N * in * K values) and B, and takes
    the input gradient through the basis' registered derivative.
    """

    @staticmethod
    def forward(ctx, u: Tensor, weight: Tensor, basis, geometry: Geometry) -> Tensor:
        d, inside, cols = _candidates(u, geometry, basis.tensors()[0].detach())
        ctx.basis, ctx.geometry = basis, geometry
        ctx.save_for_backward(u, weight)
        return _scatter(basis.fn(d) * inside, cols, weight.shape[1]) @ weight.t()

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        u, weight = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a gradient that can be differentiated again
            return _double_backward(ctx, grad_out, u, weight)
        need_u, need_w = ctx.needs_input_grad[:2]
        basis, h = ctx.basis, ctx.geometry.h
        d, inside, cols = _candidates(u, ctx.geometry, ctx.basis.tensors()[0].detach())
        phi = basis.fn(d)
        grad_w = grad_out.t() @ _scatter(phi * inside, cols, weight.shape[1]) if need_w else None
        grad_u = None
        if need_u:
            # d = (u - centre) / h: each candidate's share of the gradient, summed over the K of them.
            grad_phi = torch.gather(grad_out @ weight, 1, cols).view_as(d)
            grad_u = (grad_phi * basis.derivative(d, phi) * inside).sum(-1).div_(h)
        return grad_u, grad_w, None, None


def _scatter(phi: Tensor, cols: Tensor, width: int) -> Tensor:
    """phi (N, in, K) into a zero (N, width) at columns cols (N, in * K); adding, since a candidate
    beyond the grid (value 0) shares its column with a real one."""
    return phi.new_zeros(phi.shape[0], width).scatter_add_(1, cols, phi.view_as(cols))


def local_spline(u: Tensor, basis, weight: Tensor, geometry: Geometry | None = None) -> Tensor:
    """``basis(u).flatten(-2) @ weight.T`` for u (N, in), weight (out, in * G) -> (N, out), from the K
    candidate centres of each input; ``basis`` has a ``support``, a ``derivative`` and a frozen uniform
    grid, whose ``geometry`` (from ``plan``) is found again where not given."""
    geometry = geometry or _geometry(*basis.tensors(), basis.support)
    n, k, g = u.shape[0], geometry.k, geometry.g
    if g >= SPARSE_RATIO * k and weight.shape[0] >= SPARSE_OUTPUTS and n >= SPARSE_ROWS:
        return _Sparse.apply(u, weight, basis, geometry)
    return _Scattered.apply(u, weight, basis, geometry)


def _sparse(u: Tensor, weight: Tensor, basis, geometry: Geometry) -> Tensor:
    d, inside, cols = _candidates(u, geometry, basis.tensors()[0].detach())
    phi = (basis.fn(d) * inside).view_as(cols)
    return F.embedding_bag(cols, weight.t().contiguous(), per_sample_weights=phi, mode="sum")


class _Sparse(torch.autograd.Function):
    """``_sparse``: autograd through the K values, whose embedding_bag backward is what saves the time
    here, on an inner graph; a second derivative (which embedding_bag's backward lacks) differentiates
    the plain composition instead."""

    @staticmethod
    def forward(ctx, u: Tensor, weight: Tensor, basis, geometry: Geometry) -> Tensor:
        ctx.basis = basis
        ctx.save_for_backward(u, weight)
        with torch.enable_grad():
            ctx.inner = (
                u.detach().requires_grad_(ctx.needs_input_grad[0]),
                weight.detach().requires_grad_(ctx.needs_input_grad[1]),
            )
            ctx.out = _sparse(*ctx.inner, basis, geometry)
        return ctx.out.detach()

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        u, weight = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a gradient that can be differentiated again
            return _double_backward(ctx, grad_out, u, weight)
        wanted = [x for x in ctx.inner if x.requires_grad]
        # retain_graph: a caller may run this backward again (retain_graph=True, gradcheck).
        grads = iter(torch.autograd.grad(ctx.out, wanted, grad_out, retain_graph=True) if wanted else ())
        return (*(next(grads) if x.requires_grad else None for x in (u, weight)), None, None)
