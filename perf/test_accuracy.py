"""Accuracy per second of every model on real small data and Feynman formulas (see perf/matrix/accuracy.py)."""

import pytest

from perf.matrix.accuracy import ACCURACY_SETTINGS, TASKS, build, evaluate, split
from perf.matrix.models import models
from perf.storage import schema


def test_accuracy(benchmark, accuracy_case, perf_accuracy, perf_threads):
    case = accuracy_case
    settings = ACCURACY_SETTINGS[perf_accuracy]
    benchmark.group = f"{case.config}: seconds of the whole protocol (metrics: python -m perf.report accuracy)"
    try:
        data = split(case.task)
    except ImportError as e:  # scikit-learn is an optional extra
        pytest.skip(str(e))
    spec = models()[case.model]
    if spec.group in ("peer", "user"):
        try:  # another project's model that cannot train here is a skip, never a failure
            build(case.model, data.x_train.shape[1], TASKS[case.task].outputs, case.width)(
                data.x_train[:4]
            ).sum().backward()
        except Exception as e:
            pytest.skip(f"{case.model} cannot train {case.config}: {type(e).__name__}: {e}"[:300])
    info = dict(
        model=case.model,
        group=spec.group,
        basis=spec.basis,
        config=case.config,
        device="cpu",
        dtype="float32",
        mode="eager",
        threads=perf_threads,
        accuracy_settings=perf_accuracy,
        **{"pass": "fit"},
    )
    # One round: the time is that of the whole protocol; the point is the metric.
    result = benchmark.pedantic(evaluate, args=(case.task, case.model, settings, case.width), rounds=1, iterations=1)
    info.update(result)
    benchmark.extra_info.update(schema.record("accuracy", **info))
    assert result["equal_steps_mean"] == result["equal_steps_mean"], "training diverged (nan metric)"
