"""The spline path ``basis(u).flatten(-2) @ weight.T`` without the basis tensor.

The plain composition allocates several (N, in, G) tensors in the forward
pass and keeps them for backward, which is what makes KANs slow and heavy.
Here the basis is built one cache-sized block of input features at a time
and multiplied straight away; backward recomputes each block, so only the
inputs are saved (a basis of at most ``KEEP_BASIS_BYTES`` is built in one
block and kept instead). Any registered basis works: its derivative is the one
registered with it, else autograd on the block. A layer with several outputs
lays the basis out feature-major or input-major (``fastkan.paths.common.Distances``,
``_feature_major``). A layer with one output and a basis of ``-d**2`` on a frozen grid takes
``fastkan.paths.compiled``'s kernels on the CPU where they compile, and otherwise lays the basis
out centre-major (``fastkan.paths.one_output``). A batch larger than the outputs and than the basis
values per row takes ``fastkan.paths.rows``, which blocks the basis by rows instead.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import common, higher
from .one_output import one_output_spline

# Below this many bytes of basis values per layer call, forward keeps the basis for backward
# instead of rebuilding it there (with the centred inputs, 1 / G as many bytes, where the input
# needs a gradient): at mnist's sizes rebuilding cost more time than the bytes are worth. Set it
# to 0 to always recompute (least memory), or pass keep_basis_bytes to a layer.
KEEP_BASIS_BYTES = 2 << 20

# At or below this many basis values per layer call (batch x inputs x centres), the layer
# takes fastkan.paths.small (or the plain composition): their few operations cost less than the fused
# path's fixed set-up. Measured round by round against plain-fastkan on this project's 2-core CPU:
# at [256, 256, 1] with 4 centres (262144 values) the kept-basis path took 1.04x plain's time,
# at 8 centres 0.92x. With fastkan.paths.small, 1 << 20 measured no better (mnist 1.03x the time, grid-16
# 0.96x, grid-8 and batch-256 ties), nor 1 << 19 with LayerNorm in its node (mnist 1.03x, grid-8 and
# batch-256 0.99x), and both keep more bytes. 0 always takes the fused path.
PLAIN_ELEMENTS = 1 << 18

# Up to this many bytes of basis values per call, backward rebuilds a basis it did not keep in one
# piece when the layer has several outputs and its input needs a gradient: the input gradient is then
# one product with the whole weight, not one per block. A temporary of backward only (with the
# product's result, twice these bytes at most), never saved. Measured round by round against
# plain-fastkan: kanbench-10m's backward went from 1.05x to 1.02x plain's time (runs 0019 and 0026 of
# docs/results/goals.md). Building the forward's basis whole as well measured
# within noise, so forward keeps its blocks.
WHOLE_BACKWARD_BYTES = 32 << 20


def _whole_backward(u: Tensor, num_grids: int, weight: Tensor, need_u: bool, kept) -> bool:
    """Whether backward takes the basis in one block: kept, or rebuilt whole (``WHOLE_BACKWARD_BYTES``)."""
    return kept is not None or (weight.shape[0] > 1 and need_u and common.keeps(u, num_grids, WHOLE_BACKWARD_BYTES))


def _feature_major(n: int, weight: Tensor, neg_square_backward: bool) -> bool:
    """Whether a layer call lays its basis out feature-major (else input-major).

    Feature-major builds the basis faster, and its products took the time of the
    input-major ones wherever the weight has no more rows than the batch (mnist,
    the grid-* and batch-* layers). With a wider weight (kanbench-10m's first layer:
    1000 outputs, batch 100), the input gradient's product with the weight took
    24.8 against 23.2 ms feature-major, more than the faster basis saves. Only the
    backward of bases of -d**2 on a frozen grid (``_backward_neg_square``) takes
    both layouts; ``_backward`` works feature-major.
    """
    return weight.shape[0] <= n or not neg_square_backward


class _FusedSpline(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, basis, keep_bytes: int) -> Tensor:
        n, in_dim = u.shape
        g = grid.numel()
        # A kept basis is built in one block: it is stored whole anyway.
        keep = common.keeps(u, g, keep_bytes)
        step = common.inputs_per_block(n, in_dim, g, keep)
        neg_square = common.has_neg_square(basis, u)
        layout = "feature" if _feature_major(n, weight, common.neg_square_backward(basis, u, grid, h)) else "input"
        dist = common.Distances(u, grid, h, step, neg_square, layout, basis.neg_square_scale)
        fn = basis.of_neg_square if neg_square else basis.fn
        # Each block p is (block * G, N). The product's orientation follows the shape, as measured here:
        # with no more outputs than inputs in the batch, out.T = weight @ p ((64, 512) @ (512, 10): 13 us,
        # against 117 us for p.T @ weight.T); with more (kanbench-10m's first layer), out = p.T @ weight.T
        # (6.2 against 7.2 ms a block).
        transposed = weight.shape[0] <= n
        out = u.new_zeros(weight.shape[0], n) if transposed else u.new_zeros(n, weight.shape[0])
        for a, b in common.feature_blocks(in_dim, step):
            d, v = dist.block(a, b)
            p = fn(d)
            cols = weight[:, a * g : b * g]
            if transposed:
                out.addmm_(cols, p)
            else:
                out.addmm_(p.t(), cols.t())
        phi = p if keep else None  # a kept basis is one block
        # With it, the centred inputs where backward owes their gradient: 1 / G more bytes, no pass there.
        v = v if keep and ctx.needs_input_grad[0] else None
        ctx.basis, ctx.layout = basis, layout
        ctx.save_for_backward(u, grid, h, weight, phi, v)
        return out.t().contiguous() if transposed else out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if torch.is_grad_enabled():  # create_graph=True: a gradient that can be differentiated again
            return higher.double_backward(ctx, grad_out, ctx.basis.fn, 2)
        u, grid, h, weight, phi, v = ctx.saved_tensors
        need_u, need_grid, need_h, need_w = ctx.needs_input_grad[:4]
        basis = ctx.basis
        if common.neg_square_backward(basis, u, grid, h):
            grad_u, grad_w = _backward_neg_square(
                u, grid, h, weight, grad_out, basis, need_u, need_w, ctx.layout, phi, v
            )
            return grad_u, None, None, grad_w, None, None
        return (*_backward(u, grid, h, weight, grad_out, basis, ctx.needs_input_grad, phi), None, None)


class _WeightGrad:
    """``grad_w = grad_out.T @ basis``, gathered block by block of basis rows (block * G, N)."""

    def __init__(self, u: Tensor, weight: Tensor, grad_out: Tensor, whole: bool, feature_major: bool):
        self.grad_out, self.whole = grad_out, whole
        self.grad_w = torch.empty_like(weight)
        # Column blocks of grad_w are strided writes; when the weight has at
        # least as many rows as the batch, one product over all basis values
        # (a temporary no larger than grad_w, laid out like the blocks) is much
        # faster. A basis that comes in one block (``whole``) is that product already.
        self.phis = None
        if not whole and u.shape[0] <= weight.shape[0]:
            n, k = u.shape[0], weight.shape[1]
            self.phis = u.new_empty(k, n) if feature_major else u.new_empty(n, k).t()

    def add(self, cols: slice, phi: Tensor) -> None:
        """``phi``: (block * G, N), the basis rows of weight columns ``cols``."""
        if self.whole:
            torch.mm(self.grad_out.t(), phi.t(), out=self.grad_w)
        elif self.phis is not None:
            self.phis[cols] = phi
        else:
            self.grad_w[:, cols] = self.grad_out.t() @ phi.t()

    def result(self) -> Tensor:
        if self.phis is not None:
            torch.mm(self.grad_out.t(), self.phis.t(), out=self.grad_w)
        return self.grad_w


def _backward_neg_square(u, grid, h, weight, grad_out, basis, need_u, need_w, layout, kept=None, kept_v=None):
    """Backward for ``phi = k(-d**2)`` with a frozen grid and width, the basis laid out as ``layout``.

    dL/du = sum over centres of P * k'(-d**2) * -2 (v - c) / h**2, with P the
    output gradient carried back through the weight; written as
    (-2 / h**2) * (v * S1 - S2) where (S1, S2) are the sums of P * k' with
    weights 1 and c over the centres: one (2, G) product per input feature
    (see ``_input_gradient``), no derivative pass over the distances.
    """
    feature = layout == "feature"
    if kept is not None:
        # Nothing to rebuild (and in the first layer of a model without LayerNorm's affine, one product).
        grad_w = torch.mm(grad_out.t(), kept.t()) if need_w else None
        if not need_u:
            return None, grad_w
        return _input_gradient(kept, kept_v, weight, grad_out, basis, common.constants(grid, h), feature), grad_w
    n, in_dim = u.shape
    g = grid.numel()
    step = common.inputs_per_block(n, in_dim, g, _whole_backward(u, g, weight, need_u, None))
    dist = common.Distances(u, grid, h, step, True, layout, basis.neg_square_scale)
    grad_u = torch.empty_like(u) if need_u else None
    grad_w = _WeightGrad(u, weight, grad_out, step == in_dim, feature) if need_w else None
    for a, b in common.feature_blocks(in_dim, step):
        cols = slice(a * g, b * g)
        t, v = dist.block(a, b)
        phi = basis.of_neg_square(t)
        if grad_w is not None:
            grad_w.add(cols, phi)
        if need_u:
            grad_u[:, a:b] = _input_gradient(phi, v, weight[:, cols], grad_out, basis, dist, feature)
    return grad_u, grad_w.result() if grad_w is not None else None


def _input_gradient(phi: Tensor, v: Tensor, weight: Tensor, grad_out: Tensor, basis, k, feature_major: bool) -> Tensor:
    """dL/du (N, block) from the basis phi (block * G, N) of the centred inputs v (block, N); ``k``
    holds the grid's ``rows`` and ``refs`` (``Constants``).

    Each product runs on the basis' own memory layout: feature-major, a batched
    (2, G) @ (G, N) per input; input-major, one (2, G) @ (G, N * block).
    """
    m, n = v.shape
    if feature_major:
        q = torch.mm(weight.t(), grad_out.t()).mul_(basis.of_neg_square_derivative(phi))
        sums = common.v_s1_minus_s2(k.rows, q, v, lambda r, q: torch.matmul(r, q.view(m, -1, n)), dim=1, refs=k.refs)
        return sums.t()  # from (block, 2, N) sums
    q = grad_out.new_empty(n, weight.shape[1])  # (N, block * G)
    phi_t = phi.t()
    # A whole basis' product runs in cache-sized column blocks, each scaled while it is in cache:
    # on kanbench-10m's first layer (N = 100, 9000 columns) 23.4 against 24.9 ms for one product.
    step = max(1, common.block_elements() // max(1, n))
    for a in range(0, weight.shape[1], step):
        block = q[:, a : a + step]
        torch.mm(grad_out, weight[:, a : a + step], out=block)
        block.mul_(basis.of_neg_square_derivative(phi_t[:, a : a + step]))
    flat = v.t().reshape(-1)
    sums = common.v_s1_minus_s2(k.rows, q, flat, lambda r, q: torch.mm(r, q.view(-1, r.shape[1]).t()), refs=k.refs)
    return sums.view(n, m)  # from (2, N * block) sums


def _backward(u, grid, h, weight, grad_out, basis, needs, kept=None):
    """Backward for any basis, by its registered derivative of d or else by autograd on each block."""
    n, in_dim = u.shape
    g = grid.numel()
    need_u, need_grid, need_h, need_w = needs[:4]
    fn, derivative = basis.fn, basis.derivative
    step = common.inputs_per_block(n, in_dim, g, _whole_backward(u, g, weight, need_u, kept))
    dist = common.Distances(u, grid, h, step)
    inv_h = dist.inv_h
    grad_u = torch.empty_like(u) if need_u else None
    grad_w = _WeightGrad(u, weight, grad_out, step == in_dim, True) if need_w else None
    # dL/dd summed over batch and inputs per centre (grid), and weighted by d (width).
    sum_gd = grid.new_zeros(g) if need_grid else None
    sum_gd_d = h.new_zeros(()) if need_h else None
    single = weight.shape[0] == 1 and derivative is not None and not (need_grid or need_h)
    for a, b in common.feature_blocks(in_dim, step):
        cols = slice(a * g, b * g)
        d = dist.block(a, b)[0]  # (block * G, N)
        if derivative is None:
            with torch.enable_grad():
                d.requires_grad_()
                phi = fn(d)
        else:
            phi = kept if kept is not None else fn(d)
        if grad_w is not None:
            grad_w.add(cols, phi.detach())
        if not (need_u or need_grid or need_h):
            continue
        if single:
            # One output: dL/dd = grad_out[n] * w[k] * phi'(d), so grad_out can be applied
            # after the sum over the centres, on a G times smaller tensor.
            grad_d = derivative(d, phi).mul_(weight[:, cols].t())
        elif derivative is None:
            (grad_d,) = torch.autograd.grad(phi, d, weight[:, cols].t() @ grad_out.t())
            d = d.detach()
        else:
            grad_d = torch.mm(weight[:, cols].t(), grad_out.t()).mul_(derivative(d, phi))
        rows = grad_d.view(b - a, g, n)
        if need_u:
            gu = rows.sum(1).mul_(inv_h)  # (block, N)
            grad_u[:, a:b] = (gu.mul_(grad_out.t()) if single else gu).t()
        if need_grid:
            sum_gd -= rows.sum((0, 2))
        if need_h:
            sum_gd_d -= torch.dot(grad_d.view(-1), d.view(-1))
    grad_grid = sum_gd * inv_h if need_grid else None
    grad_h = sum_gd_d * inv_h if need_h else None
    return grad_u, grad_grid, grad_h, grad_w.result() if grad_w is not None else None


def fused_spline(u: Tensor, basis, weight: Tensor, keep_basis_bytes: int | None = None) -> Tensor:
    """``basis(u).flatten(-2) @ weight.T`` for u (N, in), weight (out, in*G) -> (N, out).

    ``basis`` is a ``RadialBasis``: its grid and width (``tensors()``), ``fn``,
    ``derivative``, ``of_neg_square`` and ``of_neg_square_derivative``.
    A basis of at most ``keep_basis_bytes`` (default ``KEEP_BASIS_BYTES``) is
    kept for backward; a larger one is rebuilt there, block by block.
    """
    if u.shape[0] == 0:
        return u.new_zeros(0, weight.shape[0]) + 0 * weight.sum()  # keeps the graph for empty batches
    keep = KEEP_BASIS_BYTES if keep_basis_bytes is None else keep_basis_bytes
    if common.is_one_output(basis, u, weight):
        return one_output_spline(u, basis, weight, keep)
    return _FusedSpline.apply(u, *basis.tensors(), weight, basis, keep)
