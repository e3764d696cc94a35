"""Row-wise dot products p_u . q_i over many (u, i) pairs without a (n, k) temporary."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True, fastmath=False)
def _pair_dots(P, Q, users, items, out):
    k = P.shape[1]
    for n in numba.prange(users.shape[0]):
        u = users[n]
        i = items[n]
        acc = 0.0
        for f in range(k):
            acc += P[u, f] * Q[i, f]
        out[n] = acc


def pair_dots(P: np.ndarray, Q: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``out[n] = P[users[n]] @ Q[items[n]]`` as float64, shape (len(users),)."""
    out = np.empty(len(users), dtype=np.float64)
    if len(users) == 0 or P.shape[1] == 0:
        out[:] = 0.0
        return out
    _pair_dots(
        np.ascontiguousarray(P),
        np.ascontiguousarray(Q),
        np.ascontiguousarray(users),
        np.ascontiguousarray(items),
        out,
    )
    return out

