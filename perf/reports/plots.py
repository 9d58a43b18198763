"""Figures of saved runs (needs matplotlib: `pip install fastkan[plot]`)."""

from __future__ import annotations

import re
from pathlib import Path

from perf.reports.tables import group_runs
from perf.storage.runs import ReportError, Run


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ReportError("--plot needs matplotlib: pip install 'fastkan[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def log_axis(ax, axis: str = "y") -> None:
    """A log scale with plain tick labels (0.5, 1, 2, 5, 10), never 6x10^-1."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def _label(group) -> str:
    config, device, dtype, mode = group
    extra = "" if (dtype, mode) == ("float32", "eager") else f" {dtype} {mode}"
    return f"{config} / {device}{extra}"


def _grid(plt, n: int, title: str, height: float = 3.6):
    cols = min(2, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, height * rows + 0.8), squeeze=False)
    fig.suptitle(title)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _hbars(ax, names: list[str], series: list[tuple[str, list[float | None]]], xlabel: str) -> None:
    """Horizontal grouped bars, one row per model (full names), sorted by the sum of the series, smallest on top."""
    keyed = sorted(range(len(names)), key=lambda i: sum(v[i] or 0.0 for _, v in series))
    names = [names[i] for i in keyed]
    height = 0.8 / max(1, len(series))
    for k, (label, values) in enumerate(series):
        values = [values[i] for i in keyed]
        ys = [len(names) - 1 - i - (k - (len(series) - 1) / 2) * height for i in range(len(names))]
        ax.barh(ys, [v or 0.0 for v in values], height, label=label)
    ax.set_yticks(range(len(names)), names[::-1], fontsize=7)
    ax.set_xlabel(xlabel)
    log_axis(ax, "x")
    shown = [v for _, values in series for v in values if v]
    if shown:  # on a log axis a bar's length depends on the left edge: put it well below the smallest bar
        ax.set_xlim(min(shown) / 2, max(shown) * 1.5)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def save_figure(plt, fig, path: Path, top: float = 0.95) -> None:
    """Lay out below the figure's title (the top fraction ``top``), write, close."""
    fig.tight_layout(rect=(0, 0, 1, top))
    fig.savefig(path)
    plt.close(fig)


def _height(groups) -> float:
    return 0.6 + 0.22 * max(len(models) for models in groups.values())


def plot_times(plt, groups, path: Path) -> None:
    fig, axes = _grid(plt, len(groups), "median time per pass (lower is better)", _height(groups))
    for ax, (group, models) in zip(axes, groups.items()):
        names = list(models)
        series = [
            (p, [models[m][p].median_s * 1e3 if p in models[m] else None for m in names])
            for p in ("forward", "backward")
        ]
        _hbars(ax, names, series, "time per pass, ms (log scale)")
        ax.set_title(_label(group), fontsize=10)
    save_figure(plt, fig, path)


def plot_ratios(plt, groups, path: Path) -> None:
    fig, axes = _grid(
        plt, len(groups), "time relative to the parameter-matched MLP (lower is better; 1 = as fast)", _height(groups)
    )
    for ax, (group, models) in zip(axes, groups.items()):
        if "mlp" not in models:
            ax.set_visible(False)
            continue
        names = [m for m in models if m != "mlp"]
        series = [
            (
                p,
                [
                    models[m][p].median_s / models["mlp"][p].median_s if p in models[m] and p in models["mlp"] else None
                    for m in names
                ],
            )
            for p in ("forward", "backward")
        ]
        _hbars(ax, names, series, "time / MLP's time (log scale)")
        lo, hi = ax.get_xlim()
        ax.set_xlim(min(lo, 0.8), max(hi, 1.25))  # the "as fast as the MLP" line stays in view
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_title(_label(group), fontsize=10)
    save_figure(plt, fig, path)


def plot_sweeps(plt, groups, path: Path) -> bool:
    """Time and saved memory against the number of centres (grid-G) and the batch (batch-B)."""
    sweeps = {}
    for (config, device, dtype, mode), models in groups.items():
        m = re.fullmatch(r"(grid|batch)-(\d+)", config)
        if m and (dtype, mode) == ("float32", "eager"):
            sweeps.setdefault((m.group(1), device), []).append((int(m.group(2)), models))
    if not sweeps:
        return False
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(2, len(sweeps), figsize=(7.5 * len(sweeps), 7), squeeze=False)
    for col, ((kind, device), points) in enumerate(sorted(sweeps.items())):
        points.sort(key=lambda t: t[0])
        names = sorted(
            {n for _, models in points for n in models if not n.startswith("fastkan-") or n == "fastkan-gaussian"}
        )
        for name in names:
            xs = [x for x, models in points if name in models and "backward" in models[name]]
            if not xs:
                continue
            t = [
                models[name]["forward"].median_s * 1e3 + models[name]["backward"].median_s * 1e3
                for x, models in points
                if x in xs
            ]
            mem = [models[name]["forward"].info.get("saved_bytes", 0) / 1e6 for x, models in points if x in xs]
            axes[0][col].plot(xs, t, marker="o", label=name)
            axes[1][col].plot(xs, mem, marker="o", label=name)
        xlabel = "number of centres G" if kind == "grid" else "batch"
        for row, ylabel in ((0, "forward + backward, ms"), (1, "saved for backward, MB")):
            ax = axes[row][col]
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            log_axis(ax, "y")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel + " (lower is better)")
            ax.set_title(f"{kind} sweep on {device}")
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    save_figure(plt, fig, path)
    return True


def plot_runs(runs: list[Run], path: Path, only: list[str] | None = None) -> list[Path]:
    """Draw the figures; ``path`` gets the times, siblings ``-ratios`` (and ``-sweeps``) the rest."""
    plt = pyplot()
    groups = group_runs(runs, only)
    path.parent.mkdir(parents=True, exist_ok=True)
    ratios = path.with_name(f"{path.stem}-ratios{path.suffix}")
    sweeps = path.with_name(f"{path.stem}-sweeps{path.suffix}")
    plot_times(plt, groups, path)
    plot_ratios(plt, groups, ratios)
    files = [path, ratios]
    if plot_sweeps(plt, groups, sweeps):
        files.append(sweeps)
    return files
