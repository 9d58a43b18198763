"""``python -m perf.report goals PLAIN_RUN LEAN_RUN``: is the default FastKAN fastest everywhere? Round by round.

PLAIN_RUN timed our models with ``--perf-reference=plain-fastkan``, LEAN_RUN the peers (and the
default FastKAN) with ``--perf-reference=lean-fastkan``; later runs given for the same case win
(``--also RUN`` adds one to the first group). A column that divides two models divides their
ratios to the same reference.
"""

from __future__ import annotations

import sys

from .runs import Record, ReportError, load, resolve
from .tables import group_runs, md_table, parse_report_args, report_parser, text_table

PEERS = ("fast-kan", "faster-kan", "efficient-kan", "flashkan", "inkan", "chebykan", "pykan")


def forward_backward(passes: dict[str, Record]) -> float | None:
    """Forward + backward time over the reference's, each pass's ratio weighted by the model's own time."""
    f, b = passes.get("forward"), passes.get("backward")
    if not f or not b or not f.info.get("reference_ratio") or not b.info.get("reference_ratio"):
        return None
    return (f.median_s + b.median_s) / (f.median_s / f.info["reference_ratio"] + b.median_s / b.info["reference_ratio"])


def rows(plain: dict, lean: dict) -> list[list[str]]:
    def cell(v):
        return f"{v:.2f}" if v else "n/a"

    out = []
    for group in sorted(set(plain) & set(lean), key=lambda g: (not g[0].startswith(("tiny", "mnist", "seed", "kan")), g)):
        p, q = plain[group], lean[group]
        r = {m: forward_backward(p[m]) for m in ("fastkan-gaussian", "lean-fastkan", "mlp") if m in p}
        s = {m: forward_backward(q[m]) for m in (*PEERS, "fastkan-gaussian") if m in q}
        peers = {m: v for m, v in s.items() if m in PEERS and v}
        fastest = min(peers, key=peers.get) if peers else None
        g = s.get("fastkan-gaussian")
        out.append([group[0], cell(r.get("fastkan-gaussian")),
                    cell(g / peers["fast-kan"] if g and "fast-kan" in peers else None),
                    cell(g / peers["faster-kan"] if g and "faster-kan" in peers else None),
                    fastest or "n/a", cell(1 / peers[fastest] if fastest else None),
                    cell(r["fastkan-gaussian"] / r["mlp"] if r.get("fastkan-gaussian") and r.get("mlp") else None),
                    cell(r["lean-fastkan"] / r["mlp"] if r.get("lean-fastkan") and r.get("mlp") else None)])
    return out


HEADER = ["config", "default / plain-fastkan", "default / fast-kan", "default / faster-kan", "fastest peer",
          "lean-fastkan / fastest peer", "default / MLP", "lean-fastkan / MLP"]


def main(argv) -> int:
    p = report_parser("goals", __doc__, "(no figure)")
    p.add_argument("--also", action="append", default=[], metavar="RUN", help="a later run for the first group")
    args = parse_report_args(p, argv)
    try:
        if len(args.runs) != 2:
            raise ReportError("give two runs: PLAIN_RUN (--perf-reference=plain-fastkan) and LEAN_RUN "
                              "(--perf-reference=lean-fastkan)")
        first, second = (load(resolve(spec, args.storage)) for spec in args.runs)
        also = [load(resolve(spec, args.storage)) for spec in args.also]
        body = rows(group_runs([first, *also]), group_runs([second]))
        if not body:
            raise ReportError("the two runs share no configuration")
    except ReportError as e:
        print(f"perf.report: error: {e}", file=sys.stderr)
        return 2
    print(md_table(HEADER, body) if args.markdown else text_table(HEADER, body))
    return 0
