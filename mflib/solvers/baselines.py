"""Baselines: global / user / item means, their average, regularised biases, popularity.

All closed form (or exact alternating updates for the regularised biases), vectorised
with ``np.bincount``. Unseen users or items fall back as documented in :mod:`mflib.base`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import execution
from ..base import FactorizationEstimator, FactorState, Fallback
from ..validation import NONNEGATIVE, Options

#: the values of every estimator's ``center`` parameter
CENTERS = ("none", "mean", "biases")


def _mean_offsets(index, values, n) -> np.ndarray:
    """Per-index mean of ``values`` (0 where the index has no rating)."""
    counts = np.bincount(index, minlength=n)
    sums = np.bincount(index, weights=values, minlength=n)
    return np.divide(sums, counts, out=np.zeros(n), where=counts > 0)


def _sse(train, state) -> float:
    return float(np.sum((train.ratings - state.predict(train.users, train.items)) ** 2))


class _ClosedForm(FactorizationEstimator):
    """A model computed in one step (vectorised NumPy; ``n_jobs`` is accepted like every
    estimator's, and sets the threads of the fallback and prediction kernels)."""

    _monitor = "sse"

    def __init__(self, n_jobs=None):
        self.n_jobs = n_jobs

    def _init_state(self, train):
        return FactorState(global_mean=float(train.ratings.mean()))

    def _step(self, state, train):
        self._solve(state, train)
        sse = _sse(train, state)  # the training RMSE from it: the template need not predict
        return {"sse": sse, "train_rmse": float(np.sqrt(sse / train.nnz)), "converged": True}


class GlobalMean(_ClosedForm):
    """Predict the mean training rating for every pair."""

    def _solve(self, state, train):
        pass


class UserMean(_ClosedForm):
    """Predict the user's mean training rating (global mean for unseen users)."""

    def _solve(self, state, train):
        state.user_bias = _mean_offsets(train.users, train.ratings - state.global_mean,
                                        train.n_users)


class ItemMean(_ClosedForm):
    """Predict the item's mean training rating (global mean for unseen items)."""

    def _solve(self, state, train):
        state.item_bias = _mean_offsets(train.items, train.ratings - state.global_mean,
                                        train.n_items)


class UserItemMean(_ClosedForm):
    """Predict (user mean + item mean) / 2.

    Parameters
    ----------
    unknown : {"fallback", "course"}, default "fallback"
        How a pair whose user or item has no training rating is predicted: "fallback",
        mflib's damped fallback like every estimator (:mod:`mflib.base`); "course", the
        course's Q1 rule, which replaces a missing user mean (or item mean) by the global
        training mean and then averages, i.e. ``mu + b_u [user known] + c_i [item known]``
        with this model's own halves ``b_u = (user mean - mu) / 2``.
    n_jobs : int or None, default None
    """

    _parameter_constraints = {"unknown": [Options("fallback", "course")]}

    def __init__(self, unknown="fallback", n_jobs=None):
        self.unknown = unknown
        self.n_jobs = n_jobs

    def _finalize(self, state):
        super()._finalize(state)
        if self.unknown == "course":  # the model is its own fallback, undamped
            self.fallback_ = Fallback(self.global_mean_, self.user_bias_, self.item_bias_, 0.0)

    def _solve(self, state, train):
        mu = state.global_mean
        state.user_bias = 0.5 * _mean_offsets(train.users, train.ratings - mu, train.n_users)
        state.item_bias = 0.5 * _mean_offsets(train.items, train.ratings - mu, train.n_items)


class Popularity(ItemMean):
    """Rank items by their number of training ratings; rating predictions are item means."""

    def score_items(self, users):
        self._check_fitted()
        users = np.array(users, dtype=np.int64, ndmin=1)
        counts = self.item_counts_.astype(float)
        return np.broadcast_to(counts, (len(users), len(counts))).copy()


class BiasBaseline(FactorizationEstimator):
    """Regularised biases: ``r_hat = mu + b_u + c_i`` with ``mu`` the training mean and

    ``b, c = argmin sum (r - mu - b_u - c_i)^2 + regularization * (|b|^2 + |c|^2)``,

    solved by exact alternating updates (each block in closed form), so the objective
    never rises; stops when its relative change is below ``tol``.

    Parameters
    ----------
    regularization : float, default 10.0
    max_iter : int, default 50
    tol : float, default 1e-8
    n_jobs : int or None, default None
    callbacks : list of callables, optional
    verbose : int, default 0
    """

    _parameter_constraints = {"regularization": [NONNEGATIVE]}
    _contract_params = {"max_iter": 5}

    def __init__(self, regularization=10.0, max_iter=50, tol=1e-8, n_jobs=None, callbacks=None,
                 verbose=0):
        self.regularization = regularization
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs
        self.callbacks = callbacks
        self.verbose = verbose

    def _init_state(self, train):
        return FactorState(float(train.ratings.mean()), np.zeros(train.n_users),
                           np.zeros(train.n_items))

    def _step(self, state, train):
        lam, mu = self.regularization, state.global_mean
        n_i = np.bincount(train.items, minlength=train.n_items)
        n_u = np.bincount(train.users, minlength=train.n_users)
        resid = train.ratings - mu - state.user_bias[train.users]
        state.item_bias = np.bincount(train.items, resid, train.n_items) / np.maximum(n_i + lam,
                                                                                     1e-300)
        resid = train.ratings - mu - state.item_bias[train.items]
        state.user_bias = np.bincount(train.users, resid, train.n_users) / np.maximum(n_u + lam,
                                                                                     1e-300)
        sse = _sse(train, state)
        objective = sse + lam * (state.user_bias @ state.user_bias
                                 + state.item_bias @ state.item_bias)
        return {"objective": float(objective), "train_rmse": float(np.sqrt(sse / train.nnz))}


# ---------------------------------------------------------------------- centring
@dataclass
class Centering:
    """Offsets removed from the ratings before a model of the rest is fitted.

    ``values`` are the centred ratings ``r - mean - user_bias[u] - item_bias[i]`` in the
    training matrix's rating order; absent offsets are None.
    """

    how: str
    mean: float
    user_bias: np.ndarray | None
    item_bias: np.ndarray | None
    values: np.ndarray


def center(train, how: str = "biases", bias_regularization: float = 10.0) -> Centering:
    """The one centring of mflib, shared by every estimator with a ``center`` parameter.

    Parameters
    ----------
    train : RatingMatrix
    how : {"none", "mean", "biases"}
        Keep the raw ratings, remove their mean, or remove the regularised bias baseline
        ``mu + b_u + c_i``: :class:`BiasBaseline`'s minimiser for ``bias_regularization``,
        solved exactly by :func:`bias_solution` (with a penalty of 0, which has no unique
        minimiser, the limit of BiasBaseline's alternating updates).
    bias_regularization : float
        ``lambda`` of the bias baseline (``how="biases"`` only).
    """
    if how not in CENTERS:
        raise ValueError(f"unknown center {how!r}; choose one of {', '.join(map(repr, CENTERS))}"
                         " (None and 'bias' are spelled 'none' and 'biases')")
    if how == "none":
        return Centering(how, 0.0, None, None, train.ratings.copy())
    mu = float(train.ratings.mean())
    if how == "mean":
        return Centering(how, mu, None, None, train.ratings - mu)
    if bias_regularization > 0:
        b, c = bias_solution(train, bias_regularization)
    else:  # no unique minimiser: the alternating updates' limit, as BiasBaseline reaches it
        base = BiasBaseline(regularization=0.0, max_iter=100, tol=1e-10,
                            n_jobs=execution.current().n_jobs).fit(train)
        b, c = base.user_bias_, base.item_bias_
    return Centering(how, mu, b, c, train.ratings - mu - b[train.users] - c[train.items])


def bias_solution(train, regularization: float, rtol: float = 1e-12):
    """The exact minimiser ``(b, c)`` of :class:`BiasBaseline`'s objective
    ``sum (r - mu - b_u - c_i)^2 + regularization * (|b|^2 + |c|^2)`` for
    ``regularization > 0``, ``mu`` the training mean.

    The normal equations are ``(n_u + lam) b_u + sum_(i in u) c_i = s_u`` and the same
    for items. The users are eliminated, ``b = D_u^-1 (s_u - B c)`` with ``B`` the
    user x item pattern, and the items' Schur complement
    ``(D_i - B^T D_u^-1 B) c = s_i - B^T D_u^-1 s_u`` (positive definite) is solved by
    conjugate gradients preconditioned by its diagonal, to a relative residual of
    ``rtol``. Its preconditioned spectrum lies in ``[lam / (1 + lam), 1]``-ish bounds
    set by the penalty, so CG needs a few dozen sparse products where the alternating
    updates need 40-100 sweeps (ml-100k: ~3 ms against ~85 ms).
    """
    from ..data.layout import training_layout  # noqa: PLC0415  (data imports base)

    lam = float(regularization)
    if not lam > 0:
        raise ValueError(f"bias_solution needs regularization > 0, got {regularization!r}")
    layout = training_layout(train)
    B = layout.csr_matrix(np.ones(layout.nnz))
    centred = layout.ratings_csr - float(train.ratings.mean())
    inv_u = 1.0 / (layout.user_counts + lam)
    d_i = layout.item_counts + lam
    s_u = layout.csr_matrix(centred).sum(axis=1).A1
    s_i = np.bincount(layout.user_items, centred, layout.n_items)

    def schur(c):
        return d_i * c - B.T @ (inv_u * (B @ c))

    rhs = s_i - B.T @ (inv_u * s_u)
    precond = 1.0 / (d_i - B.T @ inv_u)  # the Schur complement's diagonal (B is 0/1)
    c = precond * rhs
    r = rhs - schur(c)
    z = precond * r
    direction = z.copy()
    rz = r @ z
    target = rtol * np.linalg.norm(rhs)
    for _ in range(10 * layout.n_items):  # CG ends in at most n_items steps in exact math
        if np.linalg.norm(r) <= target:
            break
        product = schur(direction)
        alpha = rz / (direction @ product)
        c += alpha * direction
        r -= alpha * product
        z = precond * r
        rz, rz_old = r @ z, rz
        direction = z + (rz / rz_old) * direction
    b = inv_u * (s_u - B @ c)
    return b, c


CENTER_CONSTRAINT = [Options(*CENTERS)]
