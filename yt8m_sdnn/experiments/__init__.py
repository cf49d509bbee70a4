"""Experiments on top of the library: the pipeline, θ evidence, statistics, reports.

Nothing in the library below imports this package (tests/test_architecture.py).
"""
