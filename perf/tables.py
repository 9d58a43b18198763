"""Shared by every report and figure: grouping of saved runs, model order, and table rendering."""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from .runs import DEFAULT_STORAGE, Record, Run, load, resolve

SPEED_PASSES = ("forward", "backward", "train-step")


# The Gaussian FastKAN built or evaluated otherwise, timed beside the fastkan-<basis> models
# (perf/cases.py): reports count them as this package's.
FASTKAN_VARIANTS = ("lean-fastkan", "bare-fastkan", "plain-fastkan")


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
            if rec.pass_ in SPEED_PASSES and (not only or rec.model in only):
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


def report_parser(name: str, doc: str, plot_help: str) -> argparse.ArgumentParser:
    """The arguments every ``python -m perf.report NAME`` shares: runs, storage, Markdown, a figure."""
    p = argparse.ArgumentParser(prog=f"python -m perf.report {name}", description=doc.split("\n")[0])
    p.add_argument("runs", nargs="*", metavar="RUN", help="JSON file, storage folder, or run number/id")
    p.add_argument("--storage", type=Path, default=DEFAULT_STORAGE, help="benchmark storage (default .benchmarks)")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    p.add_argument("--plot", type=Path, metavar="FILE", help=f"{plot_help} (.png or .svg)")
    return p


def parse_report_args(p: argparse.ArgumentParser, argv) -> argparse.Namespace:
    args = p.parse_args(argv)
    if args.plot is not None and args.plot.suffix not in (".png", ".svg"):
        p.error(f"--plot needs a .png or .svg file name, got {args.plot}")
    return args


def load_runs(args: argparse.Namespace) -> list[Run]:
    """The runs named on the command line, or the latest saved one (ReportError if none)."""
    return [load(resolve(spec, args.storage)) for spec in (args.runs or [None])]
