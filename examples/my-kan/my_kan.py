"""A researcher's own KAN, to benchmark beside the field: a Chebyshev-basis KAN in a few lines.

Each edge is sum_k c_k T_k(tanh x), with T_k the Chebyshev polynomials (recurrence T_{k+1} = 2 x T_k
- T_{k-1}); ``num_basis`` polynomials per edge, as every KAN of the matrix gets. The suite builds it
as ``ChebyKAN(layers, num_basis=G)``.
"""

import torch
from torch import nn


class ChebyLayer(nn.Module):
    """(..., in) -> (..., out): sum over inputs and degrees of coeff[out, in, k] * T_k(tanh(x_in))."""

    def __init__(self, in_dim: int, out_dim: int, num_basis: int = 8):
        super().__init__()
        self.num_basis = num_basis
        self.coeff = nn.Parameter(torch.randn(out_dim, in_dim * num_basis) / (in_dim * num_basis) ** 0.5)

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.tanh(x)
        polys = [torch.ones_like(t), t]
        while len(polys) < self.num_basis:
            polys.append(2 * t * polys[-1] - polys[-2])
        return torch.stack(polys[: self.num_basis], dim=-1).flatten(-2)  # (..., in * num_basis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.basis(x) @ self.coeff.t()


class ChebyKAN(nn.Sequential):
    """A stack of ChebyLayers for ``layers`` sizes, e.g. [784, 64, 10]."""

    def __init__(self, layers, num_basis: int = 8):
        super().__init__(*(ChebyLayer(a, b, num_basis) for a, b in zip(layers[:-1], layers[1:])))


class _HalfInputGradient(torch.autograd.Function):
    """The identity whose backward passes on half the gradient: a planted bug."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return 0.5 * grad


class WrongGradientKAN(ChebyKAN):
    """ChebyKAN with a custom backward that is wrong: the suite's gradient column marks it WRONG."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_HalfInputGradient.apply(x))
