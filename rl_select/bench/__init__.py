"""Benchmarks: ours against a baseline, measured side by side in one run."""
