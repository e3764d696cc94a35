"""Batched per-row Lasso by cyclic coordinate descent with soft-thresholding.

For every row ``r`` of a CSR matrix with column indices ``J_r`` and values ``v_r``:

    x_r = argmin_x  |v_r - Y_Jr x|^2 + alpha[r] |x|_1

With ``A = Y_J^T Y_J`` and ``b = Y_J^T v`` (formed once per row, the Gram through BLAS),
coordinate ``f`` minimises exactly at

    x_f = S(b_f - sum_{g != f} A_fg x_g,  alpha[r] / 2) / A_ff,    S(z, t) = sign(z) max(|z| - t, 0)

Sweeps over the coordinates start from ``out`` (warm start) and stop when no
coordinate moves by more than ``tol`` times the largest ``|x_f|``, or after
``max_sweeps``. Every coordinate step is an exact minimisation, so the row objective
never rises. Rows run in parallel and independently (results do not depend on the
number of threads); a row without data gets 0, as does a coordinate with ``A_ff = 0``.
"""

from __future__ import annotations

import numba
import numpy as np

from ..execution import single_threaded_blas
from .ridge import _gather, _residual_ss


@numba.njit(cache=True, inline="always")
def _soft_threshold(z, t):
    if z > t:
        return z - t
    if z < -t:
        return z + t
    return 0.0


@numba.njit(parallel=True, cache=True)
def _lasso_rows(indptr, indices, values, weights, Y, alpha, out, max_sweeps, tol, sweeps_done,
                sse):
    n_rows = indptr.shape[0] - 1
    k = Y.shape[1]
    for r in numba.prange(n_rows):
        sse[r] = 0.0
        if indptr[r + 1] == indptr[r]:
            for f in range(k):
                out[r, f] = 0.0
            continue
        G, GW, b = _gather(indptr, indices, values, weights, Y, r)
        A = np.dot(GW.T, G)
        x = out[r].copy()
        half = 0.5 * alpha[r]
        sweep = 0
        while sweep < max_sweeps:
            sweep += 1
            largest_step = 0.0
            largest_x = 0.0
            for f in range(k):
                if A[f, f] <= 0.0:
                    new = 0.0
                else:
                    z = b[f]
                    for g in range(k):
                        if g != f:
                            z -= A[f, g] * x[g]
                    new = _soft_threshold(z, half) / A[f, f]
                step = abs(new - x[f])
                if step > largest_step:
                    largest_step = step
                if abs(new) > largest_x:
                    largest_x = abs(new)
                x[f] = new
            if largest_step <= tol * largest_x:
                break
        sweeps_done[r] = sweep
        for f in range(k):
            out[r, f] = x[f]
        sse[r] = _residual_ss(G, weights, values, indptr[r], x)


def lasso_rows(indptr, indices, values, Y, alpha, *, out=None, max_sweeps=100,
               tol=1e-6, row_sse=None) -> tuple[np.ndarray, np.ndarray]:
    """Solve one Lasso problem per CSR row; see the module docstring.

    Parameters
    ----------
    indptr, indices, values : CSR arrays of the (rows x n) data matrix
    Y : ndarray, shape (n, k)
    alpha : float or ndarray of shape (n_rows,)
        The L1 weight of each row in ``|v - Y_J x|^2 + alpha |x|_1`` (>= 0).
    out : ndarray of shape (n_rows, k), float64, optional
        Starting point (warm start), overwritten with the solution; zeros if None.
    max_sweeps : int
        Most coordinate sweeps per row.
    tol : float
        Stop a row when no coordinate moved more than ``tol * max|x_f|``.
    row_sse : float64 ndarray of shape (n_rows,), optional
        Filled with each row's residual sum of squares ``|v_r - Y_Jr x_r|^2`` at the
        returned solution (0 for empty rows), from the rows the solve already gathered.

    Returns
    -------
    x : ndarray of shape (n_rows, k)
    sweeps : ndarray of int64 of shape (n_rows,), sweeps each row used
    """
    n_rows, k = len(indptr) - 1, Y.shape[1]
    alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (n_rows,)).copy()
    if not (alpha >= 0).all():
        raise ValueError(f"alpha must be >= 0, got a minimum of {alpha.min()!r}")
    if out is None:
        out = np.zeros((n_rows, k))
    elif out.shape != (n_rows, k) or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous float64 array of shape {(n_rows, k)}, got "
            f"{out.dtype} {out.shape}"
        )
    sweeps = np.zeros(n_rows, dtype=np.int64)
    if row_sse is None:
        row_sse = np.empty(n_rows)
    elif row_sse.shape != (n_rows,) or row_sse.dtype != np.float64:
        raise ValueError(f"row_sse must be a float64 array of shape {(n_rows,)}, got "
                         f"{row_sse.dtype} {row_sse.shape}")
    with single_threaded_blas():
        _lasso_rows(
            np.ascontiguousarray(indptr, dtype=np.int64),
            np.ascontiguousarray(indices, dtype=np.int64),
            np.ascontiguousarray(values, dtype=np.float64),
            np.empty(0),
            np.ascontiguousarray(Y, dtype=np.float64),
            alpha,
            out,
            int(max_sweeps),
            float(tol),
            sweeps,
            row_sse,
        )
    return out, sweeps
