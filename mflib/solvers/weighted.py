"""Confidence-weighted matrix factorisation: closed-form weighted ALS and full-batch Adam.

Both estimators minimise the same objective over user factors ``X`` (n_users x k) and
item factors ``Y`` (n_items x k),

    J(X, Y) = sum_Omega c_ui (r_ui - o_ui - x_u . y_i)^2 + lambda (|X|_F^2 + |Y|_F^2),

with ``c_ui >= 0`` the confidence of rating ``r_ui`` (``sample_weight`` of ``fit``; all
ones by default), ``o_ui`` the fixed offset chosen by ``center`` (0 with the default
``center="none"``; see :func:`mflib.solvers.baselines.center`, fitted without the
weights) and ``lambda = regularization``. A dense matrix is the special case where every
cell is observed (:func:`dense_ratings` turns one into ratings and weights).

* :class:`WeightedALS` alternates exact half-steps: with ``Y`` fixed, every ``x_u`` is
  the weighted ridge solution ``(Y_u^T C_u Y_u + lambda I)^-1 Y_u^T C_u t_u`` (``t`` the
  centred ratings), solved row by row by :func:`mflib.kernels.ridge.ridge_rows`; then
  the same for ``Y``. Each half-step is the exact minimiser of its block, so ``J`` never
  rises.
* :class:`AdamMF` takes full-batch Adam steps (Kingma & Ba 2015) on ``(X, Y)`` jointly,
  with the exact gradient ``dJ/dX = -2 (C o E) Y + 2 lambda X``,
  ``dJ/dY = -2 (C o E)^T X + 2 lambda Y`` (``E`` the residuals on ``Omega``).

Each iteration records ``objective`` (``J``), ``grad_norm`` (``|grad J|_F`` at the new
iterate, over ``X`` and ``Y`` together) and ``train_rmse`` (unweighted, of the fitted
model's predictions), all from one pass of residuals at the new iterate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..base import FactorizationEstimator, FactorState
from ..data.layout import training_layout
from ..data.ratings import RatingMatrix, as_rating_matrix
from ..fitting import StopFit
from ..kernels import pair_dots
from ..kernels.ridge import SOLVERS, ridge_rows
from ..validation import (
    NONNEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    DataError,
    Interval,
    Options,
    check_random_state,
)
from . import baselines
from .baselines import CENTER_CONSTRAINT
from .state import LayoutState, initial_factors


# ---------------------------------------------------------------------- inputs
def check_sample_weight(sample_weight, n: int) -> np.ndarray:
    """``sample_weight`` as a float64 array of ``n`` finite values >= 0 (ones when None)."""
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "biuf":
        raise DataError(f"sample_weight must hold real numbers, got dtype {w.dtype}; convert "
                        "it with np.asarray(sample_weight, dtype=float)")
    w = w.astype(np.float64, copy=False)
    if w.shape != (n,):
        raise DataError(f"sample_weight has shape {w.shape} but there are {n} ratings; pass "
                        "one weight per rating, in the order of the ratings given to fit")
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(f"sample_weight must be finite and >= 0; {int(bad.sum())} value(s) are "
                        f"not (first at position {pos}: {w[pos]!r}); a weight of 0 ignores "
                        "its rating")
    return w


def dense_ratings(matrix, *, row_ids=None, column_ids=None, name="dense") -> RatingMatrix:
    """Every cell of a dense (rows x columns) matrix as a rating, row-major order.

    Rows become users and columns items; ``row_ids`` / ``column_ids`` (default
    ``0..n-1``) name them. Weights for the cells are then ``W.ravel()`` of a matrix of the
    same shape.
    """
    arr = np.asarray(matrix, dtype=np.float64)
    if arr.ndim != 2 or 0 in arr.shape:
        raise DataError(f"matrix must be a non-empty 2-D array, got shape {arr.shape}")
    n_rows, n_cols = arr.shape
    rows = np.arange(n_rows) if row_ids is None else np.asarray(row_ids)
    cols = np.arange(n_cols) if column_ids is None else np.asarray(column_ids)
    if rows.shape != (n_rows,) or cols.shape != (n_cols,):
        raise DataError(f"row_ids / column_ids must have {n_rows} / {n_cols} entries, got "
                        f"{rows.shape} / {cols.shape}")
    return RatingMatrix.from_arrays(np.repeat(rows, n_cols), np.tile(cols, n_rows),
                                    arr.ravel(), name=name)


# ---------------------------------------------------------------------- Adam
class AdamMoments:
    """Adam's running moments of a list of parameter arrays (Kingma & Ba 2015).

    :meth:`step` updates the parameters in place:
    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``.
    """

    def __init__(self, params):
        self.first = [np.zeros_like(p, dtype=np.float64) for p in params]
        self.second = [np.zeros_like(p, dtype=np.float64) for p in params]
        self.steps = 0

    def copy(self) -> AdamMoments:
        out = AdamMoments([])
        out.first = [m.copy() for m in self.first]
        out.second = [v.copy() for v in self.second]
        out.steps = self.steps
        return out

    def step(self, params, grads, learning_rate, beta_1, beta_2, epsilon) -> None:
        self.steps += 1
        t = self.steps
        scale = learning_rate * np.sqrt(1.0 - beta_2**t) / (1.0 - beta_1**t)
        # the bias corrections folded into one scale and into epsilon: the same update
        eps = epsilon * np.sqrt(1.0 - beta_2**t)
        for p, g, m, v in zip(params, grads, self.first, self.second, strict=True):
            m *= beta_1
            m += (1.0 - beta_1) * g
            v *= beta_2
            v += (1.0 - beta_2) * g * g
            p -= scale * m / (np.sqrt(v) + eps)


ADAM_CONSTRAINTS = {
    "learning_rate": [POSITIVE],
    "beta_1": [Interval("real", 0, 1, closed="left")],
    "beta_2": [Interval("real", 0, 1, closed="left")],
    "epsilon": [POSITIVE],
}


# ---------------------------------------------------------------------- shared state
@dataclass
class WeightedState(LayoutState):
    """Factors, offsets, the centred ratings and weights in CSR and CSC order (shared by
    state copies), and the gradient at the current factors."""

    targets_csr: np.ndarray | None = None
    targets_csc: np.ndarray | None = None
    weights_csr: np.ndarray | None = None
    weights_csc: np.ndarray | None = None
    user_gradient: np.ndarray | None = None
    item_gradient: np.ndarray | None = None
    adam: AdamMoments | None = None

    _SHARED = ("targets_csr", "targets_csc", "weights_csr", "weights_csc")

    def copy(self):
        shared = {name: getattr(self, name) for name in self._SHARED}
        out = FactorState.copy(dataclasses.replace(self, **dict.fromkeys(shared)))
        for name, value in shared.items():
            setattr(out, name, value)
        return out


def _residuals(state: WeightedState) -> np.ndarray:
    """Centred ratings minus ``x_u . y_i``, in CSR order."""
    s = state.layout
    return state.targets_csr - pair_dots(state.user_factors, state.item_factors,
                                         s.user_of_rating, s.user_items)


class WeightedFactorization(FactorizationEstimator):
    """What :class:`WeightedALS` and :class:`AdamMF` share: the weights, the centring, the
    objective, its gradient and the recorded metrics (see the module docstring)."""

    _parameter_constraints = {
        "n_factors": [POSITIVE_INT],
        "regularization": [NONNEGATIVE],
        "center": CENTER_CONSTRAINT,
        "bias_regularization": [NONNEGATIVE],
        "init_std": [POSITIVE],
    }

    def fit(self, X, y=None, *, sample_weight=None, eval_set=None):
        """Fit the model; returns ``self``.

        Parameters
        ----------
        X : RatingMatrix or array-like of shape (n, 2)
            Training ratings, or raw (user, item) ids.
        y : array-like of shape (n,), optional
            Ratings when ``X`` is an id array.
        sample_weight : array-like of shape (n,), optional
            Confidence ``c_ui >= 0`` of each rating, in the order of ``y`` (or of
            ``X.ratings`` for a RatingMatrix); None means all ones. A weight of 0 leaves
            its rating out of the objective.
        eval_set : RatingMatrix or tuple (X_val, y_val), optional
            Validation ratings; their (unweighted) RMSE is recorded as ``val_rmse``.
        """
        # the fit template takes no per-rating weights, so they wait here for
        # _init_state, which reads them once
        self._pending_weights = sample_weight
        try:
            return super().fit(X, y, eval_set=eval_set)
        finally:
            del self._pending_weights

    def score(self, X, y=None, sample_weight=None) -> float:
        """Negative RMSE of the predictions, weighted by ``sample_weight`` when given
        (``-sqrt(sum c e^2 / sum c)``), so that model selection scores what is fitted."""
        if sample_weight is None:
            return super().score(X, y)
        rm = as_rating_matrix(X, y)
        weights = check_sample_weight(sample_weight, rm.nnz)
        if not weights.sum() > 0:
            raise DataError("sample_weight sums to 0: no rating to score")
        e = self.predict(rm) - rm.ratings
        return -float(np.sqrt(weights @ (e * e) / weights.sum()))

    def _weighted_state(self, train) -> WeightedState:
        weights = check_sample_weight(getattr(self, "_pending_weights", None), train.nnz)
        layout = training_layout(train)
        offsets = baselines.center(train, self.center, self.bias_regularization)
        rng = check_random_state(self.random_state)
        X, Y = initial_factors(rng, train.n_users, train.n_items, self.n_factors,
                               self.init_std)
        state = WeightedState(
            global_mean=offsets.mean, user_bias=offsets.user_bias,
            item_bias=offsets.item_bias, user_factors=X, item_factors=Y, layout=layout,
            targets_csr=layout.to_csr(offsets.values),
            targets_csc=layout.to_csc(offsets.values),
            weights_csr=layout.to_csr(weights), weights_csc=layout.to_csc(weights),
        )
        self._metrics_and_gradient(state)
        return state

    def _metrics_and_gradient(self, state: WeightedState, weighted_sse=None) -> dict:
        """Residuals at the current factors, then ``objective``, ``grad_norm`` and
        ``train_rmse``; the gradient is kept on ``state`` (Adam's next step uses it)."""
        s, X, Y = state.layout, state.user_factors, state.item_factors
        lam = float(self.regularization)
        e = _residuals(state)
        we = state.weights_csr * e
        if weighted_sse is None:
            weighted_sse = float(we @ e)
        M = s.csr_matrix(we)
        state.user_gradient = 2.0 * (lam * X - M @ Y)
        state.item_gradient = 2.0 * (lam * Y - M.T @ X)
        grad_sq = np.sum(state.user_gradient**2) + np.sum(state.item_gradient**2)
        return {
            "objective": float(weighted_sse + lam * (np.sum(X * X) + np.sum(Y * Y))),
            "grad_norm": float(np.sqrt(grad_sq)),
            "train_rmse": float(np.sqrt(e @ e / s.nnz)),
        }

    def objective(self, state: WeightedState) -> float:
        """``J`` at ``state`` (see the module docstring)."""
        e = _residuals(state)
        penalty = np.sum(state.user_factors**2) + np.sum(state.item_factors**2)
        return float(state.weights_csr @ (e * e) + self.regularization * penalty)


class WeightedALS(WeightedFactorization):
    """Confidence-weighted ALS: exact weighted ridge half-steps (module docstring).

    Minimises ``sum_Omega c_ui (r_ui - o_ui - x_u . y_i)^2 + lambda (|X|^2 + |Y|^2)``.
    With all weights 1 and ``center="none"`` it is :class:`mflib.ALS` with
    ``use_bias=False`` (same factors from the same seed).

    Parameters
    ----------
    n_factors : int, default 10
        Rank ``k``.
    regularization : float, default 20.0
        ``lambda``. The default, with ``center="biases"``, was chosen on 10% validation
        parts of ml-100k u1.base and of the Netflix course training set (lambda 5-20,
        ranks 10 and 30): validation RMSE 0.925 and 0.938 against the bias baseline's
        0.944 and 0.943; lambda 10 and below overfit the sparser Netflix set, and the
        former defaults (lambda 0.1, uncentred) reach 1.22 and 1.55 (Adam's 500 steps:
        1.00 and 1.13). The CF-ensemble study (:mod:`mflib.solvers.ensemble_study`) sets
        its own.
    center : {"none", "mean", "biases"}, default "biases"
        Fixed offset ``o_ui`` removed first (fitted without the weights). "biases": on
        ratings, factors shrunk by ``lambda`` then predict a user's and an item's level
        from the bias baseline rather than from 0; "none" is the objective of a matrix
        whose cells are the data as they are (the CF-ensemble).
    bias_regularization : float, default 10.0
        ``lambda`` of the bias baseline of ``center="biases"``.
    max_iter : int, default 15
        Sweeps (a user half-step, then an item half-step).
    tol : float, default 1e-6
        Stop when ``J`` changes by less than this, relatively (0 disables).
    solver : {"cholesky", "cg"}, default "cholesky"
        Exact per-row solves, or ``cg_steps`` warm-started conjugate-gradient steps
        (then each half-step decreases its block without reaching its minimiser).
    cg_steps : int, default 3
    init_std : float, default 0.1
        Factors start as N(0, init_std^2) entries.
    n_jobs : int or None, default None
        numba threads for the row solves; every value gives the same factors.
    random_state : int, Generator or None
    verbose : int, default 0
    callbacks : list of callables, optional

    Attributes
    ----------
    user_factors_ : ndarray of shape (n_users, n_factors)
    item_factors_ : ndarray of shape (n_items, n_factors)
    global_mean_, user_bias_, item_bias_ : the offsets of ``center`` (None when absent)
    history_ : History
        ``objective``, ``grad_norm`` and ``train_rmse`` per sweep (``val_rmse`` with an
        ``eval_set``). After an exact item half-step the item part of the gradient is 0
        up to rounding, so ``grad_norm`` is that of the user factors.
    """

    _parameter_constraints = {
        "solver": [Options(*SOLVERS)],
        "cg_steps": [POSITIVE_INT],
    }
    _contract_params = {"n_factors": 3, "max_iter": 3}

    def __init__(self, n_factors=10, regularization=20.0, center="biases",
                 bias_regularization=10.0, max_iter=15, tol=1e-6, solver="cholesky",
                 cg_steps=3, init_std=0.1, n_jobs=None, random_state=None, verbose=0,
                 callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.center = center
        self.bias_regularization = bias_regularization
        self.max_iter = max_iter
        self.tol = tol
        self.solver = solver
        self.cg_steps = cg_steps
        self.init_std = init_std
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _init_state(self, train):
        return self._weighted_state(train)

    def half_step(self, state: WeightedState, side: str, row_sse=None) -> None:
        """Replace the ``side`` ("user" or "item") factors by the exact minimiser of ``J``
        over them, the other side fixed (``cg_steps`` CG steps with ``solver="cg"``).
        ``row_sse`` receives each row's weighted squared residuals at the new factors."""
        s = state.layout
        if side == "user":
            structure = (s.user_indptr, s.user_items, state.targets_csr)
            weights, fixed, own = state.weights_csr, state.item_factors, state.user_factors
        else:
            structure = (s.item_indptr, s.item_users, state.targets_csc)
            weights, fixed, own = state.weights_csc, state.user_factors, state.item_factors
        try:
            # ``own`` is the conjugate-gradient warm start and receives the solution
            ridge_rows(*structure, fixed, float(self.regularization), weights=weights,
                       out=own, solver=self.solver, cg_steps=self.cg_steps,
                       row_sse=row_sse)
        except np.linalg.LinAlgError as exc:
            raise StopFit(f"stopped: singular row systems ({exc}); rows whose weights are "
                          "all 0 need regularization > 0") from exc

    def _step(self, state, train):
        self.half_step(state, "user")
        # the item half-step comes last: its rows' weighted residuals sum to the weighted
        # loss of the new iterate
        item_sse = np.empty(state.layout.n_items)
        self.half_step(state, "item", row_sse=item_sse)
        return self._metrics_and_gradient(state, weighted_sse=float(item_sse.sum()))


class AdamMF(WeightedFactorization):
    """Confidence-weighted MF trained by full-batch Adam (module docstring).

    Minimises the same ``J`` as :class:`WeightedALS`; each iteration is one Adam step on
    ``(X, Y)`` with the exact full gradient. Adam with a fixed learning rate does not
    settle exactly at a minimiser: it hovers within a distance that shrinks with
    ``learning_rate``.

    Parameters
    ----------
    n_factors : int, default 10
    regularization : float, default 20.0
        As :class:`WeightedALS` (the same objective, the same default).
    center : {"none", "mean", "biases"}, default "biases"
    bias_regularization : float, default 10.0
    learning_rate : float, default 0.01
        Adam's step size (in parameter units: each coordinate moves by about this much
        per step while its gradient keeps its sign).
    beta_1, beta_2 : float, default 0.9, 0.999
        Decay rates of the first and second moment estimates.
    epsilon : float, default 1e-8
    max_iter : int, default 500
        Adam steps.
    tol : float, default 0.0
        Stop when ``J`` changes by less than this, relatively (0, the default, disables
        it: Adam's objective can stall on a plateau before the minimum).
    init_std : float, default 0.1
    n_jobs : int or None, default None
    random_state : int, Generator or None
    verbose : int, default 0
    callbacks : list of callables, optional

    Attributes
    ----------
    user_factors_, item_factors_, global_mean_, user_bias_, item_bias_ :
        As in :class:`WeightedALS`.
    history_ : History
        ``objective``, ``grad_norm``, ``train_rmse`` per step (``val_rmse`` with an
        ``eval_set``).
    """

    _parameter_constraints = dict(ADAM_CONSTRAINTS)
    _contract_params = {"n_factors": 3, "max_iter": 20, "learning_rate": 0.05}

    def __init__(self, n_factors=10, regularization=20.0, center="biases",
                 bias_regularization=10.0, learning_rate=0.01, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, max_iter=500, tol=0.0, init_std=0.1, n_jobs=None,
                 random_state=None, verbose=0, callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.center = center
        self.bias_regularization = bias_regularization
        self.learning_rate = learning_rate
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.max_iter = max_iter
        self.tol = tol
        self.init_std = init_std
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _init_state(self, train):
        state = self._weighted_state(train)
        state.adam = AdamMoments([state.user_factors, state.item_factors])
        return state

    def _step(self, state, train):
        state.adam.step([state.user_factors, state.item_factors],
                        [state.user_gradient, state.item_gradient],
                        self.learning_rate, self.beta_1, self.beta_2, self.epsilon)
        return self._metrics_and_gradient(state)


__all__ = [
    "AdamMF",
    "AdamMoments",
    "WeightedALS",
    "WeightedFactorization",
    "WeightedState",
    "check_sample_weight",
    "dense_ratings",
]
