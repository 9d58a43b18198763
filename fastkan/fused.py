"""The spline path ``basis(u).flatten(-2) @ weight.T`` without the basis tensor.

The plain composition allocates several (N, in, G) tensors in the forward
pass and keeps them for backward, which is what makes KANs slow and heavy.
Here the basis is built one cache-sized block of input features at a time
and multiplied straight away; backward recomputes each block, so only the
inputs are saved. Any registered basis works: its derivative comes from
autograd on the block.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Basis values per block: small enough to stay in a core's L2 cache.
BLOCK_ELEMENTS = 1 << 16


def _blocks(n: int, in_dim: int, num_grids: int):
    step = max(1, BLOCK_ELEMENTS // max(1, n * num_grids))
    for start in range(0, in_dim, step):
        yield start, min(in_dim, start + step)


class _FusedSpline(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, fn) -> Tensor:
        n, in_dim = u.shape
        g = grid.numel()
        w = weight.view(weight.shape[0], in_dim, g)
        inv_h = 1.0 / h
        us, gs = u * inv_h, grid * inv_h
        out = u.new_zeros(n, weight.shape[0])
        for a, b in _blocks(n, in_dim, g):
            phi = fn(us[:, a:b, None] - gs).reshape(n, (b - a) * g)
            out.addmm_(phi, w[:, a:b].reshape(-1, (b - a) * g).t())
        ctx.fn = fn
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
        w = weight.view(weight.shape[0], in_dim, g)
        need_u, need_grid, need_h, need_w = ctx.needs_input_grad[:4]
        inv_h = 1.0 / h
        us, gs = u * inv_h, grid * inv_h
        grad_u = torch.empty_like(u) if need_u else None
        grad_w = torch.empty_like(w) if need_w else None
        # dL/dd summed over the batch and inputs (grid) and weighted by d (width).
        sum_gd = grid.new_zeros(g) if need_grid else None
        sum_gd_d = h.new_zeros(()) if need_h else None
        for a, b in _blocks(n, in_dim, g):
            with torch.enable_grad():
                d = (us[:, a:b, None] - gs).detach().requires_grad_()
                phi = ctx.fn(d)
            if need_w:
                grad_w[:, a:b] = (grad_out.t() @ phi.detach().reshape(n, -1)).view(-1, b - a, g)
            if need_u or need_grid or need_h:
                grad_phi = (grad_out @ w[:, a:b].reshape(-1, (b - a) * g)).view(n, b - a, g)
                (grad_d,) = torch.autograd.grad(phi, d, grad_phi)
                if need_u:
                    grad_u[:, a:b] = grad_d.sum(-1) * inv_h
                if need_grid:
                    sum_gd -= grad_d.sum((0, 1))
                if need_h:
                    sum_gd_d -= (grad_d * d.detach()).sum()
        grad_grid = sum_gd * inv_h if need_grid else None
        grad_h = sum_gd_d * inv_h if need_h else None
        grad_w = grad_w.view_as(weight) if need_w else None
        return grad_u, grad_grid, grad_h, grad_w, None


def fused_spline(u: Tensor, basis, weight: Tensor) -> Tensor:
    """``basis(u).flatten(-2) @ weight.T`` for u (N, in), weight (out, in*G) -> (N, out)."""
    return _FusedSpline.apply(u, basis.grid, basis.denominator, weight, basis.fn)
