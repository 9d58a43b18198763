"""Which KAN learns best per second: test accuracy against training time, on real small data and Feynman formulas.

Tasks (seeded, offline): three data sets that ship inside scikit-learn
(``pip install 'fastkan[data]'``) and five equations of the KAN paper's
Feynman set, written from their formulas and sampled on pykan's published
ranges. Every task's features are standardised with the training split's
mean and spread, and so are regression targets (RMSE is in target standard
deviations).

Protocol per task, model and size: full-batch Adam; the learning rate is
picked from ``lrs`` on the validation split (seed 0, equal steps); then each
seed trains at that rate and the test metric is read twice, after ``steps``
steps (equal steps) and after as many steps as fit in the time the default
FastKAN needs for ``steps`` (equal time, from each model's measured time per
step on this machine).
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from perf.matrix.configs import Shape
from perf.matrix.models import models

SPLIT_SEED = 0  # the train/validation/test split is fixed; model seeds vary
REFERENCE = "fastkan-gaussian"  # the equal-time budget is the time this model needs for the step budget


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # "classify" (metric: accuracy, higher is better) or "regress" (test RMSE, lower is better)
    load: Callable[[], tuple[Tensor, Tensor]]  # all inputs and targets
    source: str
    outputs: int = 1

    @property
    def metric(self) -> str:
        return "accuracy" if self.kind == "classify" else "RMSE"

    @property
    def higher_is_better(self) -> bool:
        return self.kind == "classify"


def _sklearn(loader: str) -> Callable[[], tuple[Tensor, Tensor]]:
    def load():
        try:
            import sklearn.datasets as datasets
        except ImportError:
            raise ImportError(
                "the accuracy tasks on real data need scikit-learn: pip install 'fastkan[data]'"
            ) from None
        data = getattr(datasets, loader)()
        return torch.tensor(data.data, dtype=torch.float32), torch.tensor(data.target)

    return load


def _feynman(formula: Callable[..., Tensor], ranges: list[tuple[float, float]], n: int = 2500):
    """``n`` points uniform in the box ``ranges`` (1000 train, 1000 test, 500 validation), and the formula's values."""

    def load():
        g = torch.Generator().manual_seed(SPLIT_SEED)
        lo = torch.tensor([r[0] for r in ranges], dtype=torch.float64)
        hi = torch.tensor([r[1] for r in ranges], dtype=torch.float64)
        x = lo + (hi - lo) * torch.rand(n, len(ranges), generator=g, dtype=torch.float64)
        y = formula(*x.unbind(1))
        return x.float(), y.float()

    return load


def _sinc2(a: Tensor) -> Tensor:
    return torch.sinc(a / math.pi) ** 2  # sin(a)^2 / a^2, finite at a = 0


TAU = 2 * math.pi
TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("digits", "classify", _sklearn("load_digits"), "scikit-learn digits: 1797 8x8 images", outputs=10),
        Task(
            "breast_cancer",
            "classify",
            _sklearn("load_breast_cancer"),
            "scikit-learn breast cancer: 569 x 30",
            outputs=2,
        ),
        Task("diabetes", "regress", _sklearn("load_diabetes"), "scikit-learn diabetes: 442 x 10"),
        Task(
            "feynman-I.6.2",
            "regress",
            _feynman(
                lambda theta, sigma: torch.exp(-(theta**2) / (2 * sigma**2)) / torch.sqrt(TAU * sigma**2),
                [(-1, 1), (0.5, 2)],
            ),
            "Gaussian exp(-theta^2/(2 sigma^2)) / sqrt(2 pi sigma^2); theta in [-1,1], sigma in [0.5,2]",
        ),
        Task(
            "feynman-I.9.18",
            "regress",
            _feynman(
                lambda g, m1, m2, x1, x2, y1, y2, z1, z2: (
                    g * m1 * m2 / ((x2 - x1) ** 2 + (y2 - y1) ** 2 + (z2 - z1) ** 2)
                ),
                [(-1, 1), (-1, 1), (-1, 1), (-1, -0.5), (0.5, 1), (-1, -0.5), (0.5, 1), (-1, -0.5), (0.5, 1)],
            ),
            "gravitation G m1 m2 / |r2 - r1|^2; G, m1, m2 in [-1,1], first points in [-1,-0.5], second in [0.5,1]",
        ),
        Task(
            "feynman-I.12.11",
            "regress",
            _feynman(
                lambda q, ef, b, v, theta: q * (ef + b * v * torch.sin(theta)),
                [(-1, 1), (-1, 1), (-1, 1), (-1, 1), (0, TAU)],
            ),
            "Lorentz force q (E + B v sin theta); q, E, B, v in [-1,1], theta in [0, 2 pi]",
        ),
        Task(
            "feynman-II.6.15a",
            "regress",
            _feynman(
                lambda eps, pd, z, x, y, r: 3 / (4 * math.pi * eps) * pd * z / r**5 * torch.sqrt(x**2 + y**2),
                [(0.5, 2), (0, 1), (0, 1), (0, 1), (0, 1), (0.5, 2)],
            ),
            "dipole field 3 p z sqrt(x^2 + y^2) / (4 pi eps r^5); eps, r in [0.5,2], p, z, x, y in [0,1]",
        ),
        Task(
            "feynman-III.9.52",
            "regress",
            _feynman(
                lambda pd, ef, t, hbar, w, w0: pd * ef * t / hbar * _sinc2((w - w0) * t / 2),
                [(0, 1), (0, 1), (0, 1), (0.5, 2), (0, math.pi), (0, math.pi)],
            ),
            "transition probability p E t / hbar sinc^2((w - w0) t / 2); hbar in [0.5,2], w, w0 in [0, pi], "
            "others in [0,1]",
        ),
    ]
}


@dataclass(frozen=True)
class Split:
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor


@functools.cache
def split(task: str) -> Split:
    """60/20/20 train/validation/test (Feynman: 1000/500/1000), fixed by SPLIT_SEED; standardised on train."""
    t = TASKS[task]
    x, y = t.load()
    n = len(x)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    if task.startswith("feynman-"):
        a, b = 1000, 1500
    else:
        a, b = int(0.6 * n), int(0.8 * n)
    tr, va, te = order[:a], order[a:b], order[b:]
    mean, std = x[tr].mean(0), x[tr].std(0).clamp(min=1e-8)
    x = (x - mean) / std
    if t.kind == "regress":
        y = y.float()
        y = ((y - y[tr].mean()) / y[tr].std())[:, None]
    return Split(x[tr], y[tr], x[va], y[va], x[te], y[te])


@dataclass(frozen=True)
class AccuracySettings:
    tasks: tuple[str, ...]
    models: tuple[str, ...]
    steps: int
    seeds: int
    lrs: tuple[float, ...]
    widths: tuple[int, ...] = (1,)  # hidden width multipliers of the size rule


OURS = ("fastkan-gaussian", "fastkan-rswaf", "fastkan-inverse-quadratic", "lean-fastkan", "bspline")
# pykan takes tens of times longer per step: it does not fit the full setting's 30 minutes.
PEER_MODELS = ("efficient-kan", "fast-kan", "faster-kan", "flashkan", "inkan", "chebykan")
ACCURACY_SETTINGS = {
    "smoke": AccuracySettings(("digits", "feynman-I.6.2"), ("fastkan-gaussian", "mlp"), 4, 1, (1e-2,)),
    "quick": AccuracySettings(
        ("digits", "feynman-I.6.2"), ("fastkan-gaussian", "lean-fastkan", "bspline", "mlp"), 60, 1, (1e-2,)
    ),
    "full": AccuracySettings(tuple(TASKS), (*OURS, *PEER_MODELS, "mlp"), 200, 3, (3e-3, 1e-2), (1, 2)),
}


def hidden(inputs: int, width: int) -> int:
    """The size rule: [in, width * (2 in + 1), out] for every KAN."""
    return width * (2 * inputs + 1)


def build(model: str, inputs: int, outputs: int, width: int = 1) -> nn.Module:
    """The registry's model ``model`` for this task's sizes; the MLP matched to the default FastKAN.

    Standardised inputs are on the grid already; LayerNorm across a few features would discard their
    absolute values, so our first layer has none. Hidden layers keep it, as fast-kan does.
    """
    return models()[model].build(Shape((inputs, hidden(inputs, width), outputs), first={"use_layernorm": False}))


def _loss(task: Task, out: Tensor, y: Tensor) -> Tensor:
    return nn.functional.cross_entropy(out, y) if task.kind == "classify" else nn.functional.mse_loss(out, y)


def score(task: Task, model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        out = model(x)
    if task.kind == "classify":
        return (out.argmax(1) == y).float().mean().item()
    return nn.functional.mse_loss(out, y).sqrt().item()


@dataclass
class Trained:
    at: dict[int, float] = field(default_factory=dict)  # step -> test (or validation) metric
    step_times: list[float] = field(default_factory=list)


def train(
    task_name: str,
    model_name: str,
    lr: float,
    seed: int,
    steps: int,
    read_at: tuple[int, ...],
    on: str = "test",
    width: int = 1,
) -> Trained:
    """Full-batch Adam for ``steps`` steps; the metric on ``on`` after each step in ``read_at``."""
    task, data = TASKS[task_name], split(task_name)
    torch.manual_seed(seed)
    model = build(model_name, data.x_train.shape[1], task.outputs, width)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    x_eval, y_eval = (data.x_test, data.y_test) if on == "test" else (data.x_val, data.y_val)
    result = Trained()
    for step in range(1, steps + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        _loss(task, model(data.x_train), data.y_train).backward()
        opt.step()
        result.step_times.append(time.perf_counter() - start)
        if step in read_at:
            result.at[step] = score(task, model, x_eval, y_eval)
    return result


def mean_std(values) -> tuple[float, float]:
    """Mean and sample spread (0 for one value); a diverged run (an infinite or NaN metric) makes both inf."""
    if not all(math.isfinite(v) for v in values):
        return math.inf, math.inf
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def step_time(trained: Trained) -> float:
    """Median time per step, the first steps (warm-up, a peer's compilation) left out."""
    times = trained.step_times[3:] or trained.step_times
    return statistics.median(times)


# (task, settings, width) -> the reference's time per step, as its own evaluation measured it
_REFERENCE_TIMES: dict[tuple, float] = {}


def reference_step_time(task: str, settings: AccuracySettings, width: int) -> float:
    """The default FastKAN's time per step here: the equal-time budget is ``steps`` of it.

    The figure its own evaluation measured (in this process), so that the budget is the same for
    every model; measured on its own, the same way, when the reference has not run yet.
    """
    key = (task, settings, width)
    if key not in _REFERENCE_TIMES:
        _REFERENCE_TIMES[key] = statistics.median(
            step_time(train(task, REFERENCE, lr, 0, settings.steps, (), width=width)) for lr in settings.lrs
        )
    return _REFERENCE_TIMES[key]


def _better(task: Task, a: float, b: float) -> bool:
    return a > b if task.higher_is_better else a < b


def evaluate(task_name: str, model_name: str, settings: AccuracySettings, width: int = 1) -> dict:
    """The whole protocol for one model on one task and size: the ``extra_info`` of its case."""
    task = TASKS[task_name]
    steps = settings.steps
    val, times = {}, []
    for lr in settings.lrs:
        trained = train(task_name, model_name, lr, 0, steps, (steps,), on="validation", width=width)
        val[lr] = trained.at[steps]
        times.append(step_time(trained))
    best = settings.lrs[0]
    for lr in settings.lrs[1:]:
        if _better(task, val[lr], val[best]) or not math.isfinite(val[best]):
            best = lr
    per_step = statistics.median(times)
    if model_name == REFERENCE:
        _REFERENCE_TIMES[(task_name, settings, width)] = per_step
        budget_s, equal_time_steps = steps * per_step, steps  # the budget is its own time
    else:
        budget_s = steps * reference_step_time(task_name, settings, width)
        equal_time_steps = max(1, int(budget_s / per_step))
    equal_steps, equal_time = [], []
    for seed in range(settings.seeds):
        trained = train(
            task_name, model_name, best, seed, max(steps, equal_time_steps), (steps, equal_time_steps), width=width
        )
        equal_steps.append(trained.at[steps])
        equal_time.append(trained.at[equal_time_steps])
    data = split(task_name)
    model = build(model_name, data.x_train.shape[1], task.outputs, width)

    mean_steps, std_steps = mean_std(equal_steps)
    mean_time, std_time = mean_std(equal_time)
    return {
        "task": task_name,
        "metric": task.metric,
        "higher_is_better": task.higher_is_better,
        "width": width,
        "layers": [data.x_train.shape[1], hidden(data.x_train.shape[1], width), task.outputs],
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "lr": best,
        "lr_grid": list(settings.lrs),
        "val_by_lr": {str(k): v for k, v in val.items()},
        "steps": steps,
        "seeds": settings.seeds,
        "time_per_step_s": per_step,
        "budget_s": budget_s,
        "equal_time_steps": equal_time_steps,
        "equal_steps": equal_steps,
        "equal_steps_mean": mean_steps,
        "equal_steps_std": std_steps,
        "equal_time": equal_time,
        "equal_time_mean": mean_time,
        "equal_time_std": std_time,
        # what perf.compare gates: the metric at equal steps (deterministic for a seed on one machine)
        "score_mean": mean_steps,
    }


@dataclass(frozen=True)
class AccuracyCase:
    model: str
    task: str
    width: int = 1

    @property
    def config(self) -> str:
        return f"acc-{self.task}" + ("" if self.width == 1 else f"-x{self.width}")

    @property
    def id(self) -> str:
        return f"{self.model}/{self.config}/cpu/fit"
