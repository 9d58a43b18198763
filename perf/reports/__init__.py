"""Reports from saved runs, each a subcommand of ``python -m perf.report``."""
