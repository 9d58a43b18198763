from perf.plugin import *  # noqa: F401,F403  (hooks and fixtures of the benchmark suite)
