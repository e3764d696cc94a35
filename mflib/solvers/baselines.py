"""Baselines: global / user / item means, their average, regularised biases, popularity.

All closed form (or exact alternating updates for the regularised biases), vectorised
with ``np.bincount``. Unseen users or items fall back as documented in :mod:`mflib.base`.
"""

from __future__ import annotations

import numpy as np

from ..base import FactorizationEstimator, FactorState
from ..validation import check_nonnegative


def _mean_offsets(index, values, n) -> np.ndarray:
    """Per-index mean of ``values`` (0 where the index has no rating)."""
    counts = np.bincount(index, minlength=n)
    sums = np.bincount(index, weights=values, minlength=n)
    return np.divide(sums, counts, out=np.zeros(n), where=counts > 0)


def _sse(train, state) -> float:
    return float(np.sum((train.ratings - state.predict(train.users, train.items)) ** 2))


class _ClosedForm(FactorizationEstimator):
    """A model computed in one step."""

    _monitor = "sse"

    def _init_state(self, train):
        return FactorState(global_mean=float(train.ratings.mean()))

    def _step(self, state, train):
        self._solve(state, train)
        return {"sse": _sse(train, state), "converged": True}


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
    """Predict (user mean + item mean) / 2."""

    def _solve(self, state, train):
        mu = state.global_mean
        state.user_bias = 0.5 * _mean_offsets(train.users, train.ratings - mu, train.n_users)
        state.item_bias = 0.5 * _mean_offsets(train.items, train.ratings - mu, train.n_items)


class Popularity(ItemMean):
    """Rank items by their number of training ratings; rating predictions are item means."""

    def _score_items(self, users):
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
    callbacks : list of callables, optional
    verbose : int, default 0
    """

    _contract_params = {"max_iter": 5}

    def __init__(self, regularization=10.0, max_iter=50, tol=1e-8, callbacks=None, verbose=0):
        self.regularization = regularization
        self.max_iter = max_iter
        self.tol = tol
        self.callbacks = callbacks
        self.verbose = verbose

    def _init_state(self, train):
        check_nonnegative(self.regularization, "regularization")
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
        objective = _sse(train, state) + lam * (state.user_bias @ state.user_bias
                                                + state.item_bias @ state.item_bias)
        return {"objective": float(objective)}
