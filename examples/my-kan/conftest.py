"""The fastkan benchmark suite in this project: its plugin, and what this project adds to its matrix."""

from my_kan import ChebyKAN

import fastkan

pytest_plugins = ["perf.plugin"]


def pytest_perf_models(registry):
    # A model: built as ChebyKAN(layers, num_basis=G) for every configuration of the run.
    registry.add_model("cheby-kan", ChebyKAN)
    # A basis: the suite benchmarks it as fastkan-cauchy, like the built-in ones.
    if "cauchy" not in fastkan.BASES:
        fastkan.register("cauchy", lambda d: 1 / (1 + d * d) ** 2)


def pytest_perf_configs(registry):
    registry.add_config("two-layer", layers=[16, 32, 1], batch=64, grid=8)
