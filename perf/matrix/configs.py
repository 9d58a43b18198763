"""The configurations of the matrix: a batch and the layer sizes every model gets; passes, devices, dtypes, modes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Shape:
    """What a model is built for: layer sizes, basis functions per edge, and FastKAN's grid options.

    ``first``: options of the first FastKAN layer where it differs from the rest (inputs already on the
    grid need no LayerNorm, which over a few features discards their absolute values; see
    docs/design/paths.md). ``mlp_hidden``: the MLP's hidden width, None to match the default FastKAN's
    trainable parameters.
    """

    layers: tuple[int, ...]
    num_basis: int = 8
    fastkan: dict = field(default_factory=dict, hash=False)
    first: dict | None = field(default=None, hash=False)
    mlp_hidden: int | None = None


@dataclass(frozen=True)
class Config:
    """One row of the matrix: a batch of inputs and the layer sizes every model gets."""

    batch: int
    layers: tuple[int, ...]
    fastkan: dict = field(default_factory=dict, hash=False)  # FastKAN options (grid, number of centres)
    mlp_hidden: int | None = None  # None: parameter-matched to this config's default FastKAN
    small: bool = False  # where the far slower models (pykan) run too
    default: bool = False  # part of the default run

    @property
    def num_basis(self) -> int:
        """Basis functions per edge, the same for every KAN: FastKAN's centres, B-splines' grid_size + 3."""
        return self.fastkan.get("num_grids", 8)

    @property
    def shape(self) -> Shape:
        return Shape(tuple(self.layers), self.num_basis, dict(self.fastkan), None, self.mlp_hidden)


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

# grad2: a training step whose loss holds the input gradient (create_graph=True), as a physics-informed
# or gradient-penalty step has. Not in the default run (--perf-pass).
PASSES = ("forward", "backward", "train-step", "grad2")
DEFAULT_PASSES = ("forward", "backward", "train-step")
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "bfloat16", "float16")
MODES = ("eager", "compile")
