"""Fit-quality tasks and the bases report."""

import json
import math

import pytest

from perf.matrix.fit import FIT_SETTINGS, TASKS, build, data, fit
from perf.matrix.models import models
from perf.report import main
from perf.reports.bases import front

SMOKE = FIT_SETTINGS["smoke"]


def test_every_model_has_a_fit_recipe_with_a_matched_budget():
    quick = FIT_SETTINGS["quick"]
    gauss = sum(p.numel() for p in build("fastkan-gaussian", quick).parameters() if p.requires_grad)
    for name, m in models().items():
        if m.missing or not m.fit:
            continue
        n = sum(p.numel() for p in build(name, quick).parameters() if p.requires_grad)
        assert abs(n - gauss) <= 0.1 * gauss, (name, n, gauss)


def test_fit_is_deterministic_and_finite():
    a = fit("fastkan-gaussian", "seed", SMOKE)
    b = fit("fastkan-gaussian", "seed", SMOKE)
    assert a["rmse"] == b["rmse"] and len(a["rmse"]) == SMOKE.seeds
    assert all(math.isfinite(r) and r > 0 for r in a["rmse"])
    assert a["rmse_mean"] == pytest.approx(sum(a["rmse"]) / len(a["rmse"]))


def test_training_reduces_the_error():
    untrained = fit(
        "fastkan-gaussian", "product", FIT_SETTINGS["smoke"].__class__(steps=0, seeds=1, train=256, test=256)
    )
    trained = fit(
        "fastkan-gaussian", "product", FIT_SETTINGS["smoke"].__class__(steps=150, seeds=1, train=256, test=256)
    )
    assert trained["rmse_mean"] < 0.5 * untrained["rmse_mean"]


def test_tasks_are_different_functions():
    x, _ = data("seed", 256, 0)
    values = [TASKS[t](x) for t in TASKS]
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            assert not (values[i] - values[j]).abs().max() < 1e-3


def test_pareto_front():
    pts = [("a", 1.0, 1.0), ("b", 0.5, 2.0), ("c", 2.0, 0.5), ("d", 1.5, 1.5), ("e", 0.4, 3.0)]
    assert [p[0] for p in front(pts)] == ["e", "b", "a", "c"]


def _fit_bench(model, task, rmse, seconds=1.0):
    info = {
        "model": model,
        "config": f"fit-{task}",
        "device": "cpu",
        "pass": "fit",
        "dtype": "float32",
        "mode": "eager",
        "task": task,
        "rmse": [rmse],
        "rmse_mean": rmse,
        "rmse_std": 0.0,
        "params": 241,
        "steps": 300,
        "seeds": 1,
    }
    if model.startswith("fastkan-"):
        info.update(
            approx_rel_l2=0.01, approx_max=0.02, best_width=0.9, approx_rel_l2_best=0.003, approx_max_best=0.004
        )
    return {"name": model, "param": f"{model}/fit-{task}/cpu/fit", "extra_info": info, "stats": {"median": seconds}}


def _speed_bench(model, p, ms):
    info = {"model": model, "config": "mnist", "device": "cpu", "pass": p, "dtype": "float32", "mode": "eager"}
    return {"name": model, "param": f"{model}/mnist/cpu/{p}", "extra_info": info, "stats": {"median": ms / 1e3}}


def _bases_run(tmp_path):
    benches = []
    for model, rmse, fwd, bwd in (
        ("fastkan-gaussian", 0.02, 2.0, 4.0),
        ("fastkan-hat", 0.04, 1.0, 2.0),
        ("fastkan-rswaf", 0.03, 3.0, 6.0),
        ("mlp", 0.05, 0.5, 0.5),
    ):
        benches += [
            _fit_bench(model, "seed", rmse),
            _fit_bench(model, "wave", rmse * 2),
            _speed_bench(model, "forward", fwd),
            _speed_bench(model, "backward", bwd),
        ]
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"machine_info": {"node": "box"}, "benchmarks": benches}))
    return path


def test_bases_report_numbers(tmp_path, capsys):
    assert main(["bases", str(_bases_run(tmp_path))]) == 0
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line
        for line in out.splitlines()
        if line.split() and line.split()[0] in ("gaussian", "hat", "rswaf", "(mlp)")
    }
    assert "0.0200 ± 0.0000" in rows["gaussian"] and "0.0800 ± 0.0000" in rows["hat"]
    assert rows["hat"].split()[-2:] == ["0.50x", "0.50x"]
    assert rows["rswaf"].split()[-2:] == ["1.50x", "1.50x"]
    assert "speed: CPU, mnist, relative to fastkan-gaussian; ratio of medians" in out
    # rswaf is slower and less accurate than gaussian: off the front.
    assert "Pareto front (fastest for its error): fastkan-mlp" not in out
    assert "Pareto front (fastest for its error): mlp, fastkan-hat, fastkan-gaussian" in out


def test_bases_report_markdown_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (the plot extra)")
    run = _bases_run(tmp_path)
    png = tmp_path / "pareto.png"
    assert main(["bases", str(run), "--markdown", "--plot", str(png)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 4 and len({line.count("|") for line in lines}) == 1
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000


def test_bases_report_without_fit_cases_exits_2(tmp_path, capsys):
    path = tmp_path / "speed.json"
    path.write_text(json.dumps({"machine_info": {}, "benchmarks": [_speed_bench("mlp", "forward", 1.0)]}))
    assert main(["bases", str(path)]) == 2
    assert "no fit-quality cases" in capsys.readouterr().err


def test_bases_report_prefers_interleaved_ratios(tmp_path, capsys):
    run = _bases_run(tmp_path)
    data = json.loads(run.read_text())
    for bench in data["benchmarks"]:
        if bench["param"] == "fastkan-hat/mnist/cpu/forward":
            bench["extra_info"].update(reference_model="fastkan-gaussian", reference_ratio=0.7)
    run.write_text(json.dumps(data))
    assert main(["bases", str(run)]) == 0
    hat = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("hat"))
    assert hat.split()[-2:] == ["0.70x", "0.50x"]
