"""Accuracy per second of every model on real small data and Feynman formulas (see perf/accuracy.py)."""

import pytest

from perf.accuracy import ACCURACY_SETTINGS, build, evaluate, split, TASKS
from perf.cases import models


def test_accuracy(benchmark, accuracy_case, perf_accuracy, perf_threads):
    case = accuracy_case
    settings = ACCURACY_SETTINGS[perf_accuracy]
    benchmark.group = f"{case.config}: seconds of the whole protocol (metrics: python -m perf.report accuracy)"
    try:
        data = split(case.task)
    except ImportError as e:  # scikit-learn is an optional extra
        pytest.skip(str(e))
    if models()[case.model].peer is not None:
        try:  # a peer that cannot train here is a skip, never a failure
            build(case.model, data.x_train.shape[1], TASKS[case.task].outputs, case.width)
        except Exception as e:
            pytest.skip(f"{case.model} cannot train {case.config}: {type(e).__name__}: {e}"[:300])
    info = benchmark.extra_info
    info.update(model=case.model, basis=models()[case.model].basis, config=case.config, device="cpu",
                dtype="float32", mode="eager", threads=perf_threads, accuracy_settings=perf_accuracy,
                **{"pass": "fit"})
    # One round: the time is that of the whole protocol; the point is the metric.
    result = benchmark.pedantic(evaluate, args=(case.task, case.model, settings, case.width), rounds=1, iterations=1)
    info.update(result)
    assert result["equal_steps_mean"] == result["equal_steps_mean"], "training diverged (nan metric)"
