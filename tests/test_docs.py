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


def commands() -> list[list[str]]:
    """Every ``pytest perf`` and ``python -m perf.*`` line of the README's command blocks, as arguments."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("#")[0].split("&&"):
                words = shlex.split(part)
                if words[:2] == ["pytest", "perf"] or words[:2] == ["python", "-m"] and words[2].startswith("perf"):
                    out.append(words)
    return out


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


def _pytest_perf(args: list[str]) -> None:
    """Parse a ``pytest perf`` command line as the suite would, and check its --perf-* names."""
    import pytest_benchmark.plugin

    from perf import plugin

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


def test_the_readme_shows_commands_and_each_one_parses():
    from perf import gate, noise, report

    found = commands()
    assert any(c[:2] == ["pytest", "perf"] for c in found) and any("perf.report" in c for c in found)
    for words in found:
        try:
            if words[0] == "pytest":
                _pytest_perf(words[2:])
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
