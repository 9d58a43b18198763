"""Physics-informed PDE cases: every model whose second derivatives are right, trained on each PDE."""

import pytest

from perf.matrix.models import models
from perf.matrix.physics import PHYSICS_SETTINGS, build, check_second_derivative, evaluate
from perf.storage import schema


def test_physics(benchmark, physics_case, perf_physics, perf_threads):
    case = physics_case
    settings = PHYSICS_SETTINGS[perf_physics]
    benchmark.group = f"{case.config}: seconds of the whole protocol (errors: python -m perf.report physics)"
    spec = models()[case.model]
    info = dict(
        model=case.model,
        group=spec.group,
        basis=spec.basis,
        config=case.config,
        device="cpu",
        dtype="float32",
        mode="eager",
        threads=perf_threads,
        physics_settings=perf_physics,
        task=case.task,
        **{"pass": "fit"},
        **check_second_derivative(case.model),
    )
    if spec.group in ("peer", "user"):
        try:  # another project's model that cannot be built here is a skip, never a failure
            build(case.model, case.task, settings)
        except Exception as e:
            pytest.skip(f"{case.model} cannot train {case.config}: {type(e).__name__}: {e}"[:300])
    if not info["grad2_ok"]:
        # A wrong or refused second derivative is shown as such, not trained.
        benchmark.pedantic(lambda: None, rounds=1, iterations=1)
        benchmark.extra_info.update(schema.record("physics", trained=False, **info))
        return
    result = benchmark.pedantic(evaluate, args=(case.task, case.model, settings), rounds=1, iterations=1)
    info.update(result)
    benchmark.extra_info.update(schema.record("physics", trained=True, **info))
