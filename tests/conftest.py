import os

import pytest

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the bench extra has no hypothesis; pytest-benchmark's CLI still loads this file
    settings = None

if settings is not None:
    # Keep the whole run well under the project's 10-minute budget on 2 cores.
    settings.register_profile("fastkan", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("thorough", max_examples=300, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fastkan"))


@pytest.fixture
def compiler():
    """Skips, naming the compiler's error, where torch.compile cannot build fastkan.paths.compiled's CPU kernels."""
    import torch

    import fastkan.paths.compiled as compiled
    from fastkan.layer import RadialBasis

    if compiled._kernels(RadialBasis(), torch.float32) is None:
        pytest.skip(f"torch.compile cannot build CPU kernels on this machine: {compiled._broken[0][:300]}")


@pytest.fixture
def record_calls(monkeypatch):
    """``record_calls(owner, name)``: the argument tuples of every later call of ``owner.name``, which still runs."""

    def record(owner, name):
        calls, real = [], getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *a: calls.append(a) or real(*a))
        return calls

    return record
