"""Physics tasks: which KAN solves a PDE best per second, its loss holding second derivatives.

Each task is a physics-informed fit: a network u(coordinates) trained on collocation points, its
loss the PDE residual (taken by autograd with ``create_graph=True``) plus boundary and initial
terms, its metric the relative L2 error of u against the exact solution on a test grid.

- ``poisson-2d``: pykan's tutorial problem, Laplacian(u) = -2 pi^2 sin(pi x) sin(pi y) on [-1, 1]^2,
  u = 0 on the boundary; exact u = sin(pi x) sin(pi y).
- ``poisson-1d``: u'' = -(4 pi)^2 sin(4 pi x) on [-1, 1], u(-1) = u(1) = 0: four periods; exact
  u = sin(4 pi x).
- ``burgers``: u_t + u u_x = nu u_xx on x in [-1, 1], t in [0, 1], nu = 0.01 / pi, u(x, 0) = -sin(pi x),
  u(-1, t) = u(1, t) = 0 (the usual physics-informed benchmark); exact u by the Cole-Hopf
  transformation, its integral taken by Gauss-Hermite quadrature (``burgers_exact``).

Each PDE residual is divided by the root mean square of its source (or, for Burgers, taken as it
is), so that the terms of every task weigh alike. The protocol follows the accuracy cases: full-batch
Adam for ``steps`` steps (equal steps), then as many steps as fit in the time the default FastKAN
takes for ``steps`` (equal time), per seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from fastkan import BASES
from perf.matrix.accuracy import Trained, mean_std, step_time
from perf.matrix.configs import Shape
from perf.matrix.models import matched, models

REFERENCE = "fastkan-gaussian"  # the equal-time budget is this model's time for the step budget
NU = 0.01 / math.pi


def _grad(out: Tensor, x: Tensor) -> Tensor:
    return torch.autograd.grad(out.sum(), x, create_graph=True)[0]


def _poisson_2d_residual(u: Tensor, x: Tensor) -> Tensor:
    g = _grad(u, x)
    lap = _grad(g[:, 0], x)[:, 0] + _grad(g[:, 1], x)[:, 1]
    source = -2 * math.pi**2 * torch.sin(math.pi * x[:, 0]) * torch.sin(math.pi * x[:, 1])
    return (lap - source) / (math.pi**2)  # the source's root mean square is pi^2


def _poisson_1d_residual(u: Tensor, x: Tensor) -> Tensor:
    k = 4 * math.pi
    u_xx = _grad(_grad(u, x)[:, 0], x)[:, 0]
    return (u_xx + k**2 * torch.sin(k * x[:, 0])) / (k**2 / math.sqrt(2))


def _burgers_residual(u: Tensor, x: Tensor) -> Tensor:
    g = _grad(u, x)  # (N, 2): d/dx, d/dt
    u_xx = _grad(g[:, 0], x)[:, 0]
    return g[:, 1] + u[:, 0] * g[:, 0] - NU * u_xx


def burgers_exact(x: np.ndarray, t: np.ndarray, nodes: int = 200) -> np.ndarray:
    """Cole-Hopf: u = -int sin(pi (x - eta)) f(x - eta) G dEta / int f(x - eta) G dEta, f(y) =
    exp(-cos(pi y) / (2 pi nu)), G the heat kernel of width sqrt(4 nu t); at t = 0, -sin(pi x)."""
    x, t = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(t, dtype=np.float64))
    z, w = np.polynomial.hermite.hermgauss(nodes)
    y = x[..., None] - np.sqrt(4 * NU * t)[..., None] * z  # eta = sqrt(4 nu t) z
    log_f = -np.cos(np.pi * y) / (2 * np.pi * NU)
    weights = w * np.exp(log_f - log_f.max(axis=-1, keepdims=True))  # f spans e^+-50: scale it first
    return -(weights * np.sin(np.pi * y)).sum(-1) / weights.sum(-1)


@dataclass(frozen=True)
class PDE:
    name: str
    dims: int
    residual: Callable[[Tensor, Tensor], Tensor]
    exact: Callable[[Tensor], Tensor]  # (N, dims) -> (N,)
    description: str

    def collocation(self, n: int, seed: int) -> Tensor:
        """Interior points: uniform in [-1, 1]^dims (Burgers: t in [0, 1])."""
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(n, self.dims, generator=g) * 2 - 1
        if self.name == "burgers":
            x[:, 1] = (x[:, 1] + 1) / 2
        return x

    def boundary(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        """Boundary (and initial) points and their values."""
        g = torch.Generator().manual_seed(seed + 1)
        if self.name == "poisson-1d":
            x = torch.tensor([[-1.0], [1.0]])
            return x, torch.zeros(2)
        s = torch.rand(n, generator=g) * 2 - 1
        side = torch.randint(0, 4 if self.name == "poisson-2d" else 3, (n,), generator=g)
        if self.name == "poisson-2d":
            edge = torch.where(side % 2 == 0, -1.0, 1.0)
            x = torch.where((side < 2)[:, None], torch.stack([edge, s], 1), torch.stack([s, edge], 1))
            return x, torch.zeros(n)
        # Burgers: side 0 the initial line t = 0, sides 1 and 2 the walls x = -1 and x = 1.
        t = (s + 1) / 2
        x = torch.where(
            (side == 0)[:, None],
            torch.stack([s, torch.zeros(n)], 1),
            torch.stack([torch.where(side == 1, -1.0, 1.0), t], 1),
        )
        return x, torch.where(side == 0, -torch.sin(math.pi * s), torch.zeros(n))

    def test_grid(self) -> tuple[Tensor, Tensor]:
        if self.name == "poisson-1d":
            x = torch.linspace(-1, 1, 401)[:, None]
        elif self.name == "poisson-2d":
            a = torch.linspace(-1, 1, 41)
            x = torch.cartesian_prod(a, a)
        else:
            x = torch.cartesian_prod(torch.linspace(-1, 1, 101), torch.linspace(0, 1, 21))
        return x, self.exact(x)


PDES: dict[str, PDE] = {
    p.name: p
    for p in [
        PDE(
            "poisson-2d",
            2,
            _poisson_2d_residual,
            lambda x: torch.sin(math.pi * x[:, 0]) * torch.sin(math.pi * x[:, 1]),
            "pykan's tutorial Poisson problem on [-1, 1]^2",
        ),
        PDE(
            "poisson-1d",
            1,
            _poisson_1d_residual,
            lambda x: torch.sin(4 * math.pi * x[:, 0]),
            "Poisson in 1-D, four periods of sin(4 pi x)",
        ),
        PDE(
            "burgers",
            2,
            _burgers_residual,
            lambda x: torch.from_numpy(burgers_exact(x[:, 0].double().numpy(), x[:, 1].double().numpy())).float(),
            "viscous Burgers, nu = 0.01 / pi, against the Cole-Hopf solution",
        ),
    ]
}


@dataclass(frozen=True)
class PhysicsSettings:
    models: tuple[str, ...]
    hidden: int  # FastKAN [dims, hidden, 1]; the others matched in parameters
    steps: int
    seeds: int
    collocation: int
    boundary: int
    lr: float = 1e-2


PHYSICS_SETTINGS = {
    "smoke": PhysicsSettings(("fastkan-gaussian", "mlp-tanh"), 4, 3, 1, 32, 8),
    "quick": PhysicsSettings(("fastkan-gaussian", "bspline", "mlp-tanh"), 8, 60, 1, 128, 32),
    # Ours in every basis (registered when this module is imported), the references, every peer
    # (pykan at its tutorial's size, TUTORIAL_WIDTHS).
    "full": PhysicsSettings(
        (
            *(f"fastkan-{b}" for b in BASES),
            "plain-fastkan",
            "lean-fastkan",
            "bspline",
            "mlp-tanh",
            "efficient-kan",
            "fast-kan",
            "faster-kan",
            "flashkan",
            "inkan",
            "chebykan",
            "pykan",
        ),
        12,
        400,
        2,
        512,
        256,
    ),
}


def shape(task: str, width: int) -> Shape:
    """[dims, width, 1], the first layer's grid on the coordinates' range (``domain``), no LayerNorm."""
    return Shape((PDES[task].dims, width, 1), first={"domain": (-1.0, 1.0)})


# Models at the size of their own physics tutorial rather than matched in parameters: pykan's
# Poisson example trains KAN(width=[2, 2, 1], grid=5, k=3) (the registry's pykan at width 2).
TUTORIAL_WIDTHS = {"pykan": 2}


def build(model: str, task: str, settings: PhysicsSettings) -> nn.Module:
    """The registry's model for the task, with about the default FastKAN's trainable parameters
    (``TUTORIAL_WIDTHS``: at its tutorial's width)."""
    if model in TUTORIAL_WIDTHS:
        return models()[model].build(shape(task, TUTORIAL_WIDTHS[model]))
    return matched(model, lambda w: shape(task, w), settings.hidden)


def train(
    task: str, model_name: str, settings: PhysicsSettings, seed: int, steps: int, read_at: tuple[int, ...]
) -> Trained:
    pde = PDES[task]
    torch.manual_seed(seed)
    model = build(model_name, task, settings)
    x = pde.collocation(settings.collocation, seed).requires_grad_()
    xb, yb = pde.boundary(settings.boundary, seed)
    xt, yt = pde.test_grid()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
    out = Trained()  # at: step -> relative L2 error on the test grid
    for step in range(1, steps + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        residual = pde.residual(model(x), x)
        loss = residual.pow(2).mean() + (model(xb)[:, 0] - yb).pow(2).mean()
        loss.backward()
        opt.step()
        out.step_times.append(time.perf_counter() - start)
        if step in read_at:
            with torch.no_grad():
                err = (model(xt)[:, 0] - yt).norm() / yt.norm()
            out.at[step] = err.item() if torch.isfinite(err) else float("inf")
    return out


_REFERENCE_TIMES: dict[tuple, float] = {}


def evaluate(task: str, model_name: str, settings: PhysicsSettings) -> dict:
    """The protocol for one model on one task: the ``extra_info`` of its case."""
    steps = settings.steps
    first = train(task, model_name, settings, 0, steps, (steps,))
    per_step = step_time(first)
    key = (task, settings)
    if model_name == REFERENCE:
        _REFERENCE_TIMES[key] = per_step
    elif key not in _REFERENCE_TIMES:
        _REFERENCE_TIMES[key] = step_time(train(task, REFERENCE, settings, 0, steps, ()))
    budget_s = steps * _REFERENCE_TIMES[key]
    equal_time_steps = max(1, int(budget_s / per_step))
    equal_steps, equal_time = [first.at[steps]], []
    for seed in range(settings.seeds):
        # Seed 0's first run read the error at ``steps`` only: it serves where that is the budget too.
        trained = (
            first
            if seed == 0 and equal_time_steps == steps
            else train(task, model_name, settings, seed, max(steps, equal_time_steps), (steps, equal_time_steps))
        )
        if seed:
            equal_steps.append(trained.at[steps])
        equal_time.append(trained.at[equal_time_steps])

    mean_steps, std_steps = mean_std(equal_steps)
    mean_time, std_time = mean_std(equal_time)
    model = build(model_name, task, settings)
    return {
        "task": task,
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "steps": steps,
        "seeds": settings.seeds,
        "lr": settings.lr,
        "time_per_step_s": per_step,
        "budget_s": budget_s,
        "equal_time_steps": equal_time_steps,
        "equal_steps": equal_steps,
        "equal_steps_mean": mean_steps,
        "equal_steps_std": std_steps,
        "equal_time": equal_time,
        "equal_time_mean": mean_time,
        "equal_time_std": std_time,
    }


@dataclass(frozen=True)
class PhysicsCase:
    model: str
    task: str

    @property
    def config(self) -> str:
        return f"pde-{self.task}"

    @property
    def id(self) -> str:
        return f"{self.model}/{self.config}/cpu/fit"


#: largest relative error of a second derivative still called right: second differences of the values
#: (float64, step 1e-4) are good to about 1e-6, and to about 1e-4 next to a cubic B-spline's knots.
GRAD2_TOLERANCE = 1e-3


def check_second_derivative(model_name: str) -> dict:
    """The second-derivative column: d^2 f / dx_i^2 by autograd (double backward) against second
    differences of the model's values, in float64, on a small [2, 4, 1] network of the model; a
    refused double backward is reported as such."""
    try:
        torch.manual_seed(0)
        model = models()[model_name].build(Shape((2, 4, 1), first={"domain": (-1.0, 1.0)})).double()
        x = torch.rand(5, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 1.6 - 0.8
        xr = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(model(xr).sum(), xr, create_graph=True)
        worst, step = 0.0, 1e-4
        with torch.no_grad():
            f0 = model(x)[:, 0]
        for i in range(2):
            # A first derivative without a graph back to x has a second derivative of 0 as autograd sees it.
            (second,) = (
                torch.autograd.grad(g[:, i].sum(), xr, retain_graph=True, allow_unused=True)
                if g.requires_grad
                else (None,)
            )
            second = torch.zeros_like(x) if second is None else second
            e = torch.zeros_like(x)
            e[:, i] = step
            with torch.no_grad():
                numeric = (model(x + e)[:, 0] - 2 * f0 + model(x - e)[:, 0]) / step**2
            scale = numeric.abs().max().clamp(min=1e-6)
            worst = max(worst, ((second[:, i] - numeric).abs().max() / scale).item())
    except Exception as e:
        return {"grad2_rel_err": None, "grad2_ok": False, "grad2_note": f"refused: {type(e).__name__}: {e}"[:300]}
    return {
        "grad2_rel_err": worst,
        "grad2_ok": worst <= GRAD2_TOLERANCE,
        "grad2_note": "float64, [2, 4, 1], d2f/dx_i2 against second differences of f (step 1e-4)",
    }
