"""Time one physics-informed training step of FastKAN against plain-fastkan, round by round.

    python -m perf.pde_step [--task poisson-2d] [--layers 2,64,64,1] [--points 1024] [--rounds 15] [--no-higher]

The step is the physics task's (perf/matrix/physics.py): the PDE residual by autograd with
``create_graph=True`` (the Laplacian: second derivatives), its mean square, then backward through
it (third order in the input) and an Adam step. Both models have the same parameters, the first
layer's grid on the coordinates' range (``input_domain``); their steps alternate in one process on
one thread. ``--no-higher`` sets ``fastkan.paths.higher.ENABLED = False``: second derivatives then
differentiate the plain composition, as before fastkan.paths.higher existed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import fastkan.paths.higher
from fastkan import FastKAN
from perf.matrix.physics import PDES
from perf.stats.bootstrap import change


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m perf.pde_step", description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=sorted(PDES), default="poisson-2d")
    p.add_argument("--layers", default="2,64,64,1", help="FastKAN widths, the first the task's dimensions")
    p.add_argument("--points", type=int, default=1024, help="collocation points")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--no-higher", action="store_true", help="second derivatives by the plain composition")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    pde = PDES[args.task]
    layers = [int(w) for w in args.layers.split(",")]
    if layers[0] != pde.dims or len(layers) < 2 or min(layers) < 1:
        parser().error(f"--layers must start with {pde.dims} (the task's dimensions), got {args.layers}")
    torch.set_num_threads(1)
    was = fastkan.paths.higher.ENABLED
    fastkan.paths.higher.ENABLED = not args.no_higher
    try:
        return _time(args, pde, layers)
    finally:
        fastkan.paths.higher.ENABLED = was


def _time(args, pde, layers: list[int]) -> int:
    torch.manual_seed(0)
    models = {
        "fastkan": FastKAN(layers, input_domain=(-1.0, 1.0)),
        "plain-fastkan": FastKAN(layers, input_domain=(-1.0, 1.0), fused=False),
    }
    models["plain-fastkan"].load_state_dict(models["fastkan"].state_dict())
    optimizers = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}
    x = pde.collocation(args.points, 0)

    def step(name: str) -> float:
        start = time.perf_counter()
        xx = x.detach().requires_grad_()
        optimizers[name].zero_grad(set_to_none=True)
        pde.residual(models[name](xx), xx).pow(2).mean().backward()
        optimizers[name].step()
        return time.perf_counter() - start

    for name in models:  # warm-up: compiled kernels, first allocations
        step(name)
        step(name)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name in models:
            times[name].append(step(name))
    est, low, high = change(times["plain-fastkan"], times["fastkan"])
    print(
        f"{args.task}, FastKAN({layers}), {args.points} points, 1 thread, torch {torch.__version__}, "
        f"fastkan.paths.higher {'on' if fastkan.paths.higher.ENABLED else 'off'}"
    )
    for name, t in times.items():
        print(f"  {name}: {statistics.median(t) * 1e3:.2f} ms a step (median of {args.rounds})")
    print(
        f"  fastkan / plain-fastkan: {1 + est:.3f}x [{1 + low:.3f}x, {1 + high:.3f}x] "
        "(ratio of medians, 95% bootstrap interval)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
