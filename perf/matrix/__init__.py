"""The benchmark matrix as data: configurations, the one model registry, the peers, the tasks, the cases."""
