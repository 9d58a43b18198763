"""The benchmark matrix as data: configurations, models, passes, and one setup factory per case.

A case id reads like a sentence: ``model/config/device/pass``, with
``/dtype`` and ``/mode`` appended when they are not the defaults
(float32, eager), e.g. ``fastkan-gaussian/seed-300k/cpu/forward``.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from fastkan import BASES, BSplineKAN, FastKAN, MLP
from fastkan.mlp import matched_hidden
from fastkan.peers import PEERS


@dataclass(frozen=True)
class Config:
    """One row of the matrix: a batch of inputs and the layer sizes every model gets."""

    batch: int
    layers: tuple[int, ...]
    fastkan: dict = field(default_factory=dict)  # FastKAN options (grid, number of centres)
    mlp_hidden: int | None = None  # None: parameter-matched to this config's default FastKAN
    small: bool = False  # where the far slower models (pykan) run too
    default: bool = False  # part of the default run

    @property
    def num_basis(self) -> int:
        """Basis functions per edge, the same for every KAN: FastKAN's centres, B-splines' grid_size + 3."""
        return self.fastkan.get("num_grids", 8)


CONFIGS: dict[str, Config] = {
    "tiny": Config(batch=32, layers=(4, 16, 1), small=True, default=True),
    "mnist": Config(batch=64, layers=(784, 64, 10), default=True),
    # The seed's table: FastKAN [2, 10000, 1] on grid [-1.4, 1.4] x 8 against MLP [2, 75000, 1].
    "seed-300k": Config(
        batch=100,
        layers=(2, 10000, 1),
        fastkan={"grid_min": -1.4, "grid_max": 1.4, "num_grids": 8},
        mlp_hidden=75000,
    ),
    # KAN-benchmarking's own configuration: about 10M parameters per model.
    "kanbench-10m": Config(batch=100, layers=(1000, 1000, 1), fastkan={"num_grids": 9}, mlp_hidden=10000),
}
# Sweeps that show how cost grows with the number of centres and with the batch.
for _g in (4, 8, 16, 32, 64):
    CONFIGS[f"grid-{_g}"] = Config(batch=256, layers=(256, 256, 1), fastkan={"num_grids": _g})
for _b in (16, 256, 4096):
    CONFIGS[f"batch-{_b}"] = Config(batch=_b, layers=(256, 256, 1))

PASSES = ("forward", "backward", "train-step")
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "bfloat16", "float16")
MODES = ("eager", "compile")


def _fastkan(basis: str) -> Callable[[Config], nn.Module]:
    return lambda c: FastKAN(c.layers, basis=basis, **c.fastkan)


def _mlp(c: Config) -> nn.Module:
    hidden = c.mlp_hidden
    if hidden is None:
        n = sum(p.numel() for p in FastKAN(c.layers, **c.fastkan).parameters())
        hidden = matched_hidden(c.layers[0], c.layers[-1], n)
    return MLP([c.layers[0], hidden, c.layers[-1]])


def _bspline(c: Config) -> nn.Module:
    return BSplineKAN(c.layers, grid_size=c.num_basis - 3, spline_order=3)


@dataclass(frozen=True)
class Model:
    build: Callable[[Config], nn.Module]
    basis: str | None = None
    small_only: bool = False
    fit: bool = True  # has fit-quality cases (not when it computes the same function as another model)
    peer: str | None = None  # name in fastkan.peers.PEERS: another project's KAN

    @functools.cached_property
    def missing(self) -> str | None:
        """Why it cannot run here (a dependency that is not installed), or None.

        Asked on first use: importing every peer costs a run about 10 s (pykan, flashkan), which a
        run that selects none of them need not pay.
        """
        return PEERS[self.peer].missing() if self.peer else None

    def move(self, model: nn.Module, device, dtype) -> nn.Module:
        return PEERS[self.peer].move(model, device, dtype) if self.peer else model.to(device, dtype)


def _peer(name: str) -> Model:
    peer = PEERS[name]
    basis = {"fast-kan": "gaussian", "faster-kan": "rswaf", "chebykan": None}.get(name, "bspline")
    return Model(lambda c: peer.model(c.layers, c.num_basis), basis=basis, small_only=peer.small_only, peer=name)


@functools.lru_cache(maxsize=None)
def models() -> dict[str, Model]:
    """Every model of the matrix: one ``fastkan-<basis>`` per registered basis, our references, the peers."""
    table = {f"fastkan-{b}": Model(_fastkan(b), basis=b) for b in BASES}
    # fast-kan's own algorithm: the same model without the fused spline path.
    table["plain-fastkan"] = Model(lambda c: FastKAN(c.layers, fused=False, **c.fastkan), basis="gaussian", fit=False)
    # LayerNorm without scale and shift: no input gradient in the first layer.
    table["lean-fastkan"] = Model(lambda c: FastKAN(c.layers, layernorm_affine=False, **c.fastkan), basis="gaussian")
    # No LayerNorm at all: like for like with the peers that normalise nothing (inkan, flashkan, the
    # B-spline KANs). A speed reference, so not in the fit tasks: without LayerNorm nothing keeps a
    # hidden layer's outputs on the next layer's grid.
    table["bare-fastkan"] = Model(lambda c: FastKAN(c.layers, use_layernorm=False, **c.fastkan), basis="gaussian",
                                  fit=False)
    table["bspline"] = Model(_bspline, basis="bspline")
    table["mlp"] = Model(_mlp)
    table.update((name, _peer(name)) for name in PEERS)
    return table


def is_peer(model: str) -> bool:
    return models()[model].peer is not None


@dataclass(frozen=True)
class Case:
    model: str
    config: str
    device: str
    pass_: str
    dtype: str = "float32"
    mode: str = "eager"

    @property
    def id(self) -> str:
        parts = [self.model, self.config, self.device, self.pass_]
        if self.dtype != "float32":
            parts.append(self.dtype)
        if self.mode != "eager":
            parts.append(self.mode)
        return "/".join(parts)


def target(x: torch.Tensor, out_dim: int) -> torch.Tensor:
    """The seed's synthetic task ``exp(sin(pi * x0) + x1**2)``, repeated over the outputs."""
    x1 = x[:, 1] if x.shape[1] > 1 else x[:, 0]
    y = torch.exp(torch.sin(torch.pi * x[:, 0]) + x1**2)
    return y[:, None].expand(-1, out_dim)


class Setup:
    """Model, data and optimizer of one case, and the three passes over them.

    The same object serves the timed runs and the untimed memory pass, so
    both measure the same thing.
    """

    def __init__(self, case: Case, seed: int = 0):
        self.case = case
        cfg = CONFIGS[case.config]
        self.device = torch.device(case.device)
        self.dtype = getattr(torch, case.dtype)
        torch.manual_seed(seed)
        spec = models()[case.model]
        model = spec.move(spec.build(cfg), self.device, self.dtype)
        self.eager = model
        self.x = torch.rand(cfg.batch, cfg.layers[0], device=self.device, dtype=self.dtype) * 2 - 1
        self.y = target(self.x, cfg.layers[-1])
        self.optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        self.compile_seconds = None
        self.model = model
        if case.mode == "compile":
            self.model = torch.compile(model)
            start = time.perf_counter()
            self.loss().backward()
            self.sync()
            self.compile_seconds = time.perf_counter() - start
            self.optimizer.zero_grad(set_to_none=True)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def loss(self) -> torch.Tensor:
        return torch.nn.functional.mse_loss(self.model(self.x), self.y)

    # Each pass is (setup, run): setup builds the untimed state, run is timed.
    # run ends with a device sync, so GPU timings cover the kernels, not their launch.
    def forward_setup(self):
        self.optimizer.zero_grad(set_to_none=True)
        self.sync()
        return (), {}

    def forward(self):
        out = self.model(self.x)
        self.sync()
        return out

    def backward_setup(self):
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss()  # a fresh graph every round, as in the seed's method
        self.sync()
        return (loss,), {}

    def backward(self, loss):
        loss.backward()
        self.sync()

    def train_step_setup(self):
        self.sync()
        return (), {}

    def train_step(self):
        self.optimizer.zero_grad(set_to_none=True)
        self.loss().backward()
        self.optimizer.step()
        self.sync()

    def pass_fns(self):
        """(setup, run) of this case's pass."""
        name = self.case.pass_.replace("-", "_")
        return getattr(self, f"{name}_setup"), getattr(self, name)

    def num_params(self) -> tuple[int, int]:
        params = list(self.eager.parameters())
        return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)
