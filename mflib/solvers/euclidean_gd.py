"""Euclidean gradient descent on the whole factorisation ``(U, W, b, c)`` with Armijo
steps: the baseline of the Grassmann family, with the same model and no geometry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .. import execution
from ..base import FactorizationEstimator, FactorState
from ..execution import kernel_threads
from ..kernels import pair_dots
from ..validation import check_random_state
from .riemannian.base import COMMON_DOC, GrassmannEstimator
from .riemannian.line_search import barzilai_borwein_step


@dataclass
class EuclideanState(FactorState):
    value: float = np.nan
    gradient: object = None
    step_size: float | None = None
    bb_step: float | None = None


class _Euclidean:
    """R^d with the identity retraction (so the Armijo search works unchanged)."""

    @staticmethod
    def retraction(point, vector, method=None):
        return point + vector

    @staticmethod
    def norm(point, vector):
        return float(np.linalg.norm(vector))

    @staticmethod
    def inner(point, a, b):
        return float(np.vdot(a, b))


class EuclideanGD(GrassmannEstimator):
    __doc__ = """Plain gradient descent on all of ``(U, W, b, c)`` with Armijo steps:

    ``E = 1/(2N) [ sum_Omega (r - mu - b_u - c_i - w_u . U_i)^2
    + lam (|U|^2 + |W|^2 + |b|^2 + |c|^2) ]``

    (``mu`` fixed at the centring mean; biases start from the centring baseline, U
    from the chosen init, W from its exact ridge solution). A baseline for the
    manifold methods: same factorisation, no elimination of W, no geometry.

    Parameters
    ----------""" + COMMON_DOC.replace(
        COMMON_DOC[COMMON_DOC.index("    n_factors : int"):
                   COMMON_DOC.index("    bias_regularization : float")],
        """    n_factors : int, default 3
        Rank k.
    regularization : float, default 10.0
        ``lam`` of the objective above, on every block (U is not orthonormal here, so
        ``lam`` weighs against a rating's squared error, as ALS's ``"sum"`` convention).
        Chosen with ``n_factors`` on 10% validation parts of ml-100k u1.base and of the
        Netflix course training set (lam 1e-3-20, ranks 3 and 10, 200 iterations): rank 3
        with lam 10 reached validation RMSE 0.925 and 0.937 against the bias baseline's
        0.944 and 0.943; the former defaults (rank 10, lam 1e-4) overfit both (1.17 and
        1.45).
""") + """    line_search : ArmijoLineSearch, optional
    """

    def __init__(self, n_factors=3, regularization=10.0, bias_regularization=10.0,
                 center="biases", init="random", line_search=None, max_iter=200, tol=1e-7,
                 n_jobs=None, random_state=None, verbose=0, callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.center = center
        self.init = init
        self.line_search = line_search
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    _devices = ("cpu",)  # its sums over ratings are its own (no GPU path yet)
    retraction = "qr"  # builds the problem's manifold (for the initial point); steps are Euclidean

    def _init_state(self, train):
        self._check_size(train)
        rng = check_random_state(self.random_state)
        offsets, self._problem = self._centred_problem(train)
        matrix = self._problem.matrix
        U = self._initial_point(self._problem.manifold,
                                getattr(self._problem, "global_matrix", matrix), rng)
        W = self._problem.solve_user_factors(U)
        b = np.zeros(train.n_users) if offsets.user_bias is None else offsets.user_bias
        c = np.zeros(train.n_items) if offsets.item_bias is None else offsets.item_bias
        # under MPI this rank holds a block of users (their ratings); every rank keeps
        # the whole point x and the sums over ratings are all-reduced
        self._exchange = execution.exchange()
        self._block = getattr(self._problem, "block", slice(0, train.n_users))
        # ratings relative to mu only: the biases are variables here
        data = matrix.data + b[self._block][self._problem._rows] + c[matrix.indices]
        self._ratings = sp.csr_matrix((data, matrix.indices, matrix.indptr), shape=matrix.shape)
        self._shapes = [(train.n_items, self.n_factors), (train.n_users, self.n_factors),
                        (train.n_users,), (train.n_items,)]
        x = np.concatenate([U.ravel(), W.ravel(), b, c])
        value, grad = self._value_and_gradient(x)
        state = EuclideanState(offsets.mean, None, None, None, None, value, grad)
        self._unpack_into(state, x)
        return state

    def _split(self, x):
        out, start = [], 0
        for shape in self._shapes:
            size = int(np.prod(shape))
            out.append(x[start:start + size].reshape(shape))
            start += size
        return out

    def _unpack_into(self, state, x):
        U, W, b, c = self._split(x)
        state.item_factors, state.user_factors, state.user_bias, state.item_bias = U, W, b, c

    def _residuals(self, x):
        U, W, b, c = self._split(x)
        p, block = self._problem, self._block
        return (self._ratings.data - b[block][p._rows] - c[p._indices]
                - pair_dots_rows(W[block], U, p))

    def _sum(self, value):
        """A sum over this rank's ratings made a sum over all ratings (MPI)."""
        return value if self._exchange is None else self._exchange.allreduce_sum(value)

    def _value(self, x):
        e = self._residuals(x)
        return 0.5 * (self._sum(e @ e) + self._problem.ridge * (x @ x)) / self._problem.nnz, e

    def _value_and_gradient(self, x):
        value, e = self._value(x)
        return value, self._gradient(x, e)

    def _gradient(self, x, e):
        U, W, b, c = self._split(x)
        p, lam2, block = self._problem, self._problem.ridge, self._block
        E = sp.csr_matrix((e, self._ratings.indices, self._ratings.indptr),
                          shape=self._ratings.shape)
        # the data terms (this rank's ratings touch only its users' rows of W and b)
        g_W, g_b = np.zeros_like(W), np.zeros_like(b)
        g_W[block] = -(E @ U)
        g_b[block] = -np.asarray(E.sum(axis=1)).ravel()
        parts = [-(E.T @ W[block]), g_W, g_b, -np.asarray(E.sum(axis=0)).ravel()]
        data = self._sum(np.concatenate([q.ravel() for q in parts]))
        return (data + lam2 * x) / p.nnz

    def _step(self, state, train):
        x = np.concatenate([state.item_factors.ravel(), state.user_factors.ravel(),
                            state.user_bias, state.item_bias])
        ls = self._line_search()
        g = state.gradient
        g_norm = float(np.linalg.norm(g))
        if g_norm == 0.0:
            return {"objective": state.value, "grad_norm": 0.0, "converged": True}
        res = ls.search(self._value, _Euclidean, x, -g, state.value, -g_norm ** 2,
                        ls.initial_step(state.step_size, g_norm, state.bb_step))
        state.value, state.step_size = res.value, res.step
        state.gradient = self._gradient(res.point, res.payload)
        state.bb_step = barzilai_borwein_step(_Euclidean, x, -res.step * g, state.gradient - g)
        self._unpack_into(state, res.point)
        self._current_point = state.item_factors
        e = res.payload  # the residuals r - r_hat at the new point
        return {"objective": res.value, "grad_norm": float(np.linalg.norm(state.gradient)),
                "train_rmse": float(np.sqrt(e @ e / e.size)),
                "step_size": res.step, "evaluations": res.n_evaluations}

    def _finalize(self, state):
        state.gradient = None
        FactorizationEstimator._finalize(self, state)
        del self._problem, self._ratings, self._shapes, self._exchange, self._block
        self.__dict__.pop("_current_point", None)


def pair_dots_rows(W, U, problem):
    """``w_u . U_i`` for every stored rating of ``problem`` (CSR order)."""
    with kernel_threads("variable_projection", problem.nnz):
        return pair_dots(W, U, problem._rows, problem._indices)
