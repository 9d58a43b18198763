"""The accuracy protocol on a tiny budget: data, determinism, metric ranges, equal-time bookkeeping, the report."""

import json
import math

import pytest
import torch
from test_report import MACHINE, bench

from perf.matrix.accuracy import ACCURACY_SETTINGS, REFERENCE, TASKS, build, evaluate, hidden, split
from perf.report import main

pytest.importorskip("sklearn", reason="the real data sets need scikit-learn (pip install 'fastkan[data]')")
SMOKE = ACCURACY_SETTINGS["smoke"]


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_loads_standardised_and_finite(task):
    data = split(task)
    t = TASKS[task]
    sizes = len(data.x_train), len(data.x_val), len(data.x_test)
    if task.startswith("feynman-"):
        assert sizes == (1000, 500, 1000)
    else:
        assert abs(sizes[0] / sum(sizes) - 0.6) < 0.01
    assert torch.isfinite(data.x_train).all() and torch.isfinite(data.y_test).all()
    torch.testing.assert_close(data.x_train.mean(0), torch.zeros(data.x_train.shape[1]), atol=1e-4, rtol=0)
    if t.kind == "classify":
        assert data.y_train.dtype == torch.int64 and int(data.y_train.max()) + 1 == t.outputs
    else:
        assert data.y_train.shape[1] == 1 and abs(float(data.y_train.std()) - 1) < 1e-3
    assert split(task) is split(task)  # the split is fixed


def test_feynman_formulas_are_the_papers():
    from perf.matrix.accuracy import _sinc2

    a = torch.tensor([0.0, 1.0, 2.5])
    torch.testing.assert_close(_sinc2(a), torch.where(a == 0, torch.ones(()), torch.sin(a) ** 2 / a**2))
    x, y = TASKS["feynman-I.6.2"].load()
    theta, sigma = x[:, 0].double(), x[:, 1].double()
    torch.testing.assert_close(
        y.double(), torch.exp(-(theta**2) / (2 * sigma**2)) / torch.sqrt(2 * math.pi * sigma**2), rtol=1e-5, atol=1e-6
    )
    assert x[:, 1].min() >= 0.5 and x[:, 1].max() <= 2 and x[:, 0].abs().max() <= 1


def test_sizes_follow_the_rule_and_the_mlp_is_matched():
    assert hidden(64, 1) == 129 and hidden(64, 2) == 258
    kan = build("fastkan-gaussian", 64, 10)
    mlp = build("mlp", 64, 10)
    count = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    assert abs(count(mlp) - count(kan)) / count(kan) < 0.01


def test_protocol_is_deterministic_with_sane_metrics_and_equal_time_bookkeeping():
    a = evaluate("digits", "mlp", SMOKE)
    b = evaluate("digits", "mlp", SMOKE)
    assert a["equal_steps"] == b["equal_steps"]  # seeded: the same metric twice
    assert 0.0 <= a["equal_steps_mean"] <= 1.0 and a["metric"] == "accuracy" and a["higher_is_better"]
    # The steps that fit in the budget, from the measured time per step.
    assert a["equal_time_steps"] == max(1, int(a["budget_s"] / a["time_per_step_s"]))
    ref = evaluate("feynman-I.6.2", REFERENCE, SMOKE)
    assert ref["equal_time_steps"] == ref["steps"] == SMOKE.steps  # the budget is the reference's own time
    assert ref["metric"] == "RMSE" and ref["equal_time_mean"] >= 0 and not ref["higher_is_better"]
    assert ref["layers"] == [2, 5, 1] and ref["lr"] in SMOKE.lrs
    other = evaluate("feynman-I.6.2", "mlp", SMOKE)
    assert other["budget_s"] == pytest.approx(ref["budget_s"])  # every model gets the reference's own time


def write_accuracy(path):
    benches = []
    rows = {
        "digits": {"mlp": (0.97, 0.97), "fastkan-gaussian": (0.96, 0.95), "inkan": (0.965, 0.94)},
        "feynman-I.6.2": {"mlp": (0.30, 0.10), "fastkan-gaussian": (0.05, 0.05), "bspline": (0.2, 0.3)},
    }
    for task, models in rows.items():
        for model, (eq_time, eq_steps) in models.items():
            entry = bench(model, "fit", 100.0, config=f"acc-{task}")
            entry["extra_info"].update(
                task=task,
                metric="accuracy" if task == "digits" else "RMSE",
                higher_is_better=task == "digits",
                width=1,
                layers=[64, 129, 10],
                params=1000,
                lr=0.01,
                lr_grid=[0.01],
                steps=60,
                seeds=1,
                time_per_step_s=0.002,
                equal_time_steps=60,
                equal_time_mean=eq_time,
                equal_time_std=0.0,
                equal_steps_mean=eq_steps,
                equal_steps_std=0.0,
                score_mean=eq_steps,
            )
            benches.append(entry)
    path.write_text(
        json.dumps(
            {
                "machine_info": MACHINE,
                "commit_info": {},
                "benchmarks": benches,
                "datetime": "2026-11-29T00:00:00",
                "version": "5.3.1",
            }
        )
    )
    return path


def test_report_sorts_by_the_equal_time_metric_and_names_the_best(tmp_path, capsys):
    run = write_accuracy(tmp_path / "run.json")
    png = tmp_path / "acc.png"
    assert main(["accuracy", str(run), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    digits = out.split("digits: layers")[1].split("\n\n")[0].splitlines()[3:]
    assert [r.split()[0] for r in digits] == ["mlp", "inkan", "fastkan-gaussian"]  # higher accuracy first
    feyn = out.split("feynman-I.6.2: layers")[1].split("\n\n")[0].splitlines()[3:]
    assert [r.split()[0] for r in feyn] == ["fastkan-gaussian", "bspline", "mlp"]  # lower RMSE first
    assert (
        "digits: best at equal time: mlp (the MLP beats every KAN here); best KAN: inkan; best of ours: "
        "fastkan-gaussian" in out
    )
    assert "feynman-I.6.2: best at equal time: fastkan-gaussian; best KAN: fastkan-gaussian" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"machine_info": MACHINE, "benchmarks": [bench("mlp", "forward", 1.0)]}))
    assert main(["accuracy", str(empty)]) == 2
    assert "no accuracy cases" in capsys.readouterr().err


def test_an_accuracy_drop_is_a_regression(tmp_path, capsys):
    a = write_accuracy(tmp_path / "a.json")
    data = json.loads(a.read_text())
    for entry in data["benchmarks"]:
        if entry["param"] == "fastkan-gaussian/acc-digits/cpu/fit":
            entry["extra_info"]["score_mean"] = 0.5
    b = tmp_path / "b.json"
    b.write_text(json.dumps(data))
    assert main(["--compare", str(a), str(b)]) == 3
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("fastkan-gaussian/acc-digits"))
    assert "accuracy" in line and "-47.4%" in line
