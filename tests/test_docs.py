"""README.md and docs/: every relative link resolves, every command the README shows parses its options."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    return [t for t in LINK.findall(text) if "://" not in t and not t.startswith(("#", "mailto:"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = [t for t in _links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_the_readme_fits_on_a_few_screens():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def commands() -> list[tuple[Path, list[str]]]:
    """Every ``pytest [perf] --perf-...`` and ``python -m perf.*`` line of the README's command blocks:
    (the folder it runs in, after any ``cd`` of its block; its words)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S):
        folder = ROOT
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("#")[0].split("&&"):
                words = shlex.split(part)
                if words[:1] == ["cd"]:
                    folder = folder / words[1]
                elif words[:1] == ["pytest"] or words[:2] == ["python", "-m"] and words[2].startswith("perf"):
                    out.append((folder, words))
    return out


@pytest.fixture
def pristine_registry():
    """The models, configurations and bases as they were: a command's hooks and models add to them."""
    from fastkan import BASES
    from perf.matrix.configs import CONFIGS
    from perf.matrix.models import models

    saved = [(d, dict(d)) for d in (BASES, CONFIGS, models())]
    yield
    for d, copy in saved:
        d.clear()
        d.update(copy)


class _Group:
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser

    def addoption(self, *names, **kwargs):
        self.parser.add_argument(*names, **kwargs)

    addini = addoption


class _Parser:
    """What the suite's and pytest-benchmark's pytest_addoption hooks ask of pytest's parser, on argparse."""

    def __init__(self):
        self.parser = argparse.ArgumentParser(exit_on_error=False)
        for name in ("-k", "-p", "-m"):
            self.parser.add_argument(name)
        self.parser.add_argument("-q", action="count")

    def getgroup(self, *args, **kwargs):
        return _Group(self.parser)

    def addini(self, *args, **kwargs):
        pass


def _pytest_perf(args: list[str], folder: Path = ROOT) -> None:
    """Parse a ``pytest perf`` command line as the suite would in ``folder`` (its conftest's hooks
    run, as pytest would run them), and check its --perf-* names."""
    import importlib.util

    import pytest_benchmark.plugin

    from perf import plugin
    from perf.matrix import models, user

    if folder != ROOT and (folder / "conftest.py").exists():
        spec = importlib.util.spec_from_file_location("_readme_conftest", folder / "conftest.py")
        conftest = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(conftest)
        for hook in ("pytest_perf_models", "pytest_perf_configs"):
            getattr(conftest, hook, lambda registry: None)(user.Registry())
        models.sync_bases()

    shim = _Parser()
    plugin.pytest_addoption(shim)
    pytest_benchmark.plugin.pytest_addoption(shim)
    ns = shim.parser.parse_args(args)
    config = type(
        "Config",
        (),
        {"getoption": lambda self, name: getattr(ns, name), "invocation_params": type("P", (), {"args": args})()},
    )()
    plugin.Selection(config, check_cuda=False)


def test_the_readme_shows_commands_and_each_one_parses(pristine_registry, monkeypatch):
    from perf import gate, noise, report

    found = commands()
    assert any(c[:2] == ["pytest", "perf"] for _, c in found) and any("perf.report" in c for _, c in found)
    assert any(folder != ROOT for folder, _ in found)  # the example's, in its own folder
    for folder, words in found:
        monkeypatch.chdir(folder)
        monkeypatch.syspath_prepend(str(folder))
        try:
            if words[0] == "pytest":
                # The test paths (perf, perf/test_physics.py) must exist; the rest are options.
                values = {i + 1 for i, w in enumerate(words) if w in ("-k", "-p", "-m")}  # flags' own values
                paths = [w for i, w in enumerate(words) if i and i not in values and not w.startswith("-")]
                assert all((folder / w).exists() for w in paths), paths
                _pytest_perf([w for i, w in enumerate(words) if i and (i in values or w.startswith("-"))], folder)
            else:
                module = {"perf.report": report, "perf.gate": gate, "perf.noise": noise}[words[2]]
                args = words[3:]
                if module is report:
                    args = report._legacy(args)
                module.parser().parse_args(args)
        except (SystemExit, argparse.ArgumentError, KeyError, pytest.UsageError) as e:
            pytest.fail(f"README command does not parse: {' '.join(words)} ({type(e).__name__}: {e})")


def test_a_wrong_command_is_caught():
    with pytest.raises((argparse.ArgumentError, pytest.UsageError)):
        _pytest_perf(["--perf-config=no-such-config"])
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        _pytest_perf(["--perf-no-such-option=1"])
