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


def _rounds(once: float, seconds: float, cap: int = 1000) -> int:
    return int(min(cap, max(5, seconds / max(once, 1e-9))))


class _Witnessed:
    """A case's pass with what is timed before each of its rounds: the two machine probes and, unless
    there is none, the reference model's run of the same case (``--perf-reference``)."""

    def __init__(self, case, setup: Setup, reference: str | None):
        prepare, self.run = setup.pass_fns()
        self.probes, self.smalls, self.references = [], [], []
        if reference and reference != case.model and not models()[reference].missing:
            # The reference runs just before every round of the case, so both see the
            # same machine: their ratio cancels the slow drifts of a shared runner. It runs
            # eager in every mode: a compiled reference would cost each case a compilation.
            ref = Setup(dataclasses.replace(case, model=reference, mode="eager"))
            prepare = _timing_first(prepare, self.references, *ref.pass_fns())
        prepare = _timing_first(prepare, self.smalls, lambda: ((), {}), small_probe(setup.device))
        self.prepare = _timing_first(prepare, self.probes, lambda: ((), {}), probe(setup.device))

    def last(self, n: int) -> dict:
        """What was timed before the last ``n`` rounds."""
        return {"probes": self.probes[-n:], "smalls": self.smalls[-n:], "references": self.references[-n:]}


def test_perf_window(perf_window, perf_windows, perf_reference, request):
    """One window of every eager case's rounds, before the cases' own tests take their last one.

    A shared machine runs faster or slower for seconds to minutes at a time; a case timed in one
    stretch of half a second sees one of those states, and the next run of the same code another
    (docs/results/repeatability.md). Each case is timed in ``--perf-windows`` windows, one per pass
    over the matrix, so that its rounds see the machine as the whole run does.
    """
    selection = request.config._perf_selection
    for case in selection.windowed_cases():
        try:
            times = _window(case, *selection.budget(windowed=True), perf_reference)
        except Exception:  # a model that cannot run this case: its own test says why
            continue
        if times is not None:
            perf_windows.setdefault(case.id, []).append(times)


def _window(case, seconds: float, cap: int, reference: str | None) -> dict | None:
    """A window of ``case``'s rounds (their times, and what was timed before each), or None where
    its calls are too slow for five rounds in ``seconds``: its test then takes all its rounds at once."""
    timed = _Witnessed(case, Setup(case), reference)
    args, kwargs = timed.prepare()
    timed.run(*args, **kwargs)  # warm-up
    once = _timed(timed.prepare, timed.run)
    if once * 5 > seconds:
        return None
    times = []
    for _ in range(_rounds(once, seconds, cap)):
        args, kwargs = timed.prepare()
        start = time.perf_counter()
        timed.run(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return {"times": times, **timed.last(len(times))}


def test_perf(benchmark, perf_case, perf_threads, perf_reference, perf_windows, request):
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
    timed = _Witnessed(case, setup, perf_reference)
    windows = perf_windows.get(case.id, [])
    seconds, cap = request.config._perf_selection.budget(windowed=bool(windows))

    rounds = 1 if benchmark.disabled else _rounds(_timed(timed.prepare, timed.run), seconds, cap)
    benchmark.pedantic(timed.run, setup=timed.prepare, rounds=rounds, warmup_rounds=1 if rounds > 1 else 0)
    data = benchmark.stats.stats.data if benchmark.stats else []
    if data:
        # Each timed round is preceded by its own probe runs (and reference run): pair them up,
        # after the case's earlier windows (test_perf_window), in the order they ran.
        rounds_of = [*windows, {"times": list(data), **timed.last(len(data))}]
        data[:] = [t for w in rounds_of for t in w["times"]]
        _forget_statistics(benchmark.stats.stats)
        probes = [p for w in rounds_of for p in w["probes"]]
        smalls = [p for w in rounds_of for p in w["smalls"]]
        info.update(
            windows=len(rounds_of),
            window_rounds=[len(w["times"]) for w in rounds_of],
            probe_version=PROBE_VERSION,
            probe_median_s=statistics.median(probes),
            probe_ratios=[c / p for c, p in zip(data, probes)],
            small_probe_version=SMALL_VERSION,
            small_probe_median_s=statistics.median(smalls),
            small_probe_ratios=[c / p for c, p in zip(data, smalls)],
        )
        references = [r for w in rounds_of for r in w["references"]]
        if references:
            paired = [c / r for c, r in zip(data, references) if r > 0]
            info.update(
                reference_model=perf_reference,
                reference_median_s=statistics.median(references),
                reference_ratio=statistics.median(paired) if paired else None,
                reference_ratios=paired,  # every round's ratio: the comparisons bootstrap them
            )
    elif timed.references:
        info.update(
            reference_model=perf_reference,
            reference_median_s=statistics.median(timed.references),
            reference_ratio=None,
            reference_ratios=[],
        )
    benchmark.extra_info.update(schema.record("speed", **info))


def _forget_statistics(stats) -> None:
    """Drop what pytest-benchmark's Stats computed from its rounds (cached properties) after they changed."""
    for name in list(vars(stats)):
        if name != "data":
            delattr(stats, name)
