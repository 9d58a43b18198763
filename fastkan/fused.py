"""The spline path ``basis(u).flatten(-2) @ weight.T`` without the basis tensor.

The plain composition allocates several (N, in, G) tensors in the forward
pass and keeps them for backward, which is what makes KANs slow and heavy.
Here the basis is built one cache-sized block of input features at a time
and multiplied straight away; backward recomputes each block, so only the
inputs are saved (a basis of at most ``KEEP_BASIS_BYTES`` is built in one
block and kept instead). Any registered basis works: its derivative is the one
registered with it, else autograd on the block. A layer with several outputs
lays the basis out feature-major or input-major (``_Distances``, ``_feature_major``).
A layer with one output and a basis of ``-d**2`` on a frozen grid takes
``fastkan.compiled``'s kernels on the CPU where they compile, and otherwise lays
the basis out centre-major (``_OneOutput``). A batch larger than the outputs and than
the basis values per row takes ``fastkan.rows``, which blocks the basis by rows instead.
"""

from __future__ import annotations

import functools
import types

import torch
from torch import Tensor

from . import higher, modes

# Basis values per block and torch thread (1 MiB in float32, about a core's
# L2 cache). Measured on seed-300k and kanbench-10m layers: with 1 thread,
# 2**17 to 2**19 per block time alike; with 2 threads, blocks of 2**17 took
# 1.6x the time of 2**20, since every small operation pays the threads' start.
BLOCK_ELEMENTS = 1 << 18

# Below this many bytes of basis values per layer call, forward keeps the basis for backward
# instead of rebuilding it there (with the centred inputs, 1 / G as many bytes, where the input
# needs a gradient): at mnist's sizes rebuilding cost more time than the bytes are worth. Set it
# to 0 to always recompute (least memory), or pass keep_basis_bytes to a layer.
KEEP_BASIS_BYTES = 2 << 20

# At or below this many basis values per layer call (batch x inputs x centres), the layer
# takes fastkan.small (or the plain composition): their few operations cost less than the fused
# path's fixed set-up. Measured round by round against plain-fastkan on this project's 2-core CPU:
# at [256, 256, 1] with 4 centres (262144 values) the kept-basis path took 1.04x plain's time,
# at 8 centres 0.92x. With fastkan.small, 1 << 20 measured no better (mnist 1.03x the time, grid-16
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


def _block_elements() -> int:
    # A compiled graph cannot read the thread count; it gets one thread's block.
    return BLOCK_ELEMENTS if modes.is_compiling() else BLOCK_ELEMENTS * torch.get_num_threads()


# |u - centre| / h beyond which no bump is distinguishable from its tail;
# clamping there keeps (u / h)**2 finite in float32.
FAR = 1e6


def _step(n: int, in_dim: int, num_grids: int, whole: bool = False) -> int:
    """Inputs per block; all of them for a basis kept whole."""
    return in_dim if whole else min(in_dim, max(1, _block_elements() // max(1, n * num_grids)))


def keeps(u: Tensor, num_grids: int, keep_bytes: int) -> bool:
    """Whether the (N, in, G) basis of ``u`` fits the budget for keeping it until backward."""
    return u.numel() * num_grids * u.element_size() <= keep_bytes


def _whole_backward(u: Tensor, num_grids: int, weight: Tensor, need_u: bool, kept) -> bool:
    """Whether backward takes the basis in one block: kept, or rebuilt whole (``WHOLE_BACKWARD_BYTES``)."""
    return kept is not None or (weight.shape[0] > 1 and need_u and keeps(u, num_grids, WHOLE_BACKWARD_BYTES))


def _blocks(in_dim: int, step: int):
    for start in range(0, in_dim, step):
        yield start, min(in_dim, start + step)


# Centres farther than this many widths from their sums' reference make the input gradient's
# v * S1 - S2 (see _backward_neg_square) cancel that many times over: in float32, on a grid of 64
# centres over [-300, 300] summed about its middle (31.5 widths), up to 7e-4 grid spacings off the
# plain path's gradient. A wider grid sums its centres in groups, each about its own middle
# (``_Constants.refs``; docs/design/paths.md).
WIDE_GRID = 16.0


def _groups(c: list[float], reach: float) -> list[tuple[float, list[int]]]:
    """(reference, indices) of the centres ``c``: one group about 0 where every centre lies within
    ``reach`` of it, else bins of width 2 * reach, each about its own middle."""
    if max(abs(x) for x in c) <= reach:
        return [(0.0, list(range(len(c))))]
    lo, bins = min(c), {}
    for i, x in enumerate(c):
        bins.setdefault(int((x - lo) // (2 * reach)), []).append(i)
    return [(lo + (b + 0.5) * 2 * reach, idx) for b, idx in sorted(bins.items())]


class _Constants:
    """What every block of one grid and width shares: ``inv_h``, the grid's middle ``centre``, the
    clamp bound ``far``, the centres relative to the middle ``c`` (G,), and ``rows`` (2, G): 1 and
    -c, times -2 / h**2 (see ``_backward_neg_square``). On a grid wider than ``WIDE_GRID`` widths,
    ``rows`` is (2B, G) for B groups of centres (B rows of 1, then B of -(c - ref)) and ``refs`` (B,)
    their references relative to the middle; else ``refs`` is None."""

    def __init__(self, grid: Tensor, h: Tensor):
        if h.device.type != "cpu" or modes.is_compiling():
            # Reading h or the grid would sync a GPU or break a compiled graph.
            self.inv_h = 1.0 / h
            self.centre = grid.mean()
            self.far = FAR * h
            self.c = grid - self.centre
            self.rows = torch.stack([torch.ones_like(self.c), -self.c]) * (-2.0 * self.inv_h * self.inv_h)
            self.refs = None
            return
        # Python numbers where reading them is free: each tensor operation on these few values
        # cost a call some microseconds, and clamping to tensor bounds is several times slower.
        values, h = grid.tolist(), float(h)
        self.inv_h = 1.0 / h
        self.centre = sum(values) / len(values)
        self.far = FAR * h
        c = [x - self.centre for x in values]
        self.c = torch.tensor(c, dtype=grid.dtype)
        k = -2.0 * self.inv_h * self.inv_h
        groups = _groups(c, WIDE_GRID * h)
        ones, offsets = [], []
        for ref, members in groups:
            inside = set(members)
            ones.append([k if i in inside else 0.0 for i in range(len(c))])
            offsets.append([-(x - ref) * k if i in inside else 0.0 for i, x in enumerate(c)])
        self.rows = torch.tensor(ones + offsets, dtype=grid.dtype)
        self.refs = None if len(groups) == 1 else torch.tensor([ref for ref, _ in groups], dtype=grid.dtype)


def v_s1_minus_s2(
    rows: Tensor, q: Tensor, v: Tensor, sums, dim: int = 0, out: Tensor | None = None, refs: Tensor | None = None
) -> Tensor:
    """``S2' + v * S1'`` from ``sums(rows, q)``, which stacks (S1', S2') = rows @ q along ``dim``; with
    ``refs`` (B,), B groups' (S1', S2') about their references, summed as ``S2' + (v - ref) * S1'``.
    Into ``out`` where given."""
    s = sums(rows, q)
    if refs is None:
        return torch.addcmul(s.select(dim, 1), s.select(dim, 0), v, out=out)
    b = refs.numel()
    shape = [1] * s.dim()
    shape[dim] = b
    v = v.unsqueeze(dim) - refs.view(shape)  # each group's distances stay small: no cancellation
    return torch.sum(torch.addcmul(s.narrow(dim, b, b), s.narrow(dim, 0, b), v), dim, out=out)


# Constants of the CPU grids and widths seen lately, by their values: a small call spent some
# 25 us a layer rebuilding them. Keyed by value, so a grid changed in place gets new ones.
_CONSTANTS: dict = {}


def cached(cache: dict, key, make):
    """``cache[key]``, made by ``make()`` where missing (None is a value too); emptied at 64 entries,
    since a trained grid or width makes new keys every step."""
    if key not in cache:
        if len(cache) >= 64:
            cache.clear()
        cache[key] = make()
    return cache[key]


def constants(grid: Tensor, h: Tensor) -> _Constants:
    if h.device.type != "cpu" or modes.is_compiling():
        return _Constants(grid, h)
    return cached(_CONSTANTS, (grid.dtype, float(h), *grid.tolist()), lambda: _Constants(grid, h))


class _Distances:
    """``d = (u - grid) / h``, or ``-d**2``, block by block of input features.

    ``layout`` is where the batch lies in memory. ``"feature"``: (block * G, N),
    the transpose of the (N, block * G) basis the spline weight multiplies, whose
    rows follow the weight's columns; ``"input"``: that (N, block * G) basis
    itself, handed out transposed, so both come as (block * G, N); ``"centre"``:
    (G, N, block), for ``_OneOutput``. Feature- and centre-major, ``d`` comes from
    a broadcast subtraction whose innermost dimension is the batch or the block:
    on this project's CPU (AMD EPYC, torch 2.13) it took 55 us on ``mnist``'s
    first layer, plus 38 us to transpose the inputs once, where input-major, with
    the G = 8 centres innermost, took 237 us. Input-major pays that to keep the
    products with a wide weight fast (see ``_feature_major``). ``v`` and ``c``
    are input and centres relative to the grid's middle. Every block reuses one buffer.
    """

    def __init__(
        self,
        u: Tensor,
        grid: Tensor,
        h: Tensor,
        step: int,
        neg_square: bool = False,
        layout: str = "feature",
        scale: float = 1.0,
    ):
        self.u, self.step, self.neg_square, self.layout = u, step, neg_square, layout
        k = constants(grid, h)
        self.inv_h, self.centre, self.far, self.c, self.rows = k.inv_h, k.centre, k.far, k.c, k.rows
        self.refs = k.refs
        self.square_scale = -scale * self.inv_h * self.inv_h  # -d**2 comes scaled by the basis' scale
        self.n = u.shape[0]
        self.buf = None  # allocated by the first block(): a kept basis needs only values()
        self.v_t = None  # (in, N), made by the first feature-major values()

    def values(self, a: int, b: int) -> Tensor:
        """v = u - centre (clamped) of inputs a..b: (N, block) centre-major, else (block, N)."""
        if self.layout != "feature":
            v = (self.u[:, a:b] - self.centre).clamp_(-self.far, self.far)
            return v if self.layout == "centre" else v.t()
        if self.v_t is None:
            u = self.u
            if modes.is_compiling():
                # A traced out= takes the strides of the transposed input, which later views cannot take.
                self.v_t = (u.t() - self.centre).contiguous()
            else:
                self.v_t = torch.sub(u.t(), self.centre, out=u.new_empty(u.shape[1], u.shape[0]))
            self.v_t.clamp_(-self.far, self.far)
        return self.v_t[a:b]

    def block(self, a: int, b: int) -> tuple[Tensor, Tensor]:
        """(d or -d**2 of inputs a..b, v as values() gives it); d is valid until the next call."""
        m, g, n = b - a, self.c.numel(), self.n
        if self.buf is None:
            self.buf = self.u.new_empty(n * self.step * g)
        buf = self.buf[: g * n * m]
        v = self.values(a, b)
        if self.layout == "centre":
            d = torch.sub(v[None], self.c[:, None, None], out=buf.view(g, n, m))
        elif self.layout == "feature":
            d = torch.sub(v[:, None, :], self.c[:, None], out=buf.view(m, g, n))
        else:
            d = torch.sub(v.t()[..., None], self.c, out=buf.view(n, m, g))
        if self.neg_square:
            scaled_square_(d, self.square_scale)
        else:
            d.mul_(self.inv_h)
        if self.layout == "centre":
            return d, v
        return (d.view(m * g, n) if self.layout == "feature" else d.view(n, m * g).t()), v


@functools.lru_cache(maxsize=8)
def zero(dtype: torch.dtype) -> Tensor:
    """A 0-dim CPU zero, made once: only CPU calls get a Python number for the scale (``_Constants``)."""
    return torch.zeros((), dtype=dtype)


def scaled_square_(d: Tensor, scale) -> Tensor:
    """``d = scale * d**2`` in place; ``scale`` a Python number or a 0-dim tensor."""
    if isinstance(scale, float):
        # Square and scale in one pass, not two (0 + s * d * d).
        return torch.addcmul(zero(d.dtype), d, d, value=scale, out=d)
    return d.mul_(d).mul_(scale)  # a tensor (a GPU's or a compiled graph's h), which addcmul's value cannot take


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


def neg_square_backward(basis, u: Tensor, grid: Tensor, h: Tensor) -> bool:
    """Whether backward takes ``_backward_neg_square``: a basis of -d**2 with its derivative, on a frozen grid."""
    return (
        basis.of_neg_square_derivative is not None
        and _neg_square(basis, u)
        and not (grid.requires_grad or h.requires_grad)
    )


class _FusedSpline(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, basis, keep_bytes: int) -> Tensor:
        n, in_dim = u.shape
        g = grid.numel()
        # A kept basis is built in one block: it is stored whole anyway.
        keep = keeps(u, g, keep_bytes)
        step = _step(n, in_dim, g, keep)
        neg_square = _neg_square(basis, u)
        layout = "feature" if _feature_major(n, weight, neg_square_backward(basis, u, grid, h)) else "input"
        dist = _Distances(u, grid, h, step, neg_square, layout, basis.neg_square_scale)
        fn = basis.of_neg_square if neg_square else basis.fn
        # Each block p is (block * G, N). The product's orientation follows the shape, as measured here:
        # with no more outputs than inputs in the batch, out.T = weight @ p ((64, 512) @ (512, 10): 13 us,
        # against 117 us for p.T @ weight.T); with more (kanbench-10m's first layer), out = p.T @ weight.T
        # (6.2 against 7.2 ms a block).
        transposed = weight.shape[0] <= n
        out = u.new_zeros(weight.shape[0], n) if transposed else u.new_zeros(n, weight.shape[0])
        for a, b in _blocks(in_dim, step):
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
            u, grid, h, weight = ctx.saved_tensors[:4]
            return (
                *higher.spline_double_backward(higher.wanted(ctx), grad_out, u, grid, h, weight, ctx.basis.fn),
                None,
                None,
            )
        u, grid, h, weight, phi, v = ctx.saved_tensors
        need_u, need_grid, need_h, need_w = ctx.needs_input_grad[:4]
        basis = ctx.basis
        if neg_square_backward(basis, u, grid, h):
            grad_u, grad_w = _backward_neg_square(
                u, grid, h, weight, grad_out, basis, need_u, need_w, ctx.layout, phi, v
            )
            return grad_u, None, None, grad_w, None, None
        return (*_backward(u, grid, h, weight, grad_out, basis, ctx.needs_input_grad, phi), None, None)


class _OneOutput(torch.autograd.Function):
    """The spline path of a layer with one output, for bases of ``-d**2`` on a frozen grid.

    The basis is laid out centre-major, (G, N, block): each step of building
    it is one contiguous pass (a broadcast subtraction, a square, the basis),
    and the product with the weight is G matrix-vector products. In the
    input-major layout (see ``_Distances``) the subtraction broadcasts
    over an innermost dimension of only G and is several times slower.
    """

    @staticmethod
    def forward(ctx, u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, basis, keep_bytes: int) -> Tensor:
        n, in_dim = u.shape
        g = grid.numel()
        keep = keeps(u, g, keep_bytes)
        cols = _Distances(u, grid, h, _step(n, in_dim, g, keep), True, "centre", basis.neg_square_scale)
        out = u.new_zeros(n)
        phi = None
        for a, b in _blocks(in_dim, cols.step):
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
            u, grid, h, weight = ctx.saved_tensors[:4]
            return (
                *higher.spline_double_backward(higher.wanted(ctx), grad_out, u, grid, h, weight, ctx.basis.fn),
                None,
                None,
            )
        u, grid, h, weight, kept = ctx.saved_tensors
        need_u, _, _, need_w = ctx.needs_input_grad[:4]
        n, in_dim = u.shape
        g = grid.numel()
        cols = _Distances(u, grid, h, _step(n, in_dim, g, kept is not None), True, "centre", ctx.basis.neg_square_scale)
        go = grad_out[:, 0]
        sums = cols.rows
        grad_u = torch.empty_like(u) if need_u else None
        grad_w = torch.empty_like(weight) if need_w else None
        for a, b in _blocks(in_dim, cols.step):
            phi = kept if kept is not None else ctx.basis.of_neg_square(cols.block(a, b)[0])
            if need_w:
                # One batched product, (N,) @ (G, N, block): torch.mv into strided columns of grad_w
                # would not trace in a model the user compiles.
                grad_w[0, a * g : b * g].view(b - a, g).copy_(torch.matmul(go, phi).t())
            if need_u:
                # (G, block), contiguous: multiplying by the strided view took twice the time.
                w = weight[0, a * g : b * g].view(b - a, g).t().contiguous()
                q = torch.mul(ctx.basis.of_neg_square_derivative(phi), w[:, None, :])
                grad_u[:, a:b] = v_s1_minus_s2(
                    sums,
                    q,
                    cols.values(a, b),
                    lambda r, q: torch.mm(r, q.view(g, -1)).view(-1, n, b - a),  # noqa: B023 (called at once)
                    refs=cols.refs,
                )
                grad_u[:, a:b] *= go[:, None]
        return grad_u, None, None, grad_w, None, None


def one_output_backward(grad_out: Tensor, u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, basis, needs) -> tuple:
    """(grad_u, grad_w) of ``_OneOutput`` for grad_out (N, 1), outside autograd: for fastkan.compiled's
    operator where its kernels could not compile; ``needs`` = (need_u, need_w)."""
    ctx = types.SimpleNamespace(
        saved_tensors=(u, grid, h, weight, None), needs_input_grad=(needs[0], False, False, needs[1]), basis=basis
    )
    with torch.no_grad():
        grads = _OneOutput.backward(ctx, grad_out)
    return grads[0], grads[3]


def is_one_output(basis, u: Tensor, weight: Tensor) -> bool:
    return weight.shape[0] == 1 and neg_square_backward(basis, u, *basis.tensors())


def _neg_square(basis, u: Tensor) -> bool:
    # Half precisions would lose the small d**2 in the large terms of its sum.
    return basis.of_neg_square is not None and u.dtype in (torch.float32, torch.float64)


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
        return _input_gradient(kept, kept_v, weight, grad_out, basis, constants(grid, h), feature), grad_w
    n, in_dim = u.shape
    g = grid.numel()
    step = _step(n, in_dim, g, _whole_backward(u, g, weight, need_u, None))
    dist = _Distances(u, grid, h, step, True, layout, basis.neg_square_scale)
    grad_u = torch.empty_like(u) if need_u else None
    grad_w = _WeightGrad(u, weight, grad_out, step == in_dim, feature) if need_w else None
    for a, b in _blocks(in_dim, step):
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
    holds the grid's ``rows`` and ``refs`` (``_Constants``).

    Each product runs on the basis' own memory layout: feature-major, a batched
    (2, G) @ (G, N) per input; input-major, one (2, G) @ (G, N * block).
    """
    m, n = v.shape
    if feature_major:
        q = torch.mm(weight.t(), grad_out.t()).mul_(basis.of_neg_square_derivative(phi))
        sums = v_s1_minus_s2(k.rows, q, v, lambda r, q: torch.matmul(r, q.view(m, -1, n)), dim=1, refs=k.refs)
        return sums.t()  # from (block, 2, N) sums
    q = grad_out.new_empty(n, weight.shape[1])  # (N, block * G)
    phi_t = phi.t()
    # A whole basis' product runs in cache-sized column blocks, each scaled while it is in cache:
    # on kanbench-10m's first layer (N = 100, 9000 columns) 23.4 against 24.9 ms for one product.
    step = max(1, _block_elements() // max(1, n))
    for a in range(0, weight.shape[1], step):
        block = q[:, a : a + step]
        torch.mm(grad_out, weight[:, a : a + step], out=block)
        block.mul_(basis.of_neg_square_derivative(phi_t[:, a : a + step]))
    flat = v.t().reshape(-1)
    sums = v_s1_minus_s2(k.rows, q, flat, lambda r, q: torch.mm(r, q.view(-1, r.shape[1]).t()), refs=k.refs)
    return sums.view(n, m)  # from (2, N * block) sums


def _backward(u, grid, h, weight, grad_out, basis, needs, kept=None):
    """Backward for any basis, by its registered derivative of d or else by autograd on each block."""
    n, in_dim = u.shape
    g = grid.numel()
    need_u, need_grid, need_h, need_w = needs[:4]
    fn, derivative = basis.fn, basis.derivative
    step = _step(n, in_dim, g, _whole_backward(u, g, weight, need_u, kept))
    dist = _Distances(u, grid, h, step)
    inv_h = dist.inv_h
    grad_u = torch.empty_like(u) if need_u else None
    grad_w = _WeightGrad(u, weight, grad_out, step == in_dim, True) if need_w else None
    # dL/dd summed over batch and inputs per centre (grid), and weighted by d (width).
    sum_gd = grid.new_zeros(g) if need_grid else None
    sum_gd_d = h.new_zeros(()) if need_h else None
    single = weight.shape[0] == 1 and derivative is not None and not (need_grid or need_h)
    for a, b in _blocks(in_dim, step):
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

    ``basis`` is a ``RadialBasis``: its grid, width (``denominator``), ``fn``,
    ``derivative``, ``of_neg_square`` and ``of_neg_square_derivative``.
    A basis of at most ``keep_basis_bytes`` (default ``KEEP_BASIS_BYTES``) is
    kept for backward; a larger one is rebuilt there, block by block.
    """
    if u.shape[0] == 0:
        return u.new_zeros(0, weight.shape[0]) + 0 * weight.sum()  # keeps the graph for empty batches
    keep = KEEP_BASIS_BYTES if keep_basis_bytes is None else keep_basis_bytes
    return (_OneOutput if is_one_output(basis, u, weight) else _FusedSpline).apply(
        u, *basis.tensors(), weight, basis, keep
    )
