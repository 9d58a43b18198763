"""The KAN layers a user could pick instead of ours, loaded when they are there.

Each peer is one ``Peer`` entry of ``PEERS``: how to import it, how to
build a network of given layer sizes with ``num_basis`` basis functions per
edge, and how to install it. Nothing here is required: ``Peer.missing()``
says why a peer cannot run (with the real import error), and the benchmark
suite skips it with that reason.

Three peers are not on PyPI and cannot be installed beside this package
(fast-kan's distribution is itself named ``fastkan``; faster-kan's names
itself ``efficient-kan`` and carries ``fastkan/`` and ``efficient_kan/``
folders): they load from a checkout named by an environment variable
(``FAST_KAN_PATH``, ``FASTER_KAN_PATH``, ``CHEBYKAN_PATH``) under names
that shadow nothing.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn


class PeerUnavailable(ImportError):
    """A peer cannot be imported here; the message says why and how to install it."""


def _import(module: str) -> Callable[[], ModuleType]:
    return lambda: importlib.import_module(module)


def _from_checkout(variable: str, relative: str, name: str, package: bool = False) -> Callable[[], ModuleType]:
    """A loader of ``$variable/relative`` as module ``name``, registered in sys.modules under that name only."""

    def load() -> ModuleType:
        root = os.environ.get(variable)
        if not root:
            raise ImportError(f"{variable} is not set")
        if name in sys.modules:
            return sys.modules[name]
        path = Path(root) / relative
        if not path.is_file():
            raise ImportError(f"{variable}={root}: no {relative} there")
        locations = [str(path.parent)] if package else None
        spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=locations)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its own absolute imports (faster-kan's `from fasterkan.x import`) find it
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module

    return load


def _checkout_version(variable: str) -> str | None:
    root = os.environ.get(variable)
    if not root:
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"checkout {commit}" if commit else f"checkout {root}"


@dataclass(frozen=True)
class Peer:
    """One KAN implementation of another project, as its users get it."""

    name: str  # the model's name in the benchmark matrix
    load: Callable[[], ModuleType]
    build: Callable[[ModuleType, list[int], int], nn.Module]  # (module, layers, basis functions per edge)
    install: str  # how a user installs it
    distribution: str | None = None  # the PyPI/metadata name whose version is recorded
    checkout_variable: str | None = None
    compiles: bool = False  # it wraps part of itself in torch.compile
    small_only: bool = False  # far too slow for the large configurations
    float32_only: bool = False
    min_basis: int = 2  # fewest basis functions per edge its API accepts
    to: Callable[[nn.Module, torch.device, torch.dtype], nn.Module] | None = None
    note: str = ""
    requires: tuple[str, ...] = ()  # its PyPI packages, all of them (the `peers` extra holds each)

    def module(self) -> ModuleType:
        """The imported peer; PeerUnavailable with the real error and the install hint if it cannot be imported."""
        return _module(self.name)

    def missing(self) -> str | None:
        """Why this peer cannot run here, or None."""
        try:
            self.module()
        except PeerUnavailable as e:
            return str(e)
        return None

    def model(self, layers: Sequence[int], num_basis: int = 8) -> nn.Module:
        """Its network with these layer sizes and ``num_basis`` basis functions per edge."""
        if num_basis < self.min_basis:
            raise ValueError(f"{self.name} needs at least {self.min_basis} basis functions per edge, got {num_basis}")
        return self.build(self.module(), list(layers), num_basis)

    def move(self, model: nn.Module, device, dtype) -> nn.Module:
        if self.float32_only and dtype != torch.float32:
            raise ValueError(f"{self.name} runs in float32 only, not {dtype}")
        return self.to(model, device, dtype) if self.to else model.to(device, dtype)

    def version(self) -> str | None:
        if self.checkout_variable:
            return _checkout_version(self.checkout_variable)
        try:
            return importlib.metadata.version(self.distribution or self.name)
        except importlib.metadata.PackageNotFoundError:
            return None


@functools.cache
def _module(name: str) -> ModuleType:
    peer = PEERS[name]
    try:
        return peer.load()
    except Exception as e:  # a peer's import can fail in any way (pykan: yaml missing); report it, never crash
        raise PeerUnavailable(f"{name}: import failed ({type(e).__name__}: {e}); {peer.install}") from e


def _cheby(module: ModuleType, layers: list[int], num_basis: int) -> nn.Module:
    # As its README stacks them: LayerNorm between layers keeps inputs of tanh away from saturation.
    parts: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(layers[:-1], layers[1:])):
        if i:
            parts.append(nn.LayerNorm(a))
        parts.append(module.ChebyKANLayer(a, b, num_basis - 1))
    return nn.Sequential(*parts)


def _pykan_to(model: nn.Module, device, dtype) -> nn.Module:
    # MultKAN.to() takes the device alone; a dtype argument raises TypeError.
    return model.to(device)


_GIT = "pip install --no-deps git+https://github.com/{}"
PEERS: dict[str, Peer] = {
    p.name: p
    for p in [
        Peer(
            "efficient-kan",
            _import("efficient_kan"),
            lambda m, layers, g: m.KAN(layers, grid_size=g - 3, spline_order=3),
            install=f"not on PyPI: `{_GIT.format('Blealtan/efficient-kan')}` (--no-deps keeps your torch)",
            distribution="efficient-kan",
            min_basis=4,
        ),
        Peer(
            "fast-kan",
            _from_checkout("FAST_KAN_PATH", "fastkan/fastkan.py", "_peer_fast_kan"),
            lambda m, layers, g: m.FastKAN(layers, num_grids=g),
            install="its distribution is also named fastkan: `git clone https://github.com/ZiyaoLi/fast-kan` "
            "and set FAST_KAN_PATH to the checkout",
            checkout_variable="FAST_KAN_PATH",
        ),
        Peer(
            "faster-kan",
            _from_checkout("FASTER_KAN_PATH", "fasterkan/__init__.py", "fasterkan", package=True),
            lambda m, layers, g: m.FasterKAN(layers, num_grids=g),
            install="it installs over efficient-kan and fastkan: `git clone https://github.com/AthanasiosDelis/"
            "faster-kan` and set FASTER_KAN_PATH to the checkout",
            checkout_variable="FASTER_KAN_PATH",
            note="its own backward scales the input gradient by 1/h (0.5x at its defaults)",
        ),
        Peer(
            "pykan",
            _import("kan"),
            lambda m, layers, g: m.KAN(width=layers, grid=g - 3, k=3, seed=0, auto_save=False, device="cpu"),
            install="`pip install pykan pyyaml pandas tqdm` (pykan 0.2.8 imports yaml, pandas and tqdm without "
            "declaring them)",
            requires=("pykan", "pyyaml", "pandas", "tqdm"),
            distribution="pykan",
            small_only=True,
            float32_only=True,
            min_basis=4,
            to=_pykan_to,
        ),
        Peer(
            "flashkan",
            _import("flashkan"),
            lambda m, layers, g: m.KANNetwork(layers, grid_size=g - 3, spline_order=3),
            install="`pip install flashkan`",
            requires=("flashkan",),
            distribution="flashkan",
            compiles=True,
            min_basis=4,
        ),
        Peer(
            "inkan",
            _import("inkan"),
            lambda m, layers, g: m.KANNetwork(layers, grid_size=g - 3, spline_order=3),
            install="`pip install inkan`",
            requires=("inkan",),
            distribution="inkan",
            compiles=True,
            min_basis=4,
        ),
        Peer(
            "chebykan",
            _from_checkout("CHEBYKAN_PATH", "ChebyKANLayer.py", "_peer_chebykan"),
            _cheby,
            install="not packaged: `git clone https://github.com/SynodicMonth/ChebyKAN` and set CHEBYKAN_PATH "
            "to the checkout",
            checkout_variable="CHEBYKAN_PATH",
        ),
    ]
}
