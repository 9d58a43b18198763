"""``python -m perf.report repeatability``: how far each case's median moves from run to run.

    python -m perf.report repeatability RUN RUN [RUN ...] [--config tiny,batch-16] [--markdown]

Each RUN is a separate run of the same code (``pytest perf --benchmark-autosave``, several times, or
``python -m perf.noise --job default --keep DIR``). Per case timed in every run: the median of each
run, and max / min over the runs. Per configuration and pass, each of our models is set beside
the MLP's max / min of the same runs: the goal a case meets is max / min at most 1.10, or at most
the MLP's, whichever is larger (docs/results/repeatability.md).
"""

from __future__ import annotations

import sys
from collections import defaultdict

from perf.reports.tables import md_table, text_table
from perf.storage.runs import ReportError, load, resolve

PLOT = None  # no figure
GOAL = 1.10


def add_arguments(p) -> None:
    p.add_argument("--config", default=None, help="comma-separated configurations (default: every one)")


def spreads(runs, configs: set[str] | None = None) -> dict[tuple, dict[str, list[float]]]:
    """(config, pass) -> model -> the case's median in each run, for cases timed in every run."""
    out: dict[tuple, dict[str, list[float]]] = defaultdict(dict)
    common = set.intersection(*(set(r.records) for r in runs))
    for cid in sorted(common):
        recs = [r.records[cid] for r in runs]
        first = recs[0]
        if first.kind != "speed" or (configs and first.config not in configs):
            continue
        out[(first.config, first.pass_, first.device, first.dtype, first.mode)][first.model] = [
            r.median_s for r in recs
        ]
    return out


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
    header = ["model", "config", "pass", "medians (us), run by run", "max / min", "mlp's", "goal"]
    body, met, ours = [], 0, 0
    for (config, pass_, *_), models in sorted(groups.items()):
        mlp = models.get("mlp")
        mlp_ratio = max(mlp) / min(mlp) if mlp else None
        for model, medians in sorted(models.items()):
            ratio = max(medians) / min(medians)
            bound = max(GOAL, mlp_ratio or GOAL)
            own = model.startswith("fastkan-") or model.endswith("-fastkan")
            verdict = ("met" if ratio <= bound else "NOT met") if own else ""
            ours += own
            met += own and ratio <= bound
            body.append(
                [
                    model,
                    config,
                    pass_,
                    ", ".join(f"{m * 1e6:.1f}" for m in medians),
                    f"{ratio:.2f}",
                    f"{mlp_ratio:.2f}" if mlp_ratio else "n/a",
                    verdict,
                ]
            )
    print(f"{len(runs)} runs: " + ", ".join(str(r.path) for r in runs))
    print(md_table(header, body) if args.markdown else text_table(header, body))
    print(
        f"our models' cases meeting the goal (max / min at most {GOAL:.2f}, or the MLP's of the same "
        f"configuration and pass): {met} of {ours}"
    )
    return 0
