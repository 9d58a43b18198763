"""The spline path of one-output layers on the CPU, as TorchInductor kernels: no basis tensor at all.

A layer with one output and a basis of ``-d**2`` on a frozen grid computes
``out[n] = sum over i, k of w[k, i] * basis(-d[n, k, i]**2)``, a plain
reduction: TorchInductor compiles it (and the two reductions of its backward)
into one vectorised loop each, with no (N, in, G) tensor ever written. The
seed-300k forward took 0.34x plain-fastkan's time with it, round by round
(docs/results/goals.md). Compiling needs a C++ compiler; where
it fails, the first call warns once and the layer keeps the eager path.
``ENABLED = False`` (or ``FASTKAN_COMPILE=0`` in the environment) always
takes the eager path.

An exponential basis (the Gaussian: ``k(t) = 2**t``) on a uniform grid takes
other kernels (``_Groups``): with ``x`` the input's distance from the middle of a
group of neighbouring centres and ``j`` a centre's offset from it, in widths,
``2**-(s (x - j r)**2) = 2**(-s x**2) * (2**(s r x))**(2 j) * 2**(-s j**2 r**2)``
(``r`` the spacing over the width, ``s`` the basis' scale), so each group costs
two exponentials and a product per bump, not one exponential per bump: the
exponentials took most of these kernels' time on an AVX2 CPU. There, seed-300k's
second layer (100 x 10000 inputs, 8 centres) took 7.3 ms forward and 15.5 ms
backward this way, against 14.4 and 30.4 ms (alternating, 1 thread). Each value
moves by a few float32 roundings of the exponents it is built from (up to 5e-6
relative at a group's edge; the tests hold both ways within rtol 1e-4).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import types
import warnings

import torch
from torch import Tensor

from .. import modes
from . import common, higher
from .one_output import one_output_backward

ENABLED = os.environ.get("FASTKAN_COMPILE", "1") != "0"
_LOG = logging.getLogger("fastkan")

# At or below this many basis values per call (batch x inputs x centres) the plain composition is
# faster: each compiled call costs tens of microseconds before it starts. Measured forward +
# backward on [256 -> 1] layers with 8 centres, 1 thread: 32 rows (65536 values) took 1.14x plain's
# time, 64 rows 0.85x, 128 rows 0.49x. fastkan.paths.fused.PLAIN_ELEMENTS, if lower, wins.
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
        """grad_u (N, in) for the output gradient go (N,); u clamped to the grid +- common.FAR h."""
        d = (u[:, None, :] - c[:, None]) * inv_h
        return (derivative(of_neg_square((d * d) * scale)) * w * d).sum(1) * (go[:, None] * (-2.0 * inv_h))

    return forward, weight_grad, input_grad


# A group of centres sees inputs clamped to x_max widths from its middle, with scale * x_max**2 =
# REACH (float32, float64): 2**(-scale x**2) then stays a normal number. A group spans at most
# 2 * (x_max - margin) widths, scale * margin**2 = MARGIN: a clamped input is then at least margin
# widths from each centre of its group, where every bump is below 2**-MARGIN (float32's 2**-40 is
# 1e-12, float64's 2**-80 is 8e-25), and the largest power of 2**(scale r x) in a group stays below
# 2**(2 * (REACH - sqrt(REACH * MARGIN))) (2**109 and 2**600): finite.
_REACH = {torch.float32: 125.0, torch.float64: 500.0}
_MARGIN = {torch.float32: 40.0, torch.float64: 80.0}


class _Groups:
    """A uniform grid split into groups of neighbouring centres for the exponential kernels.

    ``chunks``: (first centre, size) per group, ``mids`` (groups,) their middles, ``x_max`` the clamp
    of an input's distance from a middle in widths, ``sr`` scale * spacing / width, ``r`` spacing /
    width, ``j`` (G,) each centre's offset from its group's middle in spacings, ``c`` (G,)
    ``2**(-scale j**2 r**2)``. None from ``of`` where the grid is not uniform.
    """

    def __init__(self, values: list[float], h: float, scale: float, dtype: torch.dtype):
        g = len(values)
        spacing = (values[-1] - values[0]) / (g - 1)
        r = spacing / h
        x_max = math.sqrt(_REACH[dtype] / scale)
        size = max(1, min(g, int(2 * (x_max - math.sqrt(_MARGIN[dtype] / scale)) / r) + 1))
        self.chunks = tuple((k, min(size, g - k)) for k in range(0, g, size))
        j = [t - (m - 1) / 2 for _, m in self.chunks for t in range(m)]
        as_tensor = functools.partial(torch.tensor, dtype=dtype)
        self.mids = as_tensor([values[0] + (k + (m - 1) / 2) * spacing for k, m in self.chunks])
        self.j, self.c = as_tensor(j), as_tensor([2.0 ** (-scale * (t * r) ** 2) for t in j])
        self.x_max, self.sr, self.r = as_tensor(x_max), as_tensor(scale * r), as_tensor(r)
        self.inv_h = as_tensor(1.0 / h)
        # The bumps' argument and d(bump)/d(u) = -2 ln(2) scale d bump / h.
        self.scale, self.k2 = as_tensor(scale), as_tensor(-2.0 * math.log(2.0) * scale)

    def tensors(self) -> tuple[Tensor, ...]:
        """The arguments every exponential kernel takes after ``u``."""
        return self.mids, self.inv_h, self.x_max, self.scale, self.sr

    @staticmethod
    def of(grid: Tensor, h: Tensor, scale: float) -> _Groups | None:
        """The groups of a uniform grid, None for any other; cached by the grid's values."""
        values = grid.tolist()  # CPU only: reading the grid is free

        def make():
            g, eps = len(values), torch.finfo(grid.dtype).eps
            spacing = (values[-1] - values[0]) / (g - 1)
            # The identity holds for centres spaced exactly alike; linspace's rounding is allowed.
            uniform = spacing > 0 and all(
                abs(v - (values[0] + k * spacing)) <= 2 * eps * max(map(abs, values)) for k, v in enumerate(values)
            )
            return _Groups(values, float(h), scale, grid.dtype) if uniform else None

        return common.cached(_GROUPS, (grid.dtype, float(h), scale, *values), make)


_GROUPS: dict = {}
# Grids of more centres take the general kernels: the grouped ones unroll every bump, and compiling
# them took 7 to 14 s for 8 to 16 centres here, 75 s for 64 (a forward and backward of a [16 -> 1] layer).
GROUPED_CENTRES = 16


def _bumps(u: Tensor, chunks, mids: Tensor, inv_h: Tensor, x_max: Tensor, scale: Tensor, sr: Tensor):
    """(clamped x (N, in), [(centre, bump without its factor c (N, in)), ...]) per group of centres."""
    for n, (first, m) in enumerate(chunks):
        # Clamped in groups of one too: an infinite input would give inf * 0 in the input gradient.
        x = torch.clamp((u - mids[n]) * inv_h, -x_max, x_max)
        e = torch.exp2((x * x) * -scale)
        if m == 1:
            yield x, [(first, e)]
            continue
        a = torch.exp2(x * sr)  # its square is the ratio of two neighbouring bumps, before c
        a2 = a * a
        b2 = 1.0 / a2
        hi = first + m // 2  # the middle centre (odd m), else the one just above the middle
        if m % 2:
            lo, up, down = hi, e, e
            out = [(hi, e)]
        else:
            lo, up, down = hi - 1, e * a, e / a
            out = [(hi, up), (lo, down)]
        for t in range(1, (m + 1) // 2):
            up, down = up * a2, down * b2
            out += [(hi + t, up), (lo - t, down)]
        yield x, out


def _exponential_reductions(chunks):
    """The three reductions of ``_reductions`` for an exponential basis on a uniform grid of these groups.
    ``w`` and the weight gradient come with each bump's factor ``c`` applied outside."""

    def forward(u, mids, inv_h, x_max, scale, sr, w):
        acc = None
        for _, bumps in _bumps(u, chunks, mids, inv_h, x_max, scale, sr):
            for k, p in bumps:
                acc = p * w[k] if acc is None else acc + p * w[k]
        return acc.sum(1)

    def weight_grad(u, mids, inv_h, x_max, scale, sr, go):
        rows = {}
        for _, bumps in _bumps(u, chunks, mids, inv_h, x_max, scale, sr):
            for k, p in bumps:
                rows[k] = (p * go[:, None]).sum(0)
        return torch.stack([rows[k] for k in range(len(rows))])

    def input_grad(u, mids, inv_h, x_max, scale, sr, r, j, w, go, k2):
        # d of centre k is x - j[k] * r: the sum over a group is x * S0 - r * S1.
        acc = None
        for x, bumps in _bumps(u, chunks, mids, inv_h, x_max, scale, sr):
            s0 = s1 = None
            for k, p in bumps:
                t = p * w[k]
                s0 = t if s0 is None else s0 + t
                s1 = t * j[k] if s1 is None else s1 + t * j[k]
            part = x * s0 - r * s1
            acc = part if acc is None else acc + part
        return acc * (go[:, None] * (k2 * inv_h))

    return forward, weight_grad, input_grad


def _kernels(basis, dtype: torch.dtype, groups: _Groups | None = None):
    """(forward, weight_grad, input_grad) for this basis and dtype (and these groups of an exponential
    basis' centres), compiled and tried once on a small input; None if that fails."""
    # Inductor builds the torch thread count into its CPU kernels, and nothing would recompile them
    # when it changes: a thread count is part of the key.
    key = (basis.name, dtype, torch.get_num_threads(), groups.chunks if groups else None)
    if key not in _KERNELS:
        # A pause of seconds (about 16 s from an empty TorchInductor cache, 5 s with it filled, on this
        # project's 2-core host) that a user should hear of once, with the ways around it.
        _LOG.log(
            logging.INFO if _KERNELS else logging.WARNING,
            "fastkan: compiling CPU kernels for basis %s, %s, %d thread(s) (seconds, once per process; "
            "fastkan.warmup(model, x) does it ahead, FASTKAN_COMPILE=0 turns it off)",
            basis.name,
            str(dtype).removeprefix("torch."),
            torch.get_num_threads(),
        )
        fns = (
            _exponential_reductions(groups.chunks)
            if groups
            else _reductions(basis.of_neg_square, basis.of_neg_square_derivative, basis.neg_square_scale, dtype)
        )
        k = tuple(torch.compile(modes.own_code(f), dynamic=True, fullgraph=True) for f in fns)
        # Compiled here for symbolic sizes (and without grad, as autograd calls them), so later calls of
        # any size but 0 and 1 reuse the code; a failure surfaces now, in forward, where the eager path
        # can still take over.
        u, c = torch.randn(3, 5, dtype=dtype), torch.linspace(-1, 1, basis.num_grids, dtype=dtype)
        w, inv_h = torch.randn(c.numel(), 5, dtype=dtype), torch.tensor(2.0, dtype=dtype)
        try:
            with torch.no_grad():
                go = torch.randn(3, dtype=dtype)
                if groups:
                    g = groups.tensors()
                    k[0](u, *g, w)
                    k[1](u, *g, go)
                    k[2](u, *g, groups.r, groups.j, w, go, groups.k2)
                else:
                    k[0](u, c, inv_h, w)
                    k[1](u, c, inv_h, go)
                    k[2](u, c, inv_h, w, go)
        except Exception as e:  # whatever the compiler's failure, the eager path works
            _broken.append(f"{type(e).__name__}: {e}")
            warnings.warn(
                f"fastkan could not compile its CPU kernels and takes the eager path: {_broken[0][:500]}",
                RuntimeWarning,
                stacklevel=4,
            )
            k = None
        _KERNELS[key] = k
    return _KERNELS[key]


def _specialises(u: Tensor) -> bool:
    """Whether the kernels, compiled for symbolic sizes, would compile again for ``u`` (N, in): dynamo
    builds its own code for a size of 0 or 1, a pause of seconds (8 s here for one row of
    ``[10000 -> 1]``) that the eager one-output path, as fast for one row, spares."""
    return u.shape[0] < 2 or u.shape[1] < 2


def available(u: Tensor) -> bool:
    """Whether a call on ``u`` may take the compiled kernels (the basis and weight checked by the caller)."""
    # Inside a model the user compiles, the eager path is traced and fused by that compilation.
    return ENABLED and not _broken and u.device.type == "cpu" and not modes.is_compiling() and not _specialises(u)


def _weights(weight: Tensor, in_dim: int, g: int, groups: _Groups | None) -> Tensor:
    """The spline weight (1, in * G) as the kernels take it: (G, in), contiguous, each row times its
    bump's factor ``c`` for the grouped kernels."""
    w = weight.view(in_dim, g).t()
    return (w * groups.c[:, None] if groups else w).contiguous()


class OneOutput(torch.autograd.Function):
    """u (N, in), weight (1, in * G) -> (N, 1), through the compiled reductions (of ``groups`` where given)."""

    @staticmethod
    def forward(ctx, u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, kernels, groups, fn) -> Tensor:
        w = _weights(weight, u.shape[1], grid.numel(), groups)
        ctx.kernels, ctx.groups, ctx.fn = kernels, groups, fn
        ctx.save_for_backward(u, grid, h, weight)
        # detach(): a Parameter would be compiled for its own type and fixed size.
        if groups:
            return kernels[0](u.detach(), *groups.tensors(), w)[:, None]
        return kernels[0](u.detach(), grid.detach(), 1.0 / h, w)[:, None]

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if torch.is_grad_enabled():  # create_graph=True: a gradient that can be differentiated again
            return higher.double_backward(ctx, grad_out, ctx.fn, 3)
        u, grid, h, weight = ctx.saved_tensors
        in_dim, g = u.shape[1], grid.numel()
        go, c, inv_h = grad_out[:, 0].contiguous(), grid.detach(), 1.0 / h
        need_u, _, _, need_w = ctx.needs_input_grad[:4]
        groups = ctx.groups
        if groups:
            args = groups.tensors()
            grad_w = (
                (ctx.kernels[1](u.detach(), *args, go) * groups.c[:, None]).t().reshape(1, in_dim * g)
                if need_w
                else None
            )
            w = _weights(weight, in_dim, g, groups) if need_u else None
            grad_u = ctx.kernels[2](u.detach(), *args, groups.r, groups.j, w, go, groups.k2) if need_u else None
            return grad_u, None, None, grad_w, None, None, None
        grad_u = grad_w = None
        if need_w:
            grad_w = ctx.kernels[1](u.detach(), c, inv_h, go).t().reshape(1, in_dim * g)
        if need_u:
            # As in fastkan.paths.fused: an infinite d**2 would give a capped basis value times an unbounded d.
            # Forward needs no clamp (an infinite d**2 gives the capped value either way), and clamping
            # every d there cost it a quarter of its time.
            far = float(common.FAR * h)  # this path runs on the CPU only: reading h costs nothing
            v = u.clamp(float(grid.min()) - far, float(grid.max()) + far)
            grad_u = ctx.kernels[2](v, c, inv_h, _weights(weight, in_dim, g, None), go)
        return grad_u, None, None, grad_w, None, None, None


def one_output(u: Tensor, basis, weight: Tensor) -> Tensor | None:
    """The compiled one-output spline (N, 1), or None where this machine cannot compile it."""
    grid, h = basis.tensors()
    groups = _groups(basis, grid, h)
    kernels = _kernels(basis, u.dtype, groups)
    return None if kernels is None else OneOutput.apply(u, grid, h, weight, kernels, groups, basis.fn)


def _groups(basis, grid: Tensor, h: Tensor) -> _Groups | None:
    """The groups of centres an exponential basis' kernels take (``_Groups``), None for the general ones."""
    return (
        _Groups.of(grid, h, basis.neg_square_scale) if basis.exponential and grid.numel() <= GROUPED_CENTRES else None
    )


# Inside a model the user compiles, the layer is otherwise the plain composition (fastkan.modes):
# these kernels would be traced as Python code. As a torch.library operator they stay opaque to
# the compiler, which calls them as they are (docs/design/paths.md, "Modes").


def _named(name: str, grid: Tensor, h: Tensor) -> types.SimpleNamespace:
    """What ``one_output`` and ``_kernels`` read of a RadialBasis, from the registries by its name."""
    from ..bases import BASES, EXPONENTIAL, NEG_SQUARE_SCALES, OF_NEG_SQUARE, OF_NEG_SQUARE_DERIVATIVES

    return types.SimpleNamespace(
        name=name,
        fn=BASES[name],
        of_neg_square=OF_NEG_SQUARE[name],
        of_neg_square_derivative=OF_NEG_SQUARE_DERIVATIVES[name],
        neg_square_scale=NEG_SQUARE_SCALES.get(name, 1.0),
        exponential=name in EXPONENTIAL,
        num_grids=grid.numel(),
        tensors=lambda: (grid, h),
    )


# torch.library.custom_op is new in torch 2.4: older versions compile the plain composition.
OPERATORS = hasattr(torch.library, "custom_op")
if OPERATORS:

    @torch.library.custom_op("fastkan::one_output", mutates_args=())
    def one_output_op(u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, basis: str) -> Tensor:
        """``one_output`` as an operator: u (N, in), weight (1, in * G) -> (N, 1)."""
        named = _named(basis, grid, h)
        with torch.no_grad():
            y = None if _specialises(u) else one_output(u, named, weight)
            if y is None:  # no compiler here after all, or one row: the plain composition, as the layer takes
                y = modes.plain_spline(u, grid, h, weight, named.fn)
        return y

    @one_output_op.register_fake
    def _(u, grid, h, weight, basis):
        return u.new_empty(u.shape[0], 1)

    @torch.library.custom_op("fastkan::one_output_backward", mutates_args=())
    def one_output_backward_op(
        grad_out: Tensor, u: Tensor, grid: Tensor, h: Tensor, weight: Tensor, basis: str, need_u: bool, need_w: bool
    ) -> tuple[Tensor, Tensor]:
        """``OneOutput``'s backward as an operator: (grad_u, grad_w), each empty where not asked for."""
        named = _named(basis, grid, h)
        groups = _groups(named, grid, h)
        kernels = None if _specialises(u) else _kernels(named, u.dtype, groups)
        if kernels is None:  # not compiled here after all, or one row: the eager one-output backward
            grad_u, grad_w = one_output_backward(grad_out, u, grid, h, weight, named, (need_u, need_w))
        else:
            ctx = types.SimpleNamespace(
                saved_tensors=(u, grid, h, weight),
                needs_input_grad=(need_u, False, False, need_w),
                kernels=kernels,
                groups=groups,
                fn=named.fn,
            )
            with torch.no_grad():
                grad_u, _, _, grad_w, *_ = OneOutput.backward(ctx, grad_out)
        return (
            grad_u if grad_u is not None else u.new_empty(0),
            grad_w if grad_w is not None else weight.new_empty(0),
        )

    @one_output_backward_op.register_fake
    def _(grad_out, u, grid, h, weight, basis, need_u, need_w):
        return u.new_empty(u.shape if need_u else (0,)), weight.new_empty(weight.shape if need_w else (0,))

    def _setup_context(ctx, inputs, output):
        u, grid, h, weight, basis = inputs
        ctx.save_for_backward(u, grid, h, weight)
        ctx.basis = basis

    def _backward(ctx, grad_out):
        u, grid, h, weight = ctx.saved_tensors
        need_u, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[3]
        grad_u, grad_w = one_output_backward_op(grad_out.contiguous(), u, grid, h, weight, ctx.basis, need_u, need_w)
        return (grad_u if need_u else None), None, None, (grad_w if need_w else None), None

    one_output_op.register_autograd(_backward, setup_context=_setup_context)


def operator_applies(u: Tensor, basis, weight: Tensor) -> bool:
    """Whether a call inside the user's ``torch.compile`` may take ``one_output_op``: a one-output CPU layer
    of a basis of ``-d**2`` on a frozen grid, where the kernels compile (fastkan.dispatch.operator asks
    this of calls above ``PLAIN_ELEMENTS`` only)."""
    return (
        OPERATORS
        and ENABLED
        and not _broken
        and u.device.type == "cpu"
        and u.dtype in (torch.float32, torch.float64)
        and common.is_one_output(basis, u, weight)
    )
