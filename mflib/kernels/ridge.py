"""Batched per-row ridge solves, the kernel behind ALS and variable projection.

For every row ``r`` of a CSR matrix with column indices ``J_r`` and values ``v_r``:

    x_r = argmin_x  sum_j w_rj (v_rj - Y[j] . x)^2 + reg[r] |x|^2
        = (Y_Jr^T W Y_Jr + reg[r] I)^-1  Y_Jr^T W v_r

solved by Cholesky per row, rows in parallel (numba ``prange``). Each row's work
is independent, so the result does not depend on the number of threads.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _cholesky_solve(A, b, k):
    # in-place Cholesky A = L L^T (lower triangle), then two triangular solves into b
    for j in range(k):
        s = A[j, j]
        for p in range(j):
            s -= A[j, p] * A[j, p]
        if s <= 0.0:
            return False
        d = np.sqrt(s)
        A[j, j] = d
        for i in range(j + 1, k):
            s = A[i, j]
            for p in range(j):
                s -= A[i, p] * A[j, p]
            A[i, j] = s / d
    for i in range(k):
        s = b[i]
        for p in range(i):
            s -= A[i, p] * b[p]
        b[i] = s / A[i, i]
    for i in range(k - 1, -1, -1):
        s = b[i]
        for p in range(i + 1, k):
            s -= A[p, i] * b[p]
        b[i] = s / A[i, i]
    return True


@numba.njit(parallel=True, cache=True)
def _ridge_rows(indptr, indices, values, weights, Y, reg, out, failed):
    n_rows = indptr.shape[0] - 1
    k = Y.shape[1]
    for r in numba.prange(n_rows):
        A = np.zeros((k, k))
        b = np.zeros(k)
        for n in range(indptr[r], indptr[r + 1]):
            j = indices[n]
            w = weights[n] if weights.shape[0] > 0 else 1.0
            v = values[n] * w
            for a in range(k):
                ya = Y[j, a] * w
                b[a] += Y[j, a] * v
                for c in range(a + 1):
                    A[a, c] += ya * Y[j, c]
        for a in range(k):
            A[a, a] += reg[r]
        if indptr[r + 1] == indptr[r] and reg[r] > 0.0:
            for a in range(k):
                out[r, a] = 0.0
            continue
        if _cholesky_solve(A, b, k):
            for a in range(k):
                out[r, a] = b[a]
        else:
            failed[r] = True


def ridge_rows(indptr, indices, values, Y, reg, *, weights=None, out=None) -> np.ndarray:
    """Solve one ridge problem per CSR row; see the module docstring.

    Parameters
    ----------
    indptr, indices, values : CSR arrays of the (rows x n) data matrix
    Y : ndarray, shape (n, k)
        The fixed factors (rows of ``Y`` are indexed by ``indices``).
    reg : float or ndarray of shape (n_rows,)
        Ridge penalty per row (a scalar applies to every row). Must make every
        system positive definite: rows with no data need ``reg > 0`` (they get 0).
    weights : ndarray of shape (nnz,), optional
        Per-entry weights ``w_rj`` (confidence); None means all ones.
    out : ndarray of shape (n_rows, k), optional

    Returns
    -------
    ndarray of shape (n_rows, k), float64
    """
    n_rows = len(indptr) - 1
    k = Y.shape[1]
    reg_arr = np.broadcast_to(np.asarray(reg, dtype=np.float64), (n_rows,)).copy()
    if out is None:
        out = np.zeros((n_rows, k))
    w = np.empty(0) if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    failed = np.zeros(n_rows, dtype=np.bool_)
    _ridge_rows(
        np.ascontiguousarray(indptr, dtype=np.int64),
        np.ascontiguousarray(indices, dtype=np.int64),
        np.ascontiguousarray(values, dtype=np.float64),
        w,
        np.ascontiguousarray(Y, dtype=np.float64),
        reg_arr,
        out,
        failed,
    )
    if failed.any():
        bad = np.flatnonzero(failed)
        raise np.linalg.LinAlgError(
            f"{bad.size} row system(s) are not positive definite (first: row {bad[0]}, "
            f"reg={reg_arr[bad[0]]}); use a positive regularization"
        )
    return out
