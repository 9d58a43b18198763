"""The spline path of large batches: the basis built block by block of rows.

``fastkan.paths.fused`` blocks the basis by input features: each block's product adds into the
whole (out, N) result, which a large batch makes large (batch-4096's first layer: 4 MiB,
re-read and re-written by each of its 32 blocks), and its backward rebuilds the basis
whole or in blocks of that shape. Here a block is R whole rows of the batch with every
input feature, laid out (R, G, in): each step of building it is one contiguous pass, as
in fused's one-output Function, and the weight's columns are permuted to that order once per
call (an (out, in * G) copy, smaller than the basis where the batch exceeds the outputs).
Forward writes each block's rows of the output once, with one product over all inputs;
backward adds each block's share of the weight gradient and computes the block's input
gradient from its own rows, in buffers of one block. Only the inputs are saved.

Taken on the CPU, in eager mode, for bases of ``-d**2`` with their derivative on a
frozen grid (``fastkan.paths.common.neg_square_backward``), a basis too large to keep
(``fastkan.paths.fused.KEEP_BASIS_BYTES``), more rows than outputs, at least as many rows as basis values
per row (``BATCH_PER_COLUMN``) and at least two blocks of rows.
On batch-4096 ([256, 256, 1], 8 centres, 1 thread; docs/results/large-batches.md),
``lean-fastkan`` went from 1.19x to 0.98x flashkan's forward + backward time in the suite's
goals, and the default layer's peak backward bytes from 94 to 20 MB; no other configuration
of the matrix takes this path.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from .. import modes
from . import common, higher

# Basis values per block of rows and torch thread: 2 MiB in float32. On batch-4096's first layer,
# alternating, 21 rounds: 2**18 to 2**21 timed within the noise of one another (medians 1.09x,
# 1.03x, 1.04x and 0.99x flashkan's time; each interval about +-15%).
BLOCK_ELEMENTS = 1 << 19

# Each block of rows reads the whole (out, in * G) weight; each block of features (fastkan.paths.fused)
# reads and writes the whole (out, N) result: per call their traffic differs by (in * G) / N. Rows
# are taken where the batch has at least BATCH_PER_COLUMN times as many rows as each row has basis
# values. Forward + backward, rows against feature blocks, lean-fastkan, 1 thread, alternating, 11
# rounds: [256, 256, 1] at batch 1024 1.05x the time, 2048 0.95x, 8192 0.60x; [128, 128, 1] at 2048
# 0.92x; [64, 512, 1] at 4096 0.78x; and below the line [784, 64, 10] at 256 1.20x, at 1024 1.01x,
# [1000, 1000, 1] at 2000 1.10x.
BATCH_PER_COLUMN = 1.0


def _rows(in_dim: int, num_grids: int) -> int:
    """Rows of the batch per block."""
    return max(1, BLOCK_ELEMENTS * torch.get_num_threads() // (in_dim * num_grids))


def takes(u: Tensor, basis, weight: Tensor, keep_bytes: int) -> bool:
    """Whether a call on u (N, in) with this weight (out, in * G) takes the row blocks."""
    n, in_dim = u.shape
    g = basis.grid.numel()
    return (
        u.device.type == "cpu"
        and not modes.is_compiling()
        and 1 < weight.shape[0] < n
        and in_dim * g * BATCH_PER_COLUMN <= n
        and n >= 2 * _rows(in_dim, g)
        and not common.keeps(u, g, keep_bytes)
        and common.neg_square_backward(basis, u, *basis.tensors())
    )


class _Blocks:
    """The basis of u, R rows at a time, and the weight with its columns in the basis' order."""

    def __init__(self, u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, basis):
        self.u, self.basis, self._weight = u, basis, weight
        self.k = common.constants(grid, h)  # CPU: inv_h, centre and far are Python numbers
        self.scale = -basis.neg_square_scale * self.k.inv_h * self.k.inv_h
        in_dim, g = u.shape[1], grid.numel()
        self.step = _rows(in_dim, g)
        self.buf = u.new_empty(min(u.shape[0], self.step), g, in_dim)

    @functools.cached_property
    def weight(self) -> Tensor:
        """The weight (out, G * in), copied on first use: a backward without an input gradient needs none."""
        o, g, in_dim = self._weight.shape[0], self.buf.shape[1], self.buf.shape[2]
        return self._weight.reshape(o, in_dim, g).transpose(1, 2).reshape(o, g * in_dim)

    def __iter__(self):
        """(a, b, v, phi): rows a..b, their centred inputs v (R, in) and basis phi (R, G * in)."""
        k, n = self.k, self.u.shape[0]
        for a in range(0, n, self.step):
            b = min(n, a + self.step)
            v = (self.u[a:b] - k.centre).clamp_(-k.far, k.far)
            d = common.scaled_square_(torch.sub(v[:, None, :], k.c[:, None], out=self.buf[: b - a]), self.scale)
            yield a, b, v, self.basis.of_neg_square(d).view(b - a, -1)

    def unpermute(self, grad: Tensor) -> Tensor:
        """A gradient (out, G * in) in the weight's own column order (out, in * G)."""
        o, g, in_dim = grad.shape[0], self.buf.shape[1], self.buf.shape[2]
        return grad.view(o, g, in_dim).transpose(1, 2).reshape(o, in_dim * g)


class _RowBlocks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, basis) -> Tensor:
        blocks = _Blocks(u, grid, h, weight, basis)
        out = u.new_empty(u.shape[0], weight.shape[0])
        for a, b, _, phi in blocks:
            torch.mm(phi, blocks.weight.t(), out=out[a:b])
        ctx.basis = basis
        ctx.save_for_backward(u, grid, h, weight)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if torch.is_grad_enabled():  # create_graph=True: a gradient that can be differentiated again
            return higher.double_backward(ctx, grad_out, ctx.basis.fn, 1)
        u, grid, h, weight = ctx.saved_tensors
        need_u, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[3]
        blocks = _Blocks(u, grid, h, weight, ctx.basis)
        g, in_dim = blocks.buf.shape[1], blocks.buf.shape[2]
        grad_w = u.new_zeros(weight.shape[0], g * in_dim) if need_w else None
        grad_u = torch.empty_like(u) if need_u else None
        q_buf = u.new_empty(blocks.buf.shape[0], g * in_dim) if need_u else None
        for a, b, v, phi in blocks:
            go = grad_out[a:b]
            if need_w:
                grad_w.addmm_(go.t(), phi)
            if need_u:
                # dL/du = (-2 / h**2) (v S1 - S2), as in fused's backward of -d**2 bases: the rows
                # (2, G) of k.rows sum the output gradient times k' over the centres.
                q = torch.mm(go, blocks.weight, out=q_buf[: b - a])
                q.mul_(ctx.basis.of_neg_square_derivative(phi))
                common.v_s1_minus_s2(
                    blocks.k.rows,
                    q,
                    v,
                    lambda r, q: torch.matmul(r, q.view(b - a, g, in_dim)),  # noqa: B023 (called at once)
                    dim=1,
                    out=grad_u[a:b],
                    refs=blocks.k.refs,
                )
        return grad_u, None, None, blocks.unpermute(grad_w) if need_w else None, None


def spline(u: Tensor, basis, weight: Tensor) -> Tensor:
    """``basis(u).flatten(-2) @ weight.T`` for u (N, in), weight (out, in * G) -> (N, out)."""
    return _RowBlocks.apply(u, *basis.tensors(), weight, basis)
