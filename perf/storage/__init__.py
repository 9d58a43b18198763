"""Saved runs: finding and reading them, and the one definition of what a case records (the schema)."""
