"""A researcher's own KAN in the matrix, from a project outside this repository: examples/my-kan."""

import json
import shutil
from pathlib import Path

import pytest

from perf.matrix import user
from perf.matrix.configs import CONFIGS

pytest_plugins = ["pytester"]
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my-kan"


@pytest.fixture
def project(pytester):
    """The example copied into pytester's folder, outside the repository, as a user's own project."""
    for f in EXAMPLE.iterdir():
        if f.is_file():
            shutil.copy(f, pytester.path / f.name)
    (pytester.path / "configs.toml").write_text("[from-toml]\nlayers = [6, 12, 1]\nbatch = 16\ngrid = 5\n")
    (pytester.path / "broken.py").write_text(
        "def only_small(shape):\n"
        "    if shape.layers[0] > 8:\n"
        "        raise ValueError(f'too wide: {shape.layers[0]} inputs')\n"
        "    from my_kan import ChebyKAN\n"
        "    return ChebyKAN(shape.layers, shape.num_basis)\n"
    )
    return pytester


def test_the_three_ways_in_from_a_project_outside_the_repository(project, capsys):
    result = project.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--perf-config=two-layer,layers=12x8x1,batch=16,name=adhoc,configs.toml",
        "--perf-model=cheby-kan,fastkan-cauchy,mlp,wrong=my_kan:WrongGradientKAN,broken.py:only_small",
        "--perf-device=cpu",
        "--perf-fit=smoke",
        "--perf-accuracy=none",
        "--perf-seconds=0.01",
        "--benchmark-json=run.json",
    )
    assert result.ret == 0, result.stdout.str()[-3000:]
    data = json.loads((project.path / "run.json").read_text())
    cases = {b["param"]: b["extra_info"] for b in data["benchmarks"]}
    configs = {info["config"] for info in cases.values()}
    assert {"two-layer", "adhoc", "from-toml"} <= configs  # the hook's, the command line's, the TOML file's
    speed = {c for c in cases if c.endswith("/forward")}
    # the hook's model, the hook's basis, the command line's model by alias and by its path
    for model in ("cheby-kan", "fastkan-cauchy", "wrong"):
        assert f"{model}/two-layer/cpu/forward" in speed
    assert "broken:only_small/from-toml/cpu/forward" in speed
    assert cases["cheby-kan/two-layer/cpu/forward"]["group"] == "user"
    assert cases["cheby-kan/two-layer/cpu/forward"]["grad_ok"] is True
    assert cases["wrong/two-layer/cpu/forward"]["grad_ok"] is False
    assert "cheby-kan/fit-seed/cpu/fit" in cases and "wrong/fit-seed/cpu/fit" in cases
    # A model that cannot run a configuration is a skip with its real error, never a failure.
    assert "broken:only_small/adhoc/cpu/forward" not in cases
    assert "too wide: 12 inputs" in result.stdout.str() and "too wide: 16 inputs" in result.stdout.str()
    from perf.report import main

    assert main(["leaderboard", str(project.path / "run.json"), "--configs", "two-layer"]) == 0
    board = capsys.readouterr().out
    rows = {line.split()[0]: line for line in board.splitlines() if line and line.split()[0] in ("cheby-kan", "wrong")}
    assert rows["cheby-kan"].split()[-2:] != ["WRONG"] and " ok " in rows["cheby-kan"] + " "
    assert "WRONG (0.5)" in rows["wrong"]


def test_ad_hoc_configurations_are_checked_field_by_field():
    name = user.configs_from_option("mnist,layers=5x7x1,batch=3,grid=4")[1]
    assert name == "5x7x1-b3-g4" and CONFIGS[name].layers == (5, 7, 1) and CONFIGS[name].num_basis == 4
    for bad, field in [
        ("layers=5", "layers"),
        ("layers=5x0x1", "layers"),
        ("layers=5x7,batch=-2", "batch"),
        ("layers=5x7,grid=1", "grid"),
        ("layers=5x7,grid_min=3,grid_max=1", "grid_min"),
        ("layers=5x7,name=a/b", "name"),
        ("batch=3", "layers"),
        ("layers=5x7,colour=red", "colour"),
    ]:
        with pytest.raises(user.UserError, match=field):
            user.configs_from_option(bad)
    for name in [n for n in CONFIGS if n.startswith("5x7x1")]:
        del CONFIGS[name]


def test_a_model_spec_that_cannot_be_used_says_why(tmp_path):
    with pytest.raises(user.UserError, match="module.path:Name"):
        user.from_spec("no-colon")
    with pytest.raises(user.UserError, match="no such file"):
        user.from_spec(f"{tmp_path}/missing.py:X")
    (tmp_path / "m.py").write_text("class NotAModule:\n    pass\n")
    with pytest.raises(user.UserError, match="not a torch.nn.Module"):
        user.from_spec(f"{tmp_path}/m.py:NotAModule")
    with pytest.raises(user.UserError, match="AttributeError"):
        user.from_spec(f"{tmp_path}/m.py:Missing")
