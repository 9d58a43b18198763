"""How far a case's time moves from one run of unchanged code to the next.

Within one process a case's rounds agree closely, so the bootstrap interval of a change between two
runs is narrow; from one process to the next a small case's median can move by more than that
interval (docs/results/repeatability.md). Saved runs of the same code (one commit, a clean tree,
one machine, torch version and thread count) measure that spread: per case, the standard deviation
of log(median) between runs, pooled over every such group of runs. ``widen`` adds it to a change's
interval, so that what unchanged code does from run to run is within noise.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable

from perf.storage.runs import Record, Run

# The 95% interval's half width in standard deviations: the bootstrap's intervals are 95% too.
Z = 1.96


def code_key(run: Run) -> tuple | None:
    """What makes two runs time the same code the same way; None for a run of uncommitted changes."""
    if not run.commit or run.dirty:
        return None
    mi = run.machine_info
    return run.commit, mi.get("node"), mi.get("torch"), mi.get("torch_threads"), mi.get("cuda_device")


def same_code(runs: Iterable[Run]) -> list[list[Run]]:
    """The runs grouped by ``code_key``: only groups of two runs or more (reruns of one code)."""
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        key = code_key(run)
        if key is not None:
            groups[key].append(run)
    return [g for g in groups.values() if len(g) > 1]


def spreads(runs: Iterable[Run], value: Callable[[Run, Record], float | None] | None = None) -> dict[str, tuple]:
    """case id -> (standard deviation of log(value) between runs of the same code, degrees of freedom).

    ``value`` (default: the median time) may return None to leave a record out."""
    value = value or (lambda run, rec: rec.median_s)
    squares: dict[str, float] = defaultdict(float)
    dof: dict[str, int] = defaultdict(int)
    for group in same_code(runs):
        logs: dict[str, list[float]] = defaultdict(list)
        for run in group:
            for cid, rec in run.records.items():
                v = value(run, rec) if rec.kind == "speed" else None
                if v is not None and v > 0:
                    logs[cid].append(math.log(v))
        for cid, xs in logs.items():
            if len(xs) > 1:
                mean = sum(xs) / len(xs)
                squares[cid] += sum((x - mean) ** 2 for x in xs)
                dof[cid] += len(xs) - 1
    return {cid: (math.sqrt(squares[cid] / dof[cid]), dof[cid]) for cid in dof}


def widen(est: float, low: float, high: float, sigma: float) -> tuple[float, float]:
    """The interval of a change ``est`` [low, high] (B / A - 1) with the between-run spread ``sigma`` of
    each run added: in log space, each side's half width and Z * sigma * sqrt(2) add in quadrature."""
    extra = (Z * sigma * math.sqrt(2.0)) ** 2
    centre = math.log1p(est)
    down = math.sqrt((centre - math.log1p(low)) ** 2 + extra)
    up = math.sqrt((math.log1p(high) - centre) ** 2 + extra)
    return math.expm1(centre - down), math.expm1(centre + up)
