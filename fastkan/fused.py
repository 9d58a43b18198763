"""The spline path ``basis(u).flatten(-2) @ weight.T`` without the basis tensor.

The plain composition allocates several (N, in, G) tensors in the forward
pass and keeps them for backward, which is what makes KANs slow and heavy.
Here the basis is built one cache-sized block of input features at a time
and multiplied straight away; backward recomputes each block, so only the
inputs are saved. Any registered basis works: its derivative is the one
registered with it, else autograd on the block.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Basis values per block (512 KiB in float32): measured fastest of 2**15..2**18
# on seed-300k and kanbench-10m; small enough to stay in a core's L2 cache.
BLOCK_ELEMENTS = 1 << 17


def _step(n: int, in_dim: int, num_grids: int) -> int:
    return min(in_dim, max(1, BLOCK_ELEMENTS // max(1, n * num_grids)))


def _blocks(in_dim: int, step: int):
    for start in range(0, in_dim, step):
        yield start, min(in_dim, start + step)


# |u - centre| / h beyond which no bump is distinguishable from its tail;
# clamping there keeps (u / h)**2 finite in float32.
_FAR = 1e6


class _Distances:
    """``d = (u - grid) / h``, or its square, block by block as small matrix products.

    A broadcast subtraction with an inner dimension of G elements runs several
    times slower than a (N * block, 2) @ (2, G) product, which also lays ``d``
    out as the (N, block * G) matrix that the spline weight multiplies. With
    ``square``, rows (u'^2, u', 1) against (1, -2c', c'^2) give ``d**2`` in the
    same single pass, for bases that are functions of ``d**2``. Centring on the
    grid's middle keeps that sum's cancellation error near eps * G**2 where a
    bump is not negligible. The left operand is kept transposed, rows of
    (N * block), so filling it is a plain copy.
    """

    def __init__(self, u: Tensor, grid: Tensor, h: Tensor, step: int, square: bool = False):
        self.inv_h = 1.0 / h
        centre = grid.mean()
        us = (u - centre) * self.inv_h
        cs = (grid - centre) * self.inv_h
        if square:
            us = us.clamp(-_FAR, _FAR)
            self.rows, cols = [us * us, us], [torch.ones_like(cs), -2.0 * cs, cs * cs]
        else:
            self.rows, cols = [us], [torch.ones_like(cs), -cs]
        self.n = u.shape[0]
        self.xt = u.new_empty(len(self.rows) + 1, self.n * step)
        self.xt[-1].fill_(1.0)
        self.y = torch.stack(cols)  # (rows + 1, G)

    def block(self, a: int, b: int) -> Tensor:
        xt = self.xt[:, : self.n * (b - a)]
        for row, values in zip(xt, self.rows):
            row.view(self.n, b - a).copy_(values[:, a:b])
        return torch.mm(xt.t(), self.y).view(self.n, (b - a) * self.y.shape[1])


class _FusedSpline(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, fn, derivative, of_square) -> Tensor:
        n, in_dim = u.shape
        g = grid.numel()
        step = _step(n, in_dim, g)
        # Half precisions would lose the small d**2 in the large terms of its sum.
        square = of_square is not None and u.dtype in (torch.float32, torch.float64)
        dist = _Distances(u, grid, h, step, square)
        basis = of_square if square else fn
        out = u.new_zeros(n, weight.shape[0])
        for a, b in _blocks(in_dim, step):
            out.addmm_(basis(dist.block(a, b)), weight[:, a * g : b * g].t())
        ctx.fn, ctx.derivative = fn, derivative
        ctx.save_for_backward(u, grid, h, weight)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if torch.is_grad_enabled():
            # A graph of this backward would silently miss the basis' second derivative.
            raise RuntimeError(
                "the fused FastKAN spline path has no double backward (create_graph=True); "
                "build the layer with fused=False for higher derivatives"
            )
        u, grid, h, weight = ctx.saved_tensors
        n, in_dim = u.shape
        g = grid.numel()
        need_u, need_grid, need_h, need_w = ctx.needs_input_grad[:4]
        step = _step(n, in_dim, g)
        dist = _Distances(u, grid, h, step)
        inv_h = dist.inv_h
        grad_u = torch.empty_like(u) if need_u else None
        grad_w = torch.empty_like(weight) if need_w else None
        # Column blocks of grad_w are strided writes; when the weight has at
        # least as many rows as the batch, one product over all basis values
        # (a temporary no larger than grad_w) is much faster.
        phis = u.new_empty(n, in_dim * g) if need_w and n <= weight.shape[0] else None
        # dL/dd summed over batch and inputs per centre (grid), and weighted by d (width).
        sum_gd = grid.new_zeros(g) if need_grid else None
        sum_gd_d = h.new_zeros(()) if need_h else None
        ones_g = grid.new_ones(g)
        for a, b in _blocks(in_dim, step):
            cols = slice(a * g, b * g)
            d = dist.block(a, b)  # (N, block * G)
            if ctx.derivative is None:
                with torch.enable_grad():
                    d.requires_grad_()
                    phi = ctx.fn(d)
            else:
                phi = ctx.fn(d)
            if phis is not None:
                phis[:, cols] = phi.detach()
            elif need_w:
                grad_w[:, cols] = grad_out.t() @ phi.detach()
            if not (need_u or need_grid or need_h):
                continue
            single = weight.shape[0] == 1 and ctx.derivative is not None and not (need_grid or need_h)
            if single:
                # One output: dL/dd = grad_out[n] * w[k] * phi'(d), so grad_out can be applied
                # after the sum over the centres, on a G times smaller tensor.
                grad_d = ctx.derivative(d, phi).mul_(weight[:, cols])
            elif ctx.derivative is None:
                (grad_d,) = torch.autograd.grad(phi, d, grad_out @ weight[:, cols])
                d = d.detach()
            else:
                grad_d = (grad_out @ weight[:, cols]).mul_(ctx.derivative(d, phi))
            rows = grad_d.view(n * (b - a), g)
            if need_u:
                grad_u[:, a:b] = torch.mv(rows, ones_g).view(n, b - a).mul_(grad_out if single else 1.0).mul_(inv_h)
            if need_grid:
                sum_gd -= rows.sum(0)
            if need_h:
                sum_gd_d -= torch.dot(grad_d.view(-1), d.view(-1))
        if phis is not None:
            torch.mm(grad_out.t(), phis, out=grad_w)
        grad_grid = sum_gd * inv_h if need_grid else None
        grad_h = sum_gd_d * inv_h if need_h else None
        return grad_u, grad_grid, grad_h, grad_w, None, None, None


def fused_spline(u: Tensor, basis, weight: Tensor) -> Tensor:
    """``basis(u).flatten(-2) @ weight.T`` for u (N, in), weight (out, in*G) -> (N, out)."""
    if u.shape[0] == 0:
        return u.new_zeros(0, weight.shape[0]) + 0 * weight.sum()  # keeps the graph for empty batches
    return _FusedSpline.apply(u, basis.grid, basis.denominator, weight, basis.fn, basis.derivative, basis.of_square)
