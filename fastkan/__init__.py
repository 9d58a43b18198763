"""fastkan: Kolmogorov-Arnold Networks at MLP speed."""

from .bases import BASES, get_basis, register
from .bspline import BSplineKAN, BSplineKANLinear
from .explain import explain
from .layer import FastKAN, FastKANLayer, RadialBasis
from .mlp import MLP, matched_mlp
from .modes import warmup

__all__ = [
    "BASES",
    "BSplineKAN",
    "BSplineKANLinear",
    "FastKAN",
    "FastKANLayer",
    "MLP",
    "RadialBasis",
    "explain",
    "get_basis",
    "matched_mlp",
    "register",
    "warmup",
]
__version__ = "0.1.0"
