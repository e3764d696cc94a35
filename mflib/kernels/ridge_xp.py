"""Batched per-row ridge solves written against the array module (NumPy or CuPy).

The same problems as :func:`mflib.kernels.ridge.ridge_rows` (whose numba kernel is the
CPU path): for every row ``r`` of a CSR matrix,

    x_r = argmin_x  sum_j w_rj (v_rj - Y[j] . x)^2 + reg[r] sum_a s_a x_a^2.

On a GPU a row at a time is far too fine-grained, so rows are grouped in *buckets* of
similar length (counts in ``(L/2, L]`` for L a power of two); a bucket's rows are padded
to ``L`` entries (zero features, zero weight: padding adds nothing) and solved together by
batched matrix products and one batched solve. Padding costs at most twice the gathered
entries. Everything is ``xp`` calls (``take``, ``matmul``, ``linalg.solve``), so the logic
runs — and is tested — with NumPy as ``xp`` where no GPU exists, and the same code runs
on CuPy (``device="gpu"``). With ``sample`` (Gibbs sampling) each row gets a draw from
``N(x_r, A_r^-1 / precision)`` through a Cholesky factor of ``A_r`` instead.

Index arrays (``indptr``, ``indices``) are host NumPy arrays (the bucketing is planned on
the host, once per layout); ``values``, ``weights`` and ``Y`` live on ``xp``'s device.
"""

from __future__ import annotations

import numpy as np

#: most gathered elements (rows x padded length x k) one batch may hold on the device
MAX_ELEMENTS = 1 << 26


class BucketPlan:
    """Rows grouped by padded length, with the gather indices of each batch (computed
    once per CSR structure on the host; copied to the device once, on first use, and
    reused every half-step)."""

    def __init__(self, indptr: np.ndarray, k: int, max_elements: int = MAX_ELEMENTS):
        counts = np.diff(indptr)
        self.n_rows = len(counts)
        self._on_device = {}
        self.batches = []  # (rows, positions (n_b, L) into the CSR arrays, mask (n_b, L))
        nonempty = np.flatnonzero(counts > 0)
        if nonempty.size == 0:
            return
        lengths = 1 << np.ceil(np.log2(counts[nonempty])).astype(np.int64)
        for L in np.unique(lengths):
            rows = nonempty[lengths == L]
            per_batch = max(1, int(max_elements // max(1, L * k)))
            for s in range(0, len(rows), per_batch):
                r = rows[s:s + per_batch]
                offsets = np.arange(L)
                pos = indptr[r][:, None] + offsets[None, :]
                mask = offsets[None, :] < counts[r][:, None]
                self.batches.append((r, np.where(mask, pos, 0), mask))

    def on_device(self, xp, indices: np.ndarray) -> list:
        """Each batch as device arrays ``(rows, rows_d, pos_d, mask_d, cols_d)``, where
        ``cols`` are the column indices (``indices[pos]``); cached per array module."""
        key = (xp.__name__, id(indices))
        if key not in self._on_device:
            self._on_device = {key: [(rows, xp.asarray(rows), xp.asarray(pos), xp.asarray(mask),
                                      xp.asarray(indices[pos]))
                                     for rows, pos, mask in self.batches]}
        return self._on_device[key]


def ridge_rows_xp(xp, plan: BucketPlan, indices, values, Y, reg, *, weights=None,
                  reg_scale=None, out=None, sample=None):
    """Solve every row's ridge problem on ``xp``'s device.

    Parameters
    ----------
    xp : module
        ``numpy`` or ``cupy``.
    plan : BucketPlan
        Of the CSR ``indptr``.
    indices : ndarray (nnz,), host
        Column of each entry (rows of ``Y``).
    values : xp array (nnz,)
    Y : xp array (n, k)
    reg : float or host ndarray (n_rows,)
        Ridge penalty per row.
    weights : xp array (nnz,), optional
    reg_scale : host ndarray (k,), optional
        Per-coordinate multipliers of the penalty (e.g. a bias column).
    out : xp array (n_rows, k), optional
        Written in place (rows without entries get 0) and returned.
    sample : tuple (precision, standard_normals (n_rows, k) xp array), optional
        Return draws ``x_r + L_r^-T z_r / sqrt(precision)`` (``A_r = L_r L_r^T``) instead
        of the means: Gibbs sampling of the rows' Gaussian conditionals.

    Returns
    -------
    (out, row_sse): the solutions (or draws) and each row's weighted residual sum of
    squares at them (host float64 array).
    """
    k = Y.shape[1]
    dtype = Y.dtype
    out = xp.zeros((plan.n_rows, k), dtype=dtype) if out is None else out
    reg = np.broadcast_to(np.asarray(reg, dtype=np.float64), (plan.n_rows,))
    scale = np.ones(k) if reg_scale is None else np.asarray(reg_scale, dtype=np.float64)
    diag = xp.asarray(scale, dtype=dtype)
    row_sse = np.zeros(plan.n_rows)
    if plan.n_rows:
        out[...] = 0
    for rows, rows_d, pos_d, mask_d, cols in plan.on_device(xp, indices):
        v = xp.where(mask_d, values[pos_d], 0).astype(dtype)
        w = mask_d.astype(dtype) if weights is None else \
            xp.where(mask_d, weights[pos_d], 0).astype(dtype)
        G = Y[cols]                                    # (n_b, L, k); padding rows are Y[0]...
        G = G * mask_d[:, :, None].astype(dtype)       # ...zeroed here
        GW = G * w[:, :, None]
        A = xp.matmul(xp.swapaxes(GW, 1, 2), G)        # (n_b, k, k)
        A = A + xp.asarray(reg[rows], dtype=dtype)[:, None, None] * xp.diag(diag)[None]
        b = xp.matmul(xp.swapaxes(GW, 1, 2), v[:, :, None])  # (n_b, k, 1)
        x = xp.linalg.solve(A, b)[:, :, 0]
        if sample is not None:
            precision, normals = sample
            # a draw from N(x, A^-1 / precision): with A = L L^T, L^-T z has covariance A^-1
            # (batched solves: neither NumPy nor CuPy has a batched triangular solve)
            chol = xp.linalg.cholesky(A)
            z = normals[rows_d][:, :, None] / np.sqrt(precision)
            x = x + xp.linalg.solve(xp.swapaxes(chol, 1, 2), z)[:, :, 0]
        out[rows_d] = x
        resid = v - xp.matmul(G, x[:, :, None])[:, :, 0]
        row_sse[rows] = _to_host(xp.sum(w * resid * resid, axis=1))
    return out, row_sse


def _to_host(array):
    get = getattr(array, "get", None)
    return get() if callable(get) else np.asarray(array)


def sample_rows_xp(xp, plan: BucketPlan, indices, ratings, F, alpha, prior_precision,
                   prior_shift, normals, *, offset=0.0, column_offset=None,
                   residual_mean=None, weight=0.0):
    """The Gibbs draws of :func:`mflib.kernels.gibbs.sample_rows` on ``xp``'s device.

    Every row's vector is drawn from ``N(A^-1 (shift + alpha F_J^T v), A^-1)`` with
    ``A = prior_precision + alpha F_J^T F_J`` and ``v = ratings - offset -
    column_offset[j]``; ``normals`` (n_rows, d) are the caller's standard normals. The
    same returns as the numba kernel: draws (rows without data: 0), each row's squared
    residuals at its draw and, with ``residual_mean`` (nnz,), the running mean of the
    residuals updated with ``weight`` and its row sums of squares. Arrays are on the
    device except ``indices`` and the returned sums (host).
    """
    d = F.shape[1]
    dtype = F.dtype
    Lambda = xp.asarray(prior_precision, dtype=dtype)
    shift = xp.asarray(prior_shift, dtype=dtype)
    z_all = xp.asarray(normals, dtype=dtype)
    out = xp.zeros((plan.n_rows, d), dtype=dtype)
    sse = np.zeros(plan.n_rows)
    averaging = residual_mean is not None
    mean_out = xp.array(residual_mean, dtype=dtype, copy=True) if averaging else None
    mean_sse = np.zeros(plan.n_rows) if averaging else None
    for rows, rows_d, pos_d, mask_d, cols in plan.on_device(xp, indices):
        m = mask_d.astype(dtype)
        v = ratings[pos_d] - offset
        if column_offset is not None:
            v = v - column_offset[cols]
        v = v * m
        G = F[cols] * m[:, :, None]
        Gt = xp.swapaxes(G, 1, 2)
        A = alpha * xp.matmul(Gt, G) + Lambda[None]
        b = alpha * xp.matmul(Gt, v[:, :, None]) + shift[None, :, None]
        chol = xp.linalg.cholesky(A)
        x = xp.linalg.solve(A, b)[:, :, 0] + \
            xp.linalg.solve(xp.swapaxes(chol, 1, 2), z_all[rows_d][:, :, None])[:, :, 0]
        out[rows_d] = x
        e = (v - xp.matmul(G, x[:, :, None])[:, :, 0]) * m
        sse[rows] = _to_host(xp.sum(e * e, axis=1))
        if averaging:
            before = residual_mean[pos_d]
            avg = (before + weight * (e - before)) * m
            mean_out[pos_d[mask_d]] = avg[mask_d]
            mean_sse[rows] = _to_host(xp.sum(avg * avg, axis=1))
    return out, sse, mean_out, mean_sse
