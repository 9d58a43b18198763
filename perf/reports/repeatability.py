"""``python -m perf.report repeatability``: how far each case's median moves from run to run.

    python -m perf.report repeatability RUN RUN [RUN ...] [--config tiny,batch-16] [--markdown]

Each RUN is a separate run of the same code (``pytest perf --benchmark-autosave``, several times, or
``python -m perf.noise --job default --keep DIR``). Per case timed in every run: the median of each
run, and max / min over the runs. Each of our models is set beside the MLP's max / min in the same
runs: that of the MLP timed before every round of the case (``--perf-reference=mlp``, the default),
which saw the same moments of the machine, else that of the MLP's own case. The goal a case meets
is max / min at most 1.10, or at most the MLP's, whichever is larger (docs/results/repeatability.md).
Also per case: max / min of its ratio to that reference, and whether every run took the same
evaluation paths (``paths``, fastkan.explain).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass

from perf.reports.tables import md_table, text_table
from perf.storage.runs import ReportError, load, resolve

PLOT = None  # no figure
GOAL = 1.10


def add_arguments(p) -> None:
    p.add_argument("--config", default=None, help="comma-separated configurations (default: every one)")


@dataclass
class Spread:
    """One case over the runs: its medians, the reference's medians beside them, ratios and paths."""

    medians: list[float]
    reference: list[float] | None
    ratios: list[float] | None
    paths: list[tuple | None]


def spreads(runs, configs: set[str] | None = None) -> dict[tuple, dict[str, Spread]]:
    """(config, pass, device, dtype, mode) -> model -> its Spread, for cases timed in every run."""
    out: dict[tuple, dict[str, Spread]] = defaultdict(dict)
    common = set.intersection(*(set(r.records) for r in runs))
    for cid in sorted(common):
        recs = [r.records[cid] for r in runs]
        first = recs[0]
        if first.kind != "speed" or (configs and first.config not in configs):
            continue
        reference = [r.info.get("reference_median_s") for r in recs]
        ratios = [r.ratio_to("mlp") for r in recs]
        out[(first.config, first.pass_, first.device, first.dtype, first.mode)][first.model] = Spread(
            medians=[r.median_s for r in recs],
            reference=reference if all(reference) and first.info.get("reference_model") == "mlp" else None,
            ratios=ratios if all(ratios) else None,
            paths=[tuple(r.info["paths"]) if r.info.get("paths") else None for r in recs],
        )
    return out


def _spread(values: list[float] | None) -> float | None:
    return max(values) / min(values) if values else None


def _fmt(ratio: float | None) -> str:
    return f"{ratio:.2f}" if ratio else "n/a"


def run(args) -> int:
    try:
        if len(args.runs) < 2:
            raise ReportError(f"give two runs or more of the same code, got {len(args.runs)}")
        runs = [load(resolve(spec, args.storage)) for spec in args.runs]
    except ReportError as e:
        print(f"perf.report: error: {e}", file=sys.stderr)
        return 2
    configs = set(args.config.split(",")) if args.config else None
    groups = spreads(runs, configs)
    if not groups:
        print("perf.report: error: no speed case is timed in every run given", file=sys.stderr)
        return 2
    header = ["model", "config", "pass", "medians (us), run by run", "max / min", "mlp's", "goal", "x mlp", "paths"]
    body, met, ours, same, with_paths = [], 0, 0, 0, 0
    for (config, pass_, *_), models in sorted(groups.items()):
        mlp_case = _spread(models["mlp"].medians) if "mlp" in models else None
        for model, sp in sorted(models.items()):
            ratio = _spread(sp.medians)
            mlp_ratio = _spread(sp.reference) or mlp_case
            bound = max(GOAL, mlp_ratio or GOAL)
            own = model.startswith("fastkan-") or model.endswith("-fastkan")
            verdict = ("met" if ratio <= bound else "NOT met") if own else ""
            ours += own
            met += own and ratio <= bound
            paths = ""
            if any(sp.paths):
                with_paths += 1
                same += len(set(sp.paths)) == 1
                paths = "same" if len(set(sp.paths)) == 1 else "DIFFER: " + " / ".join(map(str, sp.paths))
            body.append(
                [
                    model,
                    config,
                    pass_,
                    ", ".join(f"{m * 1e6:.1f}" for m in sp.medians),
                    f"{ratio:.2f}",
                    _fmt(mlp_ratio),
                    verdict,
                    _fmt(_spread(sp.ratios)),
                    paths,
                ]
            )
    print(f"{len(runs)} runs: " + ", ".join(str(r.path) for r in runs))
    print(md_table(header, body) if args.markdown else text_table(header, body))
    print(
        "mlp's: max / min of the MLP timed before every round of the case, else of the MLP's own case; "
        "x mlp: max / min of the case's ratio to the MLP timed beside it"
    )
    print(
        f"our models' cases meeting the goal (max / min at most {GOAL:.2f}, or the MLP's): {met} of {ours}; "
        f"cases that took the same paths in every run: {same} of {with_paths}"
    )
    return 0
