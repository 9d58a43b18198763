"""python -m perf.report leaderboard on small saved runs made here."""

import json

import pytest
from test_report import MACHINE, bench

from perf.report import main

FIELD = {  # model -> forward ms, backward ms, saved bytes, gradient error
    "fastkan-gaussian": (2.0, 4.0, 1_000, 1e-9),
    "lean-fastkan": (2.0, 3.0, 900, 1e-9),
    "inkan": (1.5, 2.0, 4_000, 1e-9),
    "faster-kan": (1.0, 1.0, 5_000, 0.5),
    "mlp": (0.5, 0.5, 3_000, 1e-10),
}


def write_field(path, configs=("mnist", "seed-300k"), missing=None, fit=None):
    benches = []
    for config in configs:
        for model, (f, b, saved, err) in FIELD.items():
            for p, ms in (("forward", f), ("backward", b)):
                entry = bench(model, p, ms, config=config, saved=saved)
                entry["extra_info"].update(grad_rel_err=err, grad_ok=err < 1e-4)
                if model in ("inkan", "faster-kan"):
                    entry["extra_info"]["peer_version"] = "0.5.2"
                benches.append(entry)
    for model, rmse in (fit or {}).items():
        for task, value in rmse.items():
            entry = bench(model, "fit", 100.0, config=f"fit-{task}")
            entry["extra_info"].update(task=task, rmse_mean=value)
            benches.append(entry)
    machine = dict(MACHINE, perf_missing_models=missing or {})
    path.write_text(
        json.dumps(
            {
                "machine_info": machine,
                "commit_info": {},
                "benchmarks": benches,
                "datetime": "2026-11-29T00:00:00",
                "version": "5.3.1",
            }
        )
    )
    return path


def table_rows(out: str, title: str) -> list[list[str]]:
    lines = out.splitlines()
    start = lines.index(title) + 3
    rows = []
    for line in lines[start:]:
        if not line.strip() or line.startswith("fastest"):
            break
        rows.append(line.split())
    return rows


def test_each_configuration_is_sorted_by_total_time_with_every_column(tmp_path, capsys):
    run = write_field(
        tmp_path / "run.json",
        missing={"chebykan": "chebykan: import failed (...); git clone ..."},
        fit={"inkan": {"seed": 0.02, "wave": 0.08}, "fastkan-gaussian": {"seed": 0.01, "wave": 0.04}},
    )
    assert main(["leaderboard", str(run)]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out, "mnist on cpu (float32, eager)")
    assert [r[0] for r in rows] == ["mlp", "faster-kan", "inkan", "lean-fastkan", "fastkan-gaussian"]
    faster, inkan = rows[1], rows[2]
    assert faster[1:2] == ["(0.5.2)"] and faster[2:5] == ["1.000", "1.000", "2.000"]
    assert faster[5:7] == ["1.00", "2.00"]  # the fastest KAN; twice the MLP's 1 ms
    assert "WRONG" in " ".join(faster) and "ok" in inkan
    assert inkan[-1] == "0.0400"  # geometric mean of 0.02 and 0.08
    gaussian = rows[4]
    assert gaussian[3] == "6.000" and gaussian[4] == "3.00" and gaussian[-1] == "0.0200"
    assert (
        "fastest KAN: faster-kan; our fastest, lean-fastkan, takes 2.50x the time of the fastest peer, faster-kan"
    ) in out
    assert "not measured: chebykan: import failed" in out
    assert "seed-300k on cpu (float32, eager)" in out


def test_markdown_and_configs(tmp_path, capsys):
    run = write_field(tmp_path / "run.json")
    assert main(["leaderboard", str(run), "--markdown", "--configs", "seed-300k"]) == 0
    out = capsys.readouterr().out
    assert "#### seed-300k on cpu" in out and "mnist" not in out.split("####", 1)[1]
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(FIELD) and {line.count("|") for line in table} == {11}
    assert main(["leaderboard", str(run), "--configs", "nope"]) == 2
    assert "--configs: nope not measured" in capsys.readouterr().err


def test_plot_has_full_names_sorted_fastest_on_top(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (the plot extra)")
    from perf.reports import plots

    seen = []
    real_save = plots.save_figure

    def capture(plt, fig, path, **kw):
        seen.append([[t.get_text() for t in ax.get_yticklabels()] for ax in fig.axes])
        real_save(plt, fig, path, **kw)

    monkeypatch.setattr(plots, "save_figure", capture)
    run = write_field(tmp_path / "run.json")
    png = tmp_path / "board.png"
    assert main(["leaderboard", str(run), "--plot", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    (panels,) = seen
    # barh draws from the bottom: reversed, the labels read fastest first, full names.
    assert [labels[::-1] for labels in panels] == [
        ["mlp", "faster-kan (WRONG gradients)", "inkan", "lean-fastkan", "fastkan-gaussian"]
    ] * 2


def _goals_run(path, reference, ratios):
    benches = []
    for model, (f_ratio, b_ratio) in ratios.items():
        for p, ms, ratio in (("forward", 2.0, f_ratio), ("backward", 2.0, b_ratio)):
            entry = bench(model, p, ms, config="mnist")
            entry["extra_info"].update(reference_model=reference, reference_ratio=ratio)
            benches.append(entry)
    path.write_text(json.dumps({"machine_info": MACHINE, "benchmarks": benches}))
    return path


def test_goals_table_divides_ratios_to_the_same_reference(tmp_path, capsys):
    plain = _goals_run(
        tmp_path / "plain.json",
        "plain-fastkan",
        {"fastkan-gaussian": (0.9, 0.9), "lean-fastkan": (0.6, 0.6), "mlp": (0.3, 0.3)},
    )
    lean = _goals_run(
        tmp_path / "lean.json",
        "lean-fastkan",
        {"fastkan-gaussian": (1.5, 1.5), "fast-kan": (1.2, 1.2), "inkan": (0.8, 0.8), "bare-fastkan": (0.6, 0.6)},
    )
    assert main(["goals", str(plain), str(lean)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("mnist"))
    # default / plain 0.9; default / fast-kan 1.5 / 1.2; fastest peer inkan; lean / inkan 1 / 0.8;
    # bare / inkan 0.6 / 0.8; / MLP 3.0, 2.0
    assert row.split() == ["mnist", "0.90", "1.25", "n/a", "inkan", "1.25", "0.75", "3.00", "2.00"]
    assert main(["goals", str(plain)]) == 2
    assert "give pairs of runs" in capsys.readouterr().err


def test_goals_over_several_pairs_gives_median_and_range(tmp_path, capsys):
    pairs = []
    # Per pair: default / plain-fastkan, then inkan's and fast-kan's ratios to lean-fastkan.
    for i, (plain_ratio, inkan, fast_kan) in enumerate([(0.9, 0.8, 1.2), (0.8, 1.25, 1.0), (1.0, 0.8, 1.5)]):
        pairs.append(
            _goals_run(
                tmp_path / f"plain{i}.json",
                "plain-fastkan",
                {"fastkan-gaussian": (plain_ratio,) * 2, "lean-fastkan": (0.6, 0.6), "mlp": (0.3, 0.3)},
            )
        )
        pairs.append(
            _goals_run(
                tmp_path / f"lean{i}.json",
                "lean-fastkan",
                {"fastkan-gaussian": (1.5, 1.5), "fast-kan": (fast_kan,) * 2, "inkan": (inkan,) * 2},
            )
        )
    assert main(["goals", *map(str, pairs)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("mnist"))
    cells = [c.strip() for c in row.split("  ") if c.strip()]
    # default / fast-kan: 1.5 / 1.2, 1.5 / 1.0, 1.5 / 1.5; the fastest peer: inkan, fast-kan, inkan;
    # lean-fastkan over it: 1 / 0.8, 1 / 1.0, 1 / 0.8.
    assert cells == [
        "mnist",
        "0.90 [0.80, 1.00]",
        "1.25 [1.00, 1.50]",
        "n/a",
        "inkan (2 of 3)",
        "1.25 [1.00, 1.25]",
        "n/a",
        "3.00 [2.67, 3.33]",
        "2.00 [2.00, 2.00]",
    ]
    assert "over 3 pairs of runs" in out
    assert main(["goals", *map(str, pairs[:3])]) == 2
    assert "got 3 run(s)" in capsys.readouterr().err
    assert main(["goals", *map(str, pairs[:4]), "--also", str(pairs[0])]) == 2
    assert "single pair" in capsys.readouterr().err
