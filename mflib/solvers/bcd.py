"""Biased block coordinate descent (the course model).

Model ``r_hat = mu_u + rho_i + p_u . q_i`` (a free intercept per user and per item), and

    F = (1/|Omega|) sum_Omega (r_ui - mu_u - rho_i - p_u . q_i)^2 + lambda (|P|^2 + |Q|^2)
        + lambda_b (sum_u (mu_u - m)^2 + sum_i rho_i^2)

with ``m`` the training mean and ``lambda_b = bias_regularization``. ``lambda_b = 0`` is
the course objective, whose intercepts are plain means (a user or item with one rating
fits it exactly); ``lambda_b > 0`` shrinks each user's intercept toward ``m`` and each
item's offset toward 0, as the regularised bias baseline does.

Each iteration updates the four blocks in turn, each exactly:

* ``mu_u = (sum over the user's ratings of (r_ui - rho_i - p_u . q_i) + lambda_b |Omega| m)
  / (n_u + lambda_b |Omega|)`` (the mean of the bracket when ``lambda_b = 0``; 0 for a user
  without ratings),
* ``rho_i = sum over the item's ratings of (r_ui - mu_u - p_u . q_i) / (n_i + lambda_b |Omega|)``,
* ``P``: per-user ridge with targets ``r_ui - mu_u - rho_i``, penalty ``lambda |Omega|``,
* ``Q``: per-item ridge likewise.

Every block update minimises ``F`` over that block, so ``F`` never rises.
"""

from __future__ import annotations

import numpy as np

from ..base import FactorizationEstimator
from ..data.layout import training_layout
from ..fitting import StopFit
from ..kernels.pairs import pair_dots
from ..kernels.ridge import ridge_rows
from ..validation import NONNEGATIVE, POSITIVE, POSITIVE_INT, _plain, check_random_state
from .state import LayoutState, initial_factors, residuals


def _row_means(indptr_counts: np.ndarray, values: np.ndarray, rows: np.ndarray,
               prior: float = 0.0, prior_mean: float = 0.0) -> np.ndarray:
    """Per-row ``(sum of values + prior * prior_mean) / (count + prior)``: the mean shrunk
    toward ``prior_mean`` by ``prior`` pseudo-ratings (0 for a row without ratings)."""
    sums = np.bincount(rows, weights=values, minlength=len(indptr_counts))
    sums += prior * prior_mean
    denominator = indptr_counts + prior
    return np.divide(sums, denominator, out=np.zeros(len(sums)),
                     where=(indptr_counts > 0) & (denominator > 0))


def check_unregularized_rows(train, n_factors: int, owner: str) -> None:
    """Refuse ``regularization=0`` when some user's or item's ridge block is singular.

    Without a penalty, the ``n_factors x n_factors`` normal equations of a row with fewer
    ratings than ``n_factors`` have rank below ``n_factors``, so its exact block update
    does not exist; the fit would stop before its first iteration having learned nothing.
    """
    few, smallest = [], None
    for what, counts, ids in (("user", train.user_counts(), train.user_ids),
                              ("item", train.item_counts(), train.item_ids)):
        rated = counts[counts > 0]
        smallest = int(rated.min()) if smallest is None else min(smallest, int(rated.min()))
        rows = np.flatnonzero((counts > 0) & (counts < n_factors))
        if rows.size:
            r = rows[0]
            few.append(f"{rows.size} {what}(s), e.g. {what} {_plain(ids[r])!r} with "
                       f"{int(counts[r])} rating(s)")
    if few:
        raise ValueError(
            f"{owner}: regularization=0 leaves the ridge system of every user and item with "
            f"fewer than n_factors={n_factors} ratings singular, and this data has "
            f"{' and '.join(few)}; use regularization > 0 (e.g. the default 0.1) or "
            f"n_factors <= {smallest}"
        )


class BiasedBCD(FactorizationEstimator):
    """Exact block coordinate descent on the biased course objective (module docstring).

    Parameters
    ----------
    n_factors : int, default 10
    regularization : float, default 3e-4
        ``lambda`` on ``|P|^2 + |Q|^2``; each row's ridge system carries ``lambda |Omega|``
        (about 24 on ml-100k's 80k ratings, 15 on the Netflix subset's 51k). 0 is accepted
        only when every user and item with ratings has at least ``n_factors`` of them
        (otherwise its block has no unique minimiser and ``fit`` raises ``ValueError``).
        The course's setting is ``n_factors=3, regularization=0.1, bias_regularization=0``.
    bias_regularization : float, default 1e-4
        ``lambda_b`` on the intercepts (module docstring); 0 is the course objective.
        Unpenalised intercepts fit a user's or item's few ratings exactly: with
        ``lambda_b = 0`` no ``lambda`` or rank tried beat the bias baseline on a 10%
        validation part of the Netflix course training set (best 0.959 against 0.943).
        The defaults (``lambda_b`` 5e-5-2e-4, ``lambda`` 5e-5-5e-4, ranks 3 and 10) were
        chosen on that part and on one of ml-100k u1.base: validation RMSE 0.926 and
        0.930 against the bias baseline's 0.944 and 0.943 (the course's setting: 0.944
        and 0.959).
    max_iter : int, default 30
    tol : float, default 1e-7
        Relative change of the objective below which the fit stops (0 disables).
    init_std : float, default 0.1
        Factors start as N(0, init_std^2) entries; intercepts at 0.
    n_jobs : int or None, default None
        numba threads for the row solves; results do not depend on it.
    random_state : int, Generator or None
    verbose : int, default 0
    callbacks : list of callables, optional

    Attributes
    ----------
    user_bias_ : ndarray of shape (n_users,)
        ``mu_u``.
    item_bias_ : ndarray of shape (n_items,)
        ``rho_i``.
    user_factors_, item_factors_ : ndarray of shape (n_users, k), (n_items, k)
    global_mean_ : float
        Always 0 (the intercepts carry the level).
    history_ : History with ``objective`` per iteration
    """

    _parameter_constraints = {"n_factors": [POSITIVE_INT], "regularization": [NONNEGATIVE],
                              "bias_regularization": [NONNEGATIVE], "init_std": [POSITIVE]}
    _contract_params = {"n_factors": 2, "max_iter": 3}

    def __init__(self, n_factors=10, regularization=3e-4, bias_regularization=1e-4,
                 max_iter=30, tol=1e-7, init_std=0.1, n_jobs=None, random_state=None, verbose=0,
                 callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.max_iter = max_iter
        self.tol = tol
        self.init_std = init_std
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _init_state(self, train):
        if self.regularization == 0:
            check_unregularized_rows(train, self.n_factors, type(self).__name__)
        rng = check_random_state(self.random_state)
        P, Q = initial_factors(rng, train.n_users, train.n_items, self.n_factors, self.init_std)
        self._mean = float(train.ratings.mean())  # m, the intercepts' prior mean
        return LayoutState(
            global_mean=0.0,
            user_bias=np.zeros(train.n_users),
            item_bias=np.zeros(train.n_items),
            user_factors=P,
            item_factors=Q,
            layout=training_layout(train),
        )

    def _step(self, state, train):
        s = state.layout
        users, items, r = s.user_of_rating, s.user_items, s.ratings_csr
        item_of_csc, item_rows = s.item_users, s.item_of_rating  # item-CSR order
        reg = float(self.regularization) * s.nnz
        prior = float(self.bias_regularization) * s.nnz  # lambda_b |Omega| pseudo-ratings
        dots = pair_dots(state.user_factors, state.item_factors, users, items)
        state.user_bias = _row_means(s.user_counts, r - state.item_bias[items] - dots, users,
                                     prior, self._mean)
        dots_i = pair_dots(state.user_factors, state.item_factors, item_of_csc, item_rows)
        state.item_bias = _row_means(
            s.item_counts, s.ratings_csc - state.user_bias[item_of_csc] - dots_i, item_rows,
            prior)
        try:
            ridge_rows(s.user_indptr, items,
                       r - state.user_bias[users] - state.item_bias[items],
                       state.item_factors, reg, out=state.user_factors)
            # the item block comes last: its rows' squared residuals sum to the loss of
            # the new state (no pass over the ratings for the objective or train RMSE)
            item_sse = np.empty(s.n_items)
            ridge_rows(s.item_indptr, item_of_csc,
                       s.ratings_csc - state.user_bias[item_of_csc]
                       - state.item_bias[item_rows],
                       state.user_factors, reg, out=state.item_factors, row_sse=item_sse)
        except np.linalg.LinAlgError as exc:
            raise StopFit(f"stopped: singular or non-finite row systems: {exc}") from exc
        sse = float(item_sse.sum())
        return {"objective": self.objective(state, sse=sse),
                "train_rmse": float(np.sqrt(sse / s.nnz))}

    def objective(self, state, sse=None) -> float:
        """``F`` of the module docstring at ``state`` (``sse``, the sum of squared
        residuals, is computed from ``state`` unless given)."""
        if sse is None:
            sse = float(np.sum(residuals(state, state.layout) ** 2))
        pen = float(np.sum(state.user_factors ** 2) + np.sum(state.item_factors ** 2))
        rated = state.layout.user_counts > 0  # a user without ratings keeps mu_u = 0
        bias_pen = float(np.sum((state.user_bias[rated] - self._mean) ** 2)
                         + np.sum(state.item_bias ** 2))
        return (sse / state.layout.nnz + float(self.regularization) * pen
                + float(self.bias_regularization) * bias_pen)
