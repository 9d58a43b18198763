"""``python -m perf.report bases``: which basis? Approximation, fit quality and speed in one table."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from perf.reports.tables import load_runs, md_table, model_order, text_table
from perf.storage.runs import ReportError, Run

SPEED_CONFIGS = ("mnist", "seed-300k", "kanbench-10m", "tiny")


def collect(runs: list[Run], config: str | None):
    """model -> {'fit': {task: info}, 'approx': info, 'forward'/'backward': seconds}; and the speed config used."""
    rows: dict[str, dict] = {}
    for run in runs:
        for rec in run.records.values():
            row = rows.setdefault(rec.model, {"fit": {}})
            if rec.kind == "fit":
                row["fit"][rec.info["task"]] = rec.info
                if "approx_rel_l2" in rec.info:
                    row["approx"] = rec.info
    speed = [
        r
        for run in runs
        for r in run.records.values()
        if r.device == "cpu" and r.dtype == "float32" and r.mode == "eager" and r.pass_ in ("forward", "backward")
    ]
    configs = {r.config for r in speed if r.model == "fastkan-gaussian"}
    chosen = config or next((c for c in SPEED_CONFIGS if c in configs), min(configs) if configs else None)
    if config and config not in configs:
        raise ReportError(f"--config {config}: no CPU speed cases of fastkan-gaussian with it in the run(s)")
    for r in speed:
        if r.config == chosen:
            row = rows.setdefault(r.model, {"fit": {}})
            row[r.pass_] = r.median_s
            ratio = r.ratio_to("fastkan-gaussian")  # pytest perf --perf-reference=fastkan-gaussian
            if ratio:
                row[r.pass_ + " ratio"] = ratio
    if not any(row["fit"] for row in rows.values()):
        raise ReportError(
            f"{runs[0].path}: no fit-quality cases (run `pytest perf`: --perf-fit=brief by default, or quick or full)"
        )
    return rows, chosen


def table(rows: dict, chosen: str | None):
    tasks = sorted({t for row in rows.values() for t in row["fit"]})
    header = [
        "basis",
        "rel L2 (h=1)",
        "max err",
        "best h",
        "rel L2 (best h)",
        *[f"rmse {t}" for t in tasks],
        "fwd vs gaussian",
        "bwd vs gaussian",
    ]
    ref = rows.get("fastkan-gaussian", {})
    out = []
    order = sorted(rows, key=model_order)
    for model in order:
        row = rows[model]
        a = row.get("approx")
        cells = [model.replace("fastkan-", "") if model.startswith("fastkan-") else f"({model})"]
        cells += (
            [
                f"{a['approx_rel_l2']:.4f}",
                f"{a['approx_max']:.4f}",
                f"{a['best_width']:.2f}",
                f"{a['approx_rel_l2_best']:.4f}",
            ]
            if a
            else ["", "", "", ""]
        )
        cells += [
            f"{row['fit'][t]['rmse_mean']:.4f} ± {row['fit'][t]['rmse_std']:.4f}" if t in row["fit"] else "n/a"
            for t in tasks
        ]
        for p in ("forward", "backward"):
            r = relative(row, ref, p)
            cells.append(f"{r:.2f}x" if r is not None else "n/a")
        out.append(cells)
    return header, out, tasks


def relative(row: dict, ref: dict, p: str) -> float | None:
    """Time of a pass relative to gaussian's: the interleaved ratio if measured, else the ratio of medians."""
    if row is ref:
        return 1.0
    if p + " ratio" in row:
        return row[p + " ratio"]
    return row[p] / ref[p] if p in row and p in ref else None


def pareto_points(rows: dict, tasks: list[str]):
    """(model, time relative to gaussian, geometric-mean RMSE relative to gaussian) for models with both."""
    ref = rows.get("fastkan-gaussian")
    pts = []
    if not ref or "forward" not in ref or "backward" not in ref:
        return pts
    for model, row in rows.items():
        if not all(t in row["fit"] for t in tasks) or "forward" not in row or "backward" not in row:
            continue
        t = (relative(row, ref, "forward") * ref["forward"] + relative(row, ref, "backward") * ref["backward"]) / (
            ref["forward"] + ref["backward"]
        )
        err = math.exp(
            statistics.fmean(math.log(row["fit"][k]["rmse_mean"] / ref["fit"][k]["rmse_mean"]) for k in tasks)
        )
        pts.append((model, t, err))
    return pts


def front(points):
    """The points no other point beats in both time and error."""
    return sorted(
        (p for p in points if not any(q[1] <= p[1] and q[2] <= p[2] and q != p for q in points)), key=lambda p: p[1]
    )


def plot(points, path: Path) -> Path:
    from perf.reports.plots import log_axis, pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    fig.suptitle("speed against fit accuracy of every model (lower left is better)")
    markers = "osD^vP*Xh<>p"
    # One marker per model in a legend beside the axes: labels written next to points overlap.
    for k, (name, t, e) in enumerate(sorted(points, key=lambda p: p[1])):
        ax.scatter(
            t,
            e,
            marker=markers[k % len(markers)],
            s=45,
            color=plt.cm.tab20(k % 20),
            label=name,
            edgecolors="black" if name.startswith("fastkan-") else "none",
            linewidths=0.6,
        )
    f = front(points)
    ax.plot([p[1] for p in f], [p[2] for p in f], color="tab:red", linewidth=1, label="Pareto front")
    log_axis(ax, "x")
    log_axis(ax, "y")
    ax.set_xlabel("forward + backward time, relative to fastkan-gaussian (log scale)")
    ax.set_ylabel("fit RMSE relative to fastkan-gaussian\n(geometric mean over tasks, log scale)")
    ax.legend(
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0,
        title="model (fastest first)",
        title_fontsize=7,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(plt, fig, path)
    return path


PLOT = "the speed-versus-accuracy Pareto front"


def add_arguments(p) -> None:
    p.add_argument(
        "--config", default=None, help=f"configuration of the speed columns (default: first of {SPEED_CONFIGS})"
    )


def run(args) -> int:
    import sys

    try:
        runs = load_runs(args)
        rows, chosen = collect(runs, args.config)
        header, body, tasks = table(rows, chosen)
        points = pareto_points(rows, tasks)
        if args.plot is not None:
            plot(points, args.plot)
    except ReportError as e:
        print(f"perf.report: error: {e}", file=sys.stderr)
        return 2
    any_fit = next(info for row in rows.values() for info in row["fit"].values())
    notes = [
        f"from {runs[0].describe()}",
        "approximation: best linear map from 8 bumps to the cubic B-splines on the grid's interior, "
        "width h in grid spacings",
        f"fit: test RMSE, mean ± std over {any_fit['seeds']} seeds, {any_fit['steps']} Adam steps, "
        f"about {any_fit['params']} trainable parameters per model",
        f"speed: CPU, {chosen}, relative to fastkan-gaussian"
        + (
            "; timed round by round against it (median of per-round ratios)"
            if any(k.endswith(" ratio") for row in rows.values() for k in row)
            else "; ratio of medians"
        ),
        "Pareto front (fastest for its error): " + ", ".join(m for m, _, _ in front(points)),
    ]
    if args.markdown:
        print("\n".join(["_" + notes[0] + "_", "", md_table(header, body), "", *[f"- {n}" for n in notes[1:]]]))
    else:
        print("\n".join([notes[0], text_table(header, body), *notes[1:]]))
    if args.plot is not None:
        print(f"figure: {args.plot}")
    return 0
