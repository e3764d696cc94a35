"""Sparse-plus-low-rank matrices, the workhorse of SoftImpute.

SoftImpute needs products with ``M = P_Omega(X - Z) + Z`` where ``Z = U diag(s) V^T``
is low rank and ``P_Omega`` keeps the observed cells. ``M`` is dense in general, but it
is a sparse matrix ``S`` (the residuals on the observed cells, with the sparsity
pattern of ``X``) plus a low-rank one, so

    M @ W   = S @ W   + U (s * (V^T W))        (n_users x k, no dense n_users x n_items)
    M^T @ Q = S^T @ Q + V (s * (U^T Q))

costs ``O(nnz k + (n_users + n_items) r k)``. The residuals themselves need ``Z`` only
on the observed cells: ``z_ui = (U[u] * s) . V[i]``, the products of :func:`pair_dots`,
fused with the subtraction in a kernel whose dot products may be vectorised (3x faster
at rank 100; it is tested against ``pair_dots``).

Every function takes NumPy arrays with SciPy sparse matrices, or CuPy arrays with
``cupyx.scipy.sparse`` matrices (the GPU path); the array module is inferred from
the arguments.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from ..backend import array_module, to_device
from ..execution import GPU_CHUNK
from .pairs import pair_dots

#: tall SVDs (rows > TALL_RATIO * columns and rows >= TALL_MIN_ROWS) go through the Gram
#: matrix: 10x faster than LAPACK's gesdd on a 100000 x 105 panel with one thread
TALL_RATIO = 8
TALL_MIN_ROWS = 2000


# reassociation lets LLVM vectorise the dot product: 3x faster than strict order
@numba.njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def _residuals_on_pairs(left, right, users, items, observed, out):
    k = left.shape[1]
    for n in numba.prange(users.shape[0]):
        u = users[n]
        i = items[n]
        acc = 0.0
        for f in range(k):
            acc += left[u, f] * right[i, f]
        out[n] = observed[n] - acc


def low_rank_on_pairs(left, right, users, items):
    """``out[n] = left[users[n]] . right[items[n]]``: a low-rank matrix on given cells.

    Parameters
    ----------
    left : array of shape (n_users, r)
        Usually ``U * s``.
    right : array of shape (n_items, r)
    users, items : int arrays of shape (n,)
        On the same device as ``left``.

    Returns
    -------
    array of shape (n,), float64 on the CPU, ``left.dtype`` on the GPU
    """
    xp = array_module(left)
    if xp is np:
        return pair_dots(left, right, users, items)
    out = xp.empty(users.shape[0], dtype=left.dtype)
    if left.shape[1] == 0:
        out[:] = 0
        return out
    # chunks bound the (chunk, r) temporaries on the device
    for start in range(0, users.shape[0], GPU_CHUNK):
        stop = start + GPU_CHUNK
        out[start:stop] = (left[users[start:stop]] * right[items[start:stop]]).sum(axis=1)
    return out


def residual_matrix(pattern, observed, users, items, U, s, V):
    """``S = P_Omega(X - U diag(s) V^T)`` as a sparse matrix with ``pattern``'s structure.

    Parameters
    ----------
    pattern : CSR matrix of shape (n_users, n_items)
        Its structure must list the observed cells in the order of ``users``/``items``
        (as :func:`observed_pattern` builds it); its values are replaced, not read.
    observed : array of shape (nnz,)
        ``X`` on the observed cells, in the same order.
    users, items : int arrays of shape (nnz,)
    U : array of shape (n_users, r); s : array of shape (r,); V : array of shape (n_items, r)

    Returns
    -------
    (S, residuals): the CSR matrix (sharing ``pattern``'s index arrays) and its values.
    """
    residuals = residuals_on_pairs(U * s, V, users, items, observed)
    return with_values(pattern, residuals), residuals


def residuals_on_pairs(left, right, users, items, observed):
    """``observed[n] - left[users[n]] . right[items[n]]``: P_Omega(X - Z) on Omega.

    The fused CPU kernel reorders the additions of each dot product (SIMD), so it
    agrees with :func:`pair_dots` to rounding (about 1e-15 relative), not bit for bit.
    """
    xp = array_module(left)
    if xp is not np or left.shape[1] == 0 or users.shape[0] == 0:
        return observed - low_rank_on_pairs(left, right, users, items)
    out = np.empty(users.shape[0])
    _residuals_on_pairs(np.ascontiguousarray(left), np.ascontiguousarray(right), users, items,
                        np.ascontiguousarray(observed, dtype=np.float64), out)
    return out


def with_values(pattern, data):
    """A CSR matrix with ``pattern``'s index arrays (shared, not copied) and ``data``."""
    if isinstance(pattern, sp.csr_matrix):
        return sp.csr_matrix((data, pattern.indices, pattern.indptr), shape=pattern.shape,
                             copy=False)
    import cupyx.scipy.sparse as csp  # noqa: PLC0415

    return csp.csr_matrix((data, pattern.indices, pattern.indptr), shape=pattern.shape)


def observed_pattern(users, items, shape, xp=np):
    """CSR structure of the observed cells, rows sorted by (user, item).

    Returns ``(pattern, order)``: reorder the ratings (and ``users``/``items``) with
    ``order`` so that entry ``n`` of the data arrays is ``pattern``'s ``n``-th stored value.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    key = users * shape[1] + items
    # already in (user, item) order (RatingMatrix.to_csr order, synthetic data): no sort
    order = np.arange(len(key)) if np.all(key[1:] > key[:-1]) else np.argsort(key,
                                                                               kind="stable")
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=shape[0]), out=indptr[1:])
    index_dtype = np.int32 if max(shape) < 2**31 and len(users) < 2**31 else np.int64
    indices = items[order].astype(index_dtype)
    indptr = indptr.astype(index_dtype)
    data = np.zeros(len(users))
    if xp is np:
        return sp.csr_matrix((data, indices, indptr), shape=shape), order
    import cupyx.scipy.sparse as csp  # noqa: PLC0415

    return csp.csr_matrix((xp.asarray(data), xp.asarray(indices), xp.asarray(indptr)),
                          shape=shape), order


def splr_matmat(S, U, s, V, W):
    """``(S + U diag(s) V^T) @ W`` for ``W`` of shape (n_items, k): shape (n_users, k)."""
    out = S @ W
    if s.shape[0]:
        out += U @ (s[:, None] * (V.T @ W))
    return out


def splr_rmatmat(S, U, s, V, Q):
    """``(S + U diag(s) V^T)^T @ Q`` for ``Q`` of shape (n_users, k): shape (n_items, k)."""
    out = S.T @ Q
    if s.shape[0]:
        out += V @ (s[:, None] * (U.T @ Q))
    return out


def sparse_plus_low_rank(S, U, s, V) -> LinearOperator:
    """``S + U diag(s) V^T`` as a :class:`scipy.sparse.linalg.LinearOperator` (CPU).

    Parameters
    ----------
    S : sparse matrix of shape (n_users, n_items)
    U : ndarray of shape (n_users, r); s : ndarray of shape (r,); V : ndarray (n_items, r)

    Usable wherever SciPy takes an operator (``svds``, ``aslinearoperator`` algebra).
    """

    def matvec(x):
        return splr_matmat(S, U, s, V, np.asarray(x).reshape(-1, 1)).ravel()

    def rmatvec(y):
        return splr_rmatmat(S, U, s, V, np.asarray(y).reshape(-1, 1)).ravel()

    return LinearOperator(
        S.shape,
        matvec=matvec,
        rmatvec=rmatvec,
        matmat=lambda W: splr_matmat(S, U, s, V, np.asarray(W)),
        rmatmat=lambda Q: splr_rmatmat(S, U, s, V, np.asarray(Q)),
        dtype=np.float64,
    )


def thin_svd(B):
    """``B = L diag(sigma) R^T`` for a tall or square ``B`` of shape (m, k), m >= k.

    Returns ``(L, sigma, R^T)`` with ``sigma`` descending, like
    ``numpy.linalg.svd(B, full_matrices=False)``. Tall panels on the CPU take the
    eigen-decomposition of ``B^T B``: ``sigma_j`` has absolute error about
    ``eps sigma_max^2 / sigma_j``, far below what the solvers threshold at. Columns of
    ``L`` are normalised ``B r_j / sigma_j`` (random directions where ``sigma_j`` is
    negligible) and re-orthonormalised by Cholesky-QR, which keeps the span of every
    leading block of columns, so ``L`` is orthonormal to rounding.
    """
    xp = array_module(B)
    m, k = B.shape
    if xp is not np or m < TALL_MIN_ROWS or m <= TALL_RATIO * k:
        return xp.linalg.svd(B, full_matrices=False)
    eigenvalues, R = np.linalg.eigh(B.T @ B)
    eigenvalues, R = eigenvalues[::-1], np.ascontiguousarray(R[:, ::-1])
    sigma = np.sqrt(np.maximum(eigenvalues, 0.0))
    L = B @ R
    tiny = sigma <= 1e-7 * max(sigma[0], np.finfo(float).tiny)
    sigma[tiny] = 0.0
    L[:, ~tiny] /= sigma[~tiny]
    if tiny.any():  # directions B does not have: any orthonormal completion will do
        L[:, tiny] = np.random.default_rng(k).standard_normal((m, int(tiny.sum())))
    for _ in range(2):  # Cholesky-QR twice: orthonormal to rounding
        C = np.linalg.cholesky(L.T @ L)
        L = scipy.linalg.solve_triangular(C, L.T, lower=True).T
    return L, sigma, R.T


def nuclear_objective(residuals, singular_values, regularization) -> float:
    """``1/2 |P_Omega(X - Z)|^2 + lambda |Z|_*`` from the residuals on Omega and ``s``."""
    xp = array_module(residuals)
    return float(0.5 * xp.dot(residuals, residuals) + regularization * singular_values.sum())


def orthonormal(xp, A):
    """Orthonormal columns spanning those of ``A`` (reduced QR)."""
    return xp.linalg.qr(A, mode="reduced")[0]


def random_orthonormal(xp, n, k, seed):
    """``n x k`` orthonormal columns from a seeded Gaussian matrix, on ``xp``'s device."""
    G = np.random.default_rng(seed).standard_normal((n, k))
    return orthonormal(xp, to_device(G, xp)) if k else xp.zeros((n, 0))


def relative_change(xp, U0, s0, V0, U1, s1, V1) -> float:
    """``|Z1 - Z0|_F^2 / max(|Z0|_F^2, |Z1|_F^2)`` from the factors, never forming Z."""
    cross = float(xp.sum((s1[:, None] * (U1.T @ U0)) * ((V1.T @ V0) * s0[None, :])))
    old, new = float(s0 @ s0), float(s1 @ s1)
    change = max(new + old - 2.0 * cross, 0.0)
    # relative to the larger of the two, so the first step from Z = 0 reads 1, not inf
    return change / max(old, new) if max(old, new) > 0 else 0.0


def augment_basis(xp, basis, extra):
    """Orthonormal columns spanning ``basis`` (orthonormal, kept first) and ``extra``."""
    n, width = basis.shape
    if extra.shape[1] == 0:
        return basis
    if width + extra.shape[1] >= n:  # small problems: the whole space
        return orthonormal(xp, xp.concatenate([basis, extra,
                                                 xp.eye(n, dtype=basis.dtype)], axis=1))
    # projected out twice, normalised, and once more: orthogonal to basis to rounding
    # even where extra lies almost inside span(basis) (as it does near convergence)
    extra = extra - basis @ (basis.T @ extra)
    extra = orthonormal(xp, extra - basis @ (basis.T @ extra))
    extra = orthonormal(xp, extra - basis @ (basis.T @ extra))
    return xp.concatenate([basis, extra], axis=1)


def dense_objective(X, mask, Z, regularization) -> float:
    """Reference objective ``1/2 |mask * (X - Z)|_F^2 + lambda |Z|_*`` on dense arrays."""
    R = np.where(mask, X - Z, 0.0)
    return float(0.5 * np.sum(R * R) + regularization * np.linalg.svd(Z, compute_uv=False).sum())
