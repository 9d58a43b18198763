"""Comparisons of saved runs: intervals from the rounds, three kinds of change, exit codes; no timing involved."""

import json

import numpy as np
import pytest
from test_report import MACHINE, bench

from perf.gate import main as gate
from perf.report import main
from perf.stats import bootstrap as stats


def rounds(median_ms, n=40, spread=0.05, seed=0, factor=1.0):
    """Round times of a case: lognormal noise around a median, in seconds."""
    g = np.random.default_rng(seed)
    return list(median_ms * factor / 1e3 * np.exp(g.normal(0, spread, n)))


def write(path, cases, machine=MACHINE, reference=None, probe=None, small=None):
    """cases: model -> {pass: round times (s)}; reference: model -> {pass: per-round ratios};
    probe, small: the machine probes' times per round (s), the same for every case."""
    benches = []
    for model, passes in cases.items():
        for p, data in passes.items():
            entry = bench(model, p, float(np.median(data)) * 1e3, saved=1000)
            entry["stats"]["data"] = list(data)
            entry["stats"]["rounds"] = len(data)
            if reference and model in reference:
                entry["extra_info"].update(
                    reference_model="mlp",
                    reference_ratios=reference[model][p],
                    reference_ratio=float(np.median(reference[model][p])),
                )
            if probe is not None:
                entry["extra_info"].update(probe_version=1, probe_ratios=[t / q for t, q in zip(data, probe)])
            if small is not None:
                entry["extra_info"].update(
                    small_probe_version=1, small_probe_ratios=[t / q for t, q in zip(data, small)]
                )
            benches.append(entry)
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


def field(seed, slower=1.0, noise=0.05):
    return {
        m: {
            p: rounds(ms, seed=seed + 10 * k + j, spread=noise, factor=slower if m == "fastkan-gaussian" else 1.0)
            for j, p in enumerate(("forward", "backward"))
        }
        for k, (m, ms) in enumerate((("fastkan-gaussian", 2.0), ("bspline", 10.0), ("mlp", 1.0)))
    }


def test_equal_distributions_are_not_flagged(tmp_path, capsys):
    for seed in range(5):
        a = write(tmp_path / "a.json", field(seed))
        b = write(tmp_path / "b.json", field(seed + 100))
        assert main(["--compare", str(a), str(b), "--threshold", "0.1"]) == 0
        out = capsys.readouterr().out
        assert "regressed (0)" in out and "improved (0)" in out and "no regression" in out
        assert "within noise (not significant): 12 measurement(s); --verbose lists them"  # 6 times, 6 memories in out


def test_a_shifted_distribution_is_flagged_with_its_interval(tmp_path, capsys):
    a = write(tmp_path / "a.json", field(0))
    b = write(tmp_path / "b.json", field(100, slower=1.3))
    assert main(["--compare", str(a), str(b), "--threshold", "0.1"]) == 3
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("fastkan-gaussian/seed-300k/cpu/forward"))
    est, low, high = (float(v.strip("[],%")) for v in line.split()[2:5])
    assert 10 < low < est < high and 25 < est < 35
    assert "regressed (2):" in out and "1 regression" not in out and "2 regression(s)" in out
    # Faster the other way round: an improvement, not a regression.
    assert main(["--compare", str(b), str(a), "--threshold", "0.1"]) == 0
    assert "improved (2):" in capsys.readouterr().out


def test_a_change_whose_interval_reaches_the_threshold_is_noise(tmp_path, capsys):
    a = write(tmp_path / "a.json", field(0, noise=0.3))
    b = write(tmp_path / "b.json", field(100, slower=1.15, noise=0.3))
    assert main(["--compare", str(a), str(b), "--threshold", "0.1", "--verbose"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("fastkan-gaussian/seed-300k/cpu/forward"))
    assert "[" in line  # listed with --verbose, with its interval
    assert "widest interval:" in out


def test_the_interval_covers_the_true_ratio():
    covered = 0
    for seed in range(100):
        g = np.random.default_rng(seed)
        a = np.exp(g.normal(0, 0.1, 30))
        b = 1.2 * np.exp(g.normal(0, 0.1, 30))
        _, low, high = stats.change(a, b, seed=seed)
        covered += low <= 0.2 <= high
    assert covered >= 90


def test_a_machine_that_was_slower_is_not_a_regression(tmp_path, capsys):
    # Run B's machine was 30% slower throughout: every case and the probe before each round with it.
    probe_a, probe_b = rounds(0.1, seed=7, spread=0.02), rounds(0.1, seed=8, spread=0.02, factor=1.3)
    a = write(tmp_path / "a.json", field(0, noise=0.02), probe=probe_a)
    b = write(tmp_path / "b.json", field(100, slower=1.3, noise=0.02), probe=probe_b)
    for other in ("bspline", "mlp"):  # field() slows one model; the machine slows them all
        data = json.loads(b.read_text())
        for entry in data["benchmarks"]:
            if entry["param"].startswith(other + "/"):
                entry["stats"]["data"] = [t * 1.3 for t in entry["stats"]["data"]]
        b.write_text(json.dumps(data))
    assert main(["--compare", str(a), str(b), "--threshold", "0.1", "--verbose"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("fastkan-gaussian/seed-300k/cpu/forward"))
    assert float(line.split()[2].strip("%")) > 25  # the plain change is reported as it is
    assert "over the machine probe" in line and "regressed (0)" in out
    # The same case 1.5x slower on an unchanged machine: the probe stays, the case moves.
    c = write(tmp_path / "c.json", field(100, slower=1.5, noise=0.02), probe=rounds(0.1, seed=9, spread=0.02))
    assert main(["--compare", str(a), str(c), "--threshold", "0.1"]) == 3
    assert "regressed (2):" in capsys.readouterr().out


def test_small_calls_slowed_by_the_machine_are_not_a_regression(tmp_path, capsys):
    # The machine slowed per-operation costs by 40% and arithmetic by 5%: the arithmetic probe alone
    # would call the small case's +40% a regression; the small probe timed beside it moved with it.
    probe = rounds(0.1, seed=7, spread=0.02)
    a = write(tmp_path / "a.json", field(0, noise=0.02), probe=probe, small=rounds(0.05, seed=8, spread=0.02))
    b = write(
        tmp_path / "b.json",
        field(100, slower=1.4, noise=0.02),
        probe=[t * 1.05 for t in probe],
        small=rounds(0.05, seed=9, spread=0.02, factor=1.4),
    )
    assert main(["--compare", str(a), str(b), "--threshold", "0.1", "--verbose"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("fastkan-gaussian/seed-300k/cpu/forward"))
    assert "over the machine probe +3" in line and "over the small probe" in line and "regressed (0)" in out
    # The same change with the small probe unmoved: the code's.
    c = write(
        tmp_path / "c.json",
        field(100, slower=1.4, noise=0.02),
        probe=[t * 1.05 for t in probe],
        small=rounds(0.05, seed=10, spread=0.02),
    )
    assert main(["--compare", str(a), str(c), "--threshold", "0.1"]) == 3
    assert "regressed (2):" in capsys.readouterr().out


def test_runs_without_a_probe_say_so(tmp_path, capsys):
    a = write(tmp_path / "a.json", field(0))
    b = write(tmp_path / "b.json", field(100))
    assert main(["--compare", str(a), str(b)]) == 0
    assert "some cases have no machine probe" in capsys.readouterr().out


def test_normalised_comparison_uses_the_per_round_ratios(tmp_path, capsys):
    ref = {
        "fastkan-gaussian": {
            "forward": list(np.exp(np.random.default_rng(1).normal(np.log(2), 0.02, 30))),
            "backward": list(np.exp(np.random.default_rng(2).normal(np.log(4), 0.02, 30))),
        }
    }
    a = write(tmp_path / "a.json", field(0, noise=0.4), reference=ref)  # the machine was noisy, the ratio was not
    slowed = {p: [r * 1.2 for r in v] for p, v in ref["fastkan-gaussian"].items()}
    b = write(tmp_path / "b.json", field(100, noise=0.4), reference={"fastkan-gaussian": slowed})
    assert main(["--compare", str(a), str(b), "--normalize", "mlp"]) == 3
    out = capsys.readouterr().out
    assert "per-round ratio to mlp" in out and "regressed (2):" in out
    assert main(["--compare", str(a), str(b)]) == 0  # without normalising, the noise hides it


def test_a_reference_that_moved_by_itself_is_not_a_regression(tmp_path, capsys):
    # The MLP timed between the case's rounds ran 25% faster in run B, while the case and the run's
    # own MLP case kept their times: the ratio moved, the code did not.
    ref = {"fastkan-gaussian": {p: rounds(2000.0, seed=j, spread=0.02) for j, p in enumerate(("forward", "backward"))}}
    moved = {"fastkan-gaussian": {p: [r * 1.25 for r in v] for p, v in ref["fastkan-gaussian"].items()}}
    a = write(tmp_path / "a.json", field(0, noise=0.02), reference=ref)
    b = write(tmp_path / "b.json", field(100, noise=0.02), reference=moved)
    assert main(["--compare", str(a), str(b), "--normalize", "mlp", "--verbose"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("fastkan-gaussian/seed-300k/cpu/forward"))
    assert "+25" in line and "over mlp's case" in line and "regressed (0)" in out


def test_memory_and_gradients_compare_as_they_are(tmp_path, capsys):
    a = write(tmp_path / "a.json", field(0))
    data = json.loads(a.read_text())
    for entry in data["benchmarks"]:
        if entry["param"].startswith("bspline/"):
            entry["extra_info"]["saved_bytes"] = 1100  # +10%
        if entry["param"].startswith("mlp/"):
            entry["extra_info"].update(grad_ok=False, grad_rel_err=0.5)
        else:
            entry["extra_info"].update(grad_ok=True, grad_rel_err=1e-9)
    b = tmp_path / "b.json"
    b.write_text(json.dumps(data))
    for entry in data["benchmarks"]:
        entry["extra_info"].update(grad_ok=True)
        entry["extra_info"]["saved_bytes"] = 1000
    a.write_text(json.dumps(data))
    assert main(["--compare", str(a), str(b)]) == 3
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("bspline/seed-300k/cpu/forward "))
    assert line.split()[1:] == ["memory", "+10.0%"]
    assert "gradients turned WRONG (max rel err 0.5)" in out


def test_fit_rmse_compares_only_between_runs_of_the_same_fit_settings(tmp_path, capsys):
    runs = {}
    for name, rmse, settings in (("a", 0.1, "quick"), ("b", 0.2, "quick"), ("c", 0.2, "brief")):
        path = write(tmp_path / f"{name}.json", field(0))
        data = json.loads(path.read_text())
        for entry in data["benchmarks"]:
            if entry["param"].startswith("bspline/"):
                entry["extra_info"].update(rmse_mean=rmse, fit_settings=settings)
        path.write_text(json.dumps(data))
        runs[name] = str(path)
    assert main(["--compare", runs["a"], runs["b"]]) == 3  # twice the RMSE on the same seeds: a regression
    line = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("bspline/seed-300k/cpu/forward")
    )
    assert line.split()[1:4] == ["fit", "RMSE", "+100.0%"]
    assert main(["--compare", runs["a"], runs["c"], "--verbose"]) == 0  # other seeds: another measurement
    out = capsys.readouterr().out
    lines = [
        " ".join(line.split()[1:]) for line in out.splitlines() if line.startswith("bspline/seed-300k/cpu/forward")
    ]
    assert "fit RMSE n/a (not compared: --perf-fit=quick against brief)" in lines


def test_runs_without_rounds_fall_back_to_medians_and_say_so(tmp_path, capsys):
    from test_report import SEED, write_run

    a = write_run(tmp_path / "a.json", SEED)
    b = write_run(tmp_path / "b.json", dict(SEED, bspline=(20.0, 22.0, 8_000_000, 6_000_000)))
    assert main(["--compare", str(a), str(b)]) == 3
    out = capsys.readouterr().out
    assert "judged on medians alone" in out and "+100.0% (medians only: no rounds saved)" in out


def test_too_few_rounds_and_disjoint_runs_exit_2(tmp_path, capsys):
    few = {"mlp": {"forward": rounds(1.0, n=3), "backward": rounds(1.0, n=3)}}
    a = write(tmp_path / "a.json", few)
    b = write(tmp_path / "b.json", few)
    assert main(["--compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 round(s); an interval needs at least 5" in err
    c = write(tmp_path / "c.json", {"bspline": {"forward": rounds(1.0)}})
    assert main(["--compare", str(a), str(c)]) == 2
    assert "no case in common" in capsys.readouterr().err


def test_gate_uses_the_same_rule_and_exit_codes(tmp_path, capsys):
    a = write(tmp_path / "a.json", field(0))
    assert gate([str(write(tmp_path / "b.json", field(100))), str(a), "--threshold", "0.1"]) == 0
    assert gate([str(write(tmp_path / "c.json", field(100, slower=1.5))), str(a), "--threshold", "0.1"]) == 3
    assert gate([str(a), str(tmp_path / "missing.json")]) == 0  # no baseline yet
    (tmp_path / "bad.json").write_text("{")
    assert gate([str(tmp_path / "bad.json"), str(a)]) == 2


def test_format_of_a_change():
    assert stats.fmt_change(0.041, -0.02, 0.103) == "+4.1% [-2.0%, +10.3%]"
    with pytest.raises(stats.TooFewRounds):
        stats.change([1, 2], [1, 2, 3, 4, 5])


def test_noise_judge_counts_false_alarms_planted_slowdowns_and_memory(tmp_path):
    from perf.noise import MEMORY_CASE, judge, plant_memory
    from perf.storage.runs import load

    probe = rounds(0.1, seed=7, spread=0.02)
    base = load(write(tmp_path / "base.json", field(0, noise=0.02), probe=probe))
    same = [load(write(tmp_path / f"same{i}.json", field(10 + i, noise=0.02), probe=probe)) for i in range(3)]
    slow = [
        load(write(tmp_path / f"slow{i}.json", field(20 + i, slower=1.5, noise=0.02), probe=probe)) for i in range(3)
    ]
    planted = ["fastkan-gaussian/seed-300k/cpu/forward"]
    quiet = judge(base, same, 0.1, None)
    assert quiet["flagged"] == [[], [], []] and quiet["widest"] is not None
    loud = judge(base, slow, 0.1, None, planted)
    assert all(f"{planted[0]} (time)" in f for f in loud["flagged"])
    assert all(run[planted[0]].startswith("+") for run in loud["planted"])
    # The memory plant grows exactly one case's saved bytes by 10%, which the exact rule flags.
    case = MEMORY_CASE.replace("mnist", "seed-300k")
    data = json.loads((tmp_path / "same0.json").read_text())
    assert any(b["param"] == case for b in data["benchmarks"])
    grown = plant_memory(tmp_path / "same0.json", case)
    assert judge(base, [load(grown)], 0.1, None)["flagged"][0] == [f"{case} (memory)"]


def test_runs_timed_under_different_environments_are_flagged(tmp_path, capsys):
    a = write(tmp_path / "a.json", field(0))
    b = write(tmp_path / "b.json", field(100), machine={**MACHINE, "timing_environment": {"THP_MEM_ALLOC_ENABLE": "1"}})
    main(["--compare", str(a), str(b)])
    assert "warning: timing_environment differs: {} (A) vs {'THP_MEM_ALLOC_ENABLE': '1'} (B)" in capsys.readouterr().out
    # A run saved before the key existed and one saved with nothing set are alike.
    c = write(tmp_path / "c.json", field(100), machine={**MACHINE, "timing_environment": {}})
    main(["--compare", str(a), str(c)])
    assert "timing_environment" not in capsys.readouterr().out
    # Runs saved before malloc's settings were recorded took large blocks from mmap: not alike.
    d = write(tmp_path / "d.json", field(100), machine={**MACHINE, "malloc": {"mmap_max": 0}})
    main(["--compare", str(a), str(d)])
    assert "warning: malloc differs: None (A) vs {'mmap_max': 0} (B)" in capsys.readouterr().out
    # Same name and CPU brand, other vector instructions: a different machine for torch's kernels.
    e = write(tmp_path / "e.json", field(0), machine={**MACHINE, "torch_cpu_capability": "AVX512"})
    f = write(tmp_path / "f.json", field(100), machine={**MACHINE, "torch_cpu_capability": "AVX2"})
    main(["--compare", str(e), str(f)])
    out = capsys.readouterr().out
    assert "warning: torch_cpu_capability differs: 'AVX512' (A) vs 'AVX2' (B)" in out
    assert "AVX512)" in out.splitlines()[0] and "AVX2)" in out.splitlines()[1]  # the A: and B: lines name them


def _rerun(path, commit, shift, slower=1.0, seed=0, dirty=False):
    """A run of one commit whose whole process ran ``shift`` times slower for our model (tight rounds)."""
    cases = field(seed, slower=slower * shift, noise=0.02)
    write(path, cases)
    data = json.loads(path.read_text())
    data["commit_info"] = {"id": commit, "dirty": dirty}
    path.write_text(json.dumps(data))
    return path


def test_the_spread_between_reruns_of_one_commit_widens_the_interval(tmp_path, capsys):
    # Unchanged code whose process-level time moves by up to 25% from run to run, with tight rounds
    # within each run: without its history every comparison cries wolf.
    history = tmp_path / "history"
    history.mkdir()
    for i, shift in enumerate((1.0, 1.25, 0.9, 1.15)):
        _rerun(history / f"{i:04d}_x.json", "c0ffee", shift, seed=10 * i)
    _rerun(history / "0009_dirty.json", "c0ffee", 3.0, seed=90, dirty=True)  # a dirty tree: not the same code
    a = _rerun(tmp_path / "a.json", "c0ffee", 1.0, seed=100)
    b = _rerun(tmp_path / "b.json", "beef", 1.25, seed=200)
    assert main(["compare", str(a), str(b), "--history"]) == 3
    assert "no saved reruns of one unchanged code" in capsys.readouterr().out
    assert main(["compare", str(a), str(b), "--history", str(history)]) == 0
    out = capsys.readouterr().out
    assert "between runs: 6 of 6 timed cases" in out and "from 4 saved reruns of 1 commit(s)" in out
    assert main(["compare", str(a), str(b), "--history", str(history), "--verbose"]) == 0
    line = next(
        ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("fastkan-gaussian/seed-300k/cpu/forward")
    )
    assert "between runs ±" in line and "(3 df)" in line
    # A real slowdown beyond that spread is still caught, also by the gate.
    c = _rerun(tmp_path / "c.json", "beef", 1.0, slower=2.0, seed=300)
    assert main(["compare", str(a), str(c), "--history", str(history)]) == 3
    assert gate([str(c), str(a), "--history", str(history)]) == 3
    assert gate([str(b), str(a), "--history", str(history)]) == 0


def test_the_default_history_is_the_folders_of_the_runs_compared(tmp_path, capsys):
    for i, shift in enumerate((1.0, 1.3, 0.9)):
        _rerun(tmp_path / f"{i:04d}_x.json", "c0ffee", shift, seed=10 * i)
    a = _rerun(tmp_path / "0005_a.json", "c0ffee", 1.0, seed=100)
    b = _rerun(tmp_path / "0006_b.json", "c0ffee", 1.3, seed=200)
    assert main(["compare", str(a), str(b)]) == 0
    assert "from 3 saved reruns of 1 commit(s)" in capsys.readouterr().out  # A and B themselves left out


def test_widen_adds_the_spread_of_both_runs_in_log_space():
    from perf.stats.spread import Z, widen

    assert widen(0.1, 0.05, 0.15, 0.0) == pytest.approx((0.05, 0.15))
    low, high = widen(0.0, 0.0, 0.0, 0.1)
    assert np.log1p(high) == pytest.approx(Z * 0.1 * np.sqrt(2)) and np.log1p(low) == pytest.approx(-np.log1p(high))


def test_a_planted_slowdown_scales_every_round_and_ratio(tmp_path):
    from perf.noise import judge, plant_slowdown
    from perf.storage.runs import load

    probe = rounds(0.1, seed=7, spread=0.02)
    ref = {"fastkan-gaussian": {p: rounds(2.0, seed=3 + j, spread=0.02) for j, p in enumerate(("forward", "backward"))}}
    base = write(tmp_path / "base.json", field(0, noise=0.02), probe=probe, reference=ref)
    again = write(tmp_path / "again.json", field(1, noise=0.02), probe=probe, reference=ref)
    case = "fastkan-gaussian/seed-300k/cpu/forward"
    slower = load(plant_slowdown(again, (case,), 1.2))
    before = load(again)
    assert slower.records[case].median_s == pytest.approx(1.2 * before.records[case].median_s)
    assert slower.records[case].info["reference_ratio"] == pytest.approx(
        1.2 * before.records[case].info["reference_ratio"]
    )
    other = "fastkan-gaussian/seed-300k/cpu/backward"
    assert slower.records[other].median_s == before.records[other].median_s
    for norm in (None, "mlp"):
        found = judge(load(base), [slower], 0.1, norm, [case], histories=[[before]])
        assert found["flagged"] == [[f"{case} (time)"]], norm


def test_the_repeatability_report_sets_each_case_beside_the_mlp(tmp_path, capsys):
    paths = [
        str(_rerun(tmp_path / f"{i:04d}_r.json", "c0ffee", shift, seed=10 * i)) for i, shift in enumerate((1.0, 1.3))
    ]
    assert main(["repeatability", *paths]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("fastkan-gaussian ") and " forward " in ln)
    assert line.split()[-1] == "met" or "NOT met" in line
    assert "NOT met" in line  # 1.3x from run to run, the MLP steady
    assert "our models' cases meeting the goal" in out and "0 of 2" in out
    assert main(["repeatability", paths[0]]) == 2
    assert "two runs or more" in capsys.readouterr().err


def test_the_repeatability_report_judges_a_case_by_the_mlp_timed_beside_it(tmp_path, capsys):
    # The machine ran 1.3x slower while our case ran in the second run: the MLP timed before each of
    # its rounds moved with it, so the case meets the goal; its paths differ between the runs.
    paths = []
    for i, (shift, path) in enumerate(((1.0, "small node"), (1.3, "plain"))):
        p = _rerun(tmp_path / f"{i:04d}_r.json", "c0ffee", shift, seed=10 * i)
        data = json.loads(p.read_text())
        for b in data["benchmarks"]:
            if b["extra_info"]["model"] == "fastkan-gaussian":
                b["extra_info"].update(
                    reference_model="mlp",
                    reference_median_s=1e-3 * shift,
                    reference_ratio=2.0,
                    paths=[path, "small node"],
                )
        p.write_text(json.dumps(data))
        paths.append(str(p))
    assert main(["repeatability", *paths]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("fastkan-gaussian ") and " forward " in ln)
    assert " met " in line and "NOT met" not in line and " 1.30 " in line and " 1.00 " in line, line
    assert "DIFFER: ('small node', 'small node') / ('plain', 'small node')" in line
    assert "cases that took the same paths in every run: 0 of 2" in out
