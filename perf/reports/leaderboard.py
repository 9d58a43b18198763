"""``python -m perf.report leaderboard``: every measured model of each configuration, fastest first.

python -m perf.report leaderboard [RUN ...] [--markdown] [--plot FILE]
"""

from __future__ import annotations

import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from perf.measure.gradcheck import TOLERANCE
from perf.reports.tables import fmt_bytes, group_runs, is_ours, load_runs, md_table, text_table
from perf.storage.runs import Record, ReportError, Run


@dataclass
class Row:
    model: str
    forward_s: float
    backward_s: float
    saved_bytes: int | None
    params: int | None
    grad_err: float | None
    grad_note: str | None
    fit_rmse: float | None
    peer_version: str | None
    group: str = "user"
    grad2_s: float | None = None  # the grad2 pass: a step whose loss holds the input gradient
    compiled_s: float | None = None  # forward + backward of the same case under torch.compile
    warmup_s: float | None = None  # torch.compile's first forward and backward

    @property
    def gradients(self) -> str:
        """'ok', 'WRONG (max rel err)' or 'not checked'."""
        if self.grad_err is None:
            return "not checked"
        return "ok" if self.grad_err <= TOLERANCE else f"WRONG ({self.grad_err:.2g})"

    @property
    def total_s(self) -> float:
        return self.forward_s + self.backward_s


def fit_rmse(runs: list[Run]) -> tuple[dict[str, float], list[str]]:
    """model -> geometric mean of its fit RMSE over the tasks every fitted model has; and those tasks."""
    per_model: dict[str, dict[str, float]] = {}
    for run in runs:
        for rec in run.records.values():
            if rec.kind == "fit" and rec.info.get("rmse_mean"):
                per_model.setdefault(rec.model, {})[rec.info["task"]] = rec.info["rmse_mean"]
    if not per_model:
        return {}, []
    tasks = sorted(set.intersection(*(set(t) for t in per_model.values())))
    if not tasks:
        return {}, []
    return {m: math.exp(statistics.fmean(math.log(t[k]) for k in tasks)) for m, t in per_model.items()}, tasks


def rows(models: dict[str, dict[str, Record]], rmse: dict[str, float], compiled=None) -> list[Row]:
    """The models with both a forward and a backward case, fastest forward + backward first; with
    ``compiled`` (the same configuration's compile-mode cases), their times beside."""
    out = []
    for model, passes in models.items():
        if not {"forward", "backward"} <= set(passes):
            continue
        f, b = passes["forward"], passes["backward"]
        c = (compiled or {}).get(model, {})
        both = {"forward", "backward"} <= set(c)
        out.append(
            Row(
                model,
                f.median_s,
                b.median_s,
                f.info.get("saved_bytes"),
                f.info.get("params"),
                f.info.get("grad_rel_err"),
                f.info.get("grad_note"),
                rmse.get(model),
                f.info.get("peer_version"),
                f.model_group,
                passes["grad2"].median_s if "grad2" in passes else None,
                c["forward"].median_s + c["backward"].median_s if both else None,
                c["forward"].info.get("compile_seconds") if both else None,
            )
        )
    return sorted(out, key=lambda r: r.total_s)


def _ms(s: float) -> str:
    return f"{s * 1e3:.3f}"


def table(board: list[Row]) -> tuple[list[str], list[list[str]]]:
    fastest = next((r.total_s for r in board if r.model != "mlp"), board[0].total_s)
    mlp = next((r.total_s for r in board if r.model == "mlp"), None)
    header = [
        "model",
        "fwd ms",
        "bwd ms",
        "total ms",
        "x best KAN",
        "x MLP",
        "saved",
        "params",
        "gradients",
        "fit RMSE",
    ]
    extra = [
        (name, get)
        for name, get in (
            ("grad2 ms", lambda r: r.grad2_s and _ms(r.grad2_s)),
            ("compiled ms", lambda r: r.compiled_s and _ms(r.compiled_s)),
            ("x eager", lambda r: r.compiled_s and f"{r.compiled_s / r.total_s:.2f}"),
            ("warm-up s", lambda r: r.warmup_s and f"{r.warmup_s:.1f}"),
        )
        if any(get(r) for r in board)
    ]
    header += [name for name, _ in extra]
    body = []
    for r in board:
        body.append(
            [
                r.model + ("" if not r.peer_version else f" ({r.peer_version})"),
                _ms(r.forward_s),
                _ms(r.backward_s),
                _ms(r.total_s),
                f"{r.total_s / fastest:.2f}",
                f"{r.total_s / mlp:.2f}" if mlp else "n/a",
                fmt_bytes(r.saved_bytes),
                str(r.params) if r.params is not None else "n/a",
                r.gradients,
                f"{r.fit_rmse:.4f}" if r.fit_rmse is not None else "",
                *(get(r) or "" for _, get in extra),
            ]
        )
    return header, body


def summary(board: list[Row]) -> str:
    """Who is fastest, and our best model's margin over the fastest other KAN (a peer's or the user's)."""
    kans = [r for r in board if r.group != "baseline"]
    ours = [r for r in kans if is_ours(r.group)]
    others = [r for r in kans if not is_ours(r.group)]
    if not kans:
        return "no KAN measured"
    line = f"fastest KAN: {kans[0].model}"
    if ours and others:
        o, p = ours[0], others[0]
        what = "peer" if p.group == "peer" else "other KAN"
        ratio = o.total_s / p.total_s
        line += f"; our fastest, {o.model}, takes {ratio:.2f}x the time of the fastest {what}, {p.model}"
    elif not others:
        line += "; no peer measured"
    return line


def plot(groups: dict[tuple, list[Row]], path: Path) -> Path:
    from perf.reports.plots import log_axis, pyplot, save_figure

    plt = pyplot()
    n = len(groups)
    tallest = max(len(b) for b in groups.values())
    fig, axes = plt.subplots(n, 1, figsize=(9, 0.32 * tallest * n + 1.2 * n), squeeze=False)
    fig.suptitle("forward + backward time per step (lower is better)")
    for ax, (group, board) in zip(axes[:, 0], groups.items()):
        board = board[::-1]  # fastest at the top
        colours = ["tab:blue" if is_ours(r.group) else "tab:gray" if r.model == "mlp" else "tab:orange" for r in board]
        ys = range(len(board))
        totals = [r.total_s * 1e3 for r in board]
        ax.barh(ys, totals, color=colours)
        for y, t in zip(ys, totals):
            ax.annotate(f"{t:.3g} ms", (t, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
        ax.set_yticks(
            list(ys),
            [r.model + (" (WRONG gradients)" if r.gradients.startswith("WRONG") else "") for r in board],
            fontsize=8,
        )
        config, device, dtype, mode = group
        ax.set_title(
            f"{config} on {device}" + ("" if (dtype, mode) == ("float32", "eager") else f", {dtype} {mode}"),
            fontsize=10,
        )
        ax.set_xlabel("forward + backward time, ms (log scale)")
        log_axis(ax, "x")
        ax.set_xlim(min(totals) / 1.5, max(totals) * 2.5)  # bars start inside the axis; room for the labels
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("tab:blue", "tab:orange", "tab:gray")]
    fig.legend(handles, ["fastkan (ours)", "peer", "MLP"], loc="upper right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(plt, fig, path, top=1 - 0.6 / fig.get_figheight())
    return path


PLOT = "one horizontal bar chart per configuration"


def add_arguments(p) -> None:
    p.add_argument("--configs", default=None, help="comma-separated configurations to show (default: all measured)")


def run(args) -> int:
    try:
        runs = load_runs(args)
        rmse, tasks = fit_rmse(runs)
        measured = group_runs(runs)
        # Compiled cases sit beside the eager ones of their configuration, where both were measured.
        groups = {
            g: rows(models, rmse, measured.get((*g[:3], "compile")) if g[3] == "eager" else None)
            for g, models in measured.items()
            if not (g[3] == "compile" and (*g[:3], "eager") in measured)
        }
        groups = {g: b for g, b in groups.items() if b}
        if args.configs:
            wanted = [c.strip() for c in args.configs.split(",")]
            unknown = [c for c in wanted if c not in {g[0] for g in groups}]
            if unknown:
                raise ReportError(
                    f"--configs: {', '.join(unknown)} not measured; measured: "
                    f"{', '.join(sorted({g[0] for g in groups}))}"
                )
            groups = {g: b for g, b in groups.items() if g[0] in wanted}
        if not groups:
            raise ReportError(f"{runs[0].path}: no configuration with both forward and backward cases")
        if args.plot is not None:
            plot(groups, args.plot)
    except ReportError as e:
        print(f"perf.report: error: {e}", file=sys.stderr)
        return 2
    missing = {m: why for run in runs for m, why in (run.machine_info.get("perf_missing_models") or {}).items()}
    out = [("_from " + runs[0].describe() + "_") if args.markdown else "from " + runs[0].describe(), ""]
    for (config, device, dtype, mode), board in groups.items():
        title = f"{config} on {device} ({dtype}, {mode})"
        header, body = table(board)
        if args.markdown:
            out += [f"#### {title}", "", md_table(header, body), "", summary(board), ""]
        else:
            out += [title, text_table(header, body), summary(board), ""]
    notes = [
        "times are medians, side by side in one run; x best KAN and x MLP divide forward + backward totals",
        "saved: exact bytes of the tensors the forward pass keeps for backward",
        "gradients: float64 gradients of inputs and every trainable parameter against central differences "
        "(perf/measure/gradcheck.py); WRONG (max relative error) above 1e-4",
        "peers show their version (PyPI) or commit (checkout); "
        "fastkan-*, lean-, bare- and plain-fastkan and bspline are this package's (perf/matrix/models.py)",
    ]
    if any(r.grad2_s for b in groups.values() for r in b):
        notes.append(
            "grad2: a training step whose loss holds the input gradient (create_graph=True; --perf-pass=grad2)"
        )
    if any(r.compiled_s for b in groups.values() for r in b):
        notes.append(
            "compiled: forward + backward under torch.compile (--perf-mode=compile), x eager its ratio to "
            "the eager total; warm-up: its first forward and backward, compilation included"
        )
    if tasks:
        notes.append(
            f"fit RMSE: geometric mean of the test RMSE over the fit tasks {', '.join(tasks)} "
            "(pytest perf --perf-fit=brief|quick|full)"
        )
    for _, why in sorted(missing.items()):
        notes.append(f"not measured: {why}")
    out += [f"- {n}" for n in notes] if args.markdown else notes
    if args.plot is not None:
        out.append(f"figure: {args.plot}")
    print("\n".join(out))
    return 0
