"""Per-row Gaussian draws of a Gibbs sweep (Bayesian matrix factorisation), compiled by numba.

For every row ``r`` of a CSR matrix with column indices ``J_r`` and values (targets)
``v_r``, with the other side's features ``F`` (one row per column) fixed, the
conditional of the row's vector under the likelihood ``v_rj ~ N(F[j] . x, 1/alpha)``
and the Gaussian prior ``x ~ N(m0, Lambda^-1)`` is Gaussian:

    A   = Lambda + alpha F_J^T F_J                       (posterior precision)
    mean = A^-1 (Lambda m0 + alpha F_J^T v_r)            (prior_shift = Lambda m0)
    x_r = mean + L^-T z_r,   A = L L^T,   z_r ~ N(0, I)

so ``Cov(x_r) = L^-T L^-1 = A^-1``. One Cholesky factorisation per row gives both the
mean (two triangular solves) and the noise (one more, with the row's standard normals).
The Gram product and the Cholesky solve are those of the ridge kernel
(:mod:`mflib.kernels.ridge`); the prior (a full matrix rather than a diagonal) and the
draw are added, and the gather forms the targets ``ratings - offset - column_offset[j]``
(the global mean and the other side's biases) as it goes, which saves the two passes
over the ratings that building them beforehand costs.

The standard normals ``z`` are drawn by the caller, for all rows at once, from its
seeded generator: a row's draw does not depend on the thread that computes it, so the
samples are identical whatever the number of threads. Rows without data are left at 0
(the sampler integrates them out; see :mod:`mflib.solvers.bayes`).

The same pass returns each row's residuals ``e = v - F[j] . x_r`` summed in squares
(``sse``) and, on request, the running mean of the residuals over kept samples
(``mean_in`` -> ``mean_out`` with weight ``w``: ``mean_out = mean_in + w (e - mean_in)``)
with its row sums of squares, so that the training RMSE of the averaged model costs no
pass of its own.
"""

from __future__ import annotations

import numba
import numpy as np

from ..execution import single_threaded_blas
from .ridge import _ROWS_PER_CHUNK, _cholesky_solve, _lower_gram


@numba.njit(cache=True, inline="always")
def _add_noise(L, z, x, d):
    """x += L^-T z for the lower-triangular L held in the lower triangle of ``L``."""
    y = z.copy()
    for i in range(d - 1, -1, -1):
        s = y[i]
        for p in range(i + 1, d):
            s -= L[p, i] * y[p]
        y[i] = s / L[i, i]
    for a in range(d):
        x[a] += y[a]


@numba.njit(cache=True, inline="always")
def _gather_targets(indptr, indices, ratings, offset, column_offset, F, r):
    """G = F[J_r] (n_r, d), the targets v = ratings - offset - column_offset[j] (n_r) and
    b = G^T v; ``column_offset`` may be empty (no per-column offset)."""
    d = F.shape[1]
    start = indptr[r]
    n_r = indptr[r + 1] - start
    shifted = column_offset.shape[0] > 0
    G = np.empty((n_r, d), dtype=F.dtype)
    v = np.empty(n_r, dtype=F.dtype)
    b = np.zeros(d, dtype=F.dtype)
    for m in range(n_r):
        j = indices[start + m]
        t = ratings[start + m] - offset
        if shifted:
            t -= column_offset[j]
        v[m] = t
        for a in range(d):
            G[m, a] = F[j, a]
            b[a] += F[j, a] * t
    return G, v, b


@numba.njit(parallel=True, cache=True)
def _sample_rows(indptr, indices, ratings, offset, column_offset, F, alpha, prior_precision,
                 prior_shift, normals, out, sse, mean_in, mean_out, weight, mean_sse, failed):
    n_rows = indptr.shape[0] - 1
    d = F.shape[1]
    averaging = mean_out.shape[0] > 0
    for r in numba.prange(n_rows):
        start = indptr[r]
        n_r = indptr[r + 1] - start
        sse[r] = 0.0
        if averaging:
            mean_sse[r] = 0.0
        if n_r == 0:
            for a in range(d):
                out[r, a] = 0.0
            continue
        G, v, b = _gather_targets(indptr, indices, ratings, offset, column_offset, F, r)
        A = _lower_gram(G, G, False)  # only the lower triangle is read below
        x = np.empty(d, dtype=F.dtype)
        for a in range(d):
            x[a] = alpha * b[a] + prior_shift[a]
            for c in range(a + 1):
                A[a, c] = alpha * A[a, c] + prior_precision[a, c]
        if not _cholesky_solve(A, x, d):  # x: the mean; A's lower triangle: L
            failed[r] = True
            continue
        _add_noise(A, normals[r], x, d)
        for a in range(d):
            out[r, a] = x[a]
        total = 0.0
        total_mean = 0.0
        for m in range(n_r):
            e = v[m]
            for a in range(d):
                e -= G[m, a] * x[a]
            total += e * e
            if averaging:
                avg = mean_in[start + m] + weight * (e - mean_in[start + m])
                mean_out[start + m] = avg
                total_mean += avg * avg
        sse[r] = total
        if averaging:
            mean_sse[r] = total_mean


def sample_rows(indptr, indices, ratings, F, alpha, prior_precision, prior_shift, normals, *,
                offset=0.0, column_offset=None, residual_mean=None, weight=0.0):
    """Draw every row's vector from its Gaussian conditional (module docstring).

    Parameters
    ----------
    indptr, indices, ratings : CSR arrays of the (rows x n) data
    F : ndarray (n, d)
        The fixed features of the columns.
    alpha : float
        Observation precision.
    prior_precision : ndarray (d, d)
        ``Lambda``, symmetric positive definite.
    prior_shift : ndarray (d,)
        ``Lambda m0``.
    normals : ndarray (n_rows, d)
        Standard normal draws, one row per row.
    offset : float, default 0
    column_offset : ndarray (n,), optional
        The targets are ``v_rj = ratings_rj - offset - column_offset[j]`` (e.g. the global
        mean and the other side's biases), formed while gathering rather than in a pass
        of their own.
    residual_mean : ndarray (nnz,), optional
        Running mean of the residuals before this sample (CSR order of ``values``); with
        it, the mean including this sample with ``weight`` (1 / samples so far) is
        returned too. Residuals are ``v - F[j] . x_r``.

    Returns
    -------
    x : ndarray (n_rows, d)
        The draws (rows without data: 0).
    sse : ndarray (n_rows,)
        Each row's sum of squared residuals at its draw.
    mean, mean_sse : ndarray (nnz,), ndarray (n_rows,), or None, None
        The updated running mean of the residuals and its row sums of squares (only with
        ``residual_mean``).
    """
    n_rows = len(indptr) - 1
    d = F.shape[1]
    f64 = np.float64
    F = np.ascontiguousarray(F, dtype=f64)
    normals = np.ascontiguousarray(normals, dtype=f64)
    if normals.shape != (n_rows, d):
        raise ValueError(f"normals must have shape {(n_rows, d)}, got {normals.shape}")
    out = np.empty((n_rows, d))
    sse = np.empty(n_rows)
    averaging = residual_mean is not None
    nnz = len(ratings)
    mean_in = np.ascontiguousarray(residual_mean, dtype=f64) if averaging else np.empty(0)
    if averaging and mean_in.shape != (nnz,):
        raise ValueError(f"residual_mean must have shape {(nnz,)}, got {mean_in.shape}")
    shift = np.empty(0) if column_offset is None else np.ascontiguousarray(column_offset,
                                                                           dtype=f64)
    if column_offset is not None and shift.shape != (F.shape[0],):
        raise ValueError(f"column_offset must have shape {(F.shape[0],)}, got {shift.shape}")
    mean_out = np.empty(nnz) if averaging else np.empty(0)
    mean_sse = np.empty(n_rows) if averaging else np.empty(0)
    failed = np.zeros(n_rows, dtype=np.bool_)
    # BLAS calls from inside numba's threads must not start threads of their own
    with single_threaded_blas(), numba.parallel_chunksize(_ROWS_PER_CHUNK):
        _sample_rows(np.ascontiguousarray(indptr, dtype=np.int64),
                     np.ascontiguousarray(indices, dtype=np.int64),
                     np.ascontiguousarray(ratings, dtype=f64), float(offset), shift, F,
                     float(alpha),
                     np.ascontiguousarray(prior_precision, dtype=f64),
                     np.ascontiguousarray(prior_shift, dtype=f64), normals, out, sse,
                     mean_in, mean_out, float(weight), mean_sse, failed)
    if failed.any():
        bad = np.flatnonzero(failed)
        raise np.linalg.LinAlgError(
            f"{bad.size} row posterior precision(s) are not positive definite (first: row "
            f"{bad[0]}); check the factors and hyperparameters for NaN"
        )
    if averaging:
        return out, sse, mean_out, mean_sse
    return out, sse, None, None


__all__ = ["sample_rows"]
