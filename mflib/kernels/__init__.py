"""Compiled hot loops (numba). Each kernel has a small NumPy reference in the tests."""

from .pairs import pair_dots

__all__ = ["pair_dots"]
