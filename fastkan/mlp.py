"""The parameter-matched MLP that every KAN here is compared with."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn


class MLP(nn.Module):
    """Linear layers with ``activation`` (ReLU by default) between them: (..., layers[0]) -> (..., layers[-1])."""

    def __init__(
        self,
        layers: Sequence[int],
        output_activation: Callable[[Tensor], Tensor] | None = None,
        device=None,
        dtype=None,
        activation: Callable[[], nn.Module] = nn.ReLU,
    ):
        super().__init__()
        layers = list(layers)
        if len(layers) < 2 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in layers):
            raise ValueError(f"layers must be at least two positive ints, got {layers}")
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(layers[:-1], layers[1:])):
            if i:
                mods.append(activation())
            mods.append(nn.Linear(a, b, device=device, dtype=dtype))
        self.net = nn.Sequential(*mods)
        self.output_activation = output_activation

    def forward(self, x: Tensor) -> Tensor:
        y = self.net(x)
        return self.output_activation(y) if self.output_activation is not None else y


def matched_hidden(in_dim: int, out_dim: int, num_params: int) -> int:
    """Hidden width of the one-hidden-layer MLP [in, hidden, out] whose parameter count is closest to num_params."""
    # [in, h, out] has h * (in + out + 1) + out parameters.
    per_unit = in_dim + out_dim + 1
    return max(1, round((num_params - out_dim) / per_unit))


def matched_mlp(model: nn.Module, in_dim: int, out_dim: int, **options) -> MLP:
    """The one-hidden-layer MLP [in_dim, hidden, out_dim] closest in parameter count to ``model``."""
    n = sum(p.numel() for p in model.parameters())
    return MLP([in_dim, matched_hidden(in_dim, out_dim, n), out_dim], **options)
