"""Thread count of numba's parallel kernels, set for the duration of a fit."""

from __future__ import annotations

import contextlib
import numbers

import numba


def resolve_n_jobs(n_jobs) -> int | None:
    """Threads for ``n_jobs``: None keeps numba's current setting, -1 means all of them."""
    if n_jobs is None:
        return None
    limit = numba.config.NUMBA_NUM_THREADS
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(f"n_jobs must be None, -1 or an integer >= 1, got {n_jobs!r}")
    if n_jobs < 0:
        return max(1, limit + 1 + int(n_jobs))
    if n_jobs > limit:
        raise ValueError(
            f"n_jobs={n_jobs} exceeds the {limit} threads numba was started with; use "
            f"n_jobs <= {limit} (or set NUMBA_NUM_THREADS before importing mflib)"
        )
    return int(n_jobs)


@contextlib.contextmanager
def numba_threads(n_jobs):
    """Run the block with ``n_jobs`` numba threads, restoring the previous count afterwards."""
    threads = resolve_n_jobs(n_jobs)
    if threads is None:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(previous)
