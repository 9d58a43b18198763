"""The correctness column: each model's gradients against central finite differences, in float64.

A fast KAN with wrong gradients is worthless (faster-kan's own backward
returns about half the true input gradient). This is a measurement, not a
test of the model: the result goes into the benchmark JSON and the report
marks each model ``gradients ok`` or ``WRONG``.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

#: largest relative error still called correct: float64 central differences at eps 1e-6 are good to ~1e-8
TOLERANCE = 1e-4
EPS = 1e-6
#: coordinates checked per tensor (inputs, and each trainable parameter)
SAMPLES = 6


def _loss(model: nn.Module, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (model(x) * weights).sum()


def gradient_error(model: nn.Module, x: torch.Tensor, seed: int = 0) -> tuple[float, str]:
    """Largest relative error of autograd's gradients against central differences, and the tensor it is in.

    ``model`` and ``x`` must be float64. Checks the input and every trainable
    parameter at up to ``SAMPLES`` random coordinates each; a tensor's error is
    max |autograd - numeric| / max |numeric| over its checked coordinates.
    """
    gen = torch.Generator().manual_seed(seed)
    x = x.detach().clone().requires_grad_()
    with torch.no_grad():
        out = model(x)
    weights = torch.randn(out.shape, generator=gen, dtype=out.dtype)
    named = [("input", x)] + [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(_loss(model, x, weights), [t for _, t in named], allow_unused=True)
    worst, where = 0.0, "input"
    for (name, tensor), grad in zip(named, grads):
        grad = torch.zeros_like(tensor) if grad is None else grad
        data = tensor.data
        picks = torch.randperm(data.numel(), generator=gen)[:SAMPLES]
        numeric, analytic = [], []
        for i in picks.tolist():
            at = tuple(int(j) for j in torch.unravel_index(torch.tensor(i), data.shape))
            with torch.no_grad():
                old = data[at].item()
                data[at] = old + EPS
                up = _loss(model, x, weights).item()
                data[at] = old - EPS
                down = _loss(model, x, weights).item()
                data[at] = old
            numeric.append((up - down) / (2 * EPS))
            analytic.append(grad[at].item())
        scale = max(abs(v) for v in numeric)
        if scale < 1e-12:
            err = max(abs(a) for a in analytic)  # both should be zero
        else:
            err = max(abs(a - n) for a, n in zip(analytic, numeric)) / scale
        if err > worst:
            worst, where = err, name
    return worst, where


def verdict(err: float | None) -> str:
    if err is None:
        return "not checked"
    return "gradients ok" if err <= TOLERANCE else f"WRONG (max rel err {err:.2g})"


#: the small case every model is checked on: layers, batch, basis functions per edge
CHECK_LAYERS = (3, 4, 2)
CHECK_BATCH = 5


def check_model(name: str) -> dict:
    """``extra_info`` fields of the correctness column for a model of the matrix, built small in float64."""
    return dict(_check_model(name))


@functools.cache
def _check_model(name: str) -> tuple:
    from perf.matrix.configs import Shape
    from perf.matrix.models import models

    spec = models()[name]
    try:
        torch.manual_seed(0)
        model = spec.build(Shape(CHECK_LAYERS)).double()
        x = (
            torch.rand(CHECK_BATCH, CHECK_LAYERS[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
            * 2
            - 1
        ) * 0.9
        err, where = gradient_error(model, x)
    except Exception as e:  # a peer that cannot run in float64 is reported, never a failed run
        return (("grad_rel_err", None), ("grad_ok", None), ("grad_note", f"not checked: {type(e).__name__}: {e}"[:300]))
    return (
        ("grad_rel_err", err),
        ("grad_ok", err <= TOLERANCE),
        ("grad_worst_tensor", where),
        ("grad_note", f"float64, layers {list(CHECK_LAYERS)}, batch {CHECK_BATCH}, central differences"),
    )
