"""pytest plugin of the benchmark suite: options, the case matrix, machine info, the regression exit code.

Loaded by ``perf/conftest.py``; tests load it into ``pytester`` runs the same way.
"""

from __future__ import annotations

import re

import pytest
import torch

from .cases import CONFIGS, DEVICES, DTYPES, MODES, PASSES, Case, models

REGRESSION_EXIT_CODE = 3


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
    group.addoption("--perf-threads", default=1, type=int, help="torch CPU threads (default 1: steadiest timings)")
    group.addoption(
        "--perf-seconds", default=0.5, type=float, help="time budget of each case's timed rounds (default 0.5 s)"
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


class Selection:
    """What the options ask for, checked once per session."""

    def __init__(self, config):
        self.configs = _choose(config, "perf_config", CONFIGS, [n for n, c in CONFIGS.items() if c.default])
        self.devices = _choose(config, "perf_device", DEVICES)
        self.models = _choose(config, "perf_model", models())
        self.dtypes = _choose(config, "perf_dtype", DTYPES)
        self.modes = _choose(config, "perf_mode", MODES)
        self.threads = config.getoption("perf_threads")
        self.seconds = config.getoption("perf_seconds")
        if self.threads < 1:
            raise pytest.UsageError(f"--perf-threads must be at least 1, got {self.threads}")
        if not self.seconds > 0:
            raise pytest.UsageError(f"--perf-seconds must be positive, got {self.seconds}")
        explicit_cuda = config.getoption("perf_device") == "cuda"
        if explicit_cuda and not torch.cuda.is_available():
            raise pytest.UsageError("--perf-device=cuda: CUDA is not available on this machine (torch sees no GPU)")

    def cases(self) -> list[Case]:
        table = models()
        out = []
        for config in self.configs:
            for model in self.models:
                if table[model].small_only and not CONFIGS[config].pykan:
                    continue
                for device in self.devices:
                    for dtype in self.dtypes:
                        for mode in self.modes:
                            out.extend(Case(model, config, device, p, dtype, mode) for p in PASSES)
        return out

    def device_kind(self) -> str:
        """Names the hardware the run's histories belong to; CPU and each GPU kind get their own folder."""
        kinds = []
        if "cpu" in self.devices:
            kinds.append("cpu")
        if "cuda" in self.devices and torch.cuda.is_available():
            kinds.append("cuda-" + re.sub(r"[^A-Za-z0-9]+", "_", torch.cuda.get_device_name()).strip("_"))
        return "+".join(kinds) or "none"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    selection = config._perf_selection = Selection(config)
    torch.set_num_threads(selection.threads)
    # Before pytest-benchmark opens its storage: one folder per device kind,
    # so CPU histories and those of each GPU kind never mix.
    storage = getattr(config.option, "benchmark_storage", None)
    if storage and ("://" not in storage or storage.startswith("file://")):
        config.option.benchmark_storage = f"{storage.rstrip('/')}/{selection.device_kind()}"


def pytest_generate_tests(metafunc):
    if "perf_case" not in metafunc.fixturenames:
        return
    table = models()
    params = []
    for case in metafunc.config._perf_selection.cases():
        marks = []
        missing = table[case.model].missing
        if missing:
            marks.append(pytest.mark.skip(reason=missing))
        elif case.device == "cuda" and not torch.cuda.is_available():
            marks.append(pytest.mark.skip(reason="CUDA is not available on this machine"))
        params.append(pytest.param(case, id=case.id, marks=marks))
    metafunc.parametrize("perf_case", params)


@pytest.fixture
def perf_threads(request) -> int:
    return request.config._perf_selection.threads


@pytest.fixture
def perf_seconds(request) -> float:
    return request.config._perf_selection.seconds


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["cuda_device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    selection = getattr(config, "_perf_selection", None)
    if selection is not None:
        machine_info["perf_device_kind"] = selection.device_kind()


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(terminalreporter):
    # pytest-benchmark reports a regression by raising from this hook, which
    # pytest shows as an internal error with a traceback. Turn it into a
    # normal ending: the summary line, and exit code 3.
    from pytest_benchmark.session import PerformanceRegression

    try:
        return (yield)
    except PerformanceRegression:
        terminalreporter.write_line("fastkan perf: performance regressed (see above); exit code 3", red=True)
        terminalreporter._session.exitstatus = REGRESSION_EXIT_CODE
