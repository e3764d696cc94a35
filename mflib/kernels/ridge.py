"""Batched per-row ridge solves, the kernel behind ALS and variable projection.

For every row ``r`` of a CSR matrix with column indices ``J_r`` and values ``v_r``:

    x_r = argmin_x  sum_j w_rj (v_rj - Y[j] . x)^2 + reg[r] sum_a s_a x_a^2
        = (Y_Jr^T W Y_Jr + reg[r] diag(s))^-1  Y_Jr^T W v_r

(``s = reg_scale``, all ones by default).

Two inner solvers, rows in parallel (numba ``prange``):

* ``"cholesky"`` (exact): the row's factors ``Y_J`` are gathered into a contiguous
  block, the k x k Gram matrix is formed by BLAS products (BLAS limited to one
  thread per numba thread, one thread per row group) and factorised by Cholesky.
  Cost ``O(n_r k^2 + k^3)``. Cholesky reads only the lower triangle: long unweighted
  rows (``SYRK_FROM_ROWS`` entries, rank ``SYRK_FROM_RANK`` on) get it from one BLAS
  ``syrk`` (half the multiply-adds); other rows from gemm, from rank 64 on 2 x 2 column
  blocks without the upper-right one (3/4 of the work), rows of 512+ entries in slices
  that stay in cache.
  A row with fewer entries than ``k`` (most rows of a rating matrix at large ranks)
  is solved in its n_r-dimensional dual instead: with ``H = W^(1/2) Y_J`` and
  ``D = reg[r] diag(s)``, the push-through identity
  ``(H^T H + D)^-1 H^T = D^-1 H^T (H D^-1 H^T + I)^-1`` gives the same solution from
  an n_r x n_r system whose eigenvalues are all at least 1. Cost
  ``O(n_r^2 k + n_r^3)``. It needs every penalty ``reg[r] s_a`` positive; rows where
  one is zero use the primal system.
* ``"cg"`` (inexact, for large ranks): ``cg_steps`` conjugate-gradient steps on the
  same normal equations, warm-started from ``out`` (the previous factors), with the
  matrix applied as ``Y_J^T W (Y_J x) + reg x`` from a gathered copy of ``Y_J``.
  Cost ``O(n_r k cg_steps)`` per row. CG minimises the row's quadratic over a Krylov
  space that contains the starting point, so the row objective never rises.

Each row's work is independent and runs the same instructions whatever the number
of threads, so results do not depend on the thread count. A row with no data gets
the minimum-norm solution 0. Each row's residual sum of squares at its solution can
be returned too (``row_sse``), so a fit gets its loss without another pass.
"""

from __future__ import annotations

import llvmlite.binding as llvm
import numba
import numpy as np
from numba import types
from numba.extending import get_cython_function_address, overload

from ..execution import single_threaded_blas
from ..validation import check_choice, check_positive_int

SOLVERS = ("cholesky", "cg")

# Rows are handed to threads in chunks of this many as threads free up, not in one
# static block per thread: row costs vary by orders of magnitude (popular items have
# low ids in MovieLens), and static blocks left one thread idle. Rank 128 on ml-100k:
# 0.106 s -> 0.094 s per pair of half-steps on 2 threads.
_ROWS_PER_CHUNK = 16


# Which rows get their Gram matrix from one BLAS syrk (one triangle: half the
# multiply-adds) rather than gemm on column blocks (3/4 of them from rank 64), both
# single-threaded BLAS inside a numba thread: unweighted rows of at least SYRK_FROM_ROWS
# entries at ranks from SYRK_FROM_RANK on. Whole row solves on the 10M-rating synthetic
# matrix, one thread, best of 5 (2 shared cores, load ~8), ns per rating, gemm -> syrk:
# rank 64 float64 rows of ~1000 entries 742 -> 640, float32 301 -> 213; rows of ~143
# entries 663 -> 829 (float64), 408 -> 386 (float32). syrk's own overhead loses on short
# rows; below rank 32 gemm won at every length (Gram alone, k = 10).
SYRK_FROM_RANK = 32
SYRK_FROM_ROWS = 512
_NEVER = np.iinfo(np.int64).max


def _syrk_from_rows(k: int) -> int:
    return SYRK_FROM_ROWS if k >= SYRK_FROM_RANK else _NEVER


# Reassociation lets LLVM vectorise the dot-product reductions below. The code a row
# runs does not depend on the thread that runs it, so results stay thread-count free;
# "nnan"/"ninf" are left out so the positivity test still sees NaN.
_FAST = {"reassoc", "contract", "nsz", "arcp"}


@numba.njit(cache=True, fastmath=_FAST)
def _cholesky_solve(A, b, k):
    # in-place Cholesky A = L L^T (lower triangle), then two triangular solves into b
    for j in range(k):
        s = A[j, j]
        for p in range(j):
            s -= A[j, p] * A[j, p]
        if not s > 0.0:  # also catches NaN
            return False
        d = np.sqrt(s)
        A[j, j] = d
        # column j below the diagonal, four rows at a time so that each load of
        # L[j, p] serves four multiply-adds (20% faster at k = 64..143)
        i = j + 1
        while i + 3 < k:
            s0, s1, s2, s3 = A[i, j], A[i + 1, j], A[i + 2, j], A[i + 3, j]
            for p in range(j):
                ljp = A[j, p]
                s0 -= A[i, p] * ljp
                s1 -= A[i + 1, p] * ljp
                s2 -= A[i + 2, p] * ljp
                s3 -= A[i + 3, p] * ljp
            A[i, j] = s0 / d
            A[i + 1, j] = s1 / d
            A[i + 2, j] = s2 / d
            A[i + 3, j] = s3 / d
            i += 4
        for row in range(i, k):
            s = A[row, j]
            for p in range(j):
                s -= A[row, p] * A[j, p]
            A[row, j] = s / d
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


@numba.njit(cache=True, inline="always")
def _gather(indptr, indices, values, weights, Y, r):
    """G = Y[J_r] (n_r, k), GW = W G (G itself when unweighted), b = G^T W v."""
    k = Y.shape[1]
    start = indptr[r]
    n_r = indptr[r + 1] - start
    G = np.empty((n_r, k), dtype=Y.dtype)
    b = np.zeros(k, dtype=Y.dtype)
    for m in range(n_r):
        j = indices[start + m]
        v = values[start + m]
        for a in range(k):
            G[m, a] = Y[j, a]
    if weights.shape[0] == 0:
        for m in range(n_r):
            v = values[start + m]
            for a in range(k):
                b[a] += G[m, a] * v
        return G, G, b
    GW = np.empty((n_r, k), dtype=Y.dtype)
    for m in range(n_r):
        w = weights[start + m]
        v = values[start + m] * w
        for a in range(k):
            GW[m, a] = G[m, a] * w
            b[a] += G[m, a] * v
    return G, GW, b


# from this rank on, the Gram matrix is built from 2 x 2 column blocks, skipping the
# upper-right one (Cholesky reads only the lower triangle): 3/4 of the multiply-adds
_BLOCKED_GRAM_RANK = 64


# Rows of at least 4 x this many entries are multiplied in slices of about this many
# and summed: about 15% faster gemm for rows of 1000+ entries at rank 64 (the slices
# stay in L2 cache); shorter rows are multiplied in one go.
_GRAM_SLICE = 128


@numba.njit(cache=True)
def _lower_gram(GW, G, weighted):
    """The lower triangle of the symmetric GW^T G (GW = G with rows weighted, or G
    itself when ``weighted`` is False); above the diagonal may be left unset."""
    n_r, k = G.shape
    n_slices = n_r // _GRAM_SLICE if n_r >= 4 * _GRAM_SLICE else 1
    if n_slices == 1 and k < _BLOCKED_GRAM_RANK:
        return np.dot(GW.T, G)
    h = k // 2 if k >= _BLOCKED_GRAM_RANK else k
    A = np.empty((k, k), dtype=G.dtype)
    for s in range(n_slices):
        m0 = s * n_r // n_slices
        m1 = (s + 1) * n_r // n_slices
        G1 = np.ascontiguousarray(G[m0:m1, :h])
        W1 = np.ascontiguousarray(GW[m0:m1, :h]) if weighted else G1
        _accumulate(A[:h, :h], np.dot(W1.T, G1), s)
        if h < k:
            G2 = np.ascontiguousarray(G[m0:m1, h:])
            W2 = np.ascontiguousarray(GW[m0:m1, h:]) if weighted else G2
            _accumulate(A[h:, :h], np.dot(W2.T, G1), s)
            _accumulate(A[h:, h:], np.dot(W2.T, G2), s)
    return A


# BLAS syrk (C <- A A^T, one triangle: half the multiply-adds of a gemm) from SciPy's
# cython_blas, called by symbol name. The address is registered with LLVM in every
# process that imports this module, so kernels that call it stay cacheable on disk
# (a ctypes pointer would freeze one process's address into the cache).
for _name in ("dsyrk", "ssyrk"):
    llvm.add_symbol(f"mflib_{_name}",
                    get_cython_function_address("scipy.linalg.cython_blas", _name))
_SYRK_SIGNATURE = types.void(*([types.voidptr] * 10))
_dsyrk = types.ExternalFunction("mflib_dsyrk", _SYRK_SIGNATURE)
_ssyrk = types.ExternalFunction("mflib_ssyrk", _SYRK_SIGNATURE)


def _syrk(chars, ints, scalars, G, A):
    """``A`` (k, k) <- the lower triangle of ``G^T G`` (see :func:`_lower_syrk`)."""
    raise NotImplementedError("compiled only")


@overload(_syrk)
def _syrk_typed(chars, ints, scalars, G, A):
    call = _dsyrk if G.dtype == types.float64 else _ssyrk

    def impl(chars, ints, scalars, G, A):
        call(chars[0:1].ctypes, chars[1:2].ctypes, ints[0:1].ctypes, ints[1:2].ctypes,
             scalars[0:1].ctypes, G.ctypes, ints[0:1].ctypes, scalars[1:2].ctypes, A.ctypes,
             ints[0:1].ctypes)

    return impl


@numba.njit(cache=True)
def _lower_syrk(G):
    """The lower triangle of ``G^T G`` for a C-contiguous (n_r, k) ``G``, by one BLAS
    syrk; above the diagonal is left unset.

    BLAS is column-major: the row-major ``G`` is the (k, n_r) matrix ``G^T`` with leading
    dimension k, so syrk("U", "N") forms ``G^T G`` in the column-major upper triangle,
    which in row-major memory is the lower one."""
    n_r, k = G.shape
    A = np.empty((k, k), dtype=G.dtype)
    ints = np.empty(2, dtype=np.int32)
    ints[0] = k
    ints[1] = n_r
    chars = np.empty(2, dtype=np.uint8)
    chars[0] = 85  # "U"
    chars[1] = 78  # "N"
    scalars = np.empty(2, dtype=G.dtype)
    scalars[0] = 1.0  # alpha
    scalars[1] = 0.0  # beta
    _syrk(chars, ints, scalars, G, A)
    return A


@numba.njit(cache=True, inline="always")
def _accumulate(block, product, s):
    if s == 0:
        block[:, :] = product
    else:
        block += product


@numba.njit(cache=True, fastmath=_FAST)
def _residual_ss(G, weights, values, start, x):
    """sum_m w_m (v_m - G[m] . x)^2 over a gathered row, accumulated in float64."""
    n_r, k = G.shape
    weighted = weights.shape[0] > 0
    total = 0.0
    for m in range(n_r):
        e = values[start + m]
        for a in range(k):
            e -= G[m, a] * x[a]
        e2 = np.float64(e) * np.float64(e)
        total += e2 * weights[start + m] if weighted else e2
    return total


@numba.njit(cache=True, fastmath=_FAST)
def _solve_dual(indptr, indices, values, weights, Y, r, reg_r, scale, out):
    """Row ``r`` through its n_r x n_r dual system (n_r < k, every penalty positive).

    Returns the row's weighted residual sum of squares, or -1 if the system failed."""
    k = Y.shape[1]
    start = indptr[r]
    n_r = indptr[r + 1] - start
    inv_d = np.empty(k, dtype=Y.dtype)
    for a in range(k):
        inv_d[a] = 1.0 / (reg_r * scale[a])
    H = np.empty((n_r, k), dtype=Y.dtype)  # W^(1/2) Y_J
    HD = np.empty((n_r, k), dtype=Y.dtype)  # H D^-1
    c = np.empty(n_r, dtype=Y.dtype)  # W^(1/2) v, then the dual solution z
    weighted = weights.shape[0] > 0
    for m in range(n_r):
        j = indices[start + m]
        root = np.sqrt(weights[start + m]) if weighted else 1.0
        c[m] = values[start + m] * root
        for a in range(k):
            h = Y[j, a] * root
            H[m, a] = h
            HD[m, a] = h * inv_d[a]
    M = np.dot(HD, H.T)
    for m in range(n_r):
        M[m, m] += 1.0
    if not _cholesky_solve(M, c, n_r):
        return -1.0
    x = np.zeros(k, dtype=Y.dtype)  # x = D^-1 H^T z, accumulated row by row of HD
    sse = 0.0
    for m in range(n_r):
        z = c[m]
        # W^(1/2)(v - Y_J x) = c - H D^-1 H^T z = z, as (H D^-1 H^T + I) z = c
        sse += np.float64(z) * np.float64(z)
        for a in range(k):
            x[a] += HD[m, a] * z
    for a in range(k):
        out[r, a] = x[a]
    return sse


@numba.njit(parallel=True, cache=True)
def _ridge_cholesky(indptr, indices, values, weights, Y, reg, out, scale, failed, sse,
                    syrk_from_rows):
    n_rows = indptr.shape[0] - 1
    k = Y.shape[1]
    min_scale = scale.min() if k > 0 else 0.0
    for r in numba.prange(n_rows):
        n_r = indptr[r + 1] - indptr[r]
        sse[r] = 0.0
        if n_r == 0:
            for a in range(k):
                out[r, a] = 0.0
            continue
        if n_r < k and reg[r] * min_scale > 0.0:
            row_sse = _solve_dual(indptr, indices, values, weights, Y, r, reg[r], scale, out)
            if row_sse < 0.0:
                failed[r] = True
            else:
                sse[r] = row_sse
            continue
        G, GW, b = _gather(indptr, indices, values, weights, Y, r)
        # the Gram matrix through BLAS (single-threaded inside each numba thread): one
        # syrk for long unweighted rows, gemm on column blocks otherwise
        if n_r >= syrk_from_rows and weights.shape[0] == 0:
            A = _lower_syrk(G)
        else:
            A = _lower_gram(GW, G, weights.shape[0] > 0)
        for a in range(k):
            A[a, a] += reg[r] * scale[a]
        if _cholesky_solve(A, b, k):
            for a in range(k):
                out[r, a] = b[a]
            sse[r] = _residual_ss(G, weights, values, indptr[r], b)
        else:
            failed[r] = True


@numba.njit(cache=True, inline="always", fastmath=_FAST)
def _normal_matvec(G, w, weighted, reg, scale, x, t, y):
    """y = G^T W G x + reg diag(scale) x for the gathered rows G (n_r, k); t is scratch."""
    n_r, k = G.shape
    for a in range(k):
        y[a] = reg * scale[a] * x[a]
    for m in range(n_r):
        s = 0.0
        for a in range(k):
            s += G[m, a] * x[a]
        if weighted:
            s *= w[m]
        t[m] = s
        for a in range(k):
            y[a] += s * G[m, a]


@numba.njit(parallel=True, cache=True, fastmath=_FAST)
def _ridge_cg(indptr, indices, values, weights, Y, reg, out, scale, sse, n_steps):
    n_rows = indptr.shape[0] - 1
    k = Y.shape[1]
    weighted = weights.shape[0] > 0
    for r in numba.prange(n_rows):
        start = indptr[r]
        n_r = indptr[r + 1] - start
        sse[r] = 0.0
        if n_r == 0:
            for a in range(k):
                out[r, a] = 0.0
            continue
        # gather Y_J once: every matrix-vector product then reads contiguous memory
        G = np.empty((n_r, k), dtype=Y.dtype)
        w = np.ones(n_r, dtype=Y.dtype)
        b = np.zeros(k, dtype=Y.dtype)
        for m in range(n_r):
            j = indices[start + m]
            if weighted:
                w[m] = weights[start + m]
            v = values[start + m] * w[m]
            for a in range(k):
                G[m, a] = Y[j, a]
                b[a] += Y[j, a] * v
        x = out[r].copy()
        t = np.empty(n_r, dtype=Y.dtype)
        Ap = np.empty(k, dtype=Y.dtype)
        _normal_matvec(G, w, weighted, reg[r], scale, x, t, Ap)
        res = b - Ap
        p = res.copy()
        rr = 0.0
        for a in range(k):
            rr += res[a] * res[a]
        for _ in range(n_steps):
            if rr == 0.0:
                break
            _normal_matvec(G, w, weighted, reg[r], scale, p, t, Ap)
            pAp = 0.0
            for a in range(k):
                pAp += p[a] * Ap[a]
            if not pAp > 0.0:
                break
            alpha = rr / pAp
            rr_new = 0.0
            for a in range(k):
                x[a] += alpha * p[a]
                res[a] -= alpha * Ap[a]
                rr_new += res[a] * res[a]
            beta = rr_new / rr
            rr = rr_new
            for a in range(k):
                p[a] = res[a] + beta * p[a]
        for a in range(k):
            out[r, a] = x[a]
        sse[r] = _residual_ss(G, weights, values, start, x)


def ridge_rows(indptr, indices, values, Y, reg, *, weights=None, out=None, solver="cholesky",
               cg_steps=3, dtype=None, reg_scale=None, row_sse=None) -> np.ndarray:
    """Solve one ridge problem per CSR row; see the module docstring.

    Parameters
    ----------
    indptr, indices, values : CSR arrays of the (rows x n) data matrix
    Y : ndarray, shape (n, k)
        The fixed factors (rows of ``Y`` are indexed by ``indices``).
    reg : float or ndarray of shape (n_rows,)
        Ridge penalty per row (a scalar applies to every row). Must make every
        system of a non-empty row positive definite; rows with no data get 0.
    weights : ndarray of shape (nnz,), optional
        Per-entry weights ``w_rj`` (confidence); None means all ones.
    out : ndarray of shape (n_rows, k), optional
        Written in place and returned. With ``solver="cg"`` its contents are the
        starting point (zeros when ``out`` is None).
    solver : {"cholesky", "cg"}, default "cholesky"
        Exact Cholesky solves, or ``cg_steps`` warm-started conjugate-gradient steps.
    cg_steps : int, default 3
    dtype : {None, float32, float64}
        Working precision; None means float64. ``out``, when given, must have it.
    reg_scale : ndarray of shape (k,), optional
        Per-coordinate multipliers of the penalty: coordinate ``a`` of row ``r`` is
        penalised by ``reg[r] * reg_scale[a]`` (e.g. a bias column with its own
        regularisation). None means all ones.
    row_sse : float64 ndarray of shape (n_rows,), optional
        Filled with each row's weighted residual sum of squares at the returned
        solution, ``sum_j w_rj (v_rj - Y[j] . x_r)^2`` (0 for empty rows), from data the
        solve already holds: a fit's loss comes at no extra pass over the ratings.

    Returns
    -------
    ndarray of shape (n_rows, k)
    """
    check_choice(solver, "solver", SOLVERS)
    dt = np.dtype(np.float64 if dtype is None else dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    n_rows = len(indptr) - 1
    k = Y.shape[1]
    reg_arr = np.broadcast_to(np.asarray(reg, dtype=dt), (n_rows,)).copy()
    if out is None:
        out = np.zeros((n_rows, k), dtype=dt)
    elif out.shape != (n_rows, k) or out.dtype != dt or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous {dt} array of shape {(n_rows, k)}, got "
            f"{out.dtype} {out.shape}"
        )
    w = np.empty(0, dt) if weights is None else np.ascontiguousarray(weights, dtype=dt)
    if w.shape[0] and (w.shape != (len(values),) or not (w >= 0).all()):
        raise ValueError(
            f"weights must hold {len(values)} non-negative values (one per entry), got "
            f"shape {w.shape} with minimum {w.min()}"
        )
    scale = np.ones(k, dt) if reg_scale is None else np.asarray(reg_scale, dtype=dt)
    if scale.shape != (k,) or not (scale >= 0).all():
        raise ValueError(f"reg_scale must hold {k} non-negative values, got {reg_scale!r}")
    args = (
        np.ascontiguousarray(indptr, dtype=np.int64),
        np.ascontiguousarray(indices, dtype=np.int64),
        np.ascontiguousarray(values, dtype=dt),
        w,
        np.ascontiguousarray(Y, dtype=dt),
        reg_arr,
        out,
        scale,
    )
    if row_sse is None:
        row_sse = np.empty(n_rows)
    elif row_sse.shape != (n_rows,) or row_sse.dtype != np.float64:
        raise ValueError(f"row_sse must be a float64 array of shape {(n_rows,)}, got "
                         f"{row_sse.dtype} {row_sse.shape}")
    if solver == "cg":
        with numba.parallel_chunksize(_ROWS_PER_CHUNK):
            _ridge_cg(*args, row_sse, check_positive_int(cg_steps, "cg_steps"))
        return out
    failed = np.zeros(n_rows, dtype=np.bool_)
    # BLAS calls from inside numba's threads must not start threads of their own
    with single_threaded_blas(), numba.parallel_chunksize(_ROWS_PER_CHUNK):
        _ridge_cholesky(*args, failed, row_sse, _syrk_from_rows(k))
    if failed.any():
        bad = np.flatnonzero(failed)
        raise np.linalg.LinAlgError(
            f"{bad.size} row system(s) are not positive definite (first: row {bad[0]}, "
            f"reg={reg_arr[bad[0]]}); use a positive regularization, or check the factors "
            "for NaN"
        )
    return out
