"""Fit quality of every model on the seeded regression tasks (see perf/matrix/fit.py)."""

import functools

import pytest
import torch

from fastkan.approx import best_width, bspline_fit_error
from perf.matrix.fit import FIT_SETTINGS, build, data, fit
from perf.matrix.models import models
from perf.storage import schema


@functools.cache
def approximation(basis: str) -> dict:
    """How well the basis reproduces the cubic B-splines (8 centres), at the default and the best width."""
    rel, worst = bspline_fit_error(basis, 8)
    width, best = best_width(basis, 8)
    return {
        "approx_rel_l2": rel,
        "approx_max": worst,
        "best_width": width,
        "approx_rel_l2_best": best,
        "approx_max_best": bspline_fit_error(basis, 8, width=width)[1],
    }


def test_fit(benchmark, fit_case, perf_fit, perf_threads):
    case = fit_case
    settings = FIT_SETTINGS[perf_fit]
    benchmark.group = f"fit-{case.task}: seconds of training (RMSE: python -m perf.report bases)"
    spec = models()[case.model]
    basis = spec.basis
    info = dict(
        model=case.model,
        group=spec.group,
        basis=basis,
        config=f"fit-{case.task}",
        device="cpu",
        dtype="float32",
        mode="eager",
        threads=perf_threads,
        hidden=settings.hidden,
        fit_settings=perf_fit,
        **{"pass": "fit"},
    )
    if case.model.startswith("fastkan-"):
        info.update(approximation(basis))
    # One round: the time is that of the whole training, the point is its accuracy.
    if spec.group in ("peer", "user"):
        try:  # another project's model that cannot train here is a skip, never a failure
            x, y = data(case.task, 4, 0)
            torch.nn.functional.mse_loss(build(case.model, settings)(x), y).backward()
        except Exception as e:
            pytest.skip(f"{case.model} cannot train fit-{case.task}: {type(e).__name__}: {e}"[:300])
    result = benchmark.pedantic(fit, args=(case.model, case.task, settings), rounds=1, iterations=1)
    info.update(result)
    benchmark.extra_info.update(schema.record("fit", **info))
    assert result["rmse_mean"] == result["rmse_mean"], "training diverged (nan RMSE)"
