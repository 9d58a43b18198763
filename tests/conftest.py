import os

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the bench extra has no hypothesis; pytest-benchmark's CLI still loads this file
    settings = None

if settings is not None:
    # Keep the whole run well under the project's 10-minute budget on 2 cores.
    settings.register_profile("fastkan", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("thorough", max_examples=300, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fastkan"))
