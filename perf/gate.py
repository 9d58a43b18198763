"""The CI gate: compare a run with the saved baseline, if there is one.

    python -m perf.gate CURRENT BASELINE [--normalize mlp] [--threshold 0.2] [--history FOLDER ...]

Exit codes: 0 no regression (or no baseline yet), 2 bad input, 3 regressed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perf.report import EXIT_REGRESSED
from perf.stats.compare import compare
from perf.storage.runs import ReportError, history, load


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m perf.gate", description=__doc__.split("\n")[0])
    p.add_argument("current", type=Path)
    p.add_argument("baseline", type=Path)
    p.add_argument("--normalize", metavar="MODEL", default=None)
    p.add_argument("--threshold", type=float, default=0.1)
    p.add_argument("--verbose", action="store_true", help="also list the changes within noise")
    p.add_argument(
        "--history",
        type=Path,
        nargs="*",
        default=[],
        metavar="PATH",
        help="saved runs (files or folders) whose reruns of one commit widen each case's interval",
    )
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if not args.baseline.exists():
        print(f"perf.gate: no baseline at {args.baseline} yet; nothing to compare (a push to main saves one)")
        return 0
    try:
        runs = history(args.history, exclude=(args.baseline, args.current))
        text, regressed = compare(
            load(args.baseline), load(args.current), args.threshold, args.normalize, args.verbose, history=runs
        )
    except ReportError as e:
        print(f"perf.gate: error: {e}", file=sys.stderr)
        return 2
    print(text)
    return EXIT_REGRESSED if regressed else 0


if __name__ == "__main__":
    sys.exit(main())
