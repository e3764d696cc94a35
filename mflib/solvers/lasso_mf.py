"""Lasso matrix factorisation: L1-penalised factors by alternating Lasso subproblems.

Model ``r_hat = p_u . q_i``. Two conventions (``regularization_scale``), with
``lambda = regularization`` and ``S = sum_Omega (r_ui - p_u . q_i)^2``:

``"course"`` (the formula of the SPEC)
    ``F = S / |Omega| + lambda (sum_u |p_u|_1 + sum_i |q_i|_1)``. With ``Q`` fixed, ``F``
    splits over users; times ``|Omega|``, user ``u`` solves
    ``sum_{i in Omega_u} (r_ui - p . q_i)^2 + lambda |Omega| |p|_1``. The penalty of one
    row is ``|Omega|`` times its squared error scale, so moderate ``lambda`` (0.1 on
    ratings 1-5) zeroes every factor.
``"weighted"`` (one scikit-learn ``Lasso(alpha=lambda, fit_intercept=False)`` per row)
    Row ``u`` solves ``(1 / (2 n_u)) sum_{i in Omega_u} (r_ui - p . q_i)^2 + lambda |p|_1``,
    i.e. ``sum (...)^2 + 2 lambda n_u |p|_1``. Both half-steps minimise the one objective
    ``F = S / |Omega| + (2 lambda / |Omega|) (sum_u n_u |p_u|_1 + sum_i n_i |q_i|_1)``.

Each half-step solves all rows' Lasso problems at once by coordinate descent with
soft-thresholding (:func:`mflib.kernels.lasso.lasso_rows`), warm-started from the
current factors. Every coordinate step is exact, so the recorded ``F`` never rises.
"""

from __future__ import annotations

import numpy as np

from ..base import FactorizationEstimator
from ..kernels.lasso import lasso_rows
from ..kernels.threads import numba_threads, resolve_n_jobs
from ..validation import (
    check_choice,
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_random_state,
)
from .als import ALSState, RatingSides, residuals

SCALES = ("weighted", "course")


class LassoMF(FactorizationEstimator):
    """Alternating Lasso for L1-sparse factors (module docstring).

    Parameters
    ----------
    n_factors : int, default 3
    regularization : float, default 0.1
        ``lambda`` of the L1 penalty.
    regularization_scale : {"weighted", "course"}, default "weighted"
        The convention; formulas in the module docstring.
    max_iter : int, default 20
        Outer iterations (one user and one item Lasso pass each).
    tol : float, default 1e-7
        Relative change of the objective below which the fit stops (0 disables).
    max_sweeps : int, default 50
        Most coordinate-descent sweeps per row and pass.
    sweep_tol : float, default 1e-6
        A row's sweeps stop when no coordinate moves more than this times its largest entry.
    init_std : float, default 0.1
        Factors start as N(0, init_std^2) entries (a zero start would be a fixed point).
    n_jobs : int or None, default None
        numba threads; results do not depend on it.
    random_state : int, Generator or None
    verbose : int, default 1
    callbacks : list of callables, optional

    Attributes
    ----------
    user_factors_, item_factors_ : ndarray of shape (n_users, k), (n_items, k)
    user_zero_fraction_, item_zero_fraction_ : float
        Fraction of exactly-zero entries of P and of Q.
    history_ : History
        ``objective``, ``zero_fraction_P``, ``zero_fraction_Q`` and ``sweeps`` (mean
        coordinate sweeps per row) per iteration.
    """

    _contract_params = {"n_factors": 2, "max_iter": 3}

    def __init__(self, n_factors=3, regularization=0.1, regularization_scale="weighted",
                 max_iter=20, tol=1e-7, max_sweeps=50,
                 sweep_tol=1e-6, init_std=0.1, n_jobs=None, random_state=None, verbose=1,
                 callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.regularization_scale = regularization_scale
        self.max_iter = max_iter
        self.tol = tol
        self.max_sweeps = max_sweeps
        self.sweep_tol = sweep_tol
        self.init_std = init_std
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _init_state(self, train):
        check_positive_int(self.n_factors, "n_factors")
        check_nonnegative(self.regularization, "regularization")
        check_choice(self.regularization_scale, "regularization_scale", SCALES)
        check_positive_int(self.max_sweeps, "max_sweeps")
        check_nonnegative(self.sweep_tol, "sweep_tol")
        check_positive(self.init_std, "init_std")
        check_nonnegative(self.tol, "tol")
        resolve_n_jobs(self.n_jobs)
        rng = check_random_state(self.random_state)
        k = self.n_factors
        return ALSState(
            global_mean=0.0,
            user_factors=rng.normal(0.0, self.init_std, (train.n_users, k)),
            item_factors=rng.normal(0.0, self.init_std, (train.n_items, k)),
            sides=RatingSides.from_train(train),
        )

    def _step(self, state, train):
        s = state.sides
        alpha_u, alpha_i = self._row_alphas(s)
        options = {"max_sweeps": self.max_sweeps, "tol": self.sweep_tol}
        with numba_threads(self.n_jobs):
            _, sweeps_u = lasso_rows(s.user_indptr, s.user_items, s.user_ratings,
                                     state.item_factors, alpha_u, out=state.user_factors,
                                     **options)
            _, sweeps_i = lasso_rows(s.item_indptr, s.item_users, s.item_ratings,
                                     state.user_factors, alpha_i, out=state.item_factors,
                                     **options)
        return {
            "objective": self.objective(state),
            "zero_fraction_P": float(np.mean(state.user_factors == 0)),
            "zero_fraction_Q": float(np.mean(state.item_factors == 0)),
            "sweeps": float(np.concatenate([sweeps_u, sweeps_i]).mean()),
        }

    def _row_alphas(self, s) -> tuple[np.ndarray, np.ndarray]:
        """L1 weight of each user's and each item's subproblem ``sum (...)^2 + alpha |x|_1``."""
        lam = float(self.regularization)
        if self.regularization_scale == "course":
            return (np.full(len(s.user_counts), lam * s.nnz),
                    np.full(len(s.item_counts), lam * s.nnz))
        return 2 * lam * s.user_counts.astype(float), 2 * lam * s.item_counts.astype(float)

    def objective(self, state) -> float:
        """``F`` of the module docstring at ``state`` (in the chosen convention)."""
        s = state.sides
        sse = float(np.sum(residuals(state, s) ** 2))
        alpha_u, alpha_i = self._row_alphas(s)
        l1 = float(np.abs(state.user_factors).sum(axis=1) @ alpha_u
                   + np.abs(state.item_factors).sum(axis=1) @ alpha_i)
        return (sse + l1) / s.nnz

    def _finalize(self, state) -> None:
        super()._finalize(state)
        self.user_zero_fraction_ = float(np.mean(self.user_factors_ == 0))
        self.item_zero_fraction_ = float(np.mean(self.item_factors_ == 0))
