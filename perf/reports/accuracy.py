"""``python -m perf.report accuracy``: which KAN learns best per second, task by task.

python -m perf.report accuracy [RUN ...] [--markdown] [--plot FILE]
"""

from __future__ import annotations

import sys
from pathlib import Path

from perf.reports.tables import is_ours, load_and_plot, md_table, source_line, text_table
from perf.storage.runs import ReportError, Run
from perf.storage.schema import group_of


def collect(runs: list[Run]) -> dict[tuple[str, int], dict[str, dict]]:
    """(task, width) -> model -> the case's extra_info, for the accuracy cases (later runs win)."""
    out: dict[tuple[str, int], dict[str, dict]] = {}
    for run in runs:
        for rec in run.records.values():
            if rec.kind == "accuracy":
                out.setdefault((rec.info["task"], rec.info.get("width", 1)), {})[rec.model] = rec.info
    if not out:
        raise ReportError(f"{runs[0].path}: no accuracy cases (run `pytest perf --perf-accuracy=quick` or full)")
    return dict(sorted(out.items()))


def ranked(models: dict[str, dict]) -> list[tuple[str, dict]]:
    """Best metric at the equal-time budget first."""
    higher = next(iter(models.values()))["higher_is_better"]
    return sorted(models.items(), key=lambda kv: -kv[1]["equal_time_mean"] if higher else kv[1]["equal_time_mean"])


def _pm(mean: float, std: float, metric: str) -> str:
    return f"{mean:.4f} ± {std:.4f}" if metric == "RMSE" else f"{mean:.3f} ± {std:.3f}"


def table(models: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    rows = []
    for model, info in ranked(models):
        rows.append(
            [
                model,
                str(info["params"]),
                f"{info['time_per_step_s'] * 1e3:.2f}",
                str(info["equal_time_steps"]),
                _pm(info["equal_time_mean"], info["equal_time_std"], info["metric"]),
                _pm(info["equal_steps_mean"], info["equal_steps_std"], info["metric"]),
                f"{info['lr']:g}",
            ]
        )
    metric = next(iter(models.values()))["metric"]
    steps = next(iter(models.values()))["steps"]
    header = [
        "model",
        "params",
        "ms/step",
        "steps in budget",
        f"{metric}, equal time",
        f"{metric}, {steps} steps",
        "lr",
    ]
    return header, rows


def verdict(task: str, models: dict[str, dict]) -> str:
    order = ranked(models)
    best = order[0][0]
    kans = [m for m, _ in order if m != "mlp"]
    line = f"{task}: best at equal time: {best}"
    if best == "mlp" and kans:
        line += f" (the MLP beats every KAN here); best KAN: {kans[0]}"
    elif kans:
        line += f"; best KAN: {kans[0]}"
    ours = [m for m in kans if is_ours(group_of(m, models[m]))]
    if ours and ours[0] != kans[0]:
        line += f"; best of ours: {ours[0]}"
    return line


def plot(groups: dict[tuple[str, int], dict[str, dict]], path: Path) -> Path:
    from perf.reports.plots import log_axis, pyplot

    plt = pyplot()
    n = len(groups)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4 * rows + 0.8), squeeze=False)
    fig.suptitle("test metric at equal training time against time per step (left is faster)")
    names = sorted({m for models in groups.values() for m in models})
    group = {m: group_of(m, info) for models in groups.values() for m, info in models.items()}
    marker = {m: "o" if is_ours(group[m]) else "^" if group[m] == "baseline" else "s" for m in names}
    colours = {m: plt.cm.tab20(i % 20) for i, m in enumerate(names)}
    for ax, ((task, width), models) in zip(axes.flat, groups.items()):
        for m, info in models.items():
            ax.scatter(info["time_per_step_s"] * 1e3, info["equal_time_mean"], color=colours[m], s=30, marker=marker[m])
        metric = next(iter(models.values()))["metric"]
        better = "higher" if next(iter(models.values()))["higher_is_better"] else "lower"
        ax.set_title(task + ("" if width == 1 else f" (x{width} wide)"), fontsize=9)
        ax.set_xlabel("time per training step, ms (log scale)")
        ax.set_ylabel(f"test {metric} ({better} is better)")
        log_axis(ax, "x")
    handles = [plt.Line2D([], [], linestyle="", marker=marker[m], color=colours[m], label=m) for m in names]
    spare = list(axes.flat[n:])
    for ax in spare:
        ax.set_axis_off()
    legend = dict(handles=handles, fontsize=7, title="model (circles: ours, squares: peers)", title_fontsize=7)
    if spare:  # in an empty panel of the grid, next to the data
        spare[0].legend(loc="upper left", **legend)
        fig.tight_layout(rect=(0, 0, 1, 0.96))
    else:
        fig.legend(loc="center right", **legend)
        fig.tight_layout(rect=(0, 0, 0.82, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


PLOT = "metric against time per step, one panel per task"


def add_arguments(p) -> None:
    """No options beyond the shared ones."""


def run(args) -> int:
    try:
        runs, groups = load_and_plot(args, collect, plot)
    except ReportError as e:
        print(f"perf.report: error: {e}", file=sys.stderr)
        return 2
    any_info = next(iter(next(iter(groups.values())).values()))
    out = [source_line(runs, args.markdown), ""]
    verdicts = []
    for (task, width), models in groups.items():
        title = f"{task}" + ("" if width == 1 else f", {width}x wider") + f": layers {any_layers(models)}"
        header, body = table(models)
        out += (
            [f"#### {title}", "", md_table(header, body), ""]
            if args.markdown
            else [title, text_table(header, body), ""]
        )
        verdicts.append(verdict(task + ("" if width == 1 else f" (x{width})"), models))
    notes = [
        f"equal time: the steps that fit in the time fastkan-gaussian takes for {any_info['steps']} steps, "
        "from each model's median time per step here; mean ± std over "
        f"{any_info['seeds']} seed(s); learning rate picked from {any_info['lr_grid']} on the validation split",
        "RMSE in standard deviations of the target; accuracy on the held-out test split",
    ]
    out += [f"- {line}" for line in verdicts + notes] if args.markdown else verdicts + notes
    if args.plot is not None:
        out.append(f"figure: {args.plot}")
    print("\n".join(out))
    return 0


def any_layers(models: dict[str, dict]) -> str:
    info = models.get("fastkan-gaussian") or next(iter(models.values()))
    return str(info["layers"])
