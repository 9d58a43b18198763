"""The one model registry: every model the speed, fit and accuracy cases (and their reports) know.

A model is a name, a group and a ``build(shape)`` that returns a network for a ``Shape`` (layer
sizes, basis functions per edge, grid options). ``fastkan-<basis>`` exists for every basis of
``fastkan.BASES`` at the moment the registry is first asked for, so a basis registered before that
appears everywhere (and one registered later, once ``sync_bases`` runs). Groups: ``fastkan`` (this
package's layer, every basis and variant), ``reference`` (our exact B-spline KAN), ``baseline`` (the
parameter-matched MLP), ``peer`` (another project's KAN, ``perf.matrix.peers``), ``user`` (a model
added from the command line or a ``pytest_perf_models`` hook, ``perf.matrix.user``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from fastkan import BASES, MLP, BSplineKAN, FastKAN, FastKANLayer
from fastkan.mlp import matched_hidden
from perf.matrix.configs import Shape
from perf.matrix.peers import PEERS

GROUPS = ("fastkan", "reference", "baseline", "peer")


@dataclass(frozen=True)
class Model:
    name: str
    build: Callable[[Shape], nn.Module]
    group: str
    basis: str | None = None
    small_only: bool = False  # far too slow for the large configurations (pykan)
    fit: bool = True  # trains in the fit and accuracy tasks (not when it computes the same function as another)
    peer: str | None = None  # name in perf.matrix.peers.PEERS

    @functools.cached_property
    def missing(self) -> str | None:
        """Why it cannot run here (a dependency that is not installed), or None.

        Asked on first use: importing every peer costs a run about 10 s (pykan, flashkan), which a
        run that selects none of them need not pay.
        """
        return PEERS[self.peer].missing() if self.peer else None

    def move(self, model: nn.Module, device, dtype) -> nn.Module:
        return PEERS[self.peer].move(model, device, dtype) if self.peer else model.to(device, dtype)


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def fastkan(shape: Shape, basis: str = "gaussian", **options) -> nn.Module:
    """FastKAN for ``shape``; a first layer with its own options (``shape.first``) where given."""
    opts = {**shape.fastkan, **options}
    if shape.first is None:
        return FastKAN(list(shape.layers), basis=basis, **opts)
    if set(shape.first) == {"domain"}:  # one FastKAN, as a user writes it: its forward sees the input
        return FastKAN(list(shape.layers), input_domain=shape.first["domain"], basis=basis, **opts)
    first = FastKANLayer(shape.layers[0], shape.layers[1], basis=basis, **{**opts, **shape.first})
    rest = FastKAN(list(shape.layers[1:]), basis=basis, **opts)
    return nn.Sequential(first, *rest.layers)


def mlp(shape: Shape) -> nn.Module:
    """[in, hidden, out] with ``shape.mlp_hidden``, else about the default FastKAN's trainable parameters."""
    hidden = shape.mlp_hidden
    if hidden is None:
        hidden = matched_hidden(shape.layers[0], shape.layers[-1], trainable(fastkan(shape)))
    return MLP([shape.layers[0], hidden, shape.layers[-1]])


def mlp_tanh(shape: Shape) -> nn.Module:
    """``mlp`` with tanh between its layers: the usual physics-informed baseline (ReLU has no second derivative)."""
    hidden = shape.mlp_hidden or matched_hidden(shape.layers[0], shape.layers[-1], trainable(fastkan(shape)))
    return MLP([shape.layers[0], hidden, shape.layers[-1]], activation=nn.Tanh)


def matched(name: str, shape_of: Callable[[int], Shape], width: int) -> nn.Module:
    """The model ``name`` with about the trainable parameters of the default FastKAN of ``shape_of(width)``.

    Our FastKAN variants and the MLPs take ``width`` (the MLPs matched in parameters); a B-spline KAN,
    a peer or a user's model, whose parameters grow otherwise with the width, gets the width closest
    to that budget.
    """
    spec = models()[name]
    if spec.group in ("fastkan", "baseline"):
        return spec.build(shape_of(width))
    budget = trainable(fastkan(shape_of(width)))
    # Parameters of [in, width, out] grow linearly in width: match the budget from two widths
    # (2 and 3: fast-kan refuses LayerNorm over a single hidden unit).
    with torch.random.fork_rng():  # the sizing models must not move the seed of the model trained
        p2, p3 = trainable(spec.build(shape_of(2))), trainable(spec.build(shape_of(3)))
    if p3 == p2:  # parameters that do not grow with the width: the FastKAN's width
        return spec.build(shape_of(width))
    return spec.build(shape_of(max(2, round(2 + (budget - p2) / (p3 - p2)))))


def _peer(name: str) -> Model:
    peer = PEERS[name]
    basis = {"fast-kan": "gaussian", "faster-kan": "rswaf", "chebykan": None}.get(name, "bspline")
    return Model(
        name, lambda s: peer.model(s.layers, s.num_basis), "peer", basis=basis, small_only=peer.small_only, peer=name
    )


def _basis(b: str) -> Callable[[Shape], nn.Module]:
    return lambda s: fastkan(s, b)


_TABLE: dict[str, Model] = {}
_BUILT: list[bool] = []  # whether the built-in models are in _TABLE


def _builtin() -> list[Model]:
    return [
        # fast-kan's own algorithm: the same model without the fused spline path.
        Model("plain-fastkan", lambda s: fastkan(s, fused=False), "fastkan", basis="gaussian", fit=False),
        # LayerNorm without scale and shift: no input gradient in the first layer.
        Model("lean-fastkan", lambda s: fastkan(s, layernorm_affine=False), "fastkan", basis="gaussian"),
        # No LayerNorm at all: like for like with the peers that normalise nothing (inkan, flashkan, the
        # B-spline KANs). A speed reference, so not in the fit tasks: without LayerNorm nothing keeps a
        # hidden layer's outputs on the next layer's grid.
        Model("bare-fastkan", lambda s: fastkan(s, use_layernorm=False), "fastkan", basis="gaussian", fit=False),
        Model(
            "bspline",
            lambda s: BSplineKAN(list(s.layers), grid_size=s.num_basis - 3, spline_order=3),
            "reference",
            basis="bspline",
        ),
        Model("mlp", mlp, "baseline"),
        # Not in the fit and accuracy tasks (the ReLU MLP is there): the physics tasks' baseline.
        Model("mlp-tanh", mlp_tanh, "baseline", fit=False),
        *(_peer(name) for name in PEERS),
    ]


def models() -> dict[str, Model]:
    """Every model of the matrix, by name: ``fastkan-<basis>`` per registered basis, the variants, the
    references, the peers, and the models added with ``add`` (a user's, ``perf.matrix.user``)."""
    if not _BUILT:
        _BUILT.append(True)
        sync_bases()
        _TABLE.update((m.name, m) for m in _builtin() if m.name not in _TABLE)
    return _TABLE


def sync_bases() -> list[str]:
    """Add ``fastkan-<basis>`` for every basis registered since (``fastkan.register``); the names added."""
    models()
    added = [f"fastkan-{b}" for b in BASES if f"fastkan-{b}" not in _TABLE]
    for name in added:
        b = name.removeprefix("fastkan-")
        _TABLE[name] = Model(name, _basis(b), "fastkan", basis=b)
    return added


def add(model: Model) -> None:
    """Put ``model`` in the registry (replacing one of the same name): it joins every kind of case."""
    if not model.name or any(c in model.name for c in "/[] ,="):
        raise ValueError(f"model name {model.name!r}: a case id needs a name without '/', '[', ']', ',', '=' or spaces")
    models()[model.name] = model


def names(group: str) -> tuple[str, ...]:
    """The registry's models of one group, in registry order."""
    if group not in (*GROUPS, "user"):
        raise ValueError(f"unknown model group {group!r}; valid: {', '.join(GROUPS)}")
    return tuple(n for n, m in models().items() if m.group == group)


def build(name: str, shape: Shape) -> nn.Module:
    """The model ``name`` for ``shape``; ValueError naming the model if the registry has none."""
    table = models()
    if name not in table:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(table)}")
    return table[name].build(shape)
