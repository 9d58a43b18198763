"""Shared by every report and figure: grouping of saved runs, model order, and table rendering."""

from __future__ import annotations

from collections import defaultdict

from perf.storage.runs import Record, Run, load, resolve

OURS = ("fastkan", "reference")  # the model groups (perf/matrix/models.py) this package ships


def is_ours(group: str) -> bool:
    """A model of this package: a FastKAN (any basis or variant) or our B-spline KAN."""
    return group in OURS


def model_order(model: str) -> tuple[bool, str]:
    """Sort key of tables and figures: the FastKAN bases first, then the other models, by name."""
    return not model.startswith("fastkan-"), model


def group_runs(runs: list[Run], only: list[str] | None = None) -> dict[tuple, dict[str, dict[str, Record]]]:
    """(config, device, dtype, mode) -> model -> pass -> record, for the speed passes, sorted.

    Later runs win a case measured twice; ``only`` keeps those models.
    """
    groups: dict[tuple, dict[str, dict[str, Record]]] = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        for rec in run.records.values():
            if rec.kind == "speed" and (not only or rec.model in only):
                groups[rec.group][rec.model][rec.pass_] = rec
    return dict(sorted(groups.items()))


def fmt_bytes(n) -> str:
    if n is None:
        return "n/a"
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    return f"{n / 1e6:.2f} MB"


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def load_runs(args) -> list[Run]:
    """The runs named on the command line, or the latest saved one (ReportError if none)."""
    return [load(resolve(spec, args.storage)) for spec in (args.runs or [None])]


def load_and_plot(args, collect, plot):
    """``(runs, collect(runs))`` for the runs of ``args``, and ``plot``'s figure where --plot asks for one."""
    runs = load_runs(args)
    groups = collect(runs)
    if getattr(args, "plot", None) is not None:
        plot(groups, args.plot)
    return runs, groups


def source_line(runs, markdown: bool) -> str:
    """The first line of a report: the run it read, the machine and torch it ran on."""
    return ("_from " + runs[0].describe() + "_") if markdown else "from " + runs[0].describe()
