"""Intervals for timed comparisons, from the rounds of each case.

A change between two runs is a statement about two distributions of
round times, not about two medians. Each change is the ratio of medians
minus one, with a 95% percentile bootstrap interval: every sample (the
rounds of a case in run A, in run B, and of the reference model where a
comparison is normalised) is resampled on its own, 2000 times, with a
fixed seed, so the same two runs always give the same interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
#: fewest rounds a sample may have for an interval
MIN_ROUNDS = 5


class TooFewRounds(ValueError):
    pass


def bootstrap(
    samples: Sequence[Sequence[float]],
    statistic: Callable[..., np.ndarray],
    seed: int = 0,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
) -> tuple[float, float, float]:
    """(estimate, low, high) of ``statistic(*medians)``, where each sample's median is bootstrapped on its own.

    ``statistic`` takes one median per sample, as numpy arrays (vectorised over resamples).
    """
    arrays = [np.asarray(s, dtype=float) for s in samples]
    for a in arrays:
        if len(a) < MIN_ROUNDS:
            raise TooFewRounds(f"{len(a)} round(s); an interval needs at least {MIN_ROUNDS}")
    rng = np.random.default_rng(seed)
    estimate = float(statistic(*(np.median(a) for a in arrays)))
    drawn = [np.median(a[rng.integers(0, len(a), (resamples, len(a)))], axis=1) for a in arrays]
    values = statistic(*drawn)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return estimate, float(low), float(high)


def change(a: Sequence[float], b: Sequence[float], seed: int = 0) -> tuple[float, float, float]:
    """median(b) / median(a) - 1 and its interval."""
    return bootstrap([a, b], lambda ma, mb: mb / ma - 1, seed)


def normalised_change(
    a: Sequence[float], ref_a: Sequence[float], b: Sequence[float], ref_b: Sequence[float], seed: int = 0
) -> tuple[float, float, float]:
    """(median(b) / median(ref_b)) / (median(a) / median(ref_a)) - 1 and its interval."""
    return bootstrap([a, ref_a, b, ref_b], lambda ma, ra, mb, rb: (mb / rb) / (ma / ra) - 1, seed)


def fmt_change(estimate: float, low: float | None = None, high: float | None = None) -> str:
    """'+4.1% [-2.0%, +10.3%]', or '+4.1%' without an interval."""
    if low is None or high is None:
        return f"{estimate:+.1%}"
    return f"{estimate:+.1%} [{low:+.1%}, {high:+.1%}]"
