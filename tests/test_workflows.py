"""The CI workflows: schema, security audit, and the promises the README makes about them."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def tool(name):
    """A command from PATH or from this interpreter's environment."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def text(name):
    return (ROOT / ".github" / "workflows" / name).read_text()


def test_workflows_exist():
    assert {p.name for p in WORKFLOWS} == {"tests.yml", "perf-cpu.yml", "perf-gpu.yml"}


@pytest.mark.skipif(tool("check-jsonschema") is None, reason="check-jsonschema is not installed (ci extra)")
def test_workflows_match_the_github_schema():
    proc = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(tool("zizmor") is None, reason="zizmor is not installed (ci extra)")
def test_workflows_pass_zizmor():
    proc = subprocess.run(
        [tool("zizmor"), "--offline", str(ROOT / ".github" / "workflows")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_action_is_pinned_to_a_commit():
    import re

    for path in WORKFLOWS:
        for ref in re.findall(r"uses:\s*(\S+)", path.read_text()):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{path.name}: {ref}"


def test_gpu_job_guards():
    gpu = text("perf-gpu.yml")
    assert "runs-on: [self-hosted, linux, x64, gpu]" in gpu
    assert "github.event.pull_request.head.repo.full_name == github.repository" in gpu
    assert "group: perf-gpu-runner" in gpu and "cancel-in-progress: false" in gpu
    assert "steps.gpu.outputs.kind" in gpu  # one baseline per GPU kind


def test_baselines_update_only_from_main():
    main_push = "if: github.event_name == 'push' && github.ref == 'refs/heads/main'"
    for name in ("perf-cpu.yml", "perf-gpu.yml"):
        steps = text(name).split("\n      - ")
        writers = [s for s in steps if "actions/cache/save" in s or "new baseline" in s]
        assert len(writers) == 2, name
        assert all(main_push in s for s in writers), name


def test_minimal_permissions_and_tox_everywhere():
    for path in WORKFLOWS:
        wf = path.read_text()
        assert "permissions:\n  contents: read\n" in wf, path.name
        assert "write" not in wf.split("jobs:")[0], path.name
        assert "tox -e" in wf, path.name
