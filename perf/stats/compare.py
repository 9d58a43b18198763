"""Two saved runs, case by case: what regressed, what improved, what is within noise.

A time change counts only when its whole 95% interval (``perf.stats``,
a bootstrap of the rounds) lies beyond the threshold: a change of +12%
[-3%, +27%] is noise, +25% [+15%, +36%] at a 10% threshold a regression.
A plain change must also hold over the machine probes (``perf.measure.probe``,
timed before every round): a case that is 30% slower because the whole
machine was 30% slower that minute has not regressed.
Exact measurements (memory, fit RMSE, the gradient check) compare as they are.
Runs saved without their rounds fall back to comparing medians, and say so.
Where saved runs of one unchanged code are at hand (``history``), each case's
interval also holds the spread of its time from run to run (``perf.stats.spread``).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from perf.reports.tables import text_table
from perf.stats.bootstrap import TooFewRounds, change, fmt_change, normalised_change
from perf.stats.spread import same_code, spreads, widen
from perf.storage.runs import Record, ReportError, Run

REGRESSED, IMPROVED, NOISE = "regressed", "improved", "within noise"
#: memory is exact, so any growth beyond allocator slack is real
MEMORY_THRESHOLD = 0.02


@dataclass
class Change:
    """One measurement of one case from run A to run B: B / A - 1, with its interval where timed."""

    case: str
    what: str  # time, memory, fit RMSE, gradients
    value: float | None
    low: float | None = None
    high: float | None = None
    verdict: str = NOISE
    note: str = ""

    def describe(self) -> str:
        if self.what == "gradients":
            return self.note
        text = "n/a" if self.value is None else fmt_change(self.value, self.low, self.high)
        return text + (f" ({self.note})" if self.note else "")


def _judge(value: float, low: float | None, high: float | None, threshold: float) -> str:
    if low is None or high is None:  # no interval: the median rule
        return REGRESSED if value > threshold else IMPROVED if value < -threshold else NOISE
    return REGRESSED if low > threshold else IMPROVED if high < -threshold else NOISE


def _reference(run: Run, rec: Record, model: str) -> Record | None:
    return next(
        (r for r in run.records.values() if r.model == model and r.group == rec.group and r.pass_ == rec.pass_), None
    )


def _over_probe(a: Record, b: Record, name: str = "probe") -> tuple[float, float, float] | None:
    """The change of the rounds divided by the machine probe ``name`` (probe, small_probe) timed before
    each; None without its rounds."""
    pa, pb = a.info.get(f"{name}_ratios"), b.info.get(f"{name}_ratios")
    if pa and pb and a.info.get(f"{name}_version") == b.info.get(f"{name}_version"):
        return change(pa, pb)
    return None


def _normalised(run: Run, rec: Record, model: str) -> float | None:
    """A case's time over ``model``'s in the same run: round by round where timed so, else by medians."""
    ratio = rec.ratio_to(model)
    if ratio is None:
        ref = _reference(run, rec, model)
        ratio = rec.median_s / ref.median_s if ref is not None and ref.median_s else None
    return ratio


def time_change(
    a_run: Run,
    b_run: Run,
    a: Record,
    b: Record,
    threshold: float,
    normalize: str | None,
    spread: tuple[float, int] | None = None,
) -> Change | None:
    """The timed change of one case; None where time is not compared (the reference itself, fit cases).
    ``spread``: the case's between-run spread (standard deviation of log time, degrees of freedom)."""
    sigma = spread[0] if spread else None
    found, widened = _time_change(a_run, b_run, a, b, threshold, normalize, sigma)
    if found is None or spread is None or found.value is None:
        return found
    if not widened:
        low, high = (found.value, found.value) if found.low is None else (found.low, found.high)
        found.low, found.high = widen(found.value, low, high, sigma)
        if found.verdict != NOISE:  # a wider interval can only take a verdict back
            found.verdict = _judge(found.value, found.low, found.high, threshold)
    found.note += f"{'; ' if found.note else ''}between runs ±{sigma:.1%} ({spread[1]} df)"
    return found


def _time_change(
    a_run: Run, b_run: Run, a: Record, b: Record, threshold: float, normalize: str | None, sigma: float | None
) -> tuple[Change | None, bool]:
    """(the change, whether its over-probe interval took the between-run spread ``sigma`` already)."""
    if a.kind != "speed" or (normalize and a.model == normalize):
        return None, False
    try:
        if normalize:
            if a.info.get("reference_model") == normalize == b.info.get("reference_model"):
                # The reference was timed before every round of the case (--perf-reference).
                ra, rb = a.info.get("reference_ratios"), b.info.get("reference_ratios")
                if ra and rb:
                    est, low, high = change(ra, rb)
                    verdict, note = _judge(est, low, high, threshold), f"per-round ratio to {normalize}"
                    # The run's own reference case is a second witness: the reference timed between a
                    # case's rounds can move by itself from run to run (docs/results/repeatability.md).
                    # It takes a verdict back only where its interval is sure the change is within the
                    # threshold: on a noisy machine its interval is wide, and the per-round ratio decides.
                    ref_a, ref_b = _reference(a_run, a, normalize), _reference(b_run, b, normalize)
                    samples = [r.rounds for r in (a, ref_a, b, ref_b)] if ref_a and ref_b else None
                    if samples and all(samples):
                        other = normalised_change(*samples)
                        if (verdict == REGRESSED and other[2] < threshold) or (
                            verdict == IMPROVED and other[1] > -threshold
                        ):
                            verdict = NOISE
                        note += f"; over {normalize}'s case {fmt_change(*other)}"
                    return Change(a.id, "time", est, low, high, verdict, note), False
                ratio = lambda r: r.ratio_to(normalize) or r.median_s / r.info["reference_median_s"]  # noqa: E731
                est = ratio(b) / ratio(a) - 1
                return Change(
                    a.id, "time", est, verdict=_judge(est, None, None, threshold), note="medians only: no rounds saved"
                ), False
            ref_a, ref_b = _reference(a_run, a, normalize), _reference(b_run, b, normalize)
            if ref_a is None or ref_b is None:
                return Change(a.id, "time", None, verdict=NOISE, note=f"no {normalize} case to normalise by"), False
            samples = [r.rounds for r in (a, ref_a, b, ref_b)]
            if all(samples):
                est, low, high = normalised_change(*samples)
                return Change(
                    a.id, "time", est, low, high, _judge(est, low, high, threshold), f"over {normalize}'s"
                ), False
            est = (b.median_s / ref_b.median_s) / (a.median_s / ref_a.median_s) - 1
        else:
            if a.rounds and b.rounds:
                est, low, high = change(a.rounds, b.rounds)
                verdict, machine = _judge(est, low, high, threshold), _over_probe(a, b)
                if machine is None:
                    return Change(a.id, "time", est, low, high, verdict, "no machine probe"), False
                if sigma is not None:
                    # The spread between runs is of the time over the probe (``between_runs``): the probe
                    # takes out how fast the machine was; what is left is the case's own.
                    machine = (machine[0], *widen(*machine, sigma))
                small = _over_probe(a, b, "small_probe")
                if any(_judge(*m, threshold) != verdict for m in (machine, small) if m is not None):
                    verdict = NOISE  # the machine moved with the case: no evidence about the code
                note = f"over the machine probe {fmt_change(*machine)}"
                if small is not None:
                    note += f", over the small probe {fmt_change(*small)}"
                return Change(a.id, "time", est, low, high, verdict, note), sigma is not None
            est = b.median_s / a.median_s - 1
    except TooFewRounds as e:
        raise ReportError(f"{a.id}: {e} (time more rounds: raise --perf-seconds)") from None
    return Change(
        a.id, "time", est, verdict=_judge(est, None, None, threshold), note="medians only: no rounds saved"
    ), False


def exact_changes(a: Record, b: Record, threshold: float, memory_threshold: float) -> list[Change]:
    out = []
    if a.memory and b.memory:
        v = b.memory / a.memory - 1
        out.append(Change(a.id, "memory", v, verdict=_judge(v, None, None, memory_threshold)))
    ra, rb = a.info.get("rmse_mean"), b.info.get("rmse_mean")
    fa, fb = a.info.get("fit_settings"), b.info.get("fit_settings")
    if ra and rb and fa != fb:  # other seeds or steps: a different measurement, not a change
        out.append(Change(a.id, "fit RMSE", None, note=f"not compared: --perf-fit={fa} against {fb}"))
    elif ra and rb:
        v = rb / ra - 1
        out.append(Change(a.id, "fit RMSE", v, verdict=_judge(v, None, None, threshold)))
    sa, sb = a.info.get("score_mean"), b.info.get("score_mean")
    if sa and sb:  # an accuracy case: its test metric at equal steps
        v = sb / sa - 1
        worse = -v if a.info.get("higher_is_better") else v
        verdict = REGRESSED if worse > threshold else IMPROVED if worse < -threshold else NOISE
        out.append(Change(a.id, a.info.get("metric", "score"), v, verdict=verdict))
    ga, gb = a.info.get("grad_ok"), b.info.get("grad_ok")
    if ga is not None and gb is not None and ga != gb:
        err = b.info.get("grad_rel_err")
        out.append(
            Change(
                a.id,
                "gradients",
                None,
                verdict=REGRESSED if ga else IMPROVED,
                note=f"gradients turned WRONG (max rel err {err:.2g})" if ga else "gradients now ok",
            )
        )
    return out


def between_runs(history: list[Run], normalize: str | None = None) -> dict[str, tuple[float, int]]:
    """Each case's between-run spread in ``history`` (saved runs), of its time or its time over ``normalize``'s."""
    if normalize:
        return spreads(history, lambda run, rec: _normalised(run, rec, normalize))
    # Plain: of the time over the machine probe, where the runs timed one (see _time_change).
    return spreads(history, _over_probe_median)


def _over_probe_median(run: Run, rec: Record) -> float | None:
    ratios = rec.info.get("probe_ratios")
    return statistics.median(ratios) if ratios else rec.median_s


def changes(
    a: Run,
    b: Run,
    threshold: float = 0.1,
    normalize: str | None = None,
    memory_threshold: float = MEMORY_THRESHOLD,
    history: list[Run] | None = None,
) -> list[Change]:
    """Every measured change of every case present in both runs; the time intervals widened by each
    case's spread between the runs of ``history`` of one unchanged code, where it has one."""
    common = sorted(set(a.records) & set(b.records))
    if not common:
        raise ReportError(f"{a.path} and {b.path} have no case in common")
    spread = between_runs(history, normalize) if history else {}
    out = []
    for cid in common:
        ra, rb = a.records[cid], b.records[cid]
        t = time_change(a, b, ra, rb, threshold, normalize, spread.get(cid))
        if t is not None:
            out.append(t)
        out.extend(exact_changes(ra, rb, threshold, memory_threshold))
    return out


def compare(
    a: Run,
    b: Run,
    threshold: float = 0.1,
    normalize: str | None = None,
    verbose: bool = False,
    memory_threshold: float = MEMORY_THRESHOLD,
    history: list[Run] | None = None,
) -> tuple[str, bool]:
    """Text of the changes from run a to run b, and whether anything regressed; ``history``: saved runs
    whose reruns of one code give each case's between-run spread (``perf.stats.spread``)."""
    out = [f"A: {a.describe()}", f"B: {b.describe()}"]
    for key in (
        "torch",
        "node",
        "torch_cpu_capability",
        "cuda_device",
        "torch_threads",
        "timing_environment",
        "malloc",
    ):
        # Runs saved before a key existed count as its default (an empty environment: nothing set).
        default = {} if key == "timing_environment" else None
        va, vb = a.machine_info.get(key, default), b.machine_info.get(key, default)
        if va != vb:
            out.append(f"warning: {key} differs: {va!r} (A) vs {vb!r} (B); the runs may not be comparable")
    found = changes(a, b, threshold, normalize, memory_threshold, history)
    timed = [c for c in found if c.what == "time"]
    spread = between_runs(history, normalize) if history else {}
    covered = sum(c.case in spread for c in timed if c.low is not None)
    if covered:
        groups = same_code(history)
        out.append(
            f"between runs: {covered} of {len(timed)} timed cases have their spread from run to run of "
            f"unchanged code added to their interval, from {sum(map(len, groups))} saved reruns of "
            f"{len(groups)} commit(s)"
        )
    elif timed:
        out.append(
            "note: no saved reruns of one unchanged code cover these cases: each interval holds the spread "
            "within each run only, and a small case can move more than that from one process to the next; "
            "save two runs of one commit (`pytest perf --benchmark-autosave`, twice) to widen them "
            "(docs/results/repeatability.md)"
        )
    if any(c.low is None and c.value is not None for c in timed):
        out.append(
            "note: some cases have no saved rounds (saved without --benchmark-save-data): their time is "
            "judged on medians alone, without an interval"
        )
    if any(c.note == "no machine probe" for c in timed):
        out.append(
            "note: some cases have no machine probe (saved before perf.probe): their plain change cannot tell "
            "the machine's drift from the code's; compare them with --normalize mlp"
        )
    per = f" over {normalize}'s" if normalize else ", and so does its interval over the machine probe"
    out.append(
        f"rule: time regressed or improved when its whole 95% interval lies beyond ±{threshold:.0%}{per} "
        f"(bootstrap of the rounds); memory beyond ±{memory_threshold:.0%}; fit RMSE and accuracy-case metrics "
        f"worse by more than {threshold:.0%}; the gradient check as measured"
    )
    for verdict in (REGRESSED, IMPROVED):
        chosen = [c for c in found if c.verdict == verdict]
        out.append(f"{verdict} ({len(chosen)})" + (":" if chosen else ""))
        if chosen:
            out.append(
                text_table(["case", "what", "change [95% interval]"], [[c.case, c.what, c.describe()] for c in chosen])
            )
    noise = [c for c in found if c.verdict == NOISE]
    out.append(
        f"within noise (not significant): {len(noise)} measurement(s)"
        + ("" if verbose or not noise else "; --verbose lists them")
    )
    if verbose and noise:
        out.append(
            text_table(["case", "what", "change [95% interval]"], [[c.case, c.what, c.describe()] for c in noise])
        )
    widest = max((c for c in timed if c.low is not None), key=lambda c: c.high - c.low, default=None)
    if widest is not None:
        out.append(f"widest interval: {widest.case} {widest.describe()}")
    for name, only in (("A", set(a.records) - set(b.records)), ("B", set(b.records) - set(a.records))):
        if only:
            out.append(f"only in {name} ({len(only)}): " + ", ".join(sorted(only)))
    n_bad = sum(c.verdict == REGRESSED for c in found)
    out.append(f"{n_bad} regression(s)" if n_bad else "no regression")
    return "\n".join(out), bool(n_bad)
