"""``python -m perf.report goals``: is the default FastKAN fastest everywhere?

    python -m perf.report goals PLAIN_RUN LEAN_RUN [PLAIN_RUN LEAN_RUN ...] [--also RUN] [--markdown]

PLAIN_RUN timed our models with ``--perf-reference=plain-fastkan``, LEAN_RUN the peers (with the
default FastKAN and ``bare-fastkan``) with ``--perf-reference=lean-fastkan``; later runs given for
the same case win (``--also RUN`` adds one to the first group of a single pair). A column that
divides two models divides their ratios to the same reference. Several pairs (the two commands
rerun) give each cell as the median and, in brackets, the lowest and highest pair: round-by-round
intervals show the noise within one run, not what changes from one process to the next (where each
model's tensors sit in memory).
"""

from __future__ import annotations

import statistics
import sys
from collections import Counter

from perf.reports.tables import group_runs, md_table, text_table
from perf.storage.runs import Record, ReportError, load, resolve


def forward_backward(passes: dict[str, Record]) -> float | None:
    """Forward + backward time over the reference's, each pass's ratio weighted by the model's own time."""
    f, b = passes.get("forward"), passes.get("backward")
    if not f or not b or not f.info.get("reference_ratio") or not b.info.get("reference_ratio"):
        return None
    return (f.median_s + b.median_s) / (f.median_s / f.info["reference_ratio"] + b.median_s / b.info["reference_ratio"])


def _divide(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def ratios(plain: dict, lean: dict) -> dict[tuple, tuple[str | None, list[float | None]]]:
    """group -> (fastest peer, the table's ratios) for one pair of runs, in ``HEADER``'s order."""
    out = {}
    for group in set(plain) & set(lean):
        p, q = plain[group], lean[group]
        r = {m: forward_backward(p[m]) for m in ("fastkan-gaussian", "lean-fastkan", "mlp") if m in p}
        s = {m: forward_backward(passes) for m, passes in q.items()}
        peers = {m: v for m, v in s.items() if v and next(iter(q[m].values())).model_group == "peer"}
        fastest = min(peers, key=peers.get) if peers else None
        g = s.get("fastkan-gaussian")
        out[group] = (
            fastest,
            [
                r.get("fastkan-gaussian"),
                _divide(g, peers.get("fast-kan")),
                _divide(g, peers.get("faster-kan")),
                _divide(1.0, peers.get(fastest)),
                _divide(s.get("bare-fastkan"), peers.get(fastest)),
                _divide(r.get("fastkan-gaussian"), r.get("mlp")),
                _divide(r.get("lean-fastkan"), r.get("mlp")),
            ],
        )
    return out


def _cell(values: list[float | None]) -> str:
    values = [v for v in values if v]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"


def _fastest(names: list[str | None]) -> str:
    counts = Counter(n for n in names if n)
    if not counts:
        return "n/a"
    name, count = counts.most_common(1)[0]
    return name if count == len(names) else f"{name} ({count} of {len(names)})"


def rows(pairs: list[tuple[dict, dict]]) -> list[list[str]]:
    """One row per configuration measured by every pair: each cell's median [lowest, highest] over the pairs."""
    per_pair = [ratios(plain, lean) for plain, lean in pairs]
    groups = set.intersection(*(set(r) for r in per_pair))
    out = []
    for group in sorted(groups, key=lambda g: (not g[0].startswith(("tiny", "mnist", "seed", "kan")), g)):
        found = [r[group] for r in per_pair]
        cells = [_cell(list(column)) for column in zip(*(values for _, values in found))]
        out.append([group[0], *cells[:3], _fastest([name for name, _ in found]), *cells[3:]])
    return out


# lean-fastkan (no LayerNorm affine) and bare-fastkan (no LayerNorm) are the like-for-like forms of
# goal 3: the second for the peers that normalise nothing (inkan, flashkan, the B-spline KANs).
HEADER = [
    "config",
    "default / plain-fastkan",
    "default / fast-kan",
    "default / faster-kan",
    "fastest peer",
    "lean-fastkan / fastest peer",
    "bare-fastkan / fastest peer",
    "default / MLP",
    "lean-fastkan / MLP",
]


PLOT = None  # no figure


def add_arguments(p) -> None:
    p.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="RUN",
        help="a later run for the first group (one pair of runs only)",
    )


def run(args) -> int:
    try:
        if not args.runs or len(args.runs) % 2:
            raise ReportError(
                "give pairs of runs: PLAIN_RUN (--perf-reference=plain-fastkan) then LEAN_RUN "
                f"(--perf-reference=lean-fastkan), got {len(args.runs)} run(s)"
            )
        if args.also and len(args.runs) > 2:
            raise ReportError("--also adds to the first group of a single pair of runs")
        runs = [load(resolve(spec, args.storage)) for spec in args.runs]
        also = [load(resolve(spec, args.storage)) for spec in args.also]
        pairs = [(group_runs([runs[i], *also]), group_runs([runs[i + 1]])) for i in range(0, len(runs), 2)]
        body = rows(pairs)
        if not body:
            raise ReportError("the runs share no configuration")
    except ReportError as e:
        print(f"perf.report: error: {e}", file=sys.stderr)
        return 2
    print(md_table(HEADER, body) if args.markdown else text_table(HEADER, body))
    if len(pairs) > 1:
        print(f"\nmedian [lowest, highest] over {len(pairs)} pairs of runs")
    return 0
