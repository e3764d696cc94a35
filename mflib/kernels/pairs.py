"""Row-wise dot products p_u . q_i over many (u, i) pairs without a (n, k) temporary."""

from __future__ import annotations

import numba
import numpy as np

from ..execution import run_parallel


@numba.njit(cache=True, inline="always")
def _dot_row(P, Q, u, i):
    acc = 0.0
    for f in range(P.shape[1]):
        acc += P[u, f] * Q[i, f]
    return acc


# Two entry points rather than one function compiled twice: numba's on-disk cache keys
# by function, so a parallel and a serial build of one function would overwrite each other.
@numba.njit(parallel=True, cache=True)
def _pair_dots_parallel(P, Q, users, items, out):
    for n in numba.prange(users.shape[0]):
        out[n] = _dot_row(P, Q, users[n], items[n])


@numba.njit(cache=True)
def _pair_dots_serial(P, Q, users, items, out):
    for n in range(users.shape[0]):
        out[n] = _dot_row(P, Q, users[n], items[n])


def pair_dots(P: np.ndarray, Q: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``out[n] = P[users[n]] @ Q[items[n]]`` as float64, shape (len(users),)."""
    out = np.empty(len(users), dtype=np.float64)
    if len(users) == 0 or P.shape[1] == 0:
        out[:] = 0.0
        return out
    kernel = _pair_dots_parallel if run_parallel("pair_dots", len(users)) else _pair_dots_serial
    kernel(
        np.ascontiguousarray(P),
        np.ascontiguousarray(Q),
        np.ascontiguousarray(users),
        np.ascontiguousarray(items),
        out,
    )
    return out

