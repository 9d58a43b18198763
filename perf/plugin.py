"""pytest plugin of the benchmark suite: options, the case matrix, machine info, the regression exit code.

Loaded by ``perf/conftest.py``; tests load it into ``pytester`` runs the same way.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from perf.matrix import user
from perf.matrix.accuracy import ACCURACY_SETTINGS, AccuracyCase
from perf.matrix.cases import Case
from perf.matrix.configs import CONFIGS, DEFAULT_PASSES, DEVICES, DTYPES, MODES, PASSES
from perf.matrix.fit import FIT_SETTINGS, TASKS, FitCase
from perf.matrix.models import models, sync_bases
from perf.matrix.physics import PDES, PHYSICS_SETTINGS, PhysicsCase

REGRESSION_EXIT_CODE = 3


def pytest_addhooks(pluginmanager):
    from perf import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser):
    group = parser.getgroup("fastkan perf")
    group.addoption(
        "--perf-config",
        default=None,
        help=f"comma-separated configurations, or 'all' (default: the default ones). Known: {', '.join(CONFIGS)}",
    )
    group.addoption("--perf-device", default="cpu,cuda", help="comma-separated devices among cpu, cuda")
    group.addoption("--perf-model", default=None, help="comma-separated models (default: all)")
    group.addoption("--perf-dtype", default="float32", help=f"comma-separated dtypes among {', '.join(DTYPES)}")
    group.addoption("--perf-mode", default="eager", help=f"comma-separated execution modes among {', '.join(MODES)}")
    group.addoption(
        "--perf-pass",
        default=None,
        help=f"comma-separated passes among {', '.join(PASSES)} (default: {', '.join(DEFAULT_PASSES)})",
    )
    group.addoption("--perf-threads", default=1, type=int, help="torch CPU threads (default 1: steadiest timings)")
    group.addoption(
        "--perf-reference",
        default="mlp",
        metavar="MODEL",
        help="time MODEL's run of the same case before every round, for noise-proof ratios "
        "(default mlp; none: no reference)",
    )
    group.addoption(
        "--perf-fit",
        default="brief",
        help=f"fit-quality cases: {', '.join(FIT_SETTINGS)} or none (default brief)",
    )
    group.addoption(
        "--perf-accuracy",
        default="quick",
        help=f"accuracy-per-second cases (perf/matrix/accuracy.py): {', '.join(ACCURACY_SETTINGS)} or none "
        "(default quick)",
    )
    group.addoption(
        "--perf-physics",
        default="quick",
        help=f"physics-informed PDE cases (perf/matrix/physics.py): {', '.join(PHYSICS_SETTINGS)} or none "
        "(default quick)",
    )
    group.addoption(
        "--perf-seconds", default=0.5, type=float, help="time budget of each case's timed rounds (default 0.5 s)"
    )
    group.addoption(
        "--perf-windows",
        default=4,
        type=int,
        help="time each eager case in this many windows spread over the run, so that its rounds see the "
        "machine as the whole run does (default 4; 1: all in one; docs/suite.md)",
    )


def _choose(config, option: str, known, default=None) -> list[str]:
    raw = config.getoption(option)
    if raw is None:
        return list(default if default is not None else known)
    if raw.strip() == "all":
        return list(known)
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise pytest.UsageError(
            f"unknown --{option.replace('_', '-')} value {', '.join(unknown) or repr(raw)}; valid: {', '.join(known)}"
        )
    return names


class _Options:
    """``config.getoption`` with the user's models and ad-hoc configurations resolved to names."""

    def __init__(self, config):
        self.config = config
        self.values = {}
        try:
            raw = config.getoption("perf_model")
            if raw is not None and raw.strip() != "all":
                self.values["perf_model"] = ",".join(
                    user.from_spec(n).name if ":" in n else n for n in (s.strip() for s in raw.split(",")) if n
                )
            raw = config.getoption("perf_config")
            if raw is not None and raw.strip() != "all":
                self.values["perf_config"] = ",".join(user.configs_from_option(raw))
        except user.UserError as e:
            raise pytest.UsageError(str(e)) from None

    def getoption(self, name):
        return self.values[name] if name in self.values else self.config.getoption(name)


class Selection:
    """What the options ask for, checked once per session."""

    def __init__(self, config, check_cuda: bool = True):
        config = _Options(config)
        self.configs = _choose(config, "perf_config", CONFIGS, [n for n, c in CONFIGS.items() if c.default])
        self.devices = _choose(config, "perf_device", DEVICES)
        self.models = _choose(config, "perf_model", models())
        self.dtypes = _choose(config, "perf_dtype", DTYPES)
        self.modes = _choose(config, "perf_mode", MODES)
        self.passes = _choose(config, "perf_pass", PASSES, DEFAULT_PASSES)
        self.reference = config.getoption("perf_reference")
        if self.reference == "none":
            self.reference = None
        if self.reference is not None and self.reference not in models():
            raise pytest.UsageError(f"unknown --perf-reference value {self.reference}; valid: {', '.join(models())}")
        self.fit = config.getoption("perf_fit")
        if self.fit not in (*FIT_SETTINGS, "none"):
            raise pytest.UsageError(f"unknown --perf-fit value {self.fit}; valid: {', '.join(FIT_SETTINGS)}, none")
        self.accuracy = config.getoption("perf_accuracy")
        if self.accuracy not in (*ACCURACY_SETTINGS, "none"):
            raise pytest.UsageError(
                f"unknown --perf-accuracy value {self.accuracy}; valid: {', '.join(ACCURACY_SETTINGS)}, none"
            )
        self.physics = config.getoption("perf_physics")
        if self.physics not in (*PHYSICS_SETTINGS, "none"):
            raise pytest.UsageError(
                f"unknown --perf-physics value {self.physics}; valid: {', '.join(PHYSICS_SETTINGS)}, none"
            )
        self.models_given = config.getoption("perf_model") is not None
        self.threads = config.getoption("perf_threads")
        self.seconds = config.getoption("perf_seconds")
        self.windows = config.getoption("perf_windows")
        self.selected: set[str] | None = None  # the ids of the cases whose tests run (after -k and -m)
        if self.windows < 1:
            raise pytest.UsageError(f"--perf-windows must be at least 1, got {self.windows}")
        if self.threads < 1:
            raise pytest.UsageError(f"--perf-threads must be at least 1, got {self.threads}")
        if not self.seconds > 0:
            raise pytest.UsageError(f"--perf-seconds must be positive, got {self.seconds}")
        explicit_cuda = config.getoption("perf_device") == "cuda"
        if check_cuda and explicit_cuda and not torch.cuda.is_available():
            raise pytest.UsageError("--perf-device=cuda: CUDA is not available on this machine (torch sees no GPU)")

    def cases(self) -> list[Case]:
        table = models()
        out = []
        for config in self.configs:
            for model in self.models:
                if table[model].small_only and not CONFIGS[config].small:
                    continue
                for device in self.devices:
                    for dtype in self.dtypes:
                        for mode in self.modes:
                            out.extend(Case(model, config, device, p, dtype, mode) for p in self.passes)
        return out

    def budget(self, windowed: bool) -> tuple[float, int]:
        """(seconds, most rounds) of one stretch of a case's timing: a window's share where the case is
        timed in windows, else the whole ``--perf-seconds`` and 1000 rounds."""
        share = self.windows if windowed else 1
        return self.seconds / share, 1000 // share

    def windowed_cases(self) -> list[Case]:
        """The cases timed in windows spread over the run: eager ones that can run here. A compiled case
        would pay its compilation in every window; it takes all its rounds at once."""
        table = models()
        return [
            c
            for c in self.cases()
            if c.mode == "eager"
            and not table[c.model].missing
            and (c.device != "cuda" or torch.cuda.is_available())
            and (self.selected is None or c.id in self.selected)
        ]

    def fit_cases(self) -> list[FitCase]:
        """Fit quality is measured on the CPU, in float32 eager mode, for the models that have it."""
        if self.fit == "none" or "cpu" not in self.devices:
            return []
        table = models()
        # The far slower models (pykan) train only in the full setting: the default job stays short.
        return [
            FitCase(m, t)
            for m in self.models
            if table[m].fit and (not table[m].small_only or self.fit == "full")
            for t in TASKS
        ]

    def accuracy_cases(self) -> list[AccuracyCase]:
        """Accuracy per second, on the CPU in float32 eager mode: the setting's models (those of
        --perf-model, if given)."""
        if self.accuracy == "none" or "cpu" not in self.devices:
            return []
        s = ACCURACY_SETTINGS[self.accuracy]
        chosen = [m for m in s.models if not self.models_given or m in self.models]
        chosen += [m for m in self.models if models()[m].group == "user" and models()[m].fit and m not in chosen]
        return [AccuracyCase(m, t, w) for w in s.widths for t in s.tasks for m in chosen]

    def physics_cases(self) -> list[PhysicsCase]:
        """PDE cases, on the CPU in float32 eager mode: the setting's models (those of --perf-model, if given)."""
        if self.physics == "none" or "cpu" not in self.devices:
            return []
        s = PHYSICS_SETTINGS[self.physics]
        chosen = [m for m in s.models if not self.models_given or m in self.models]
        chosen += [m for m in self.models if models()[m].group == "user" and m not in chosen]
        return [PhysicsCase(m, t) for t in PDES for m in chosen]

    def device_kind(self) -> str:
        """Names the hardware the run's histories belong to; CPU and each GPU kind get their own folder."""
        kinds = []
        if "cpu" in self.devices:
            kinds.append("cpu")
        if "cuda" in self.devices and torch.cuda.is_available():
            kinds.append("cuda-" + re.sub(r"[^A-Za-z0-9]+", "_", torch.cuda.get_device_name()).strip("_"))
        return "+".join(kinds) or "none"


# PyTorch's transparent huge pages for CPU allocations of 2 MiB and more; fastkan's compiled kernels.
TIMING_ENVIRONMENT = ("THP_MEM_ALLOC_ENABLE", "FASTKAN_COMPILE")


# glibc's mallopt settings for the timed process (see pin_malloc), recorded in each run's machine_info.
MALLOC = {"mmap_threshold": 32 << 20, "trim_threshold": 1 << 30, "mmap_max": 0}


def pin_malloc() -> dict:
    """Fix glibc's malloc thresholds (Linux): the settings applied (``MALLOC``), {} if not done.

    glibc raises its mmap threshold as large blocks are freed, so the same
    case flips between two speeds (fresh pages, or reused heap) depending
    on what ran before it. Blocks of 32 MiB and more (its largest threshold)
    flip too: they come from the heap where earlier tensors left a free
    chunk that large, else from fresh pages (kanbench-10m's 36 MB weight
    gradient: plain-fastkan's backward took 62.8 ms in a run of that
    configuration alone, 47.5 to 50.7 ms after eleven others). So every
    block comes from the heap (no mmap) and freed ones stay there (trim
    threshold 1 GiB): from the second round on a case reuses touched
    memory, as a long training run does.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return {}
    try:
        libc = ctypes.CDLL(name)
        option = {"trim_threshold": -1, "mmap_threshold": -3, "mmap_max": -4}  # M_* of malloc.h
        applied = [libc.mallopt(option[k], v) for k, v in MALLOC.items()]  # each one, even after a refusal
    except (OSError, AttributeError):
        return {}
    return dict(MALLOC) if all(applied) else {}


def _given(config, option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in config.invocation_params.args)


def readable_defaults(config) -> None:
    """pytest-benchmark's display and saving defaults for this suite, where the command line sets none.

    One table per configuration, device and pass (each case sets its group),
    a few columns so a table fits 120 characters, each table in its own time
    unit (fit cases in seconds), and every round's time kept in saved runs
    (--benchmark-save-data), which the comparisons' intervals need.
    """
    option = config.option
    if getattr(option, "benchmark_columns", "absent") is None:
        option.benchmark_columns = ["median", "iqr", "rounds"]
    if not _given(config, "--benchmark-name"):
        option.benchmark_name = "short"
    if getattr(option, "benchmark_time_unit", "absent") is None:
        option.benchmark_time_unit = "auto"
    if hasattr(option, "benchmark_save_data"):
        option.benchmark_save_data = True


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    readable_defaults(config)
    # A project's own models, bases and configurations (perf/hooks.py), before the options name them.
    registry = user.Registry()
    try:
        config.hook.pytest_perf_models(registry=registry)
        config.hook.pytest_perf_configs(registry=registry)
    except user.UserError as e:
        raise pytest.UsageError(str(e)) from None
    sync_bases()
    selection = config._perf_selection = Selection(config)
    torch.set_num_threads(selection.threads)
    config._perf_malloc = pin_malloc()
    config._perf_windows = {}  # filled by perf/test_perf.py's windows, read by each case's test
    # Before pytest-benchmark opens its storage: one folder per device kind,
    # so CPU histories and those of each GPU kind never mix.
    report = getattr(config.option, "benchmark_json", None)
    if report is not None:  # CI writes into a fresh folder
        Path(report).parent.mkdir(parents=True, exist_ok=True)
    storage = getattr(config.option, "benchmark_storage", None)
    if storage and ("://" not in storage or storage.startswith("file://")):
        config.option.benchmark_storage = f"{storage.rstrip('/')}/{selection.device_kind()}"


def _param(case, missing: str | None, cuda: bool):
    marks = []
    if missing:
        marks.append(pytest.mark.skip(reason=missing))
    elif cuda and not torch.cuda.is_available():
        marks.append(pytest.mark.skip(reason="CUDA is not available on this machine"))
    elif getattr(case, "pass_", None) == "grad2" and case.mode == "compile":
        marks.append(pytest.mark.skip(reason=COMPILED_GRAD2))
    return pytest.param(case, id=case.id, marks=marks)


# torch 2.13's own limit, for every model alike.
COMPILED_GRAD2 = "torch.compile (aot_autograd) does not support double backward: no grad2 in compile mode"


def pytest_generate_tests(metafunc):
    table = models()
    selection = metafunc.config._perf_selection
    if "perf_case" in metafunc.fixturenames:
        metafunc.parametrize(
            "perf_case",
            [_param(c, table[c.model].missing, c.device == "cuda") for c in selection.cases()],
        )
    if "perf_window" in metafunc.fixturenames:
        # Every window but the last, which each case's own test takes (perf/test_perf.py).
        k = selection.windows
        metafunc.parametrize("perf_window", range(k - 1), ids=[f"window-{i + 1}-of-{k}" for i in range(k - 1)])
    if "fit_case" in metafunc.fixturenames:
        metafunc.parametrize("fit_case", [_param(c, table[c.model].missing, False) for c in selection.fit_cases()])
    if "accuracy_case" in metafunc.fixturenames:
        metafunc.parametrize(
            "accuracy_case", [_param(c, table[c.model].missing, False) for c in selection.accuracy_cases()]
        )
    if "physics_case" in metafunc.fixturenames:
        metafunc.parametrize(
            "physics_case", [_param(c, table[c.model].missing, False) for c in selection.physics_cases()]
        )


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected theirs
def pytest_collection_modifyitems(config, items):
    # An empty slice of the matrix (say --perf-fit=none) is deselected, not a skip.
    selection = getattr(config, "_perf_selection", None)
    if selection is None:
        return
    # Windows time only the cases whose own tests are still selected.
    selection.selected = {
        item.callspec.params["perf_case"].id
        for item in items
        if hasattr(item, "callspec") and "perf_case" in item.callspec.params
    }
    empty = {
        name
        for name, cases in (
            ("perf_case", selection.cases()),
            ("perf_window", selection.windowed_cases() if _timing(config) and selection.windows > 1 else []),
            ("fit_case", selection.fit_cases()),
            ("accuracy_case", selection.accuracy_cases()),
            ("physics_case", selection.physics_cases()),
        )
        if not cases
    }
    drop = [item for item in items if empty & set(getattr(item, "fixturenames", ()))]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if item not in drop]


@pytest.fixture
def perf_threads(request) -> int:
    return request.config._perf_selection.threads


@pytest.fixture
def perf_reference(request) -> str | None:
    return request.config._perf_selection.reference


@pytest.fixture
def perf_fit(request) -> str:
    return request.config._perf_selection.fit


@pytest.fixture
def perf_accuracy(request) -> str:
    return request.config._perf_selection.accuracy


@pytest.fixture
def perf_physics(request) -> str:
    return request.config._perf_selection.physics


def _timing(config) -> bool:
    """Whether this run times anything: not with --benchmark-disable or --benchmark-skip."""
    option = config.option
    return not (getattr(option, "benchmark_disable", False) or getattr(option, "benchmark_skip", False))


@pytest.fixture
def perf_windows(request) -> dict:
    """The windows timed so far this run, by case id: a list per case of dicts holding each window's round
    times and what was timed before each round (perf/test_perf.py)."""
    return request.config._perf_windows


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    # The vector instructions torch's CPU kernels dispatch to (AVX2, AVX512, ...): two virtual machines of
    # one name and CPU brand can differ here, and so do their timings (docs/results/goals-avx2.md).
    machine_info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    machine_info["cuda_device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    malloc = getattr(config, "_perf_malloc", {})
    machine_info["malloc_pinned"] = bool(malloc)
    machine_info["malloc"] = malloc  # runs saved before this key pinned no mmap_max: their large blocks differ
    # Settings read from the environment that change the timings of every model (docs/results/huge-pages.md).
    machine_info["timing_environment"] = {k: os.environ[k] for k in TIMING_ENVIRONMENT if k in os.environ}
    selection = getattr(config, "_perf_selection", None)
    if selection is not None:
        machine_info["perf_device_kind"] = selection.device_kind()
        # Peers that were asked for and could not run: the leaderboard names them.
        table = models()
        machine_info["perf_missing_models"] = {m: table[m].missing for m in selection.models if table[m].missing}


def skip_summary(reports) -> list[str]:
    """One line per reason a case was skipped, with a count: '96 CUDA cases skipped: no GPU'."""
    counts: dict[tuple[str, str], int] = {}
    for rep in reports:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        reason = reason.removeprefix("Skipped: ")
        case = rep.nodeid.rsplit("[", 1)[-1].rstrip("]")
        if "CUDA is not available" in reason:
            key = ("CUDA", "no GPU on this machine (torch sees no CUDA device)")
        elif reason == COMPILED_GRAD2:
            key = ("grad2/compile", reason)
        else:
            key = (case.split("/", 1)[0], reason)
        counts[key] = counts.get(key, 0) + 1
    lines = []
    for (who, reason), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        head = f"{n} {who} case{'s' if n > 1 else ''} skipped: "
        lines += textwrap.wrap(head + reason, 120, subsequent_indent="    ", break_on_hyphens=False)
    return lines


@pytest.hookimpl(tryfirst=True)
def pytest_benchmark_scale_unit(config, unit, benchmarks, best, worst, sort):
    """Fit cases time a whole training: their tables read in seconds; None leaves the others to pytest-benchmark."""
    fits = benchmarks and all((b.get("group") or "").startswith(("fit-", "acc-", "pde-")) for b in benchmarks)
    no_unit_given = config is None or config.getoption("benchmark_time_unit", None) in (None, "auto")
    return ("", 1.0) if unit == "seconds" and fits and no_unit_given else None


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(terminalreporter):
    # pytest-benchmark reports a regression by raising from this hook, which
    # pytest shows as an internal error with a traceback. Turn it into a
    # normal ending: the summary line, and exit code 3.
    from pytest_benchmark.session import PerformanceRegression

    try:
        result = yield
    except PerformanceRegression:
        result = None
        terminalreporter.write_line("fastkan perf: performance regressed (see above); exit code 3", red=True)
        terminalreporter._session.exitstatus = REGRESSION_EXIT_CODE
    # Last, after pytest-benchmark's tables: why cases did not run.
    lines = skip_summary(terminalreporter.stats.get("skipped", []))
    if lines:
        terminalreporter.section("why cases were skipped", sep="-")
        for line in lines:
            terminalreporter.write_line(line)
    return result
