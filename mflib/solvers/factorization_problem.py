"""The factorisation objective with its exact derivatives, for the second-order solvers.

Model and objective (``N = |Omega|``)::

    r_hat_ui = o_ui + p_u . q_i [+ b_u + c_i],        e_ui = r_ui - r_hat_ui
    f(x) = 1/(2N) [ sum_Omega e_ui^2 + lam (|P|^2 + |Q|^2) + lam_b (|b|^2 + |c|^2) ]

``o_ui = mu + b0_u + c0_i`` is a fixed offset (the centring,
:func:`mflib.solvers.baselines.center`: nothing, the training mean, or the regularised
bias baseline) and the biases ``b, c`` are variables only with ``use_bias``. ``lam`` is
``regularization`` and ``lam_b`` is ``bias_regularization``: each multiplies its
penalty as written inside the bracket. With the mean as offset and variable biases,
``2N f`` is exactly the objective of :class:`~mflib.solvers.als.ALS` with
``regularization_scale="sum"`` (same minimisers); the scale ``1/(2N)`` is the one of
:class:`~mflib.solvers.euclidean_gd.EuclideanGD` and of the Grassmann family's ``f(U)``,
so gradient norms are on one scale across them.

The variables form one vector ``x = [P.ravel(), Q.ravel(), b, c]`` of length
``d = (n_users + n_items)(k + use_bias)``. With ``J`` the Jacobian of ``r_hat`` over the
ratings (row ``ui``: ``q_i`` at ``p_u``, ``p_u`` at ``q_i``, 1 at ``b_u`` and ``c_i``)::

    grad f = (1/N) (-J^T e + Lambda x)
    Hess f = (1/N) (J^T J + Lambda - S),   S = sum_Omega e_ui (E_{p_u q_i} + E_{q_i p_u})

where ``Lambda`` is the diagonal of penalties and ``S`` carries the residual times the
second derivative of ``p_u . q_i`` (an identity block between ``p_u`` and ``q_i``): the
term Gauss-Newton drops. Products with ``J``, ``J^T`` and ``S`` run in two numba passes
over the ratings (by user in CSR order, by item in CSC order, rows in parallel), with
SciPy-sparse references beside them for the tests; the dense Hessian is assembled from
the sparse ``J`` and ``S`` for small problems only.

The Hessian's diagonal blocks per user ``[b_u, p_u]`` and per item ``[c_i, q_i]`` are
``(1/N)(sum q~ q~^T + Lambda)``: the normal matrices of the ALS half-steps (``S`` has no
diagonal block), the block-Jacobi preconditioner of the conjugate-gradient solves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from ..data.layout import TrainingLayout
from ..execution import kernel_threads
from ..kernels import pair_dots

#: bytes of one float64
_FLOAT = 8


# ====================================================================== kernels
# A pass over the ratings does per rating about what pair_dots does per pair, and a
# parallel region costs about as much on a busy machine (a thread wake-up): the passes
# share pair_dots' serial cut-off (SERIAL_BELOW["pair_dots"]) in ratings. On ml-100k
# (100k ratings, rank 10) a Hessian-vector product took 1.7 ms on one thread and 16 ms
# on two under a load average of 3 on 2 cores.
def _threads(nnz: int):
    return kernel_threads("pair_dots", nnz)


# Reassociation lets LLVM vectorise the length-k loops; every row's arithmetic is the same
# whatever thread runs it, so results do not depend on the thread count.
_FAST = {"reassoc", "contract", "nsz", "arcp"}


@numba.njit(parallel=True, cache=True, fastmath=_FAST)
def _by_user(indptr, items, P, Q, dP, dQ, db, dc, e, with_residual, delta, out_p, out_b):
    """By user (CSR): ``delta_n = dp_u.q_i + p_u.dq_i [+ db_u + dc_i]`` (J v), and the
    user rows of ``J^T delta [- S v]``: ``sum_i delta q_i [- e dq_i]`` and ``sum_i delta``."""
    k = P.shape[1]
    biased = db.shape[0] > 0
    for u in numba.prange(P.shape[0]):
        acc = np.zeros(k)
        acc_b = 0.0
        for n in range(indptr[u], indptr[u + 1]):
            i = items[n]
            d = 0.0
            for a in range(k):
                d += dP[u, a] * Q[i, a] + P[u, a] * dQ[i, a]
            if biased:
                d += db[u] + dc[i]
            delta[n] = d
            acc_b += d
            if with_residual:
                en = e[n]
                for a in range(k):
                    acc[a] += d * Q[i, a] - en * dQ[i, a]
            else:
                for a in range(k):
                    acc[a] += d * Q[i, a]
        for a in range(k):
            out_p[u, a] = acc[a]
        if biased:
            out_b[u] = acc_b


@numba.njit(parallel=True, cache=True, fastmath=_FAST)
def _weighted_by_user(indptr, items, Q, w, out_p, out_b):
    """By user (CSR): ``sum_i w_ui q_i`` and ``sum_i w_ui`` (the user rows of ``J^T w``)."""
    k = Q.shape[1]
    biased = out_b.shape[0] > 0
    for u in numba.prange(out_p.shape[0]):
        acc = np.zeros(k)
        acc_b = 0.0
        for n in range(indptr[u], indptr[u + 1]):
            i = items[n]
            wn = w[n]
            acc_b += wn
            for a in range(k):
                acc[a] += wn * Q[i, a]
        for a in range(k):
            out_p[u, a] = acc[a]
        if biased:
            out_b[u] = acc_b


@numba.njit(parallel=True, cache=True, fastmath=_FAST)
def _by_item(indptr, users, positions, P, dP, delta, e, with_residual, out_q, out_c):
    """By item (CSC; ``positions`` maps each entry to its CSR index): the item rows of
    ``J^T delta [- S v]``: ``sum_u delta p_u [- e dp_u]`` and ``sum_u delta``."""
    k = P.shape[1]
    biased = out_c.shape[0] > 0
    for i in numba.prange(out_q.shape[0]):
        acc = np.zeros(k)
        acc_c = 0.0
        for m in range(indptr[i], indptr[i + 1]):
            u = users[m]
            n = positions[m]
            d = delta[n]
            acc_c += d
            if with_residual:
                en = e[n]
                for a in range(k):
                    acc[a] += d * P[u, a] - en * dP[u, a]
            else:
                for a in range(k):
                    acc[a] += d * P[u, a]
        for a in range(k):
            out_q[i, a] = acc[a]
        if biased:
            out_c[i] = acc_c


@numba.njit(parallel=True, cache=True, fastmath=_FAST)
def _factor_blocks(indptr, others, F, biased, diagonal, factor, out):
    """Per row ``r``: ``sum_j f~_j f~_j^T + diag(diagonal)`` with ``f~ = [1, F_j]``
    (biased) or ``F_j`` over the row's entries ``j``, or with ``factor`` its Cholesky
    factor (lower triangle; NaN on the diagonal where it is not positive definite)."""
    k = F.shape[1]
    m = k + 1 if biased else k
    shift = 1 if biased else 0
    for r in numba.prange(out.shape[0]):
        G = out[r]
        G[:, :] = 0.0
        f = np.ones(m)
        for n in range(indptr[r], indptr[r + 1]):
            j = others[n]
            for a in range(k):
                f[a + shift] = F[j, a]
            for a in range(m):
                fa = f[a]
                for b in range(a + 1):
                    G[a, b] += fa * f[b]
        for a in range(m):
            G[a, a] += diagonal[a]
            for b in range(a):
                G[b, a] = G[a, b]
        if not factor:
            continue
        for j in range(m):  # Cholesky in the lower triangle
            s = G[j, j]
            for p in range(j):
                s -= G[j, p] * G[j, p]
            d = np.sqrt(s) if s > 0.0 else np.nan
            G[j, j] = d
            for i in range(j + 1, m):
                t = G[i, j]
                for p in range(j):
                    t -= G[i, p] * G[j, p]
                G[i, j] = t / d


@numba.njit(parallel=True, cache=True, fastmath=_FAST)
def _solve_blocks(factors, V, v_bias, scale, out, out_bias):
    """Per row ``r``: ``scale (L_r L_r^T)^-1 [v_bias[r], V[r]]`` (the bias entry only when
    ``v_bias`` is not empty) into ``[out_bias[r], out[r]]``, for the lower-triangular
    factors ``L_r`` (bias first)."""
    k = V.shape[1]
    biased = v_bias.shape[0] > 0
    shift = 1 if biased else 0
    m = k + shift
    for r in numba.prange(V.shape[0]):
        L = factors[r]
        rhs = np.empty(m)
        if biased:
            rhs[0] = v_bias[r]
        for a in range(k):
            rhs[a + shift] = V[r, a]
        y = np.empty(m)
        for i in range(m):
            t = rhs[i]
            for p in range(i):
                t -= L[i, p] * y[p]
            y[i] = t / L[i, i]
        for i in range(m - 1, -1, -1):
            t = y[i]
            for p in range(i + 1, m):
                t -= L[p, i] * rhs[p]
            rhs[i] = t / L[i, i]
        if biased:
            out_bias[r] = scale * rhs[0]
        for a in range(k):
            out[r, a] = scale * rhs[a + shift]


class FactorizationProblem:
    """``f``, its gradient, Hessian-vector and Gauss-Newton products on one training set.

    Parameters
    ----------
    layout : TrainingLayout
        The training layout (:func:`mflib.data.layout.training_layout`).
    n_factors : int
        Rank ``k``.
    regularization : float
        ``lam`` on ``|P|^2 + |Q|^2``.
    bias_regularization : float
        ``lam_b`` on ``|b|^2 + |c|^2`` (unused without biases).
    use_bias : bool
        Whether ``b_u + c_i`` are variables of the model.
    global_mean : float, default 0.0
    user_offset, item_offset : ndarray of shape (n_users,), (n_items,), optional
        The fixed offset ``o_ui = global_mean + user_offset[u] + item_offset[i]``.
    """

    def __init__(self, layout: TrainingLayout, n_factors: int, regularization: float,
                 bias_regularization: float, use_bias: bool, global_mean: float = 0.0,
                 user_offset=None, item_offset=None):
        self.layout = layout
        self.k = int(n_factors)
        self.lam = float(regularization)
        self.lam_b = float(bias_regularization)
        self.use_bias = bool(use_bias)
        self.n_users, self.n_items = layout.shape
        self.nnz = layout.nnz
        self.global_mean = float(global_mean)
        self.user_offset, self.item_offset = user_offset, item_offset
        self.rows = layout.user_of_rating  # CSR order: user of every rating
        self.cols = layout.user_items  # CSR order: item of every rating
        targets = layout.ratings_csr - self.global_mean
        if user_offset is not None:
            targets = targets - user_offset[self.rows]
        if item_offset is not None:
            targets = targets - item_offset[self.cols]
        self.targets = targets
        nu, ni, k = self.n_users, self.n_items, self.k
        self.sizes = (nu * k, ni * k) + ((nu, ni) if use_bias else ())
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.n_variables = int(self.offsets[-1])
        # the penalty of every variable, Lambda's diagonal
        self.penalty = np.concatenate(
            [np.full(nu * k + ni * k, self.lam)]
            + ([np.full(nu + ni, self.lam_b)] if use_bias else []))
        self._no_bias = np.zeros(0)

    # ------------------------------------------------------------------ variables
    def split(self, x: np.ndarray):
        """Views ``(P, Q, b, c)`` of ``x`` (``b``, ``c`` None without biases)."""
        o, k = self.offsets, self.k
        P = x[o[0]:o[1]].reshape(self.n_users, k)
        Q = x[o[1]:o[2]].reshape(self.n_items, k)
        if not self.use_bias:
            return P, Q, None, None
        return P, Q, x[o[2]:o[3]], x[o[3]:o[4]]

    def pack(self, P, Q, b=None, c=None) -> np.ndarray:
        """The vector ``x`` of ``(P, Q[, b, c])``."""
        parts = [np.ravel(P), np.ravel(Q)] + ([np.ravel(b), np.ravel(c)] if self.use_bias
                                              else [])
        x = np.concatenate(parts).astype(np.float64)
        if x.shape != (self.n_variables,):
            raise ValueError(f"the blocks hold {x.size} values; this problem has "
                             f"{self.n_variables} variables")
        return x

    def biases(self, x):
        """The model's total ``(user_bias, item_bias)`` at ``x``: fixed offsets plus the
        variable biases (None where neither exists)."""
        _, _, b, c = self.split(x)

        def total(fixed, variable):
            if fixed is None:
                return None if variable is None else variable.copy()
            return fixed.copy() if variable is None else fixed + variable

        return total(self.user_offset, b), total(self.item_offset, c)

    def _matrix(self, values_csr) -> sp.csr_matrix:
        return self.layout.csr_matrix(values_csr)

    def _bias_views(self, x):
        _, _, b, c = self.split(x)
        return (self._no_bias, self._no_bias) if b is None else (b, c)

    # ------------------------------------------------------------------ value, gradient
    def residuals(self, x) -> np.ndarray:
        """``e = r - r_hat`` for every rating, CSR order, shape (nnz,)."""
        P, Q, b, c = self.split(x)
        with _threads(self.nnz):
            e = self.targets - pair_dots(P, Q, self.rows, self.cols)
        if self.use_bias:
            e -= b[self.rows] + c[self.cols]
        return e

    def value(self, x, e=None) -> float:
        e = self.residuals(x) if e is None else e
        return 0.5 * float(e @ e + self.penalty @ (x * x)) / self.nnz

    def cost(self, x) -> tuple[float, np.ndarray]:
        """``(f(x), residuals)``: the signature the line search expects."""
        e = self.residuals(x)
        return self.value(x, e), e

    def transpose_product(self, x, w) -> np.ndarray:
        """``J(x)^T w`` for a per-rating ``w`` (CSR order), shape (d,)."""
        lay = self.layout
        P, Q, _, _ = self.split(x)
        out = np.empty(self.n_variables)
        oP, oQ, _, _ = self.split(out)
        ob, oc = self._bias_views(out)
        w = np.ascontiguousarray(w, dtype=np.float64)
        with _threads(self.nnz):
            _weighted_by_user(lay.user_indptr, lay.user_items, np.ascontiguousarray(Q), w,
                              oP, ob)
            _by_item(lay.item_indptr, lay.item_users, lay.csc_from_csr,
                     np.ascontiguousarray(P), np.ascontiguousarray(P), w, w, False, oQ, oc)
        return out

    def gradient(self, x, e=None) -> np.ndarray:
        """``(1/N)(-J^T e + Lambda x)``, shape (d,)."""
        e = self.residuals(x) if e is None else e
        g = self.transpose_product(x, -e)
        g += self.penalty * x
        g /= self.nnz
        return g

    def gradient_reference(self, x, e=None) -> np.ndarray:
        """:meth:`gradient` by SciPy sparse products (the tests' reference)."""
        e = self.residuals(x) if e is None else e
        P, Q, _, _ = self.split(x)
        E = self._matrix(e)
        parts = [-(E @ Q), -(E.T @ P)]
        if self.use_bias:
            parts += [-np.bincount(self.rows, e, self.n_users),
                      -np.bincount(self.cols, e, self.n_items)]
        return (np.concatenate([p.ravel() for p in parts]) + self.penalty * x) / self.nnz

    def curvature(self, x, e=None) -> Curvature:
        """The Hessian and Gauss-Newton operators at ``x`` (residuals ``e``)."""
        return Curvature(self, x, self.residuals(x) if e is None else e)

    # ------------------------------------------------------------------ dense
    def dense_size_error(self, limit: int, owner: str) -> str | None:
        """The message refusing a dense Hessian above ``limit`` variables, else None."""
        d = self.n_variables
        if d <= limit:
            return None
        return (
            f"{owner} forms the dense Hessian: d = (n_users {self.n_users} + n_items "
            f"{self.n_items}) x (n_factors {self.k}{' + 1 bias' if self.use_bias else ''}) "
            f"= {d} variables, a {d} x {d} matrix of {d * d * _FLOAT / 1e9:.3g} GB, above "
            f"max_dense_variables={limit}; use NewtonCG or LevenbergMarquardt (matrix-free), "
            "fewer factors or a smaller problem, or raise max_dense_variables")

    def jacobian(self, x) -> sp.csr_matrix:
        """``J``: derivatives of ``r_hat`` over the ratings (CSR order), shape (nnz, d)."""
        P, Q, _, _ = self.split(x)
        u, i, k, o = self.rows, self.cols, self.k, self.offsets
        a = np.arange(k)
        cols = [u[:, None] * k + a, o[1] + i[:, None] * k + a]
        vals = [Q[i], P[u]]
        if self.use_bias:
            cols += [o[2] + u[:, None], o[3] + i[:, None]]
            vals += [np.ones((self.nnz, 1)), np.ones((self.nnz, 1))]
        cols, vals = np.hstack(cols), np.hstack(vals)
        m = cols.shape[1]
        indptr = np.arange(0, self.nnz * m + 1, m)
        return sp.csr_matrix((vals.ravel(), cols.ravel(), indptr),
                             shape=(self.nnz, self.n_variables))

    def cross_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``(p_u[a], q_i[a])`` in ``x`` of every rating and coordinate, shape
        (nnz * k,) each: where ``S`` (and the rank-one cross terms) live."""
        a = np.arange(self.k)
        rows = (self.rows[:, None] * self.k + a).ravel()
        cols = (self.offsets[1] + self.cols[:, None] * self.k + a).ravel()
        return rows, cols

    def hessian(self, x, e=None) -> np.ndarray:
        """The exact Hessian as a dense (d, d) array (check the size first with
        :meth:`dense_size_error`)."""
        e = self.residuals(x) if e is None else e
        J = self.jacobian(x)
        H = (J.T @ J).toarray()
        H[np.diag_indices_from(H)] += self.penalty
        rows, cols = self.cross_indices()
        s = np.repeat(e, self.k)
        # every (u, i, a) is one distinct entry, so fancy-index updates do not collide
        H[rows, cols] -= s
        H[cols, rows] -= s
        H /= self.nnz
        return H


@dataclass
class Curvature:
    """Second-order operators of ``f`` at one point ``x`` with residuals ``e``.

    ``hessian_vector(v)`` is ``Hess f(x) v``; ``gauss_newton_vector(v)`` is
    ``(1/N)(J^T J + Lambda) v``; ``preconditioner(damping)`` applies the inverse of the
    block diagonal of ``(1/N)(J^T J + Lambda) + damping I`` (shared by both).
    ``n_products`` counts the products made.
    """

    problem: FactorizationProblem
    x: np.ndarray
    e: np.ndarray

    def __post_init__(self):
        P, Q, _, _ = self.problem.split(self.x)
        self.P, self.Q = np.ascontiguousarray(P), np.ascontiguousarray(Q)
        self.n_products = 0
        self._delta = np.empty(self.problem.nnz)

    def _product(self, v, with_residual: bool) -> np.ndarray:
        p, lay = self.problem, self.problem.layout
        self.n_products += 1
        v = np.ascontiguousarray(v, dtype=np.float64)
        dP, dQ, _, _ = p.split(v)
        db, dc = p._bias_views(v)
        out = np.empty(p.n_variables)
        oP, oQ, _, _ = p.split(out)
        ob, oc = p._bias_views(out)
        with _threads(p.nnz):
            _by_user(lay.user_indptr, lay.user_items, self.P, self.Q, dP, dQ, db, dc, self.e,
                     with_residual, self._delta, oP, ob)
            _by_item(lay.item_indptr, lay.item_users, lay.csc_from_csr, self.P, dP,
                     self._delta, self.e, with_residual, oQ, oc)
        out += p.penalty * v
        out /= p.nnz
        return out

    def hessian_vector(self, v) -> np.ndarray:
        """``Hess f(x) v = (1/N)(J^T J v + Lambda v - S v)``, shape (d,)."""
        return self._product(v, True)

    def gauss_newton_vector(self, v) -> np.ndarray:
        """``(1/N)(J^T J + Lambda) v``, shape (d,)."""
        return self._product(v, False)

    def reference_product(self, v, with_residual: bool = True) -> np.ndarray:
        """:meth:`hessian_vector` (or, without the residual term, the Gauss-Newton
        product) by SciPy sparse products: the tests' reference for the kernels."""
        p = self.problem
        dP, dQ, db, dc = p.split(v)
        with _threads(p.nnz):
            delta = pair_dots(dP, self.Q, p.rows, p.cols) + pair_dots(self.P, dQ, p.rows,
                                                                      p.cols)
        if p.use_bias:
            delta += db[p.rows] + dc[p.cols]
        D, E = p._matrix(delta), p._matrix(self.e)
        top, bottom = D @ self.Q, D.T @ self.P
        if with_residual:
            top -= E @ dQ
            bottom -= E.T @ dP
        parts = [top.ravel(), bottom.ravel()]
        if p.use_bias:
            parts += [np.bincount(p.rows, delta, p.n_users),
                      np.bincount(p.cols, delta, p.n_items)]
        return (np.concatenate(parts) + p.penalty * v) / p.nnz

    def _blocks(self, damping: float, factor: bool):
        p, lay = self.problem, self.problem.layout
        m = p.k + p.use_bias
        diagonal = np.array(([p.lam_b] if p.use_bias else []) + [p.lam] * p.k) \
            + p.nnz * damping
        out = []
        for indptr, others, F, n in ((lay.user_indptr, lay.user_items, self.Q, p.n_users),
                                     (lay.item_indptr, lay.item_users, self.P, p.n_items)):
            blocks = np.empty((n, m, m))
            with _threads(p.nnz):
                _factor_blocks(indptr, others, F, p.use_bias, diagonal, factor, blocks)
            out.append(blocks)
        return out

    def block_diagonal(self, damping: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """The (user, item) diagonal blocks of ``(1/N)(J^T J + Lambda) + damping I``,
        shapes (n_users, m, m) and (n_items, m, m) with ``m = k + use_bias`` (bias first)."""
        users, items = self._blocks(damping, factor=False)
        return users / self.problem.nnz, items / self.problem.nnz

    def preconditioner(self, damping: float = 0.0):
        """``v -> M^-1 v`` for the block diagonal ``M`` of :meth:`block_diagonal`, by the
        blocks' Cholesky factors.

        A block that is singular (no penalty and fewer ratings than ``m``) cannot be
        factorised: the preconditioner is then refused with a ValueError naming the
        remedy (a positive regularization)."""
        p = self.problem
        factors = self._blocks(damping, factor=True)
        for name, L in zip(("user", "item"), factors, strict=True):
            diag = np.diagonal(L, axis1=1, axis2=2)
            if not np.all(diag > 0):
                row = int(np.flatnonzero(~np.all(diag > 0, axis=1))[0])
                raise ValueError(
                    f"the block-Jacobi preconditioner is singular at {name} {row} (fewer "
                    "ratings than factors and no penalty): use regularization > 0 (and "
                    "bias_regularization > 0 with biases), or preconditioner='none'")
        users, items = factors
        scale = float(p.nnz)

        def apply(v):
            v = np.ascontiguousarray(v, dtype=np.float64)
            P, Q, _, _ = p.split(v)
            b, c = p._bias_views(v)
            out = np.empty(p.n_variables)
            oP, oQ, _, _ = p.split(out)
            ob, oc = p._bias_views(out)
            with _threads(p.nnz):
                _solve_blocks(users, P, b, scale, oP, ob)
                _solve_blocks(items, Q, c, scale, oQ, oc)
            return out

        return apply


__all__ = ["Curvature", "FactorizationProblem"]
