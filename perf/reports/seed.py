"""``python -m perf.report table``: the seed's table and its "N x faster than efficient-kan" sentences.

python -m perf.report [table] [RUN ...] [--markdown] [--plot FILE] [--models a,b] [--verbose]
"""

from __future__ import annotations

import sys

from perf.reports.tables import fmt_bytes, group_runs, load_runs, md_table, model_order, text_table
from perf.stats.bootstrap import TooFewRounds, bootstrap
from perf.storage.runs import Record, ReportError, Run

COLUMNS = ("forward", "backward", "forward memory", "backward memory", "num params", "num trainable params")


def ratio_phrase(
    value: float | None,
    other: float | None,
    better: str,
    worse: str,
    name: str,
    interval: tuple[float, float] | None = None,
) -> str:
    """'4.99x faster than efficient-kan' (value smaller than other) or '2.23x slower than mlp'.

    ``interval``: the 95% interval of value / other, shown in the phrase's own direction.
    """
    if not value or not other:
        return f"not comparable with {name} (no measurement)"
    if value <= other:
        text = f"{other / value:.2f}x"
        if interval:
            text += f" [{1 / interval[1]:.2f}x, {1 / interval[0]:.2f}x]"
        return f"{text} {better} than {name}"
    text = f"{value / other:.2f}x"
    if interval:
        text += f" [{interval[0]:.2f}x, {interval[1]:.2f}x]"
    return f"{text} {worse} than {name}"


def _bounds(samples, statistic) -> tuple[float, float] | None:
    """95% interval of ``statistic`` of the samples' medians; None where a sample is missing or too short."""
    if not all(samples):
        return None
    try:
        _, low, high = bootstrap(samples, statistic)
    except TooFewRounds:
        return None
    return low, high


def time_ratio(a: Record | None, b: Record | None) -> tuple[float, float] | None:
    """95% interval of median(a) / median(b) from both cases' rounds, where both were saved."""
    return None if a is None or b is None else _bounds([a.rounds, b.rounds], lambda ma, mb: ma / mb)


def _forward_memory(passes: dict[str, Record]) -> float | None:
    rec = passes.get("forward")
    return None if rec is None else rec.memory


def _backward_memory(passes: dict[str, Record]) -> float | None:
    rec = passes.get("backward")
    if rec is None:
        return None
    return rec.info.get("cuda_peak_bytes") if rec.device == "cuda" else rec.info.get("cpu_peak_bytes")


def table_rows(models: dict[str, dict[str, Record]]) -> list[tuple[str, list[str]]]:
    rows = []
    for model in sorted(models, key=model_order):
        passes = models[model]
        any_rec = next(iter(passes.values()))
        ms = [f"{passes[p].median_s * 1e3:.3f} ms" if p in passes else "n/a" for p in ("forward", "backward")]
        rows.append(
            (
                f"{model}-{any_rec.device}",
                ms
                + [fmt_bytes(_forward_memory(passes)), fmt_bytes(_backward_memory(passes))]
                + [str(any_rec.info.get("params", "n/a")), str(any_rec.info.get("trainable_params", "n/a"))],
            )
        )
    return rows


def claims(models: dict[str, dict[str, Record]], verbose: bool = False) -> tuple[str, list[str]]:
    """The seed's sentences (the default FastKAN; every basis with ``verbose``) and which reference they use."""
    ref = "efficient-kan" if "efficient-kan" in models else "bspline"
    note = f"reference KAN: {ref}" + ("" if ref == "efficient-kan" else " (efficient-kan was not measured)")
    lines = []
    metrics = (
        ("forward speed", "forward", lambda p: p["forward"].median_s if "forward" in p else None, "faster", "slower"),
        (
            "backward speed",
            "backward",
            lambda p: p["backward"].median_s if "backward" in p else None,
            "faster",
            "slower",
        ),
        ("forward memory", None, _forward_memory, "smaller", "bigger"),
        ("backward memory", None, _backward_memory, "smaller", "bigger"),
    )
    chosen = (
        sorted(m for m in models if m.startswith("fastkan-"))
        if verbose
        else [m for m in ("fastkan-gaussian",) if m in models]
    )
    for model in chosen:
        for label, pass_, get, better, worse in metrics:
            value = get(models[model])
            phrases = []
            for other in (ref, "mlp"):
                interval = time_ratio(models[model].get(pass_), models.get(other, {}).get(pass_)) if pass_ else None
                phrases.append(
                    ratio_phrase(value, get(models[other]) if other in models else None, better, worse, other, interval)
                )
            lines.append(f"{model} is {phrases[0]} and {phrases[1]} in {label}")
    lines.extend(totals(models, ref))
    lines.extend(interleaved(models, None if verbose else set(chosen)))
    return note, lines


def compact(models: dict[str, dict[str, Record]]) -> tuple[list[str], list[list[str]]]:
    """Every other FastKAN model in one table: its time relative to the reference KAN and the MLP (lower is better)."""
    ref = "efficient-kan" if "efficient-kan" in models else "bspline"
    others = [
        m
        for m in sorted(models, key=model_order)
        if m != "fastkan-gaussian" and next(iter(models[m].values())).model_group == "fastkan"
    ]
    header = ["model", f"fwd / {ref}", f"bwd / {ref}", "fwd / mlp", "bwd / mlp", "saved / mlp"]
    rows = []
    for m in others:
        cells = [m]
        for other in (ref, "mlp"):
            for p in ("forward", "backward"):
                a, b = models[m].get(p), models.get(other, {}).get(p)
                cells.append(f"{a.median_s / b.median_s:.2f}" if a and b else "n/a")
        saved, mlp_saved = _forward_memory(models[m]), _forward_memory(models.get("mlp", {}))
        cells.append(f"{saved / mlp_saved:.2f}" if saved and mlp_saved else "n/a")
        rows.append(cells)
    return header, rows


def explanations(models: dict[str, dict[str, Record]]) -> list[str]:
    """Rows a reader would stop at, explained once under the table."""
    out = []
    quick_back = [
        m
        for m, p in sorted(models.items())
        if {"forward", "backward"} <= set(p) and m != "mlp" and p["backward"].median_s < p["forward"].median_s
    ]
    if quick_back:
        out.append(
            f"{', '.join(quick_back)}: backward shorter than forward, because the forward pass builds the "
            "(batch, in * basis) tensor and keeps it for backward (the forward memory column), so backward "
            "only multiplies; a model that rebuilds its basis in backward pays for it twice"
        )
    return out


def interleaved(models: dict[str, dict[str, Record]], shown: set[str] | None = None) -> list[str]:
    """Ratios timed round by round against a reference model (pytest perf --perf-reference=MODEL).

    Ratios to the default reference, the MLP, only for the models in ``shown`` (None: every model);
    those to a reference the user chose, for every model.

    With both passes timed against the same model, also their sum: the
    reference's time is estimated pass by pass as the model's median over the
    pass' ratio, so the sum weighs each ratio by the model's own time.
    Intervals come from the per-round ratios, where the run kept them.
    """
    out = []
    for model in sorted(models):
        per_pass = {}
        for p, rec in sorted(models[model].items()):
            other = rec.info.get("reference_model")
            ratio = rec.ratio_to(other) if other and (shown is None or model in shown or other != "mlp") else None
            if ratio:
                rounds = rec.info.get("reference_ratios") or []
                per_pass[p] = (ratio, other, rec.median_s, rounds)
                interval = _interval([rounds], lambda m: m)
                out.append(
                    f"{model} {p}: {ratio:.3f}x{interval} the time of {other}, timed round by round "
                    f"({ratio_phrase(ratio, 1.0, 'faster', 'slower', other)})"
                )
        both = [per_pass.get(p) for p in ("forward", "backward")]
        if all(both) and both[0][1] == both[1][1]:
            other = both[0][1]
            (rf, _, tf, sf), (rb, _, tb, sb) = both
            ratio = (tf + tb) / (tf / rf + tb / rb)
            interval = _interval([sf, sb], lambda mf, mb: (tf + tb) / (tf / mf + tb / mb))  # noqa: B023 (called here)
            out.append(
                f"{model} forward + backward: {ratio:.3f}x{interval} the time of {other}, timed round by round "
                f"({ratio_phrase(ratio, 1.0, 'faster', 'slower', other)})"
            )
    return out


def _interval(samples, statistic) -> str:
    bounds = _bounds(samples, statistic)
    return "" if bounds is None else f" [{bounds[0]:.3f}x, {bounds[1]:.3f}x]"


def totals(models: dict[str, dict[str, Record]], ref: str) -> list[str]:
    """Forward plus backward time and saved bytes of the default FastKAN against the reference and the MLP."""
    fk = models.get("fastkan-gaussian", {})

    def both(passes):
        return (
            passes["forward"].median_s + passes["backward"].median_s if {"forward", "backward"} <= set(passes) else None
        )

    t = both(fk)
    if t is None:
        return []
    out = []
    if ref in models and both(models[ref]):
        out.append(ratio_phrase(t, both(models[ref]), "faster", "slower", ref))
    if "mlp" in models and both(models["mlp"]):
        out.append(f"{t / both(models['mlp']):.2f}x the mlp's time")
    saved = fk["forward"].info.get("saved_bytes")
    mlp_saved = models.get("mlp", {}).get("forward")
    if saved is not None and mlp_saved is not None and mlp_saved.info.get("saved_bytes"):
        out.append(f"keeps {saved / mlp_saved.info['saved_bytes']:.2f}x the mlp's bytes for backward")
    return ["fastkan-gaussian forward + backward: " + ", ".join(out)] if out else []


def render(run: Run, markdown: bool = False, only: list[str] | None = None, verbose: bool = False) -> str:
    out = []
    for (config, device, dtype, mode), models in group_runs([run], only).items():
        any_rec = next(iter(next(iter(models.values())).values()))
        title = (
            f"{config} on {device} ({dtype}, {mode}): batch {any_rec.info.get('batch')}, "
            f"layers {any_rec.info.get('layers')}, {any_rec.info.get('threads')} thread(s)"
        )
        header = ["", *COLUMNS]
        rows = [[name, *cells] for name, cells in table_rows(models)]
        note, lines = claims(models, verbose)
        mem = (
            "memory: CUDA peak max_memory_allocated of each phase"
            if device == "cuda"
            else "memory: forward = bytes saved for backward, backward = peak bytes allocated by the backward pass "
            "(both exact)"
        )
        why = explanations(models)
        c_header, c_rows = compact(models) if not verbose else ([], [])
        c_title = "time relative to the reference KAN and the MLP (lower is better; --verbose for sentences):"
        if markdown:
            out += [f"#### {title}", "", md_table(header, rows), "", f"Times are medians; {mem}; {note}.", ""]
            out += [f"- {line}" for line in [*why, *lines]] + [""]
            if c_rows:
                out += [c_title, "", md_table(c_header, c_rows), ""]
        else:
            out += [title, text_table(header, rows), f"times are medians; {mem}; {note}", *why, *lines]
            if c_rows:
                out += [c_title, text_table(c_header, c_rows)]
            out.append("")
    source = f"from {run.describe()}"
    out.insert(0, (f"_{source}_\n" if markdown else source + "\n"))
    return "\n".join(out)


PLOT = "the figures of the seed's table (FILE, FILE-ratios, FILE-sweeps for sweeps)"


def add_arguments(p) -> None:
    p.add_argument("--models", default=None, help="comma-separated models to show (default: all measured)")
    p.add_argument("--verbose", action="store_true", help="the seed's sentences for every basis")


def run(args) -> int:
    try:
        runs = load_runs(args)
        only = [m.strip() for m in args.models.split(",")] if args.models else None
        measured = {r.model for run in runs for r in run.records.values()}
        unknown = [m for m in only or [] if m not in measured]
        if unknown:
            raise ReportError(
                f"--models: {', '.join(unknown)} not measured in the run(s); measured: {', '.join(sorted(measured))}"
            )
        if args.plot is not None:
            from perf.reports.plots import plot_runs

            files = plot_runs(runs, args.plot, only)
    except ReportError as e:
        print(f"perf.report: error: {e}", file=sys.stderr)
        return 2
    for one in runs:
        print(render(one, markdown=args.markdown, only=only, verbose=args.verbose))
    if args.plot is not None:
        print("figures: " + ", ".join(str(f) for f in files))
    return 0
