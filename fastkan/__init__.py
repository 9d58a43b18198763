"""fastkan: Kolmogorov-Arnold Networks at MLP speed."""

from .bases import BASES, get_basis, register
from .bspline import BSplineKAN, BSplineKANLinear
from .layer import FastKAN, FastKANLayer, RadialBasis
from .mlp import MLP, matched_mlp

__all__ = [
    "BASES",
    "BSplineKAN",
    "BSplineKANLinear",
    "FastKAN",
    "FastKANLayer",
    "MLP",
    "RadialBasis",
    "get_basis",
    "matched_mlp",
    "register",
]
__version__ = "0.1.0"
