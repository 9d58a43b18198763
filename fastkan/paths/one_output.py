"""The fused blocks' layout for a layer with one output: the basis centre-major, (G, N, block).

``fastkan.paths.fused`` takes it for one-output layers of a basis of ``-d**2`` on a frozen grid,
and ``fastkan.paths.compiled``'s operator falls back to its backward where its kernels do not
compile. Its autograd node is the fused blocks' (``fastkan.explain.PATHS``).
"""

from __future__ import annotations

import types

import torch
from torch import Tensor

from . import common, higher


class _OneOutput(torch.autograd.Function):
    """The spline path of a layer with one output, for bases of ``-d**2`` on a frozen grid.

    The basis is laid out centre-major, (G, N, block): each step of building
    it is one contiguous pass (a broadcast subtraction, a square, the basis),
    and the product with the weight is G matrix-vector products. In the
    input-major layout (see ``Distances``) the subtraction broadcasts
    over an innermost dimension of only G and is several times slower.
    """

    @staticmethod
    def forward(ctx, u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, basis, keep_bytes: int) -> Tensor:
        n, in_dim = u.shape
        g = grid.numel()
        keep = common.keeps(u, g, keep_bytes)
        step = common.inputs_per_block(n, in_dim, g, keep)
        cols = common.Distances(u, grid, h, step, True, "centre", basis.neg_square_scale)
        out = u.new_zeros(n)
        phi = None
        for a, b in common.feature_blocks(in_dim, cols.step):
            phi = basis.of_neg_square(cols.block(a, b)[0])
            w = weight[0, a * g : b * g].view(b - a, g)
            for k in range(g):
                out.addmv_(phi[k], w[:, k])
        ctx.basis = basis
        ctx.save_for_backward(u, grid, h, weight, phi if keep else None)
        return out[:, None]

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if torch.is_grad_enabled():  # create_graph=True: a gradient that can be differentiated again
            return higher.double_backward(ctx, grad_out, ctx.basis.fn, 2)
        u, grid, h, weight, kept = ctx.saved_tensors
        need_u, _, _, need_w = ctx.needs_input_grad[:4]
        n, in_dim = u.shape
        g = grid.numel()
        step = common.inputs_per_block(n, in_dim, g, kept is not None)
        cols = common.Distances(u, grid, h, step, True, "centre", ctx.basis.neg_square_scale)
        go = grad_out[:, 0]
        sums = cols.rows
        grad_u = torch.empty_like(u) if need_u else None
        grad_w = torch.empty_like(weight) if need_w else None
        for a, b in common.feature_blocks(in_dim, cols.step):
            phi = kept if kept is not None else ctx.basis.of_neg_square(cols.block(a, b)[0])
            if need_w:
                # One batched product, (N,) @ (G, N, block): torch.mv into strided columns of grad_w
                # would not trace in a model the user compiles.
                grad_w[0, a * g : b * g].view(b - a, g).copy_(torch.matmul(go, phi).t())
            if need_u:
                # (G, block), contiguous: multiplying by the strided view took twice the time.
                w = weight[0, a * g : b * g].view(b - a, g).t().contiguous()
                q = torch.mul(ctx.basis.of_neg_square_derivative(phi), w[:, None, :])
                grad_u[:, a:b] = common.v_s1_minus_s2(
                    sums,
                    q,
                    cols.values(a, b),
                    lambda r, q: torch.mm(r, q.view(g, -1)).view(-1, n, b - a),  # noqa: B023 (called at once)
                    refs=cols.refs,
                )
                grad_u[:, a:b] *= go[:, None]
        return grad_u, None, None, grad_w, None, None


def one_output_backward(grad_out: Tensor, u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, basis, needs) -> tuple:
    """(grad_u, grad_w) of ``_OneOutput`` for grad_out (N, 1), outside autograd: for fastkan.paths.compiled's
    operator where its kernels could not compile; ``needs`` = (need_u, need_w)."""
    ctx = types.SimpleNamespace(
        saved_tensors=(u, grid, h, weight, None), needs_input_grad=(needs[0], False, False, needs[1]), basis=basis
    )
    with torch.no_grad():
        grads = _OneOutput.backward(ctx, grad_out)
    return grads[0], grads[3]


def one_output_spline(u: Tensor, basis, weight: Tensor, keep_bytes: int) -> Tensor:
    """``basis(u).flatten(-2) @ weight.T`` for u (N, in), weight (1, in * G) -> (N, 1); a basis of at
    most ``keep_bytes`` is kept for backward."""
    return _OneOutput.apply(u, *basis.tensors(), weight, basis, keep_bytes)
