"""Measurements taken beside the timings: memory, the gradient check, the machine probe."""
