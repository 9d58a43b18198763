"""The exact B-spline KAN, in efficient-kan's formulation.

Same parameter names, shapes, initialisation and outputs as efficient-kan's
``KAN`` and ``KANLinear``, so its state dicts load here and give the same
results. The benchmarks use it as the reference when efficient-kan is not
installed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layer import check_last_dim


class BSplineKANLinear(nn.Module):
    """B-spline KAN layer: (..., in_features) -> (..., out_features).

    ``silu(x) @ base_weight.T + B(x).flatten(-2) @ (spline_weight * spline_scaler[..., None]).flatten(-2).T``
    where ``B(x)`` (N, in, grid_size + spline_order) are the Cox-de Boor
    B-splines on the knots in buffer ``grid`` (in, grid_size + 2 * spline_order + 1).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid_size: int = 5,
        spline_order: int = 3,
        scale_noise: float = 0.1,
        scale_base: float = 1.0,
        scale_spline: float = 1.0,
        enable_standalone_scale_spline: bool = True,
        base_activation=nn.SiLU,
        grid_eps: float = 0.02,
        grid_range: Sequence[float] = (-1, 1),
        device=None,
        dtype=None,
    ):
        super().__init__()
        for name, value, least in (
            ("in_features", in_features, 1),
            ("out_features", out_features, 1),
            ("grid_size", grid_size, 1),
            ("spline_order", spline_order, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
            if value < least:
                raise ValueError(f"{name} must be at least {least}, got {value}")
        lo, hi = (float(v) for v in grid_range)
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
            raise ValueError(f"grid_range must be finite and increasing, got {tuple(grid_range)}")
        factory = {"device": device, "dtype": dtype}
        self.in_features, self.out_features = in_features, out_features
        self.grid_size, self.spline_order = grid_size, spline_order
        step = (hi - lo) / grid_size
        knots = torch.arange(-spline_order, grid_size + spline_order + 1, **factory) * step + lo
        self.register_buffer("grid", knots.expand(in_features, -1).contiguous())
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, grid_size + spline_order, **factory))
        self.enable_standalone_scale_spline = enable_standalone_scale_spline
        if enable_standalone_scale_spline:
            self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.scale_noise, self.scale_base, self.scale_spline = scale_noise, scale_base, scale_spline
        self.base_activation = base_activation()
        self.grid_eps = grid_eps
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same order of random draws as efficient-kan, so equal seeds give equal weights.
        nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5) * self.scale_base)
        with torch.no_grad():
            noise = (
                (torch.rand(self.grid_size + 1, self.in_features, self.out_features) - 0.5)
                * self.scale_noise
                / self.grid_size
            ).to(self.grid)
            scale = 1.0 if self.enable_standalone_scale_spline else self.scale_spline
            k = self.spline_order
            self.spline_weight.copy_(scale * self.curve2coeff(self.grid.T[k : self.grid.shape[1] - k], noise))
            if self.enable_standalone_scale_spline:
                nn.init.kaiming_uniform_(self.spline_scaler, a=math.sqrt(5) * self.scale_spline)

    def b_splines(self, x: Tensor) -> Tensor:
        """Cox-de Boor recursion: x (N, in) -> (N, in, grid_size + spline_order)."""
        g = self.grid
        x = x.unsqueeze(-1)
        bases = ((x >= g[:, :-1]) & (x < g[:, 1:])).to(x.dtype)
        for p in range(1, self.spline_order + 1):
            left = (x - g[:, : -(p + 1)]) / (g[:, p:-1] - g[:, : -(p + 1)])
            right = (g[:, p + 1 :] - x) / (g[:, p + 1 :] - g[:, 1:-p])
            bases = left * bases[..., :-1] + right * bases[..., 1:]
        return bases

    def curve2coeff(self, x: Tensor, y: Tensor) -> Tensor:
        """Least-squares coefficients through points x (N, in), y (N, in, out) -> (out, in, coeff)."""
        # lstsq handles float and double only: solve half precisions in float32.
        work = torch.promote_types(x.dtype, torch.float32)
        a = self.b_splines(x).transpose(0, 1).to(work)  # (in, N, coeff)
        b = y.transpose(0, 1).to(work)  # (in, N, out)
        return torch.linalg.lstsq(a, b).solution.permute(2, 0, 1).to(x.dtype).contiguous()

    @property
    def scaled_spline_weight(self) -> Tensor:
        if self.enable_standalone_scale_spline:
            return self.spline_weight * self.spline_scaler.unsqueeze(-1)
        return self.spline_weight

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(x, self.in_features, self)
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        base = F.linear(self.base_activation(x), self.base_weight)
        spline = F.linear(self.b_splines(x).flatten(1), self.scaled_spline_weight.flatten(1))
        return (base + spline).reshape(*lead, self.out_features)

    @torch.no_grad()
    def update_grid(self, x: Tensor, margin: float = 0.01) -> None:
        """Refit the knots to the data x (N, in), keeping the function it computes."""
        check_last_dim(x, self.in_features, "update_grid")
        x = x.reshape(-1, self.in_features)
        n, k, gs = x.shape[0], self.spline_order, self.grid_size
        splines = self.b_splines(x).permute(1, 0, 2)  # (in, N, coeff)
        coeff = self.scaled_spline_weight.permute(1, 2, 0)  # (in, coeff, out)
        values = torch.bmm(splines, coeff).permute(1, 0, 2)  # (N, in, out)
        x_sorted = torch.sort(x, dim=0)[0]
        adaptive = x_sorted[torch.linspace(0, n - 1, gs + 1, dtype=torch.int64, device=x.device)]
        step = (x_sorted[-1] - x_sorted[0] + 2 * margin) / gs
        uniform = torch.arange(gs + 1, dtype=x.dtype, device=x.device).unsqueeze(1) * step + x_sorted[0] - margin
        grid = self.grid_eps * uniform + (1 - self.grid_eps) * adaptive
        offsets = torch.arange(1, k + 1, dtype=x.dtype, device=x.device).unsqueeze(1) * step
        grid = torch.cat([grid[:1] - offsets.flip(0), grid, grid[-1:] + offsets], dim=0)
        self.grid.copy_(grid.T)
        self.spline_weight.copy_(self.curve2coeff(x, values))

    def regularization_loss(self, regularize_activation: float = 1.0, regularize_entropy: float = 1.0) -> Tensor:
        """efficient-kan's surrogate of the KAN paper's L1 + entropy regulariser."""
        l1 = self.spline_weight.abs().mean(-1)
        activation = l1.sum()
        p = l1 / activation
        entropy = -torch.sum(p * p.log())
        return regularize_activation * activation + regularize_entropy * entropy


class BSplineKAN(nn.Module):
    """A stack of BSplineKANLinear in ``layers`` (efficient-kan's ``KAN``)."""

    def __init__(
        self,
        layers_hidden: Sequence[int],
        grid_size: int = 5,
        spline_order: int = 3,
        scale_noise: float = 0.1,
        scale_base: float = 1.0,
        scale_spline: float = 1.0,
        base_activation=nn.SiLU,
        grid_eps: float = 0.02,
        grid_range: Sequence[float] = (-1, 1),
        device=None,
        dtype=None,
    ):
        super().__init__()
        layers_hidden = list(layers_hidden)
        if len(layers_hidden) < 2:
            raise ValueError(f"layers_hidden needs at least an input and an output size, got {layers_hidden}")
        self.grid_size, self.spline_order = grid_size, spline_order
        self.layers = nn.ModuleList(
            BSplineKANLinear(
                i,
                o,
                grid_size,
                spline_order,
                scale_noise,
                scale_base,
                scale_spline,
                base_activation=base_activation,
                grid_eps=grid_eps,
                grid_range=grid_range,
                device=device,
                dtype=dtype,
            )
            for i, o in zip(layers_hidden[:-1], layers_hidden[1:])
        )

    def forward(self, x: Tensor, update_grid: bool = False) -> Tensor:
        for layer in self.layers:
            if update_grid:
                layer.update_grid(x)
            x = layer(x)
        return x

    def regularization_loss(self, regularize_activation: float = 1.0, regularize_entropy: float = 1.0) -> Tensor:
        return sum(layer.regularization_loss(regularize_activation, regularize_entropy) for layer in self.layers)
