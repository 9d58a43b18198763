"""Fit quality: every model trained on the same seeded regression tasks.

The tasks are functions of two inputs in [-1, 1] of different smoothness.
Every model gets about the same number of parameters, the same optimizer,
steps and seeds; the test RMSE is recorded beside the speed measurements so
that accuracy regressions are tracked like speed ones.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from perf.matrix.configs import Shape
from perf.matrix.models import matched

TASKS: dict[str, Callable[[Tensor], Tensor]] = {
    # The seed's benchmark target.
    "seed": lambda x: torch.exp(torch.sin(math.pi * x[:, 0]) + x[:, 1] ** 2),
    # Smooth and separable in products: easy for bumps and B-splines alike.
    "product": lambda x: x[:, 0] * x[:, 1] + 0.5 * torch.cos(math.pi * x[:, 1]),
    # Kinks: not differentiable at 0.
    "kink": lambda x: x[:, 0].abs() - (x[:, 1] - 0.3).abs(),
    # High frequency along one input: needs resolution from the grid.
    "wave": lambda x: torch.sin(4 * math.pi * x[:, 0]) * torch.exp(-(x[:, 1] ** 2)),
}


@dataclass(frozen=True)
class FitSettings:
    hidden: int = 8  # FastKAN [2, hidden, 1]; the other models are matched in parameters
    steps: int = 300
    seeds: int = 3
    train: int = 1024
    test: int = 1024
    lr: float = 1e-2


FIT_SETTINGS = {
    "smoke": FitSettings(steps=5, seeds=2, train=64, test=64),  # the suite's own tests
    # The default run: quick's tasks and steps on two seeds, in two thirds of the time (the fit
    # cases were 43% of the default job's 5 minutes on this project's 2-core host).
    "brief": FitSettings(seeds=2),
    "quick": FitSettings(),  # the documented runs (docs/results)
    "full": FitSettings(hidden=16, steps=2000, seeds=5, train=4096, test=4096),
}


@dataclass(frozen=True)
class FitCase:
    model: str
    task: str

    @property
    def id(self) -> str:
        return f"{self.model}/fit-{self.task}/cpu/fit"


def shape(settings: FitSettings, width: int | None = None) -> Shape:
    """[2, width, 1] (default: ``settings.hidden``) for inputs in [-1, 1].

    LayerNorm over two inputs keeps little more than the sign of their difference, so the first
    layer puts its grid on the data's range instead; the hidden layer keeps fast-kan's LayerNorm.
    """
    return Shape((2, width or settings.hidden, 1), first={"use_layernorm": False, "grid_min": -1.0, "grid_max": 1.0})


def build(model: str, settings: FitSettings) -> nn.Module:
    """The registry's model ``model`` sized for the fit tasks: about the default FastKAN's trainable parameters."""
    return matched(model, lambda w: shape(settings, w), settings.hidden)


def data(task: str, n: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g) * 2 - 1
    return x, TASKS[task](x)[:, None]


def fit(model_name: str, task: str, settings: FitSettings) -> dict:
    """Train on ``settings.seeds`` seeds; the test RMSE of each, their mean and spread."""
    rmses = []
    for seed in range(settings.seeds):
        torch.manual_seed(seed)
        model = build(model_name, settings)
        x, y = data(task, settings.train, 1000 + seed)
        xt, yt = data(task, settings.test, 2000 + seed)
        opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
        for _ in range(settings.steps):
            opt.zero_grad(set_to_none=True)
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        with torch.no_grad():
            rmses.append(nn.functional.mse_loss(model(xt), yt).sqrt().item())
    return {
        "task": task,
        "rmse": rmses,
        "rmse_mean": statistics.fmean(rmses),
        "rmse_std": statistics.stdev(rmses) if len(rmses) > 1 else 0.0,
        "params": sum(p.numel() for p in build(model_name, settings).parameters() if p.requires_grad),
        "steps": settings.steps,
        "seeds": settings.seeds,
    }
