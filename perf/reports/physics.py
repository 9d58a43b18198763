"""``python -m perf.report physics``: which KAN solves a PDE best per second, task by task.

python -m perf.report physics [RUN ...] [--markdown] [--plot FILE]
"""

from __future__ import annotations

import sys
from pathlib import Path

from perf.matrix.physics import GRAD2_TOLERANCE
from perf.reports.tables import is_ours, load_and_plot, md_table, source_line, text_table
from perf.storage.runs import ReportError, Run
from perf.storage.schema import group_of


def collect(runs: list[Run]) -> dict[str, dict[str, dict]]:
    """task -> model -> the case's extra_info, for the physics cases (later runs win)."""
    out: dict[str, dict[str, dict]] = {}
    for run in runs:
        for rec in run.records.values():
            if rec.kind == "physics":
                out.setdefault(rec.info["task"], {})[rec.model] = rec.info
    if not out:
        raise ReportError(f"{runs[0].path}: no physics cases (run `pytest perf --perf-physics=quick` or full)")
    return dict(sorted(out.items()))


def second_derivative(info: dict) -> str:
    err = info.get("grad2_rel_err")
    if err is None:
        return "refused"
    return "ok" if err <= GRAD2_TOLERANCE else f"WRONG ({err:.2g})"


def ranked(models: dict[str, dict]) -> list[tuple[str, dict]]:
    """Trained models by their error at equal time, lowest first; then those not trained."""
    trained = sorted(((m, i) for m, i in models.items() if i.get("trained")), key=lambda kv: kv[1]["equal_time_mean"])
    return trained + [(m, i) for m, i in sorted(models.items()) if not i.get("trained")]


def table(models: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    header = [
        "model",
        "params",
        "ms/step",
        "steps in budget",
        "rel L2, equal time",
        "rel L2, equal steps",
        "2nd derivative",
    ]
    rows = []
    for model, info in ranked(models):
        if not info.get("trained"):
            rows.append([model, "", "", "", "not trained", "", second_derivative(info)])
            continue
        rows.append(
            [
                model,
                str(info["params"]),
                f"{info['time_per_step_s'] * 1e3:.2f}",
                str(info["equal_time_steps"]),
                f"{info['equal_time_mean']:.4f} ± {info['equal_time_std']:.4f}",
                f"{info['equal_steps_mean']:.4f} ± {info['equal_steps_std']:.4f}",
                second_derivative(info),
            ]
        )
    return header, rows


def verdict(task: str, models: dict[str, dict]) -> str:
    order = [m for m, i in ranked(models) if i.get("trained")]
    if not order:
        return f"{task}: no model trained"
    line = f"{task}: lowest error at equal time: {order[0]}"
    ours = [m for m in order if is_ours(group_of(m, models[m]))]
    if ours and ours[0] != order[0]:
        a, b = models[ours[0]]["equal_time_mean"], models[order[0]]["equal_time_mean"]
        line += f"; best of ours: {ours[0]} ({a / b:.2f}x its error)"
    return line


def plot(groups: dict[str, dict[str, dict]], path: Path) -> Path:
    from perf.reports.plots import log_axis, pyplot

    plt = pyplot()
    n = len(groups)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 5.2), squeeze=False)
    fig.suptitle("relative L2 error at equal training time against time per step (lower left is better)")
    names = sorted({m for models in groups.values() for m, i in models.items() if i.get("trained")})
    colours = {m: plt.cm.tab20(i % 20) for i, m in enumerate(names)}
    group = {m: group_of(m, i) for models in groups.values() for m, i in models.items()}
    marker = {m: "o" if is_ours(group[m]) else "^" if group[m] == "baseline" else "s" for m in names}
    for ax, (task, models) in zip(axes[0], groups.items()):
        for m, info in models.items():
            if info.get("trained"):
                ax.scatter(
                    info["time_per_step_s"] * 1e3, info["equal_time_mean"], color=colours[m], s=40, marker=marker[m]
                )
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("time per training step, ms (log scale)")
        ax.set_ylabel("relative L2 error of u (log scale)")
        log_axis(ax, "x")
        log_axis(ax, "y")
    handles = [plt.Line2D([], [], linestyle="", marker=marker[m], color=colours[m], label=m) for m in names]
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(names)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 0.93))  # room for the legend below and the title above
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


PLOT = "relative error against time per step, one panel per PDE"


def add_arguments(p) -> None:
    """No options beyond the shared ones."""


def run(args) -> int:
    try:
        runs, groups = load_and_plot(args, collect, plot)
    except ReportError as e:
        print(f"perf.report: error: {e}", file=sys.stderr)
        return 2
    any_info = next(i for models in groups.values() for i in models.values())
    out = [source_line(runs, args.markdown), ""]
    verdicts = []
    for task, models in groups.items():
        header, body = table(models)
        out += (
            [f"#### {task}", "", md_table(header, body), ""] if args.markdown else [task, text_table(header, body), ""]
        )
        verdicts.append(verdict(task, models))
    notes = [
        "relative L2 error of u against the exact solution on a test grid; mean ± std over seeds",
        f"equal time: the steps that fit in the time {REFERENCE} takes for the step budget, from each model's "
        "median time per step here",
        "2nd derivative: d2f/dx2 by autograd against second differences of the values (float64); "
        "a model whose second derivative is wrong or refused is not trained",
        f"settings: {any_info.get('physics_settings')} (pytest perf --perf-physics=quick|full)",
    ]
    out += [f"- {line}" for line in verdicts + notes] if args.markdown else verdicts + notes
    if args.plot is not None:
        out.append(f"figure: {args.plot}")
    print("\n".join(out))
    return 0


REFERENCE = "fastkan-gaussian"
