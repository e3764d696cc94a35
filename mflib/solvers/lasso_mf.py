"""Lasso matrix factorisation: L1-penalised factors by alternating Lasso subproblems.

Model ``r_hat = o_ui + p_u . q_i`` with ``o_ui`` the fixed offset chosen by ``center``
(:func:`mflib.solvers.baselines.center`: the regularised bias baseline
``mu + b_u + c_i`` by default, 0 with ``center="none"``, which is the SPEC's
``r_hat = p_u . q_i``). With ``lambda = regularization``,
``S = sum_Omega (r_ui - o_ui - p_u . q_i)^2`` and ``|.|_1`` the L1 norm, every convention
(``regularization_scale``) minimises

    F = ( S + sum_u alpha_u |p_u|_1 + sum_i alpha_i |q_i|_1 ) / |Omega|

(recorded as ``objective``: the mean squared error plus the penalty per rating), and
differs only in the row weights ``alpha``, as in :class:`~mflib.solvers.als.ALS`:

``"sum"``       ``alpha_r = lambda``;
``"weighted"``  ``alpha_r = lambda n_r`` (``n_r`` the row's rating count);
``"course"``    ``alpha_r = lambda |Omega|``, i.e. ``F = S / |Omega| + lambda (sum |p_u|_1 +
                sum |q_i|_1)`` (the formula of the SPEC). The penalty of one row is
                ``|Omega|`` times its squared error scale, so moderate ``lambda`` (0.1 on
                ratings 1-5) zeroes every factor;
``"sklearn"``   one scikit-learn ``Lasso(alpha=lambda, fit_intercept=False)`` per row, which
                solves ``(1 / (2 n_r)) sum (...)^2 + lambda |x|_1``, i.e.
                ``alpha_r = 2 lambda n_r`` (the course code's convention; ``"weighted"`` with
                twice the ``lambda``).

Each half-step solves all rows' Lasso problems at once by coordinate descent with
soft-thresholding (:func:`mflib.kernels.lasso.lasso_rows`), warm-started from the
current factors. Every coordinate step is exact, so the recorded ``F`` never rises.
"""

from __future__ import annotations

import numpy as np

from ..base import FactorizationEstimator
from ..data.layout import training_layout
from ..kernels.lasso import lasso_rows
from ..validation import NONNEGATIVE, POSITIVE, POSITIVE_INT, Options, check_random_state
from .baselines import CENTER_CONSTRAINT, center
from .state import LayoutState, initial_factors, residuals

SCALES = ("sum", "weighted", "course", "sklearn")


class LassoMF(FactorizationEstimator):
    """Alternating Lasso for L1-sparse factors (module docstring).

    Parameters
    ----------
    n_factors : int, default 3
    regularization : float, default 10.0
        ``lambda`` of the L1 penalty. Chosen on 10% validation parts of ml-100k u1.base
        and of the Netflix course training set (``lambda`` 0.05-0.5 weighted and 2-10
        summed, ranks 3 and 10, initial spreads 0.1-1, centred and not). The L1 penalty
        leaves the rows it keeps almost unshrunk, so every setting tried either overfit
        one of the two sets from the second iteration on (summed ``lambda`` 2-6: up to
        1.07 and 1.67 against the bias baseline's 0.944 and 0.943) or zeroed every
        factor. The default is the smallest summed value that zeroes the factors of both
        unless the data carries a stronger signal: the fitted model is then its centring
        (``bias_regularization``), which beats the bias baseline, and the factors say
        nothing. Lower it (and check on validation) to study sparse factors.
    regularization_scale : {"sum", "weighted", "course", "sklearn"}, default "sum"
        The convention; formulas in the module docstring. "weighted" (``lambda n_r``)
        penalises a row with few ratings least, which is where the factors overfit.
    center : {"biases", "mean", "none"}, default "biases"
        The fixed offset ``o_ui`` the factors explain the rest of
        (:func:`mflib.solvers.baselines.center`). "none" is the uncentred course model,
        whose factors must spend their L1 budget on every user's and item's level: it
        trails the bias baseline on both validation parts above.
    bias_regularization : float, default 5.0
        ``lambda`` of the bias baseline removed first (``center="biases"``). 3-5 was the
        best bias penalty on both validation parts above (0.940 and 0.940, against 0.944
        and 0.943 with the bias baseline's own default of 10).
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
    verbose : int, default 0
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

    _parameter_constraints = {
        "n_factors": [POSITIVE_INT],
        "regularization": [NONNEGATIVE],
        "regularization_scale": [Options(*SCALES)],
        "center": CENTER_CONSTRAINT,
        "bias_regularization": [NONNEGATIVE],
        "max_sweeps": [POSITIVE_INT],
        "sweep_tol": [NONNEGATIVE],
        "init_std": [POSITIVE],
    }
    _contract_params = {"n_factors": 2, "max_iter": 3}

    def __init__(self, n_factors=3, regularization=10.0, regularization_scale="sum",
                 center="biases", bias_regularization=5.0, max_iter=20, tol=1e-7,
                 max_sweeps=50, sweep_tol=1e-6, init_std=0.1, n_jobs=None, random_state=None,
                 verbose=0, callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.regularization_scale = regularization_scale
        self.center = center
        self.bias_regularization = bias_regularization
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
        rng = check_random_state(self.random_state)
        P, Q = initial_factors(rng, train.n_users, train.n_items, self.n_factors, self.init_std)
        layout = training_layout(train)
        offsets = center(train, self.center, self.bias_regularization)
        # the Lasso rows fit what the offsets leave, in the two orders the passes read
        self._targets = (layout.to_csr(offsets.values), layout.to_csc(offsets.values))
        return LayoutState(
            global_mean=offsets.mean,
            user_bias=offsets.user_bias,
            item_bias=offsets.item_bias,
            user_factors=P,
            item_factors=Q,
            layout=layout,
        )

    def _step(self, state, train):
        s = state.layout
        alpha_u, alpha_i = self._row_alphas(s)
        options = {"max_sweeps": self.max_sweeps, "tol": self.sweep_tol}
        targets_csr, targets_csc = self._targets
        _, sweeps_u = lasso_rows(s.user_indptr, s.user_items, targets_csr,
                                 state.item_factors, alpha_u, out=state.user_factors, **options)
        # the item pass comes last: its rows' squared residuals (of the centred targets,
        # so of the whole model) sum to the loss of the new state (no pass over the
        # ratings for the objective or train RMSE)
        item_sse = np.empty(s.n_items)
        _, sweeps_i = lasso_rows(s.item_indptr, s.item_users, targets_csc,
                                 state.user_factors, alpha_i, out=state.item_factors,
                                 row_sse=item_sse, **options)
        sse = float(item_sse.sum())
        return {
            "objective": self.objective(state, sse=sse),
            "train_rmse": float(np.sqrt(sse / s.nnz)),
            "zero_fraction_P": float(np.mean(state.user_factors == 0)),
            "zero_fraction_Q": float(np.mean(state.item_factors == 0)),
            "sweeps": float(np.concatenate([sweeps_u, sweeps_i]).mean()),
        }

    def _row_alphas(self, s) -> tuple[np.ndarray, np.ndarray]:
        """L1 weight of each user's and each item's subproblem ``sum (...)^2 + alpha |x|_1``."""
        lam = float(self.regularization)
        scale = self.regularization_scale
        if scale in ("sum", "course"):
            value = lam * (s.nnz if scale == "course" else 1.0)
            return np.full(s.n_users, value), np.full(s.n_items, value)
        factor = 2.0 * lam if scale == "sklearn" else lam
        return factor * s.user_counts.astype(float), factor * s.item_counts.astype(float)

    def objective(self, state, sse=None) -> float:
        """``F`` of the module docstring at ``state`` (in the chosen convention); ``sse``,
        the sum of squared residuals, is computed from ``state`` unless given."""
        s = state.layout
        if sse is None:
            sse = float(np.sum(residuals(state, s) ** 2))
        alpha_u, alpha_i = self._row_alphas(s)
        l1 = float(np.abs(state.user_factors).sum(axis=1) @ alpha_u
                   + np.abs(state.item_factors).sum(axis=1) @ alpha_i)
        return (sse + l1) / s.nnz

    def _finalize(self, state) -> None:
        super()._finalize(state)
        del self._targets
        self.user_zero_fraction_ = float(np.mean(self.user_factors_ == 0))
        self.item_zero_fraction_ = float(np.mean(self.item_factors_ == 0))
