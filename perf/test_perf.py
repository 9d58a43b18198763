"""The benchmark: one test per case of the matrix (see perf/cases.py)."""

import time

from perf.cases import CONFIGS, Setup, models
from perf.measure import measure


def _rounds(run, prepare, seconds: float) -> int:
    args, kwargs = prepare()
    start = time.perf_counter()
    run(*args, **kwargs)
    once = time.perf_counter() - start
    return int(min(1000, max(5, seconds / max(once, 1e-9))))


def test_perf(benchmark, perf_case, perf_threads, perf_seconds):
    case = perf_case
    setup = Setup(case)
    cfg = CONFIGS[case.config]
    params, trainable = setup.num_params()
    benchmark.extra_info.update(
        model=case.model,
        basis=models()[case.model].basis,
        config=case.config,
        device=case.device,
        **{"pass": case.pass_},
        batch=cfg.batch,
        layers=list(cfg.layers),
        dtype=case.dtype,
        mode=case.mode,
        threads=perf_threads,
        params=params,
        trainable_params=trainable,
        compile_seconds=setup.compile_seconds,
    )
    # The untimed memory pass doubles as the first warm-up round.
    benchmark.extra_info.update(measure(setup))
    prepare, run = setup.pass_fns()
    rounds = 1 if benchmark.disabled else _rounds(run, prepare, perf_seconds)
    benchmark.pedantic(run, setup=prepare, rounds=rounds, warmup_rounds=1 if rounds > 1 else 0)
