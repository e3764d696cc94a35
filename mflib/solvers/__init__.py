"""Solvers: each an estimator on the shared fit loop."""
