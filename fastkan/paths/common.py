"""What the CPU paths share: blocks of input features, the grid's constants, the distances to the
centres and the tests for a basis of ``-d**2``.

``fastkan.paths.fused``, ``fastkan.paths.rows``, ``fastkan.paths.small`` and ``fastkan.paths.compiled``
build their bases from these; none of them imports another path (tests/test_imports.py).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from .. import modes

# Basis values per block and torch thread (1 MiB in float32, about a core's
# L2 cache). Measured on seed-300k and kanbench-10m layers: with 1 thread,
# 2**17 to 2**19 per block time alike; with 2 threads, blocks of 2**17 took
# 1.6x the time of 2**20, since every small operation pays the threads' start.
BLOCK_ELEMENTS = 1 << 18


def block_elements() -> int:
    # A compiled graph cannot read the thread count; it gets one thread's block.
    return BLOCK_ELEMENTS if modes.is_compiling() else BLOCK_ELEMENTS * torch.get_num_threads()


# |u - centre| / h beyond which no bump is distinguishable from its tail;
# clamping there keeps (u / h)**2 finite in float32.
FAR = 1e6


def inputs_per_block(n: int, in_dim: int, num_grids: int, whole: bool = False) -> int:
    """Inputs per block; all of them for a basis kept whole."""
    return in_dim if whole else min(in_dim, max(1, block_elements() // max(1, n * num_grids)))


def keeps(u: Tensor, num_grids: int, keep_bytes: int) -> bool:
    """Whether the (N, in, G) basis of ``u`` fits the budget for keeping it until backward."""
    return u.numel() * num_grids * u.element_size() <= keep_bytes


def feature_blocks(in_dim: int, step: int):
    """(start, stop) of each block of ``step`` input features; the last may be shorter."""
    for start in range(0, in_dim, step):
        yield start, min(in_dim, start + step)


# Centres farther than this many widths from their sums' reference make the input gradient's
# v * S1 - S2 (fastkan.paths.fused's _backward_neg_square) cancel that many times over: in
# float32, on a grid of 64 centres over [-300, 300] summed about its middle (31.5 widths), up to
# 7e-4 grid spacings off the plain path's gradient. A wider grid sums its centres in groups, each about its own middle
# (``Constants.refs``; docs/design/paths.md).
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


class Constants:
    """What every block of one grid and width shares: ``inv_h``, the grid's middle ``centre``, the
    clamp bound ``far``, the centres relative to the middle ``c`` (G,), and ``rows`` (2, G): 1 and
    -c, times -2 / h**2 (see fastkan.paths.fused's ``_backward_neg_square``). On a grid wider than ``WIDE_GRID`` widths,
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


def constants(grid: Tensor, h: Tensor) -> Constants:
    if h.device.type != "cpu" or modes.is_compiling():
        return Constants(grid, h)
    return cached(_CONSTANTS, (grid.dtype, float(h), *grid.tolist()), lambda: Constants(grid, h))


class Distances:
    """``d = (u - grid) / h``, or ``-d**2``, block by block of input features.

    ``layout`` is where the batch lies in memory. ``"feature"``: (block * G, N),
    the transpose of the (N, block * G) basis the spline weight multiplies, whose
    rows follow the weight's columns; ``"input"``: that (N, block * G) basis
    itself, handed out transposed, so both come as (block * G, N); ``"centre"``:
    (G, N, block), for ``fastkan.paths.one_output``. Feature- and centre-major, ``d`` comes from
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
    """A 0-dim CPU zero, made once: only CPU calls get a Python number for the scale (``Constants``)."""
    return torch.zeros((), dtype=dtype)


def scaled_square_(d: Tensor, scale) -> Tensor:
    """``d = scale * d**2`` in place; ``scale`` a Python number or a 0-dim tensor."""
    if isinstance(scale, float):
        # Square and scale in one pass, not two (0 + s * d * d).
        return torch.addcmul(zero(d.dtype), d, d, value=scale, out=d)
    return d.mul_(d).mul_(scale)  # a tensor (a GPU's or a compiled graph's h), which addcmul's value cannot take


def neg_square_backward(basis, u: Tensor, grid: Tensor, h: Tensor) -> bool:
    """Whether the fused backward takes its shortcut for a basis of -d**2 with its derivative, on a frozen grid."""
    return (
        basis.of_neg_square_derivative is not None
        and has_neg_square(basis, u)
        and not (grid.requires_grad or h.requires_grad)
    )


def is_one_output(basis, u: Tensor, weight: Tensor) -> bool:
    return weight.shape[0] == 1 and neg_square_backward(basis, u, *basis.tensors())


def has_neg_square(basis, u: Tensor) -> bool:
    # Half precisions would lose the small d**2 in the large terms of its sum.
    return basis.of_neg_square is not None and u.dtype in (torch.float32, torch.float64)
