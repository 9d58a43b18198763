"""Statistics of saved runs: bootstrap intervals and run-to-run comparison."""
