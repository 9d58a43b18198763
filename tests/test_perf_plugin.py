"""The benchmark suite's own plugin, run inside pytester."""

import json
import platform
import statistics
import sys

import pytest
import torch

from fastkan import BASES
from perf.matrix.cases import Case, Setup
from perf.matrix.configs import CONFIGS
from perf.matrix.configs import DEFAULT_PASSES as PASSES
from perf.matrix.models import models
from perf.matrix.peers import PEERS
from perf.plugin import MALLOC, pin_malloc

pytest_plugins = ["pytester"]
GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Import every peer (and with flashkan and inkan, torch.compile and Triton) before any in-process
# pytester run: pytester unloads the modules a run imported, and a native extension such as
# Triton's aborts the process when it is imported a second time.
for _model in models().values():
    _model.missing  # noqa: B018 -- asking imports a peer


# Runs that execute cases go to a subprocess: torch registers operator
# libraries on first use, and pytester's in-process runs unload and reload them.
@pytest.fixture
def suite(pytester):
    pytester.makeconftest("from perf.plugin import *  # noqa")
    pytester.makepyfile(test_bench="from perf.test_perf import test_perf  # noqa")
    return pytester


def collected_ids(result):
    return {line.split("[", 1)[1].rstrip("]") for line in result.outlines if line.startswith("test_bench.py::")}


def test_matrix_is_complete(suite):
    result = suite.runpytest("--collect-only", "-q", "--perf-config=all")
    assert result.ret == 0
    ids = collected_ids(result)
    expected = set()
    for config, cfg in CONFIGS.items():
        for model, m in models().items():
            if m.small_only and not cfg.small:
                continue
            for device in ("cpu", "cuda"):
                for p in PASSES:
                    expected.add(f"{model}/{config}/{device}/{p}")
    assert ids == expected
    # Every basis, every config, both devices, every pass, and the baselines are in the matrix.
    assert {f"fastkan-{b}/seed-300k/cpu/forward" for b in BASES} <= ids
    assert {
        "bspline/mnist/cuda/backward",
        "mlp/kanbench-10m/cpu/train-step",
        "efficient-kan/tiny/cpu/forward",
        "pykan/tiny/cpu/forward",
    } <= ids
    assert not any(i.startswith("pykan/seed-300k") for i in ids)


def test_reference_models_are_the_layers_they_name():
    table, cfg = models(), CONFIGS["mnist"]
    plain, lean, bare = (table[m].build(cfg.shape) for m in ("plain-fastkan", "lean-fastkan", "bare-fastkan"))
    assert all(not layer.fused for layer in plain.layers)
    assert all(layer.layernorm is not None and not layer.layernorm.elementwise_affine for layer in lean.layers)
    assert all(layer.layernorm is None for layer in bare.layers)
    # Speed references only: the fit tasks train the models a user would pick.
    assert not table["plain-fastkan"].fit and not table["bare-fastkan"].fit


def test_opt_in_axes_extend_the_ids(suite):
    result = suite.runpytest(
        "--collect-only",
        "-q",
        "--perf-config=tiny",
        "--perf-model=mlp",
        "--perf-device=cpu",
        "--perf-dtype=float32,bfloat16",
        "--perf-mode=eager,compile",
    )
    ids = collected_ids(result)
    assert {
        "mlp/tiny/cpu/forward",
        "mlp/tiny/cpu/forward/bfloat16",
        "mlp/tiny/cpu/forward/compile",
        "mlp/tiny/cpu/backward/bfloat16/compile",
    } <= ids
    assert len(ids) == 3 * 2 * 2


def test_k_selects_a_sentence(suite):
    result = suite.runpytest(
        "--collect-only", "-q", "--perf-config=all", "-k", "fastkan-gaussian and seed-300k and cpu and forward"
    )
    assert collected_ids(result) == {"fastkan-gaussian/seed-300k/cpu/forward"}


@pytest.mark.parametrize(
    "compiling",
    # flashkan and inkan compile themselves at import (about 20 s here): the exhaustive step runs them.
    [False, pytest.param(True, marks=pytest.mark.exhaustive)],
    ids=["without-self-compiling-peers", "every-model"],
)
def test_disabled_run_of_tiny_passes(suite, compiling):
    chosen = [n for n, m in models().items() if compiling or not (m.peer and PEERS[m.peer].compiles)]
    result = suite.runpytest_subprocess(
        "--benchmark-disable", "--perf-config=tiny", "--perf-device=cpu", "-q", f"--perf-model={','.join(chosen)}"
    )
    n = sum(1 for m in chosen if not models()[m].missing) * len(PASSES)
    result.assert_outcomes(passed=n, skipped=(len(chosen) - n // len(PASSES)) * len(PASSES))


_RUNS: dict = {}  # options -> (exit code, stdout, {relative path: text}) of a run that several tests read


def _run_once(suite, *options) -> tuple[int, str]:
    """The exit code and output of one subprocess run of the suite with these options, and its JSON
    files in this test's folder. The run happens once (a subprocess costs seconds); later tests get
    a copy of its files."""
    if options not in _RUNS:
        result = suite.runpytest_subprocess(*options)
        files = {p.relative_to(suite.path): p.read_text() for p in suite.path.rglob("*.json")}
        _RUNS[options] = (result.ret, result.stdout.str(), files)
    ret, out, files = _RUNS[options]
    for rel, text in files.items():
        (suite.path / rel).parent.mkdir(parents=True, exist_ok=True)
        (suite.path / rel).write_text(text)
    return ret, out


def _autosaved(suite, monkeypatch) -> list:
    """The JSON of one autosaved run of three models on tiny, in this test's folder."""
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "1")  # read by PyTorch at most once per process: harmless here
    monkeypatch.delenv("FASTKAN_COMPILE", raising=False)
    ret, _ = _run_once(
        suite,
        "--perf-config=tiny",
        "--perf-device=cpu",
        "--perf-model=fastkan-gaussian,mlp,bspline",
        "--perf-seconds=0.01",
        "--perf-threads=1",
        "--benchmark-autosave",
    )
    assert ret == 0
    return sorted((suite.path / ".benchmarks").glob("*/*/*.json"))


# Every default pass and grad2, of our layer and the MLP: what the reference and grad2 tests read.
EVERY_PASS = (
    "--perf-config=tiny",
    "--perf-device=cpu",
    "--perf-model=fastkan-gaussian,mlp",  # --perf-reference: mlp by default
    f"--perf-pass={','.join(PASSES)},grad2",
    "--perf-seconds=0.02",
    "--benchmark-json=new-folder/run.json",
)


def test_autosaved_json_holds_every_field(suite, monkeypatch):
    files = _autosaved(suite, monkeypatch)
    assert len(files) == 1 and files[0].parent.parent.name == "cpu"  # CPU histories get their own folder
    data = json.loads(files[0].read_text())
    assert data["machine_info"]["torch"] == torch.__version__
    assert data["machine_info"]["torch_threads"] == 1
    assert data["machine_info"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert "cuda_device" in data["machine_info"]
    assert data["machine_info"]["timing_environment"] == {"THP_MEM_ALLOC_ENABLE": "1"}
    assert data["machine_info"]["malloc"] == (MALLOC if GLIBC else {})
    benches = {b["param"]: b for b in data["benchmarks"]}
    assert len(benches) == 9
    for case_id, bench in benches.items():
        info = bench["extra_info"]
        model, config, device, p = case_id.split("/")
        setup = Setup(Case(model, config, device, p))
        params, trainable = setup.num_params()
        assert (info["model"], info["config"], info["device"], info["pass"]) == (model, config, device, p)
        assert info["params"] == params and info["trainable_params"] == trainable
        assert info["batch"] == CONFIGS[config].batch and info["layers"] == list(CONFIGS[config].layers)
        assert info["dtype"] == "float32" and info["mode"] == "eager" and info["threads"] == 1
        assert info["basis"] == models()[model].basis
        assert info["saved_bytes"] > 0
        assert "peak_rss_delta" in info
        assert bench["stats"]["rounds"] >= 5 and bench["stats"]["median"] > 0
    # The report reads a real run.
    from perf.report import main

    assert main([str(files[0])]) == 0
    # The FastKAN model counts its frozen grids as parameters but not as trainable ones.
    info = benches["fastkan-gaussian/tiny/cpu/forward"]["extra_info"]
    assert info["params"] - info["trainable_params"] == 2 * 8


def test_regression_gate_exit_code_3(suite, monkeypatch):
    files = _autosaved(suite, monkeypatch)
    data = json.loads(files[0].read_text())
    for bench in data["benchmarks"]:  # pretend the baseline was a thousand times faster
        for key in ("min", "max", "mean", "median", "stddev", "iqr", "q1", "q3"):
            bench["stats"][key] /= 1000
    files[0].write_text(json.dumps(data))
    result = suite.runpytest_subprocess(
        "--perf-config=tiny",
        "--perf-device=cpu",
        "--perf-model=mlp",
        "--perf-seconds=0.01",
        "--benchmark-compare=0001",
        "--benchmark-compare-fail=median:10%",
    )
    assert result.ret == 3
    result.stderr.fnmatch_lines(["*Performance has regressed*", "*mlp/tiny/cpu/forward*PercentageRegressionCheck*"])
    result.stdout.fnmatch_lines(["*performance regressed*exit code 3", "*= 3 passed in *"])
    assert "Traceback" not in result.stdout.str() and "INTERNALERROR" not in result.stdout.str()


def test_no_regression_exit_code_0(suite, monkeypatch):
    _autosaved(suite, monkeypatch)
    result = suite.runpytest_subprocess(
        "--perf-config=tiny",
        "--perf-device=cpu",
        "--perf-model=mlp",
        "--perf-seconds=0.01",
        "--benchmark-compare=0001",
        "--benchmark-compare-fail=median:100000%",
    )
    assert result.ret == 0


@pytest.mark.parametrize(
    "option, message",
    [
        ("--perf-config=huge", "unknown --perf-config value huge; valid: tiny, mnist, seed-300k"),
        ("--perf-device=tpu", "unknown --perf-device value tpu; valid: cpu, cuda"),
        ("--perf-model=fastkan-nope", "unknown --perf-model value fastkan-nope; valid: fastkan-gaussian"),
        ("--perf-dtype=float8", "unknown --perf-dtype value float8; valid: float32, bfloat16, float16"),
        ("--perf-threads=0", "--perf-threads must be at least 1, got 0"),
        ("--perf-windows=0", "--perf-windows must be at least 1, got 0"),
        ("--perf-reference=nope", "unknown --perf-reference value nope; valid: fastkan-gaussian"),
        ("--perf-fit=huge", "unknown --perf-fit value huge; valid: smoke, brief, quick, full, none"),
    ],
)
def test_bad_options_are_usage_errors(suite, option, message):
    result = suite.runpytest("--collect-only", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}*"])
    assert "Traceback" not in result.stderr.str()


def test_cuda_device_without_cuda_says_so(suite):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = suite.runpytest("--collect-only", "--perf-device=cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --perf-device=cuda: CUDA is not available on this machine*"])


def test_fit_cases_cover_every_model_and_task(suite):
    from perf.matrix.fit import TASKS

    suite.makepyfile(test_fitting="from perf.test_fit import test_fit  # noqa")
    result = suite.runpytest("--collect-only", "-q", "test_fitting.py")
    ids = {line.split("[", 1)[1].rstrip("]") for line in result.outlines if line.startswith("test_fitting.py::")}
    expected = {
        f"{m}/fit-{t}/cpu/fit" for m, spec in models().items() if spec.fit and not spec.small_only for t in TASKS
    }
    assert "plain-fastkan/fit-seed/cpu/fit" not in ids and "pykan/fit-seed/cpu/fit" not in ids
    assert ids == expected
    result = suite.runpytest("--collect-only", "-q", "test_fitting.py", "--perf-fit=none")
    assert not any("/fit-" in line for line in result.outlines)


def test_a_run_of_every_kind_of_case_feeds_every_report(suite, capsys):
    # The default job's three kinds of case (speed, fit, accuracy) in one run, then every report on
    # it: the bases report once read the accuracy cases as fit cases and crashed.
    suite.makepyfile(test_fitting="from perf.test_fit import test_fit  # noqa")
    suite.makepyfile(test_learning="from perf.test_accuracy import test_accuracy  # noqa")
    suite.makepyfile(test_pde="from perf.test_physics import test_physics  # noqa")
    result = suite.runpytest_subprocess(
        "--perf-config=tiny",
        "--perf-device=cpu",
        "--perf-fit=smoke",
        "--perf-accuracy=smoke",
        "--perf-physics=smoke",
        "--perf-model=fastkan-gaussian,mlp,mlp-tanh",
        "--perf-seconds=0.01",
        "-k",
        "tiny or fit-seed or acc-feynman or pde-poisson-1d",
        "--benchmark-autosave",
    )
    assert result.ret == 0
    (path,) = (suite.path / ".benchmarks").glob("*/*/*.json")
    benches = {b["param"]: b["extra_info"] for b in json.loads(path.read_text())["benchmarks"]}
    kinds = {case: info["kind"] for case, info in benches.items()}
    assert set(kinds.values()) == {"speed", "fit", "accuracy", "physics"}
    assert all(info["schema"] == 2 and info["group"] in ("fastkan", "baseline") for info in benches.values())
    gauss = benches["fastkan-gaussian/fit-seed/cpu/fit"]
    assert len(gauss["rmse"]) == 2 and gauss["rmse_mean"] > 0 and gauss["steps"] == 5
    assert 0 < gauss["approx_rel_l2"] < 0.02 and gauss["approx_rel_l2_best"] < gauss["approx_rel_l2"]
    assert "approx_rel_l2" not in benches["mlp/fit-seed/cpu/fit"]
    from perf.report import REPORTS, main

    for report in REPORTS:
        args = [report, str(path), str(path)] if report in ("goals", "repeatability") else [report, str(path)]
        assert main(args) == 0, report
        assert "Traceback" not in capsys.readouterr().err
    assert main(["compare", str(path), str(path)]) == 0


def test_reference_is_timed_inside_each_case(suite):
    ret, _ = _run_once(suite, *EVERY_PASS)
    assert ret == 0
    saved = json.loads((suite.path / "new-folder" / "run.json").read_text())["benchmarks"]
    benches = {b["param"]: b["extra_info"] for b in saved}
    for p in PASSES:
        info = benches[f"fastkan-gaussian/tiny/cpu/{p}"]
        assert info["reference_model"] == "mlp" and info["reference_median_s"] > 0
        assert "reference_model" not in benches[f"mlp/tiny/cpu/{p}"]
    # Every case, the reference's own included, times the machine probes before each round.
    for case, info in benches.items():
        data = next(b["stats"]["data"] for b in saved if b["param"] == case)
        assert info["probe_version"] == 1 and info["probe_median_s"] > 0 and len(info["probe_ratios"]) == len(data)
        assert info["small_probe_median_s"] > 0 and len(info["small_probe_ratios"]) == len(data)


@pytest.mark.parametrize("windows", [3, pytest.param(1, marks=pytest.mark.exhaustive)])
def test_each_case_is_timed_in_windows_spread_over_the_run(pytester, windows):
    pytester.makeconftest("from perf.plugin import *  # noqa")
    pytester.makepyfile(test_bench="from perf.test_perf import test_perf_window, test_perf  # noqa")
    options = ["--perf-config=tiny", "--perf-device=cpu", "--perf-model=mlp,mlp-tanh", "--perf-pass=forward"]
    result = pytester.runpytest_subprocess(
        *options, "--perf-seconds=0.03", f"--perf-windows={windows}", "--benchmark-json=out.json", "-v"
    )
    assert result.ret == 0
    # Every window but the last is one pass over the cases, before their own tests take the last.
    ran = [line.split("::")[1].split(" ")[0] for line in result.outlines if line.startswith("test_bench.py::")]
    windows_ran = [f"test_perf_window[window-{i}-of-{windows}]" for i in range(1, windows)]
    assert ran == [*windows_ran, "test_perf[mlp/tiny/cpu/forward]", "test_perf[mlp-tanh/tiny/cpu/forward]"]
    for bench in json.loads((pytester.path / "out.json").read_text())["benchmarks"]:
        info, data = bench["extra_info"], bench["stats"]["data"]
        assert info["windows"] == windows and len(info["window_rounds"]) == windows
        assert sum(info["window_rounds"]) == len(data)
        # The rounds of every window, each paired with the probes and the reference timed before it.
        assert len(data) == bench["stats"]["rounds"]
        assert bench["stats"]["median"] == pytest.approx(statistics.median(data))
        assert len(info["probe_ratios"]) == len(info["small_probe_ratios"]) == len(data)
        if bench["param"].startswith("mlp-tanh"):
            assert len(info["reference_ratios"]) == len(data)
    # -k leaves the windows out with the cases: the case then takes all its rounds at once.
    result = pytester.runpytest(*options, "-k", "mlp-tanh", "--collect-only", "-q")
    assert [line for line in result.outlines if "::" in line] == ["test_bench.py::test_perf[mlp-tanh/tiny/cpu/forward]"]


def test_no_reference_is_a_choice_and_a_window_takes_its_share():
    from types import SimpleNamespace

    from perf.plugin import Selection

    options = dict(perf_config=None, perf_device="cpu", perf_model=None, perf_dtype="float32")
    options.update(perf_mode="eager", perf_pass=None, perf_fit="none", perf_accuracy="none", perf_physics="none")
    options.update(perf_threads=1, perf_seconds=0.5, perf_windows=4)
    for given, reference in (("mlp", "mlp"), ("none", None)):
        config = SimpleNamespace(getoption={**options, "perf_reference": given}.__getitem__)
        assert Selection(config, check_cuda=False).reference == reference
    # A windowed case's stretch is a window's share of the time budget and of the 1000-round cap.
    selection = Selection(SimpleNamespace(getoption={**options, "perf_reference": "mlp"}.__getitem__), False)
    assert selection.budget(windowed=True) == (0.125, 250) and selection.budget(windowed=False) == (0.5, 1000)


def test_skip_summary_counts_each_reason_once():
    from types import SimpleNamespace

    from perf.plugin import skip_summary

    def rep(case, reason):
        return SimpleNamespace(
            nodeid=f"perf/test_perf.py::test_perf[{case}]", longrepr=("f.py", 1, f"Skipped: {reason}")
        )

    reports = [rep(f"mlp/tiny/cuda/{p}", "CUDA is not available on this machine") for p in ("forward", "backward")]
    reports += [rep("pykan/tiny/cpu/forward", "pykan: import failed (No module named 'yaml'); `pip install pykan`")] * 3
    lines = skip_summary(reports)
    assert lines == [
        "3 pykan cases skipped: pykan: import failed (No module named 'yaml'); `pip install pykan`",
        "2 CUDA cases skipped: no GPU on this machine (torch sees no CUDA device)",
    ]
    long = skip_summary([rep("chebykan/tiny/cpu/forward", "x " * 100)])
    assert all(len(line) <= 120 for line in long) and long[1].startswith("    ")


def test_default_output_is_grouped_readable_and_ends_with_the_skip_summary(suite, monkeypatch):
    monkeypatch.delenv("CHEBYKAN_PATH", raising=False)
    result = suite.runpytest_subprocess("--perf-config=tiny", "--perf-model=mlp,chebykan", "--perf-seconds=0.01")
    assert result.ret == 0
    out = result.stdout.str()
    assert "why cases were skipped" in out
    if torch.cuda.is_available():
        result.assert_outcomes(passed=6, skipped=6)
        result.stdout.fnmatch_lines(["6 chebykan cases skipped: chebykan: import failed*"])
    else:  # without a GPU, a CUDA case skips and the summary says why
        result.assert_outcomes(passed=3, skipped=9)
        result.stdout.fnmatch_lines(
            ["6 chebykan cases skipped: chebykan: import failed*", "3 CUDA cases skipped: no GPU*"]
        )
    assert "benchmark 'tiny cpu forward'" in out and "benchmark 'tiny cpu backward'" in out
    assert out.index("why cases were skipped") > out.index("benchmark 'tiny cpu forward'")  # it ends the output
    table = [line for line in out.splitlines() if "[mlp/tiny/cpu/" in line]
    assert table and all(len(line) <= 120 for line in table)
    assert "StdDev" not in out and "Median" in out


@pytest.mark.skipif(not GLIBC, reason="mallopt and /proc/self/maps are glibc's and Linux's")
def test_pinned_malloc_serves_large_blocks_from_the_heap():
    # Without mmap_max 0, glibc maps a 40 MB block of its own unless the heap has a free chunk that large,
    # so a case's large tensors would take fresh pages or reused ones depending on what ran before it.
    assert pin_malloc() == MALLOC
    block = torch.empty(10 << 20)
    address = block.data_ptr()
    with open("/proc/self/maps") as f:
        heap = [line for line in f if line.rstrip().endswith("[heap]")]
    assert any(int(a, 16) <= address < int(b, 16) for a, b in (line.split()[0].split("-") for line in heap))


@pytest.mark.parametrize(
    "modes",
    ["eager", pytest.param("eager,compile", marks=pytest.mark.exhaustive)],  # each compiled case compiles: seconds
)
def test_grad2_and_compiled_cases_reach_the_leaderboard(suite, capsys, modes):
    ret, stdout = _run_once(suite, *EVERY_PASS, *([] if modes == "eager" else [f"--perf-mode={modes}"]))
    assert ret == 0
    path = suite.path / "new-folder" / "run.json"
    benches = {b["param"]: b["extra_info"] for b in json.loads(path.read_text())["benchmarks"]}
    assert {"fastkan-gaussian/tiny/cpu/grad2", "mlp/tiny/cpu/grad2"} <= set(benches)
    assert not any(c.endswith("grad2/compile") for c in benches)  # torch.compile has no double backward
    from perf.report import main

    assert main(["leaderboard", str(path)]) == 0
    out = capsys.readouterr().out
    assert "grad2 ms" in out
    if "compile" in modes:
        assert "compiled ms" in out and "warm-up s" in out and "tiny on cpu (float32, compile)" not in out
        assert "2 grad2/compile cases skipped" in stdout
