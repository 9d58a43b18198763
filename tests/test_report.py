"""python -m perf.report on small saved runs made here."""

import json
import subprocess
import sys

import pytest

from perf.report import main

MACHINE = {"node": "box", "torch": "2.13.0", "torch_threads": 1, "cuda_device": None, "python_version": "3.11"}


def bench(model, p, median_ms, config="seed-300k", device="cpu", saved=1000, peak=2000, params=300021):
    info = {
        "model": model,
        "config": config,
        "device": device,
        "pass": p,
        "dtype": "float32",
        "mode": "eager",
        "batch": 100,
        "layers": [2, 10000, 1],
        "threads": 1,
        "params": params,
        "trainable_params": params - 16,
        "saved_bytes": saved,
        "cpu_peak_bytes": peak,
    }
    case = f"{model}/{config}/{device}/{p}"
    return {
        "name": f"test_perf[{case}]",
        "param": case,
        "extra_info": info,
        "stats": {"median": median_ms / 1e3, "min": median_ms / 1e3, "mean": median_ms / 1e3, "rounds": 5},
    }


def write_run(path, times, machine=MACHINE, **kw):
    """times: model -> (forward ms, backward ms, saved bytes, backward peak bytes)."""
    benches = []
    for model, (f, b, saved, peak) in times.items():
        benches += [
            bench(model, "forward", f, saved=saved, peak=peak, **kw),
            bench(model, "backward", b, saved=saved, peak=peak, **kw),
        ]
    path.write_text(
        json.dumps(
            {
                "machine_info": machine,
                "commit_info": {},
                "benchmarks": benches,
                "datetime": "2026-11-28T00:00:00",
                "version": "5.3.1",
            }
        )
    )
    return path


SEED = {
    "fastkan-gaussian": (2.0, 4.0, 1_000_000, 3_000_000),
    "bspline": (10.0, 22.0, 8_000_000, 6_000_000),
    "mlp": (1.0, 1.5, 500_000, 2_000_000),
}


def test_table_and_claims_are_the_right_numbers(tmp_path, capsys):
    run = write_run(tmp_path / "run.json", SEED)
    assert main([str(run)]) == 0
    out = capsys.readouterr().out
    assert "seed-300k on cpu" in out and "torch 2.13.0" in out and "1 thread(s)" in out
    row = next(line for line in out.splitlines() if line.startswith("fastkan-gaussian-cpu"))
    assert row.split()[1:] == ["2.000", "ms", "4.000", "ms", "1.00", "MB", "3.00", "MB", "300021", "300005"]
    f_ref, f_mlp = 10.0 / 2.0, 2.0 / 1.0
    b_ref, b_mlp = 22.0 / 4.0, 4.0 / 1.5
    assert (
        f"fastkan-gaussian is {f_ref:.2f}x faster than bspline and {f_mlp:.2f}x slower than mlp in forward speed" in out
    )
    assert (
        f"fastkan-gaussian is {b_ref:.2f}x faster than bspline and {b_mlp:.2f}x slower than mlp in backward speed"
        in out
    )
    assert f"is {8 / 1:.2f}x smaller than bspline and {1 / 0.5:.2f}x bigger than mlp in forward memory" in out
    assert f"is {6 / 3:.2f}x smaller than bspline and {3 / 2:.2f}x bigger than mlp in backward memory" in out
    assert "reference KAN: bspline (efficient-kan was not measured)" in out
    total, ref_total, mlp_total = 2.0 + 4.0, 10.0 + 22.0, 1.0 + 1.5
    assert (
        f"fastkan-gaussian forward + backward: {ref_total / total:.2f}x faster than bspline, "
        f"{total / mlp_total:.2f}x the mlp's time, keeps {1_000_000 / 500_000:.2f}x the mlp's bytes for backward"
    ) in out


def test_models_option_keeps_only_those_rows(tmp_path, capsys):
    run = write_run(tmp_path / "run.json", SEED)
    assert main([str(run), "--models", "fastkan-gaussian,mlp"]) == 0
    out = capsys.readouterr().out
    assert "fastkan-gaussian-cpu" in out and "mlp-cpu" in out and "bspline-cpu" not in out
    assert main([str(run), "--models", "fastkan-nope"]) == 2
    assert "--models: fastkan-nope not measured" in capsys.readouterr().err


def test_efficient_kan_is_the_reference_when_measured(tmp_path, capsys):
    run = write_run(tmp_path / "run.json", {**SEED, "efficient-kan": (8.0, 16.0, 1, 1)})
    assert main([str(run)]) == 0
    out = capsys.readouterr().out
    assert "reference KAN: efficient-kan." in out or "reference KAN: efficient-kan\n" in out
    assert "fastkan-gaussian is 4.00x faster than efficient-kan and 2.00x slower than mlp in forward speed" in out


def test_markdown_is_a_table(tmp_path, capsys):
    run = write_run(tmp_path / "run.json", SEED)
    assert main([str(run), "--markdown"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + len(SEED)
    cols = {line.count("|") for line in lines}
    assert cols == {8}  # 7 columns everywhere
    assert set(lines[1].replace("|", "")) == {"-"}
    assert lines[0].split("|")[2].strip() == "forward"


def test_latest_run_in_a_storage_folder_and_by_number(tmp_path, capsys, monkeypatch):
    folder = tmp_path / ".benchmarks" / "cpu" / "Linux-CPython-3.11-64bit"
    folder.mkdir(parents=True)
    write_run(folder / "0001_a.json", SEED)
    newer = dict(SEED, mlp=(7.0, 7.0, 1, 1))
    write_run(folder / "0002_b.json", newer)
    monkeypatch.chdir(tmp_path)
    assert main([]) == 0
    assert "0002_b.json" in capsys.readouterr().out
    assert main(["1"]) == 0
    assert "0001_a.json" in capsys.readouterr().out
    assert main([str(tmp_path / ".benchmarks")]) == 0
    assert "0002_b.json" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file or folder"),
        ("", "empty file"),
        ('{"machine_info": {}, "benchmarks": [', "not valid JSON"),
        ('{"hello": 1}', "not a pytest-benchmark JSON file"),
        ("[1, 2]", "not a pytest-benchmark JSON file"),
        ('{"machine_info": {}, "benchmarks": [{"name": "x", "stats": {"median": 1}}]}', "holds no fastkan perf cases"),
    ],
)
def test_bad_files_exit_2_with_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and message in err


def test_empty_folder_and_unknown_run_exit_2(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 2
    assert "folder holds no saved benchmark runs" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert main([]) == 2
    assert "no saved runs" in capsys.readouterr().err
    (tmp_path / ".benchmarks" / "cpu").mkdir(parents=True)
    write_run(tmp_path / ".benchmarks" / "cpu" / "0001_x.json", SEED)
    assert main(["0007"]) == 2
    assert "0007: no such run in .benchmarks" in capsys.readouterr().err
    assert main(["--compare", "0001", "0009"]) == 2


def test_command_line_has_no_traceback_on_bad_input(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    proc = subprocess.run([sys.executable, "-m", "perf.report", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "not valid JSON" in proc.stderr


def test_plot_writes_images_and_never_touches_storage(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (the plot extra)")
    storage = tmp_path / ".benchmarks" / "cpu"
    storage.mkdir(parents=True)
    write_run(storage / "0001_x.json", SEED)
    write_run(storage / "0002_grid.json", SEED, config="grid-8")
    before = {p: p.stat().st_mtime_ns for p in storage.parent.rglob("*")}
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "figs" / "res.png"
    assert main([str(storage / "0001_x.json"), str(storage / "0002_grid.json"), "--plot", str(out)]) == 0
    for f in (out, out.with_name("res-ratios.png"), out.with_name("res-sweeps.png")):
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 5000
    svg = tmp_path / "res.svg"
    assert main(["--plot", str(svg)]) == 0 and svg.read_text().lstrip().startswith("<?xml")
    assert {p: p.stat().st_mtime_ns for p in storage.parent.rglob("*")} == before


def test_plot_without_matplotlib_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    run = write_run(tmp_path / "run.json", SEED)
    assert main([str(run), "--plot", str(tmp_path / "x.png")]) == 2
    assert "pip install 'fastkan[plot]'" in capsys.readouterr().err


def test_bad_arguments_are_usage_errors(tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["--plot", "x.pdf"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["--threshold", "-1", "--compare", "a", "b"])
    assert e.value.code == 2


def test_interleaved_ratios_are_reported(tmp_path, capsys):
    run = write_run(tmp_path / "run.json", SEED)
    data = json.loads(run.read_text())
    for bench in data["benchmarks"]:
        if bench["param"] == "fastkan-gaussian/seed-300k/cpu/forward":
            bench["extra_info"].update(reference_model="bspline", reference_ratio=0.1)
        if bench["param"] == "fastkan-gaussian/seed-300k/cpu/backward":
            bench["extra_info"].update(reference_model="bspline", reference_ratio=0.2)
    run.write_text(json.dumps(data))
    assert main([str(run)]) == 0
    out = capsys.readouterr().out
    assert (
        "fastkan-gaussian forward: 0.100x the time of bspline, timed round by round (10.00x faster than bspline)"
    ) in out
    # 2 ms at 0.1x and 4 ms at 0.2x: the reference took 20 + 20 ms for the model's 6.
    assert (
        "fastkan-gaussian forward + backward: 0.150x the time of bspline, timed round by round "
        "(6.67x faster than bspline)"
    ) in out


def test_other_bases_go_into_one_ratio_table_and_verbose_gives_their_sentences(tmp_path, capsys):
    run = write_run(
        tmp_path / "run.json",
        {**SEED, "fastkan-rswaf": (3.0, 6.0, 1_000_000, 3_000_000), "lean-fastkan": (2.0, 2.0, 800_000, 3_000_000)},
    )
    assert main([str(run)]) == 0
    out = capsys.readouterr().out
    assert "fastkan-rswaf is" not in out  # no sentences for the other bases by default
    row = next(line for line in out.splitlines() if line.startswith("fastkan-rswaf "))
    assert row.split() == ["fastkan-rswaf", "0.30", "0.27", "3.00", "4.00", "2.00"]
    assert next(line for line in out.splitlines() if line.startswith("lean-fastkan ")).split()[-1] == "1.60"
    # bspline's backward (22 ms) is not shorter than its forward (10 ms): nothing to explain here.
    assert "backward shorter than forward" not in out
    assert main([str(run), "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "fastkan-rswaf is 3.33x faster than bspline and 3.00x slower than mlp in forward speed" in out
    assert "time relative to the reference KAN" not in out  # the sentences replace the ratio table


def test_a_backward_shorter_than_its_forward_is_explained_once(tmp_path, capsys):
    run = write_run(tmp_path / "run.json", dict(SEED, bspline=(10.0, 5.0, 8_000_000, 6_000_000)))
    assert main([str(run)]) == 0
    out = capsys.readouterr().out
    assert out.count("backward shorter than forward") == 1
    assert "bspline: backward shorter than forward, because the forward pass builds" in out


def test_speed_sentences_carry_an_interval_when_rounds_were_saved(tmp_path, capsys):
    run = write_run(tmp_path / "run.json", SEED)
    data = json.loads(run.read_text())
    for i, entry in enumerate(data["benchmarks"]):
        m = entry["stats"]["median"]
        entry["stats"]["data"] = [m * (1 + 0.01 * ((k * 7 + i) % 5 - 2)) for k in range(20)]
    run.write_text(json.dumps(data))
    assert main([str(run)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.endswith("in forward speed"))
    assert line.startswith("fastkan-gaussian is 5.00x [") and "x] faster than bspline" in line
