"""Explicit-feedback alternating least squares, with or without biases.

Model ``r_hat = mu + b_u + c_i + p_u . q_i`` (biases and ``mu`` only with ``use_bias=True``;
``mu`` is then the training mean and stays fixed). With the items fixed, every user's
``(b_u, p_u)`` is an independent ridge problem, and symmetrically for items, so each
half-step is solved exactly and row by row in parallel (:func:`mflib.kernels.ridge.ridge_rows`).
The biases are solved *jointly* with the factors: ``(b_u, p_u)`` is the ridge solution for
the augmented features ``[1, q_i]`` and the targets ``r_ui - mu - c_i``.

Regularisation conventions (``regularization_scale``), with ``lambda = regularization``
and ``S = sum_Omega (r_ui - r_hat_ui)^2`` (written with one ``lambda``; the bias terms
carry ``bias_regularization`` instead when it is set):

``"sum"``
    ``S + lambda (sum_u |p_u|^2 + b_u^2  +  sum_i |q_i|^2 + c_i^2)``; each row's normal
    equations carry ``lambda``.
``"weighted"``
    ``S + lambda (sum_u n_u (|p_u|^2 + b_u^2) + sum_i n_i (|q_i|^2 + c_i^2))`` with ``n_u``,
    ``n_i`` the rating counts ("ALS-WR", Zhou et al. 2008); row ``u`` carries ``lambda n_u``.
``"course"``
    ``S / |Omega| + lambda (|P|^2 + |Q|^2 [+ |b|^2 + |c|^2])``; multiplying by ``|Omega|``
    shows every row's normal equations carry ``lambda |Omega|``.

The recorded ``objective`` is the one of the chosen convention. Exact (Cholesky) solves
never raise it; the optional conjugate-gradient solver takes ``cg_steps`` steps per row
warm-started from the previous factors, which also never raises it (CG minimises each
row's quadratic over a space that contains its starting point).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import ParameterGrid

from ..base import FactorizationEstimator, FactorState
from ..fitting import StopFit
from ..kernels.ridge import SOLVERS, ridge_rows
from ..kernels.threads import numba_threads, resolve_n_jobs
from ..metrics import rmse
from ..validation import (
    check_choice,
    check_dtype,
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_random_state,
)

REGULARIZATION_SCALES = ("sum", "weighted", "course")


@dataclass
class RatingSides:
    """Both compressed layouts of the training ratings, built once per fit.

    ``user_*`` is the users x items CSR (items of each user, ratings in that order);
    ``item_*`` the items x users CSR. No ``copy`` method, so state copies share it.
    """

    user_indptr: np.ndarray
    user_items: np.ndarray
    user_ratings: np.ndarray
    item_indptr: np.ndarray
    item_users: np.ndarray
    item_ratings: np.ndarray
    user_counts: np.ndarray
    item_counts: np.ndarray
    user_of_rating: np.ndarray  # user of each rating in user-CSR order
    item_of_rating: np.ndarray  # item of each rating in item-CSR order

    @classmethod
    def from_train(cls, train, dtype=np.float64) -> RatingSides:
        csr = train.to_csr()
        csc = train.to_csc()  # columns of the CSR = rows of the items x users matrix
        user_counts = np.diff(csr.indptr)
        item_counts = np.diff(csc.indptr)
        return cls(
            csr.indptr.astype(np.int64),
            csr.indices.astype(np.int64),
            csr.data.astype(dtype),
            csc.indptr.astype(np.int64),
            csc.indices.astype(np.int64),
            csc.data.astype(dtype),
            user_counts,
            item_counts,
            np.repeat(np.arange(len(user_counts), dtype=np.int64), user_counts),
            np.repeat(np.arange(len(item_counts), dtype=np.int64), item_counts),
        )

    @property
    def nnz(self) -> int:
        return int(self.user_ratings.shape[0])


@dataclass
class ALSState(FactorState):
    """Factors and biases, plus the shared rating layouts (``sides``)."""

    sides: RatingSides | None = None


def row_multipliers(scale: str, counts: np.ndarray, nnz: int) -> np.ndarray:
    """What each row's penalty is multiplied by in its normal equations under ``scale``:
    1 (``"sum"``), the row's count (``"weighted"``) or ``|Omega|`` (``"course"``)."""
    if scale == "sum":
        return np.ones(len(counts))
    if scale == "weighted":
        return counts.astype(np.float64)
    return np.full(len(counts), float(nnz))


def augmented(bias: np.ndarray | None, factors: np.ndarray) -> np.ndarray:
    """``[bias, factors]`` as one C-contiguous (n, k+1) array; ``factors`` when no bias."""
    if bias is None:
        return np.ascontiguousarray(factors)
    out = np.empty((factors.shape[0], factors.shape[1] + 1), dtype=factors.dtype)
    out[:, 0] = bias
    out[:, 1:] = factors
    return out


def residuals(state: FactorState, sides: RatingSides) -> np.ndarray:
    """``r - r_hat`` for every rating, in user-CSR order, float64."""
    users = sides.user_of_rating
    items = sides.user_items
    pred = state.predict(users, items)
    return sides.user_ratings.astype(np.float64) - pred


class ALS(FactorizationEstimator):
    """Alternating least squares for explicit ratings (see the module docstring).

    Parameters
    ----------
    n_factors : int, default 10
        Rank ``k``.
    regularization : float, default 0.1
        ``lambda`` on the factors.
    bias_regularization : float or None, default None
        ``lambda`` on the biases in place of ``regularization`` (None: the same value),
        under the same convention.
    regularization_scale : {"sum", "weighted", "course"}, default "sum"
        The convention; formulas in the module docstring.
    use_bias : bool, default True
        Fit ``mu + b_u + c_i`` alongside the factors (solved jointly, exactly).
    max_iter : int, default 15
        Epochs (one user half-step and one item half-step each).
    tol : float, default 1e-6
        Stop when the objective's relative change is below ``tol`` (0 disables).
    solver : {"cholesky", "cg"}, default "cholesky"
        Exact per-row solves, or ``cg_steps`` warm-started conjugate-gradient steps
        (cheaper at large ranks).
    cg_steps : int, default 3
    init_std : float, default 0.1
        Factors start as N(0, init_std^2) entries; biases at 0.
    dtype : {"float64", "float32"}, default "float64"
        Working precision of factors and solves.
    n_jobs : int or None, default None
        numba threads for the row solves (None: numba's current setting, -1: all).
        Rows are independent, so every value gives the same factors.
    random_state : int, Generator or None
    verbose : int, default 1
        Show a progress bar.
    callbacks : list of callables, optional

    Attributes
    ----------
    user_factors_ : ndarray of shape (n_users, n_factors)
    item_factors_ : ndarray of shape (n_items, n_factors)
    user_bias_, item_bias_ : ndarray of shape (n_users,), (n_items,), or None
    global_mean_ : float
    history_ : History
        ``objective`` per epoch, plus ``train_rmse`` / ``val_rmse``.
    """

    _contract_params = {"n_factors": 3, "max_iter": 3}

    def __init__(self, n_factors=10, regularization=0.1, bias_regularization=None,
                 regularization_scale="sum",
                 use_bias=True, max_iter=15, tol=1e-6, solver="cholesky", cg_steps=3,
                 init_std=0.1, dtype="float64", n_jobs=None, random_state=None, verbose=1,
                 callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.regularization_scale = regularization_scale
        self.use_bias = use_bias
        self.max_iter = max_iter
        self.tol = tol
        self.solver = solver
        self.cg_steps = cg_steps
        self.init_std = init_std
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    # ------------------------------------------------------------------ template
    def _check_params(self):
        check_positive_int(self.n_factors, "n_factors")
        check_nonnegative(self.regularization, "regularization")
        if self.bias_regularization is not None:
            check_nonnegative(self.bias_regularization, "bias_regularization")
        check_choice(self.regularization_scale, "regularization_scale", REGULARIZATION_SCALES)
        check_choice(self.solver, "solver", SOLVERS)
        check_positive_int(self.cg_steps, "cg_steps")
        check_positive(self.init_std, "init_std")
        check_nonnegative(self.tol, "tol")
        resolve_n_jobs(self.n_jobs)
        return check_dtype(self.dtype)

    def _init_state(self, train):
        dtype = self._check_params()
        rng = check_random_state(self.random_state)
        k = self.n_factors
        sides = RatingSides.from_train(train, dtype)
        state = ALSState(
            global_mean=float(train.ratings.mean()) if self.use_bias else 0.0,
            user_bias=np.zeros(train.n_users, dtype) if self.use_bias else None,
            item_bias=np.zeros(train.n_items, dtype) if self.use_bias else None,
            user_factors=rng.normal(0.0, self.init_std, (train.n_users, k)).astype(dtype),
            item_factors=rng.normal(0.0, self.init_std, (train.n_items, k)).astype(dtype),
            sides=sides,
        )
        scale = self.regularization_scale
        self._user_reg = row_multipliers(scale, sides.user_counts, sides.nnz)
        self._item_reg = row_multipliers(scale, sides.item_counts, sides.nnz)
        # per-coordinate penalties: [bias, factors...]
        lam, lam_b = self._lambdas()
        self._coordinate_reg = np.array(([lam_b] if self.use_bias else []) + [lam] * k)
        return state

    def _lambdas(self) -> tuple[float, float]:
        lam = float(self.regularization)
        lam_b = lam if self.bias_regularization is None else float(self.bias_regularization)
        return lam, lam_b

    def _solve_side(self, indptr, others, ratings, other_bias, other_factors, own_bias,
                    own_factors, reg, mu, row_sse=None):
        """One half-step: every row's (bias, factors) given the other side's; ``row_sse``
        receives each row's squared residuals at the new solution."""
        targets = ratings - ratings.dtype.type(mu)
        if other_bias is not None:
            targets = targets - other_bias[others]
        features = augmented(
            None if other_bias is None else np.ones_like(other_bias), other_factors
        )
        solution = augmented(own_bias, own_factors)  # the CG warm start
        try:
            ridge_rows(indptr, others, targets, features, reg, out=solution,
                       solver=self.solver, cg_steps=self.cg_steps, dtype=ratings.dtype,
                       reg_scale=self._coordinate_reg, row_sse=row_sse)
        except np.linalg.LinAlgError as exc:
            raise StopFit(f"stopped: singular or non-finite row systems: {exc}") from exc
        if own_bias is None:
            return None, solution
        return np.ascontiguousarray(solution[:, 0]), np.ascontiguousarray(solution[:, 1:])

    def _step(self, state, train):
        s = state.sides
        with numba_threads(self.n_jobs):
            state.user_bias, state.user_factors = self._solve_side(
                s.user_indptr, s.user_items, s.user_ratings, state.item_bias,
                state.item_factors, state.user_bias, state.user_factors, self._user_reg,
                state.global_mean)
            # the item half-step comes last, so its rows' squared residuals sum to the
            # loss of the new state: no separate pass over the ratings for the objective
            # or the training RMSE
            item_sse = np.empty(len(s.item_indptr) - 1)
            state.item_bias, state.item_factors = self._solve_side(
                s.item_indptr, s.item_users, s.item_ratings, state.user_bias,
                state.user_factors, state.item_bias, state.item_factors, self._item_reg,
                state.global_mean, row_sse=item_sse)
            sse = float(item_sse.sum())
            return {"objective": self.objective(state, sse=sse),
                    "train_rmse": float(np.sqrt(sse / s.nnz))}

    def objective(self, state, sse=None) -> float:
        """The objective of ``regularization_scale`` at ``state`` (see module docstring).

        ``sse``, the sum of squared residuals over the training ratings, is computed
        from ``state`` unless given.
        """
        s = state.sides
        if sse is None:
            sse = float(np.sum(residuals(state, s) ** 2))
        lam, lam_b = self._lambdas()

        def penalty(bias, factors, counts):
            sq = lam * np.sum(factors.astype(np.float64) ** 2, axis=1)
            if bias is not None:
                sq += lam_b * bias.astype(np.float64) ** 2
            return float(sq @ counts) if self.regularization_scale == "weighted" else sq.sum()

        pen = (penalty(state.user_bias, state.user_factors, s.user_counts)
               + penalty(state.item_bias, state.item_factors, s.item_counts))
        if self.regularization_scale == "course":
            return sse / s.nnz + pen
        return sse + pen




def thread_timing(estimator, train, test, n_jobs_values=(1, 2)) -> pd.DataFrame:
    """Fit a clone of ``estimator`` with each ``n_jobs`` and compare them.

    Returns one row per value: solver seconds per iteration, test RMSE, and whether the
    factors are bit-identical to those of the first value (rows are solved
    independently, so they should be).
    """
    rows, first = [], None
    for n_jobs in n_jobs_values:
        model = clone(estimator).set_params(n_jobs=n_jobs).fit(train)
        factors = (model.user_factors_, model.item_factors_)
        first = first or factors
        rows.append({
            "n_jobs": n_jobs,
            "seconds_per_iteration": model.history_["time"][-1] / model.n_iter_,
            "test_rmse": rmse(test.ratings, model.predict(test)),
            "identical_factors": all(np.array_equal(a, b) for a, b in zip(first, factors,
                                                                          strict=True)),
        })
    return pd.DataFrame(rows)


def regularization_sweep(estimator, values, train, validation, test=None) -> pd.DataFrame:
    """Fit a clone of ``estimator`` per ``regularization`` value; RMSE on validation
    (and test, when given) after the last iteration, plus iterations and stop reason."""
    rows = []
    for value in values:
        model = clone(estimator).set_params(regularization=value).fit(train)
        row = {"regularization": value,
               "val_rmse": rmse(validation.ratings, model.predict(validation))}
        if test is not None:
            row["test_rmse"] = rmse(test.ratings, model.predict(test))
        row.update(n_iter=model.n_iter_, stop_reason=model.stop_reason_)
        rows.append(row)
    return pd.DataFrame(rows)


def validation_grid(estimator, param_grid, train, validation, clip=True) -> pd.DataFrame:
    """Fit a clone of ``estimator`` per point of ``param_grid``, tracking validation RMSE.

    Parameters
    ----------
    estimator : FactorizationEstimator
        Template; its other parameters are kept.
    param_grid : dict or list of dicts
        As for :class:`sklearn.model_selection.ParameterGrid` (e.g.
        ``{"n_factors": [10, 50], "regularization": [0.05, 0.1]}``).
    train, validation : RatingMatrix
        Fitting ratings and held-out ratings (``validation`` must not be the test set).
    clip : bool, default True
        Clip the final predictions to the training rating scale for ``val_rmse``.

    Returns
    -------
    pandas.DataFrame
        One row per grid point: its parameters; ``val_rmse`` after the last iteration
        (predictions clipped when ``clip``); ``best_epoch`` and ``best_epoch_val_rmse``,
        the iteration where the (unclipped) validation RMSE recorded by the fit loop was
        lowest and that RMSE, so that the number of iterations can be chosen on
        validation too; ``n_iter``, ``stop_reason`` and solver ``seconds``.
    """
    grid = ParameterGrid(param_grid)
    if len(grid) == 0:
        raise ValueError("param_grid is empty; give at least one parameter value, e.g. "
                         "{'regularization': [0.1]}")
    rows = []
    for params in grid:
        model = clone(estimator).set_params(**params).fit(train, eval_set=validation)
        curve = model.history_["val_rmse"]
        best = int(np.argmin(curve))
        rows.append({**params,
                     "val_rmse": rmse(validation.ratings, model.predict(validation, clip=clip)),
                     "best_epoch": best + 1, "best_epoch_val_rmse": float(curve[best]),
                     "n_iter": model.n_iter_, "stop_reason": model.stop_reason_,
                     "seconds": float(model.history_["time"][-1])})
    return pd.DataFrame(rows)


__all__ = ["ALS", "ALSState", "RatingSides", "regularization_sweep", "thread_timing",
           "validation_grid"]
