"""Reports from saved benchmark runs, one subcommand each.

    python -m perf.report [table] [RUN ...]     the seed's table and its "N x faster" sentences
    python -m perf.report leaderboard [RUN ...]   every model per configuration, fastest first
    python -m perf.report bases [RUN ...]         which basis: approximation, fit and speed
    python -m perf.report accuracy [RUN ...]      which KAN learns best per second
    python -m perf.report physics [RUN ...]       which KAN solves a PDE best per second
    python -m perf.report goals PLAIN LEAN ...    is the default FastKAN fastest everywhere?
    python -m perf.report repeatability RUN RUN ...  how far each case moves from run to run
    python -m perf.report compare A B             what changed from run A to run B (also: --compare A B)

RUN is a saved JSON file, a pytest-benchmark storage folder (its latest run)
or a run number/id in the default storage; without RUN, the latest saved
run. Exit codes: 0 fine, 2 bad input, 3 a comparison found a regression.
Reports only read the storage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perf.reports import accuracy, bases, goals, leaderboard, physics, repeatability, seed
from perf.stats.compare import MEMORY_THRESHOLD, compare
from perf.storage.runs import DEFAULT_STORAGE, ReportError, history, load, resolve

EXIT_REGRESSED = 3
#: subcommand -> module with add_arguments(parser), run(args) -> exit code, PLOT (the --plot help, or None)
REPORTS = {
    "table": seed,
    "leaderboard": leaderboard,
    "bases": bases,
    "accuracy": accuracy,
    "physics": physics,
    "goals": goals,
    "repeatability": repeatability,
}


def _shared(plot: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("runs", nargs="*", metavar="RUN", help="JSON file, storage folder, or run number/id")
    p.add_argument("--storage", type=Path, default=DEFAULT_STORAGE, help="benchmark storage (default .benchmarks)")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    if plot:
        p.add_argument("--plot", type=Path, metavar="FILE", help=f"also draw {plot} into FILE (.png or .svg)")
    return p


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m perf.report",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[2:]),
    )
    sub = p.add_subparsers(dest="report", metavar="REPORT")
    for name, module in REPORTS.items():
        one = sub.add_parser(name, parents=[_shared(module.PLOT)], help=(module.__doc__ or "").split("\n")[0])
        module.add_arguments(one)
    c = sub.add_parser("compare", help="change of each case from run A to run B, with 95%% intervals")
    c.add_argument("a", metavar="A")
    c.add_argument("b", metavar="B")
    c.add_argument("--storage", type=Path, default=DEFAULT_STORAGE, help="benchmark storage (default .benchmarks)")
    c.add_argument("--threshold", type=float, default=0.10, help="relative change flagged (0.10 = 10%%)")
    c.add_argument("--normalize", metavar="MODEL", help="compare each case's time divided by MODEL's in the same run")
    c.add_argument(
        "--memory-threshold",
        type=float,
        default=MEMORY_THRESHOLD,
        help="relative memory growth flagged (default %(default)s; memory is exact)",
    )
    c.add_argument("--verbose", action="store_true", help="also list the changes within noise")
    c.add_argument(
        "--history",
        type=Path,
        nargs="*",
        default=None,
        metavar="PATH",
        help="saved runs (files or folders) whose reruns of one commit give each case's spread from run to "
        "run, added to its interval (default: the folders holding A and B; none: --history with no PATH)",
    )
    return p


def _legacy(argv: list[str]) -> list[str]:
    """The forms before subcommands: ``[RUN ...]`` is ``table``, ``--compare A B`` is ``compare A B``."""
    if "--compare" in argv:
        i = argv.index("--compare")
        return ["compare", *argv[:i], *argv[i + 1 :]]
    if not argv or argv[0] not in (*REPORTS, "compare", "-h", "--help"):
        return ["table", *argv]
    return argv


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(_legacy(list(sys.argv[1:] if argv is None else argv)))
    plot = getattr(args, "plot", None)
    if plot is not None and plot.suffix not in (".png", ".svg"):
        p.error(f"--plot needs a .png or .svg file name, got {plot}")
    if args.report != "compare":
        return REPORTS[args.report].run(args)
    if args.threshold <= 0:
        p.error(f"--threshold must be positive, got {args.threshold}")
    try:
        a, b = (load(resolve(spec, args.storage)) for spec in (args.a, args.b))
        if args.normalize and not any(r.model == args.normalize for r in (*a.records.values(), *b.records.values())):
            raise ReportError(f"--normalize {args.normalize}: no such model in either run")
        specs = sorted({a.path.parent, b.path.parent}) if args.history is None else args.history
        runs = history(specs, exclude=(a.path, b.path))
        text, regressed = compare(a, b, args.threshold, args.normalize, args.verbose, args.memory_threshold, runs)
    except ReportError as e:
        print(f"perf.report: error: {e}", file=sys.stderr)
        return 2
    print(text)
    return EXIT_REGRESSED if regressed else 0


if __name__ == "__main__":
    sys.exit(main())
