"""Hooks a project's ``conftest.py`` implements to add to the benchmark matrix (see perf/matrix/user.py).

def pytest_perf_models(registry):
    registry.add_model("my-kan", MyKAN)            # built as MyKAN(layers, num_basis=G)
    fastkan.register("my-bump", ...)               # appears as fastkan-my-bump

def pytest_perf_configs(registry):
    registry.add_config("wide", layers=[784, 1024, 10], batch=128, grid=8)
"""

import pluggy

hookspec = pluggy.HookspecMarker("pytest")


@hookspec
def pytest_perf_models(registry):
    """Add models (``registry.add_model``) or bases (``fastkan.register``) to the matrix."""


@hookspec
def pytest_perf_configs(registry):
    """Add configurations (``registry.add_config``) to the matrix."""
