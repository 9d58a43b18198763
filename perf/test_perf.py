"""The benchmark: one test per case of the matrix (see perf/matrix/cases.py)."""

import dataclasses
import statistics
import time

import pytest

from fastkan import FastKANLayer
from fastkan.explain import paths as explain_paths
from perf.matrix.cases import Setup
from perf.matrix.configs import CONFIGS
from perf.matrix.models import models
from perf.matrix.peers import PEERS
from perf.measure.gradcheck import check_model
from perf.measure.memory import measure
from perf.measure.probe import SMALL_VERSION, probe, small_probe
from perf.measure.probe import VERSION as PROBE_VERSION
from perf.storage import schema


def _timed(prepare, run) -> float:
    args, kwargs = prepare()
    start = time.perf_counter()
    run(*args, **kwargs)
    return time.perf_counter() - start


def _timing_first(prepare, times: list, other_prepare, other_run):
    """``prepare`` that first times another pass (the reference, the probe) into ``times``."""

    def both():
        times.append(_timed(other_prepare, other_run))
        return prepare()

    return both


def _rounds(once: float, seconds: float) -> int:
    return int(min(1000, max(5, seconds / max(once, 1e-9))))


def test_perf(benchmark, perf_case, perf_threads, perf_seconds, perf_reference):
    case = perf_case
    if case.mode == "compile":
        import torch

        torch._dynamo.reset()  # each case pays, and records, its own compilation
    benchmark.group = f"{case.config} {case.device} {case.pass_}"
    spec = models()[case.model]
    if spec.group not in ("peer", "user"):
        setup = Setup(case)
    else:
        # Another project's model that cannot run this case (an API limit, an error) is a skip, never a failure.
        try:
            setup = Setup(case)
            prepare, run = setup.pass_fns()
            args, kwargs = prepare()
            run(*args, **kwargs)
        except Exception as e:
            pytest.skip(
                f"{case.model} cannot run {case.config}/{case.dtype}/{case.mode}: {type(e).__name__}: {e}"[:300]
            )
    cfg = CONFIGS[case.config]
    params, trainable = setup.num_params()
    info = dict(
        model=case.model,
        group=spec.group,
        basis=spec.basis,
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
        **check_model(case.model),
    )
    if case.mode == "eager" and any(isinstance(m, FastKANLayer) for m in setup.eager.modules()):
        # Which path each layer takes, as the pass calls it: the same case of the same code must
        # take the same one in every run (python -m perf.report repeatability checks it).
        x = setup.x.detach().requires_grad_(case.pass_ == "grad2")
        info.update(paths=[path.name for _, path, _ in explain_paths(setup.eager, x)])
    if spec.peer is not None:
        peer = PEERS[spec.peer]
        info.update(peer_version=peer.version(), compiles_itself=peer.compiles)
    # The untimed memory pass doubles as the first warm-up round.
    info.update(measure(setup))
    prepare, run = setup.pass_fns()

    reference_times, probe_times = [], []
    if perf_reference and perf_reference != case.model and not models()[perf_reference].missing:
        # The reference runs just before every round of the case, so both see the
        # same machine: their ratio cancels the slow drifts of a shared runner. It runs
        # eager in every mode: a compiled reference would cost each case a compilation.
        reference = Setup(dataclasses.replace(case, model=perf_reference, mode="eager"))
        prepare = _timing_first(prepare, reference_times, *reference.pass_fns())
    small_times: list[float] = []
    prepare = _timing_first(prepare, small_times, lambda: ((), {}), small_probe(setup.device))
    prepare = _timing_first(prepare, probe_times, lambda: ((), {}), probe(setup.device))

    rounds = 1 if benchmark.disabled else _rounds(_timed(prepare, run), perf_seconds)
    benchmark.pedantic(run, setup=prepare, rounds=rounds, warmup_rounds=1 if rounds > 1 else 0)
    data = benchmark.stats.stats.data if benchmark.stats else []
    if data:
        # Each timed round is preceded by its own probe runs (and reference run): pair them up.
        probes, smalls = probe_times[-len(data) :], small_times[-len(data) :]
        info.update(
            probe_version=PROBE_VERSION,
            probe_median_s=statistics.median(probes),
            probe_ratios=[c / p for c, p in zip(data, probes)],
            small_probe_version=SMALL_VERSION,
            small_probe_median_s=statistics.median(smalls),
            small_probe_ratios=[c / p for c, p in zip(data, smalls)],
        )
    if reference_times:
        paired = [c / r for c, r in zip(data, reference_times[-len(data) :]) if r > 0] if data else []
        info.update(
            reference_model=perf_reference,
            reference_median_s=statistics.median(reference_times[-len(data) :] if data else reference_times),
            reference_ratio=statistics.median(paired) if paired else None,
            reference_ratios=paired,  # every round's ratio: the comparisons bootstrap them
        )
    benchmark.extra_info.update(schema.record("speed", **info))
