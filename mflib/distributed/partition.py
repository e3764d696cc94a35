"""Contiguous blocks of rows balanced by their rating counts (not by id)."""

from __future__ import annotations

import numpy as np

from ..validation import check_positive_int


def balanced_bounds(counts, n_parts: int) -> np.ndarray:
    """Boundaries ``b`` (n_parts + 1,) of contiguous blocks ``b[p]:b[p+1]`` of the rows
    whose summed ``counts`` are about equal (each block's total is within one row's count
    of ``sum / n_parts``); blocks may be empty when there are fewer rows than parts."""
    check_positive_int(n_parts, "n_parts")
    counts = np.asarray(counts, dtype=np.float64)
    cum = np.cumsum(counts)
    total = cum[-1] if len(cum) else 0.0
    cuts = np.searchsorted(cum, total * np.arange(1, n_parts) / n_parts)
    return np.concatenate([[0], cuts, [len(counts)]]).astype(np.int64)


def blocks(counts, n_parts: int) -> list[np.ndarray]:
    """The row indices of each block of :func:`balanced_bounds`."""
    b = balanced_bounds(counts, n_parts)
    return [np.arange(b[p], b[p + 1]) for p in range(n_parts)]
