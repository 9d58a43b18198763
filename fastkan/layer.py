"""FastKAN: a KAN layer whose B-spline basis is replaced by cheap bumps."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import dispatch, modes
from .bases import (
    DERIVATIVES,
    EXPONENTIAL,
    NEG_SQUARE_SCALES,
    OF_NEG_SQUARE,
    OF_NEG_SQUARE_DERIVATIVES,
    SUPPORTS,
    get_basis,
)

# By name, not dispatch.operator: inside torch.compile a module reached two ways is one more check per call
# (_as_function).
from .dispatch import operator as compiled_operator
from .paths import small


def check_last_dim(x: Tensor, expected: int, what: str | nn.Module) -> None:
    """A clear error unless x is a tensor of shape (..., expected); ``what`` names the caller, or is the
    module whose class names it, looked up only for the error (type() inside torch.compile: _as_function)."""
    if isinstance(x, Tensor) and x.dim() != 0 and x.shape[-1] == expected:
        return
    what = what if isinstance(what, str) else type(what).__name__
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} expects a torch.Tensor, got {type(x).__name__}")
    raise ValueError(f"{what} expects input of shape (..., {expected}), got {tuple(x.shape)}")


# torch's module-wide hooks (register_module_forward_hook and kin): dictionaries it fills in place.
_GLOBAL_HOOKS = tuple(
    getattr(torch.nn.modules.module, name)
    for name in (
        "_global_forward_hooks",
        "_global_forward_pre_hooks",
        "_global_backward_hooks",
        "_global_backward_pre_hooks",
    )
    if hasattr(torch.nn.modules.module, name)
)


def _as_function(module, kind: type) -> bool:
    """Whether forward may use ``module``'s tensors through functions: exactly a ``kind``, and no hooks to run."""
    # isinstance first: inside torch.compile, type() of two layers alone is one object reached two
    # ways, which Dynamo checks before every compiled call (docs/results/modes.md); after isinstance it
    # is not.
    return (
        isinstance(module, kind)
        and type(module) is kind
        and not (
            module._forward_hooks
            or module._forward_pre_hooks
            or module._backward_hooks
            or module._backward_pre_hooks
            or any(_GLOBAL_HOOKS)
        )
    )


def _width(value) -> float:
    """``value`` as a bump width: a positive finite float, else a clear error."""
    try:
        width = float(value)
    except (TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor of several values
        raise TypeError(f"denominator must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(width) or width <= 0:
        raise ValueError(f"denominator must be positive and finite, got {value!r}")
    return width


class RadialBasis(nn.Module):
    """``num_grids`` bumps per input: (..., in) -> (..., in, num_grids).

    ``grid`` holds the centres ``linspace(grid_min, grid_max, num_grids)`` as an
    ``nn.Parameter`` (frozen unless ``train_grid``), as fast-kan stores it.
    ``denominator`` is the width ``h``, by default the grid spacing: a number, as in fast-kan, that
    may be assigned; an ``nn.Parameter`` with ``train_denominator``. ``width`` holds the number as a
    0-d tensor of the grid's device and dtype (a buffer, not saved), for the fast paths.
    """

    def __init__(
        self,
        grid_min: float = -2.0,
        grid_max: float = 2.0,
        num_grids: int = 8,
        basis: str = "gaussian",
        denominator: float | None = None,
        train_grid: bool = False,
        train_denominator: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if isinstance(num_grids, bool) or not isinstance(num_grids, int):
            raise TypeError(f"num_grids must be an int, got {num_grids!r}")
        if num_grids < 2:
            raise ValueError(f"num_grids must be at least 2, got {num_grids}")
        grid_min, grid_max = float(grid_min), float(grid_max)
        if not (math.isfinite(grid_min) and math.isfinite(grid_max)) or grid_min >= grid_max:
            raise ValueError(f"need finite grid_min < grid_max, got grid_min={grid_min}, grid_max={grid_max}")
        if denominator is None:
            denominator = (grid_max - grid_min) / (num_grids - 1)
        denominator = _width(denominator)
        self._look_up(basis)
        factory = {"device": device, "dtype": dtype}
        self.grid = nn.Parameter(torch.linspace(grid_min, grid_max, num_grids, **factory), requires_grad=train_grid)
        if train_denominator:
            self.denominator = nn.Parameter(torch.tensor(denominator, **factory))
        else:
            # A number: inside torch.compile the plain composition then divides by a constant, where a
            # tensor is one more input that every compiled call checks and passes (docs/results/modes.md).
            self.denominator = denominator

    def _look_up(self, basis: str) -> None:
        """The basis' functions and facts from fastkan.bases' registries, by name."""
        self.fn = get_basis(basis)
        self.derivative = DERIVATIVES.get(basis)
        self.of_neg_square = OF_NEG_SQUARE.get(basis)
        self.of_neg_square_derivative = OF_NEG_SQUARE_DERIVATIVES.get(basis)
        self.neg_square_scale = NEG_SQUARE_SCALES.get(basis, 1.0)
        self.support = SUPPORTS.get(basis)
        self.exponential = basis in EXPONENTIAL
        self.name = basis

    # Pickled (torch.save of a whole model, deepcopy, multiprocessing) by the basis' name: the
    # registries hold lambdas, which pickle cannot save; loading looks the name up again, so a
    # basis of your own must be registered before.
    _LOOKED_UP = ("fn", "derivative", "of_neg_square", "of_neg_square_derivative")

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        return {k: v for k, v in state.items() if k not in self._LOOKED_UP}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._look_up(self.name)

    def __setattr__(self, name: str, value) -> None:
        if name == "denominator" and not isinstance(value, nn.Parameter) and "denominator" not in self._parameters:
            value = _width(value)
            grid = self._parameters["grid"]
            # A new tensor, not the old one filled: a graph that an earlier call saved keeps its width.
            # Not persistent: fast-kan state dicts have no width entry.
            self.register_buffer("width", torch.tensor(value, device=grid.device, dtype=grid.dtype), persistent=False)
        super().__setattr__(name, value)

    @property
    def num_grids(self) -> int:
        return self._parameters["grid"].numel()

    def tensors(self) -> tuple[Tensor, Tensor]:
        """``(grid, h)``, h the width as a tensor (``width``, or the trained ``denominator``), by dictionary
        lookups: nn.Module's attribute fallback, which finds parameters and buffers otherwise, costs a small
        call about 0.7 us a lookup."""
        h = self._parameters.get("denominator")
        return self._parameters["grid"], self._buffers["width"] if h is None else h

    def forward(self, u: Tensor) -> Tensor:
        h = self._parameters.get("denominator")
        return self.fn((u[..., None] - self._parameters["grid"]) / (self.__dict__["denominator"] if h is None else h))

    def extra_repr(self) -> str:
        return f"basis={self.name!r}, num_grids={self.num_grids}"


class FastKANLayer(nn.Module):
    """One FastKAN layer: (..., input_dim) -> (..., output_dim).

    ``spline_linear(basis(layernorm(x)).flatten(-2)) + base_linear(silu(x))``,
    with fast-kan's constructor arguments and defaults. The spline path is
    evaluated without the intermediate tensors of the plain composition: by
    Triton kernels on CUDA where they cover the basis (``fastkan.paths.triton_spline``),
    else by ``fastkan.paths.fused``, which keeps the (N, input_dim * num_grids) basis (and
    the centred inputs) for backward when it is at most ``keep_basis_bytes`` (default
    ``fastkan.paths.fused.KEEP_BASIS_BYTES``) and otherwise rebuilds it there block by
    block; on the CPU, one-output layers with a basis of ``-d**2`` run compiled
    reductions that write no basis at all (``fastkan.paths.compiled``), and calls of at
    most ``fastkan.paths.fused.PLAIN_ELEMENTS`` basis values (``fastkan.paths.compiled.PLAIN_ELEMENTS``
    for those layers) take ``fastkan.paths.small``: LayerNorm, the spline path and the SiLU base
    branch as one autograd node, whose few operations cost less there (the plain composition
    where it does not cover the call: a trained grid or width, a basis without a registered
    derivative, a compiled model).
    A basis of compact support on a large frozen uniform grid is evaluated at the few
    centres near each input only (``fastkan.paths.local``).
    ``fused=False`` always runs the plain composition, kept as the reference.

    The submodules (``layernorm``, ``basis``, ``spline_linear``, ``base_linear``) hold the
    parameters under fast-kan's names; forward uses their tensors through functions.
    A submodule replaced by another kind of module (a subclass, an ``nn.Identity``,
    a LoRA wrapper) or with hooks (its own or torch's module-wide ones) is called as
    a module, so its hooks fire; a replaced or hooked ``basis`` or ``spline_linear``
    turns the fused path off for that layer.

    ``layernorm_affine=False`` drops LayerNorm's scale and shift: the first
    layer then needs no gradient of its normalised input, which costs as much
    as its weight gradient (the grid stays put relative to the inputs).
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        grid_min: float = -2.0,
        grid_max: float = 2.0,
        num_grids: int = 8,
        basis: str = "gaussian",
        denominator: float | None = None,
        use_base_update: bool = True,
        use_layernorm: bool = True,
        layernorm_affine: bool = True,
        base_activation: Callable[[Tensor], Tensor] = F.silu,
        spline_weight_init_scale: float = 0.1,
        train_grid: bool = False,
        train_denominator: bool = False,
        fused: bool = True,
        keep_basis_bytes: int | None = None,
        domain: tuple[float, float] | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if domain is not None:
            # Inputs known to lie in [lo, hi] (a PDE's coordinates): the grid spans that range and no
            # LayerNorm is needed, the same as a fixed affine map from the domain onto the grid.
            lo, hi = _domain(domain)
            grid_min, grid_max, use_layernorm = lo, hi, False
        for name, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if use_layernorm and input_dim == 1:
            raise ValueError("LayerNorm over input_dim=1 outputs zeros for every input; pass use_layernorm=False")
        if use_layernorm and input_dim == 2:
            warnings.warn(
                "LayerNorm over input_dim=2 keeps little more than the sign of the two inputs' difference; "
                "for low-dimensional inputs pass use_layernorm=False with a grid covering them",
                stacklevel=2,
            )
        factory = {"device": device, "dtype": dtype}
        self.input_dim, self.output_dim = input_dim, output_dim
        self.fused = fused
        if keep_basis_bytes is not None and (
            isinstance(keep_basis_bytes, bool) or not isinstance(keep_basis_bytes, int) or keep_basis_bytes < 0
        ):
            raise ValueError(f"keep_basis_bytes must be a non-negative int or None, got {keep_basis_bytes!r}")
        self.keep_basis_bytes = keep_basis_bytes
        self.layernorm = (
            nn.LayerNorm(input_dim, elementwise_affine=layernorm_affine, **factory) if use_layernorm else None
        )
        self.basis = RadialBasis(
            grid_min, grid_max, num_grids, basis, denominator, train_grid, train_denominator, **factory
        )
        self.spline_linear = nn.Linear(input_dim * num_grids, output_dim, bias=False, **factory)
        nn.init.trunc_normal_(self.spline_linear.weight, mean=0.0, std=spline_weight_init_scale)
        self.base_activation = base_activation
        self.base_linear = nn.Linear(input_dim, output_dim, **factory) if use_base_update else None
        self._register_state_dict_hook(_rbf_names)

    def spline(
        self, u: Tensor, base: Tensor | None = None, allowed: bool | None = None, small_node: bool = True
    ) -> Tensor:
        """The spline path on normalised input: (N, in) -> (N, out), plus ``base`` (N, out) where given."""
        basis, spline_linear = self._part("basis"), self._part("spline_linear")
        if not (_as_function(basis, RadialBasis) and _as_function(spline_linear, nn.Linear)):
            # A replaced or hooked submodule computes what its own forward (and hooks) say.
            y = spline_linear(basis(u).flatten(-2))
        else:
            weight = spline_linear._parameters["weight"]
            if self.fused and modes.is_compiling():
                y = compiled_operator(u, basis, weight)
                if y is not None:
                    return y if base is None else y + base
            # allowed: whether the current mode lets fast paths run (fastkan.modes); None asks it here.
            fast = self.fused and (modes.plain_reason(u) is None if allowed is None else allowed)
            plain = not fast or dispatch.takes_plain(u, basis, weight)
            kind = small.kind(u, basis) if plain and fast and small_node else None
            if kind is not None:
                y = small.small_layer(u, basis, kind, weight)
            elif plain:
                # RadialBasis.forward, not the module call: a small call pays for every call it makes.
                phi = basis.forward(u).flatten(-2)
                return F.linear(phi, weight) if base is None else base.addmm(phi, weight.t())
            y = dispatch.spline(u, basis, weight, self.keep_basis_bytes)
        return y if base is None else y + base

    def _small(self, x: Tensor, ln, lin, allowed: bool | None = None) -> Tensor | None:
        """The whole layer as ``fastkan.paths.small``'s one node where it covers this call, else None."""
        spec = self._small_spec(x, ln, lin, allowed=allowed)
        return None if spec is None else small.small_stack(x, [spec])

    def _small_spec(self, x: Tensor, ln, lin, rows: int | None = None, allowed: bool | None = None) -> tuple | None:
        """``fastkan.paths.small``'s arguments for this layer on a call like x (its device and dtype) with ``rows``
        inputs (x's by default), or None where it does not cover the call: a fused layer's small CPU call,
        with its own LayerNorm and SiLU base branch or none."""
        basis, spline_linear = self._part("basis"), self._part("spline_linear")
        if not (
            self.fused
            and (modes.plain_reason(x) is None if allowed is None else allowed)
            and _as_function(basis, RadialBasis)
            and _as_function(spline_linear, nn.Linear)
            and (ln is None or _as_function(ln, nn.LayerNorm))
            and (lin is None or (self.base_activation is F.silu and _as_function(lin, nn.Linear)))
        ):
            return None
        weight = spline_linear._parameters["weight"]
        if not dispatch.takes_plain(x, basis, weight, rows) or weight.dtype != x.dtype:
            return None
        kind = small.kind(x, basis)
        if kind is None:
            return None
        norm = None if ln is None else (ln._parameters["weight"], ln._parameters["bias"], ln.eps)
        base = None if lin is None else (lin._parameters["weight"], lin._parameters["bias"])
        return basis, kind, weight, norm, base

    def _part(self, name: str):
        """Submodule ``name``, or what was assigned in its place, by dictionary lookups: nn.Module's
        attribute fallback, which finds submodules otherwise, costs a small call about 0.7 us a lookup."""
        modules = self._modules
        return modules[name] if name in modules else self.__dict__.get(name)

    def forward(self, x: Tensor) -> Tensor:
        return self._forward(x)

    def _forward(self, x: Tensor, small_node: bool = True) -> Tensor:
        """``forward``; ``small_node=False`` keeps a small call off fastkan.paths.small's node (see FastKAN.forward)."""
        check_last_dim(x, self.input_dim, self)
        lead = x.shape[:-1] if x.dim() != 2 else None  # a batch of vectors needs no reshaping (small calls pay per op)
        if lead is not None:
            x = x.reshape(-1, self.input_dim)
        # The submodules' tensors through functions, not module calls, which cost a small call
        # several microseconds each (docs/results/goals.md); a submodule
        # replaced by another kind (an Identity, a LoRA wrapper) or with hooks is called as a module.
        ln, lin = self._part("layernorm"), self._part("base_linear")
        if modes.is_compiling():
            allowed = False  # fastkan.modes: the plain composition, or dispatch.operator in spline
        else:
            allowed = modes.plain_reason(x) is None  # asked once a call: the small node and the spline path share it
            y = self._small(x, ln, lin, allowed) if small_node else None
            if y is not None:
                return y if lead is None else y.reshape(*lead, self.output_dim)
        if ln is None:
            u = x
        elif _as_function(ln, nn.LayerNorm):
            p = ln._parameters
            u = F.layer_norm(x, ln.normalized_shape, p["weight"], p["bias"], ln.eps)
        else:
            u = ln(x)
        base = None
        if lin is not None:
            s = self.base_activation(x)
            if _as_function(lin, nn.Linear):
                p = lin._parameters
                base = F.linear(s, p["weight"], p["bias"])
            else:
                base = lin(s)
        y = self.spline(u, base, allowed, small_node)
        return y if lead is None else y.reshape(*lead, self.output_dim)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # fast-kan names the basis module "rbf", and so do our checkpoints (_rbf_names); this package
        # saved "basis.*" before: accept both.
        for key in [k for k in state_dict if k.startswith(prefix + "rbf.")]:
            state_dict.setdefault(prefix + "basis." + key[len(prefix) + 4 :], state_dict.pop(key))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _rbf_names(module, state_dict, prefix, local_metadata):
    """State-dict hook: the basis' entries under fast-kan's name for the module, "rbf", so that a
    FastKANLayer's checkpoint loads into fast-kan's layer unchanged."""
    for key in [k for k in state_dict if k.startswith(prefix + "basis.")]:
        state_dict[prefix + "rbf." + key[len(prefix) + 6 :]] = state_dict.pop(key)
    return state_dict


def _domain(domain) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in domain)
    except (TypeError, ValueError):
        raise ValueError(f"domain must be a pair (lo, hi) of numbers, got {domain!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise ValueError(f"domain must be finite with lo < hi, got {domain!r}")
    return lo, hi


class FastKAN(nn.Module):
    """A stack of FastKANLayer: (..., layers_hidden[0]) -> (..., layers_hidden[-1]).

    ``input_domain=(lo, hi)``: the inputs lie in that range (coordinates, a few features): the first
    layer's grid spans it instead of LayerNorm, which over two or three inputs keeps little more
    than their signs. Where every layer's call takes ``fastkan.paths.small``'s node, the whole stack is
    one such node.
    """

    def __init__(self, layers_hidden: Sequence[int], input_domain: tuple[float, float] | None = None, **layer_options):
        super().__init__()
        layers_hidden = list(layers_hidden)
        if len(layers_hidden) < 2:
            raise ValueError(f"layers_hidden needs at least an input and an output size, got {layers_hidden}")
        self.layers = nn.ModuleList(
            FastKANLayer(i, o, **layer_options, **({"domain": input_domain} if k == 0 and input_domain else {}))
            for k, (i, o) in enumerate(zip(layers_hidden[:-1], layers_hidden[1:]))
        )

    def forward(self, x: Tensor) -> Tensor:
        layers = self._modules["layers"]
        # An input that needs a gradient asks for derivatives in the input: a physics-informed loss or a
        # gradient penalty differentiates them again. fastkan.paths.small's node then recomputes its layers
        # in backward, in Python nodes; small calls take the plain composition instead, whose nodes
        # are C++ (a Poisson step of FastKAN([2, 12, 1]) on 768 points took 1.5x plain's time
        # through the node; docs/results/physics.md). Larger calls keep the fast paths, whose second
        # derivatives are fastkan.paths.higher's.
        small_node = not (modes.is_compiling() or (getattr(x, "requires_grad", False) and torch.is_grad_enabled()))
        y = self._small(x, layers) if small_node else None
        if y is not None:
            return y
        for layer in layers:
            # A module call costs a small call about 1.5 us per layer; a layer with hooks gets one.
            x = layer._forward(x, small_node) if _as_function(layer, FastKANLayer) else layer(x)
        return x

    def _small(self, x: Tensor, layers) -> Tensor | None:
        """Every layer in ``fastkan.paths.small``'s one node, where each layer alone would take it, else None:
        one node for the stack costs backward one dispatch where each layer's would cost one each."""
        if len(layers) < 2 or not isinstance(x, Tensor) or x.dim() == 0:
            return None  # a single layer takes the node by itself; bad input gets the layer's error
        rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
        allowed = modes.plain_reason(x) is None  # the mode is the same for every layer of the stack
        specs, width = [], x.shape[-1]
        for layer in layers:
            if not _as_function(layer, FastKANLayer) or layer.input_dim != width:
                return None
            spec = layer._small_spec(x, layer._part("layernorm"), layer._part("base_linear"), rows, allowed)
            if spec is None:
                return None
            specs.append(spec)
            width = layer.output_dim
        if x.dim() == 2:  # a reshape to the same shape would still cost a view and its node
            return small.small_stack(x, specs)
        return small.small_stack(x.reshape(rows, x.shape[-1]), specs).reshape(*x.shape[:-1], width)


@contextlib.contextmanager
def calls_recorded() -> Iterator[dict[FastKANLayer, tuple[Tensor, Tensor, bool]]]:
    """Within it, each FastKANLayer call stores (input, output, whether its small call may take
    fastkan.paths.small's node) in the dict yielded, by layer.

    For ``fastkan.explain``: forward hooks would show what a call takes, but a hooked layer is
    called as a module, which changes the path a FastKAN stack gives it (FastKAN.forward).
    A layer inside fastkan.paths.small's node for its whole stack is not called, and not stored.
    """
    seen: dict[FastKANLayer, tuple[Tensor, Tensor, bool]] = {}
    plain = FastKANLayer._forward

    def recording(self, x: Tensor, small_node: bool = True) -> Tensor:
        y = plain(self, x, small_node)
        seen[self] = (x, y, small_node)
        return y

    FastKANLayer._forward = recording
    try:
        yield seen
    finally:
        FastKANLayer._forward = plain
