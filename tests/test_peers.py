"""The peers' adapters: real import errors as hints, checkout loading that shadows nothing, the correctness column."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import fastkan
from perf.matrix import peers
from perf.matrix.peers import PEERS, PeerUnavailable
from perf.measure.gradcheck import TOLERANCE, check_model, gradient_error, verdict


@pytest.fixture
def fresh_peers(monkeypatch):
    """Peers imported anew, and whatever they register removed afterwards."""
    # Checkouts loaded by earlier tests (FAST_KAN_PATH and kin set) would be found in sys.modules.
    for name in [n for n in sys.modules if n.startswith(("_peer_", "fasterkan"))]:
        monkeypatch.delitem(sys.modules, name)
    before = set(sys.modules)
    peers._module.cache_clear()
    yield
    peers._module.cache_clear()
    for name in set(sys.modules) - before:
        if name.startswith(("_peer_", "fasterkan")):
            del sys.modules[name]


def test_every_peer_of_the_field_is_there():
    assert set(PEERS) == {"efficient-kan", "fast-kan", "faster-kan", "pykan", "flashkan", "inkan", "chebykan"}
    for peer in PEERS.values():
        assert "pip install" in peer.install or "git clone" in peer.install


def test_a_failing_import_shows_the_real_error_and_the_hint(fresh_peers, monkeypatch):
    monkeypatch.setitem(sys.modules, "kan", None)  # None makes `import kan` fail
    why = PEERS["pykan"].missing()
    assert why.startswith("pykan: import failed (ModuleNotFoundError") and "pip install pykan pyyaml pandas" in why
    with pytest.raises(PeerUnavailable, match="import failed"):
        PEERS["pykan"].model([2, 3, 1])


def test_checkout_peers_name_their_variable(fresh_peers, monkeypatch):
    monkeypatch.delenv("FAST_KAN_PATH", raising=False)
    assert "FAST_KAN_PATH is not set" in PEERS["fast-kan"].missing()
    monkeypatch.setenv("CHEBYKAN_PATH", "/nonexistent")
    assert "no ChebyKANLayer.py there" in PEERS["chebykan"].missing()


FAKE_FASTKAN = """
import torch
class FastKAN(torch.nn.Module):
    def __init__(self, layers, num_grids=8):
        super().__init__()
        self.lin = torch.nn.Linear(layers[0], layers[-1])
        self.num_grids = num_grids
    def forward(self, x):
        return self.lin(x)
"""


def test_checkout_peers_load_without_shadowing_ours_or_efficient_kan(fresh_peers, monkeypatch, tmp_path):
    fast = tmp_path / "fast-kan"
    (fast / "fastkan").mkdir(parents=True)
    (fast / "fastkan" / "__init__.py").write_text("raise ImportError('the wrong fastkan was imported')")
    (fast / "fastkan" / "fastkan.py").write_text(FAKE_FASTKAN)
    faster = tmp_path / "faster-kan"
    for folder in ("fasterkan", "fastkan", "efficient_kan"):
        (faster / folder).mkdir(parents=True)
        (faster / folder / "__init__.py").write_text(
            "raise ImportError('shadowed')" if folder != "fasterkan" else "from fasterkan.layers import FasterKAN\n"
        )
    (faster / "fasterkan" / "layers.py").write_text(FAKE_FASTKAN.replace("FastKAN", "FasterKAN"))
    monkeypatch.setenv("FAST_KAN_PATH", str(fast))
    monkeypatch.setenv("FASTER_KAN_PATH", str(faster))
    efficient_before = sys.modules.get("efficient_kan")
    a = PEERS["fast-kan"].model([3, 4, 2], 6)
    b = PEERS["faster-kan"].model([3, 4, 2], 6)
    assert a.num_grids == 6 and b(torch.randn(5, 3)).shape == (5, 2)
    assert sys.modules["fastkan"] is fastkan and fastkan.FastKAN.__module__ == "fastkan.layer"
    assert sys.modules.get("efficient_kan") is efficient_before
    assert str(fast) not in sys.path and str(faster) not in sys.path


def test_peers_refuse_too_few_basis_functions():
    with pytest.raises(ValueError, match="at least 4 basis functions"):
        PEERS["flashkan"].model([2, 3, 1], 3)


def test_pykan_moves_without_a_dtype_argument():
    calls = []

    class OneArgTo(nn.Module):
        def to(self, device):  # MultKAN's signature
            calls.append(device)
            return self

    assert PEERS["pykan"].move(OneArgTo(), torch.device("cpu"), torch.float32) is not None and calls
    with pytest.raises(ValueError, match="float32 only"):
        PEERS["pykan"].move(OneArgTo(), torch.device("cpu"), torch.bfloat16)


class _Halved(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 1.0

    @staticmethod
    def backward(ctx, g):
        return 0.5 * g  # faster-kan's kind of mistake


class _WrongModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(torch.tanh(_Halved.apply(x)))


def test_a_planted_half_gradient_is_flagged():
    torch.manual_seed(0)
    model = _WrongModel().double()
    err, where = gradient_error(model, torch.randn(4, 3, dtype=torch.float64))
    assert where == "input" and 0.4 < err < 0.6
    assert verdict(err).startswith("WRONG (max rel err 0.5")
    good = nn.Sequential(nn.Linear(3, 2), nn.Tanh()).double()
    assert gradient_error(good, torch.randn(4, 3, dtype=torch.float64))[0] < TOLERANCE


@pytest.mark.parametrize(
    "model",
    [
        "fastkan-gaussian",
        "fastkan-rswaf",
        "fastkan-bspline",
        "fastkan-hat",
        "lean-fastkan",
        "plain-fastkan",
        "bspline",
        "mlp",
    ],
)
def test_our_models_pass_the_correctness_column(model):
    info = check_model(model)
    assert info["grad_ok"] is True and info["grad_rel_err"] < TOLERANCE, info


def test_each_install_hint_of_a_pypi_peer_is_the_peers_extra():
    # Following a hint must leave the peer importable: pykan 0.2.8 also needs pyyaml, pandas and tqdm.
    tomllib = pytest.importorskip("tomllib")
    extra = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    extra = extra["project"]["optional-dependencies"]["peers"]
    assert {r for p in PEERS.values() for r in p.requires} == set(extra)
    for p in PEERS.values():
        if p.requires:
            assert f"`pip install {' '.join(p.requires)}`" in p.install


def test_checkpoints_load_both_ways_with_fast_kan():
    # A drop-in both ways: fast-kan's state_dict loads into ours, ours into fast-kan's, unchanged.
    if PEERS["fast-kan"].missing():
        pytest.skip(PEERS["fast-kan"].missing())
    theirs = PEERS["fast-kan"].model([5, 7, 3], 8)
    ours = fastkan.FastKAN([5, 7, 3])
    x = torch.randn(4, 5)
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(theirs(x), ours(x), rtol=1e-5, atol=1e-6)
    again = fastkan.FastKAN([5, 7, 3])
    again.load_state_dict(theirs.state_dict())
    torch.testing.assert_close(again(x), ours(x), rtol=1e-5, atol=1e-6)
