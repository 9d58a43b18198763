"""Bump functions that stand in for the cubic B-spline basis.

Each basis is an elementwise function of the scaled distance
``d = (u - u_i) / h`` between an input ``u`` and a grid centre ``u_i``.
Adding a basis is one function plus one ``register`` call; the layer,
the tests, the benchmarks and the reports pick it up from ``BASES``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

BasisFn = Callable[[Tensor], Tensor]
DerivativeFn = Callable[[Tensor, Tensor], Tensor]

#: name -> elementwise function of the scaled distance ``d``.
BASES: dict[str, BasisFn] = {}
#: name -> ``derivative(d, phi)``, the basis' derivative given ``phi = basis(d)``.
#: Optional: the fused path uses it to skip autograd when recomputing a block.
DERIVATIVES: dict[str, DerivativeFn] = {}
#: name -> ``k`` with ``basis(d) == k(s * -d**2)``, ``s`` its ``NEG_SQUARE_SCALES`` entry (default 1),
#: free to overwrite its argument. Optional: the fused path then builds ``s * -d**2`` in one pass.
OF_NEG_SQUARE: dict[str, BasisFn] = {}
#: name -> ``s`` > 0, the factor ``of_neg_square``'s argument comes with: a basis whose first step
#: scales ``-d**2`` gets that product for free, in the pass that squares ``d``.
NEG_SQUARE_SCALES: dict[str, float] = {}
#: name -> ``k'(t)`` for ``t = -d**2`` (unscaled) given ``phi``; must leave ``phi`` as it is
#: (it may be the basis kept for backward).
#: Optional, with ``of_neg_square``: the fused backward then needs no pass over ``d``.
OF_NEG_SQUARE_DERIVATIVES: dict[str, Callable[[Tensor], Tensor]] = {}
#: Names whose ``of_neg_square`` is ``2**t`` (below its cap), so that ``k(a + b) == k(a) * k(b)``.
#: Optional: the compiled one-output kernels then build the bumps of a uniform grid from two
#: exponentials per group of centres (``fastkan.paths.compiled``), not one per bump.
EXPONENTIAL: set[str] = set()
#: name -> ``nth(d, k)``, the basis' ``k``-th derivative in ``d`` for any ``k >= 0`` (a new tensor).
#: Optional: second and higher derivatives then take ``fastkan.paths.higher``'s two Functions instead of
#: autograd through the plain composition.
NTH_DERIVATIVES: dict[str, Callable[[Tensor, int], Tensor]] = {}
#: name -> ``radius``: the basis is exactly 0 wherever ``|d| >= radius``.
#: Optional: large grids then evaluate only the bumps near each input (``fastkan.paths.local``).
SUPPORTS: dict[str, float] = {}

# Beyond this |d| every decaying bump below is 0 in float64 (exp(-745) == 0),
# so clamping there changes no value and keeps pow/exp gradients finite.
_FAR = 750.0
# exp(-x) beyond x = 87 gives denormal or zero floats, which x86 CPUs compute
# 20 to 40 times slower (and every product with them after). Capping x at 64
# changes a bump's value by less than exp(-64) = 1.6e-28.
EXP_CAP = 64.0
# exp(x) is computed as exp2(x * log2(e)) from this many values on: torch's exp2 kernel took 0.38x
# the time of its exp on this project's CPU (AVX-512, torch 2.13). On fewer values the product by
# a Python number and exp2's backward (one more product, by ln 2) cost more than they save:
# forward + backward took 1.07x exp's time at 8192 values, 0.96x at 32768. The rounding of
# x * log2(e) moves a value by at most |x| * 2**-24 relative (below 4e-6 at the cap).
_EXP2_VALUES = 1 << 15
_LOG2E = 1.4426950408889634


def _exp_neg(t: Tensor) -> Tensor:
    """``exp(-t)`` for ``t >= 0``, overwriting ``t``."""
    if t.numel() < _EXP2_VALUES:
        return torch.exp(t.neg_())
    return torch.exp2(t.mul_(-_LOG2E))


def _positive_finite(x) -> bool:
    """Whether ``x`` is a real number (not a bool) in (0, inf); False for nan."""
    return not isinstance(x, bool) and isinstance(x, (int, float)) and 0 < x < float("inf")


def register(
    name: str,
    fn: BasisFn | None = None,
    derivative: DerivativeFn | None = None,
    of_neg_square: BasisFn | None = None,
    of_neg_square_derivative: Callable[[Tensor], Tensor] | None = None,
    neg_square_scale: float | None = None,
    support: float | None = None,
    exponential: bool = False,
    nth_derivative: Callable[[Tensor, int], Tensor] | None = None,
    **options: float,
):
    """Register ``fn`` (with fixed keyword ``options``) as basis ``name``.

    Usable as a decorator (``@register("name")``) or directly
    (``register("gauss-p3", gaussian, exponent=3.0)``). ``derivative(d, phi)``,
    ``of_neg_square`` and ``of_neg_square_derivative`` are optional speed-ups
    of the fused path: without the first it differentiates ``fn`` by autograd,
    without the second it evaluates ``fn(d)``, without the third its backward
    works on ``d`` with ``derivative``. ``neg_square_scale``: the factor ``s`` of
    ``of_neg_square``'s argument ``s * -d**2`` (default 1). ``support``: a radius beyond which ``fn``
    is exactly 0, for bases of compact support. ``exponential``: ``of_neg_square(t)`` is ``2**t``.
    ``nth_derivative(d, k)``: the ``k``-th derivative, for second derivatives at speed (``fastkan.paths.higher``).
    """
    if of_neg_square_derivative is not None and of_neg_square is None:
        raise ValueError(f"basis {name!r}: of_neg_square_derivative needs of_neg_square")
    if neg_square_scale is not None:
        if of_neg_square is None:
            raise ValueError(f"basis {name!r}: neg_square_scale needs of_neg_square")
        if not _positive_finite(neg_square_scale):
            raise ValueError(f"basis {name!r}: neg_square_scale must be positive and finite, got {neg_square_scale!r}")
    if exponential and of_neg_square is None:
        raise ValueError(f"basis {name!r}: exponential needs of_neg_square")
    if support is not None and not _positive_finite(support):
        raise ValueError(f"basis {name!r}: support must be a positive finite radius, got {support!r}")

    def add(f: BasisFn) -> BasisFn:
        if name in BASES:
            raise ValueError(f"basis {name!r} is already registered")
        BASES[name] = functools.partial(f, **options) if options else f
        if derivative is not None:
            DERIVATIVES[name] = functools.partial(derivative, **options) if options else derivative
        if of_neg_square is not None:
            OF_NEG_SQUARE[name] = of_neg_square
        if of_neg_square_derivative is not None:
            OF_NEG_SQUARE_DERIVATIVES[name] = of_neg_square_derivative
        if neg_square_scale is not None:
            NEG_SQUARE_SCALES[name] = float(neg_square_scale)
        if support is not None:
            SUPPORTS[name] = float(support)
        if exponential:
            EXPONENTIAL.add(name)
        if nth_derivative is not None:
            NTH_DERIVATIVES[name] = nth_derivative
            _NTH_BY_FN[BASES[name]] = nth_derivative
        return f

    return add(fn) if fn is not None else add


# The layers' autograd Functions keep the basis function, not its name.
_NTH_BY_FN: dict = {}


def nth_derivative_of(fn: BasisFn) -> Callable[[Tensor, int], Tensor] | None:
    """The ``nth_derivative`` registered with the basis function ``fn`` (a ``BASES`` value), or None."""
    return _NTH_BY_FN.get(fn)


def get_basis(name: str) -> BasisFn:
    """The registered basis function called ``name``; ValueError if unknown."""
    if not isinstance(name, str):
        raise TypeError(f"basis must be a registered name (str), got {type(name).__name__}: {name!r}")
    try:
        return BASES[name]
    except KeyError:
        raise ValueError(f"unknown basis {name!r}; known bases: {', '.join(BASES)}") from None


def _abs_pow(d: Tensor, p: float) -> Tensor:
    """``min(|d|, _FAR) ** p``; products for integer exponents, several times faster than a general pow."""
    a = d.abs().clamp(max=_FAR)
    if p == 2.0:
        return a * a
    if p == 3.0:
        return a * a * a
    if p == 4.0:
        s = a * a
        return s * s
    return a.pow(p)


def _gaussian_derivative(d: Tensor, phi: Tensor, exponent: float = 2.0) -> Tensor:
    if exponent == 2.0:
        return (d * phi).mul_(-2.0)
    return _abs_pow(d, exponent - 1.0).mul_(phi).mul_(torch.sign(d)).mul_(-exponent)


def _gaussian_nth(d: Tensor, k: int) -> Tensor:
    """``d**k/dd**k exp(-d**2) = (-1)**k H_k(d) exp(-d**2)``, H_k by the Hermite recurrence."""
    e = torch.exp((d * d).clamp_(max=EXP_CAP).neg_())
    if k == 0:
        return e
    two_d = 2.0 * d
    previous, hermite = torch.ones_like(d), two_d
    for j in range(1, k):
        previous, hermite = hermite, two_d * hermite - (2.0 * j) * previous
    return hermite.mul_(e).neg_() if k % 2 else hermite.mul_(e)


# The fused path hands k its argument times log2(e), so exp(t) is exp2's one pass; the cap is exp(-64).
@register(
    "gaussian",
    derivative=_gaussian_derivative,
    of_neg_square=lambda t: t.clamp_(min=-EXP_CAP * _LOG2E).exp2_(),
    of_neg_square_derivative=lambda phi: phi,
    neg_square_scale=_LOG2E,
    exponential=True,
    nth_derivative=_gaussian_nth,
)
def gaussian(d: Tensor, exponent: float = 2.0) -> Tensor:
    """fast-kan's radial basis ``exp(-|d|**exponent)`` (exponent 2: Gaussian)."""
    if exponent == 2.0:
        square = d * d
        # The cap changes only bumps below exp(-64), whose gradient is as negligible as their
        # value; applied outside autograd, it costs backward no mask. Small calls skip it: there its
        # two operations cost more than the few slow denormal values they avoid (forward + backward
        # of a [4, 16, 1] FastKAN on 32 inputs: 0.96x the time with the cap).
        if square.numel() >= _EXP2_VALUES:
            square.detach().clamp_(max=EXP_CAP)
        return _exp_neg(square)
    return _exp_neg(_abs_pow(d, exponent).clamp(max=EXP_CAP))


# Other exponents, as the seed suggests. Named so that no basis name contains
# another one: `pytest -k fastkan-gaussian` then selects exactly one model.
register("gauss-p1.5", gaussian, _gaussian_derivative, exponent=1.5)
register("gauss-p3", gaussian, _gaussian_derivative, exponent=3.0)
register("gauss-p4", gaussian, _gaussian_derivative, exponent=4.0)


@register(
    "expit",
    derivative=lambda d, phi: (1.0 - phi).mul_(phi).mul_(d).mul_(2.0),
    of_neg_square=lambda t: t.neg_().sigmoid_(),
    of_neg_square_derivative=lambda phi: (phi - 1.0).mul_(phi),
)
def expit(d: Tensor) -> Tensor:
    """The seed's formula as written: ``1 / (exp(-d**2) + 1)``.

    An inverted bump: 0.5 at the centre, tending to 1 far away. The linear
    layer after it absorbs the offset and the sign. See ``centred-expit``.
    """
    return torch.special.expit(d * d)


@register(
    "centred-expit",
    derivative=lambda d, phi: (1.0 - 0.5 * phi).mul_(phi).mul_(d).mul_(-2.0),
    of_neg_square=lambda t: t.clamp_(min=-EXP_CAP).sigmoid_().mul_(2.0),
    of_neg_square_derivative=lambda phi: torch.addcmul(phi, phi, phi, value=-0.5),
)
def expit_centred(d: Tensor) -> Tensor:
    """The seed's expit turned into a bump: ``2 / (1 + exp(d**2))``, 1 at the centre, 0 far away."""
    return 2.0 * torch.special.expit(-(d * d).clamp(max=EXP_CAP))


@register("rswaf", derivative=lambda d, phi: torch.tanh(d).mul_(phi).mul_(-2.0))
def rswaf(d: Tensor) -> Tensor:
    """FasterKAN's reflectional switch ``1 - tanh(d)**2`` (= sech(d)**2)."""
    t = torch.tanh(d)
    return 1.0 - t * t


@register(
    "inverse-quadratic",
    derivative=lambda d, phi: (phi * phi).mul_(d).mul_(-2.0),
    of_neg_square=lambda t: torch.rsub(t, 1.0).reciprocal_(),
    of_neg_square_derivative=lambda phi: phi * phi,
)
def inverse_quadratic(d: Tensor) -> Tensor:
    """Cauchy bump ``1 / (1 + d**2)``: heavy tails, no transcendental function."""
    return torch.reciprocal(1.0 + d * d)


def _wendland_derivative(d: Tensor, phi: Tensor) -> Tensor:
    s = 1.0 - d.abs().clamp(max=1.0)
    return (s * s).mul_(s).mul_(d).mul_(-20.0)


@register("wendland", derivative=_wendland_derivative, support=1.0)
def wendland(d: Tensor) -> Tensor:
    """Wendland's C2 bump ``max(0, 1 - |d|)**4 * (4|d| + 1)``: compact support |d| < 1."""
    a = d.abs().clamp(max=1.0)
    s = 1.0 - a
    s2 = s * s
    return s2 * s2 * (4.0 * a + 1.0)


@register("hat", derivative=lambda d, phi: torch.sign(d).neg_().mul_(phi > 0), support=1.0)
def hat(d: Tensor) -> Tensor:
    """The order-1 B-spline ``max(0, 1 - |d|)``: piecewise linear interpolation."""
    return (1.0 - d.abs()).clamp(min=0.0)


def _bspline_derivative(d: Tensor, phi: Tensor) -> Tensor:
    a = d.abs().clamp(max=2.0)
    inner = a * (1.5 * a - 2.0)
    outer = (2.0 - a) ** 2 * -0.5
    return torch.where(a < 1.0, inner, outer).mul_(torch.sign(d))


@register("bspline", derivative=_bspline_derivative, support=2.0)
def bspline(d: Tensor) -> Tensor:
    """The exact cardinal cubic B-spline centred at 0 with unit knot spacing.

    With centres ``linspace(-1.4, 1.4, 8)`` and ``h = 0.4`` these are exactly
    efficient-kan's default basis functions.
    """
    # Clamping before the polynomials keeps the unselected branch of `where`
    # finite, so its zero gradient does not turn into 0 * inf = nan.
    a = d.abs().clamp(max=2.0)
    # d * d, not a * a: autograd's derivative of abs at 0 is 0, which would make the second derivative
    # at a centre 0 instead of -2 (the a**3 term's is 0 there either way).
    inner = 2.0 / 3.0 - d * d + 0.5 * a * a * a
    outer = (2.0 - a) ** 3 / 6.0
    return torch.where(a < 1.0, inner, outer)
