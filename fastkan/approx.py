"""How well a basis reproduces the cubic B-spline basis up to a linear map."""

from __future__ import annotations

import math

import torch

from .bases import get_basis


def bspline_fit_error(
    basis: str,
    num_grids: int = 8,
    grid_min: float = -2.0,
    grid_max: float = 2.0,
    width: float = 1.0,
    samples: int = 2001,
) -> tuple[float, float]:
    """Relative L2 and max error of the best linear map from ``basis`` to the cubic B-splines.

    Both families sit on the centres ``linspace(grid_min, grid_max, num_grids)``;
    the B-splines have knot spacing equal to the grid spacing ``s``, the bumps
    width ``h = width * s``. Errors are measured on the grid's interior
    [grid_min, grid_max] (float64), the max error relative to the largest
    B-spline value.
    """
    if num_grids < 2:
        raise ValueError(f"num_grids must be at least 2, got {num_grids}")
    if not grid_min < grid_max:
        raise ValueError(f"need grid_min < grid_max, got {grid_min}, {grid_max}")
    if not width > 0:
        raise ValueError(f"width must be positive, got {width}")
    dt = torch.float64
    centres = torch.linspace(grid_min, grid_max, num_grids, dtype=dt)
    spacing = (grid_max - grid_min) / (num_grids - 1)
    x = torch.linspace(grid_min, grid_max, samples, dtype=dt)
    d = (x[:, None] - centres) / spacing
    target = get_basis("bspline")(d)
    bumps = get_basis(basis)(d / width)
    coeff = torch.linalg.lstsq(bumps, target, driver="gelsd").solution
    resid = bumps @ coeff - target
    return (resid.norm() / target.norm()).item(), (resid.abs().max() / target.abs().max()).item()


def best_width(
    basis: str, num_grids: int = 8, lo: float = 0.25, hi: float = 4.0, steps: int = 40
) -> tuple[float, float]:
    """The width (in grid spacings) with the smallest relative L2 error: a log-spaced scan, then a
    golden-section refinement."""

    def err(w: float) -> float:
        return bspline_fit_error(basis, num_grids, width=w)[0]

    ws = [lo * (hi / lo) ** (i / (steps - 1)) for i in range(steps)]
    errs = [err(w) for w in ws]
    i = min(range(steps), key=errs.__getitem__)
    a, b = ws[max(0, i - 1)], ws[min(steps - 1, i + 1)]
    r = (math.sqrt(5) - 1) / 2
    for _ in range(30):
        c, e = b - r * (b - a), a + r * (b - a)
        if err(c) < err(e):
            b = e
        else:
            a = c
    w = (a + b) / 2
    best = min((err(w), w), (errs[i], ws[i]))
    return best[1], best[0]
