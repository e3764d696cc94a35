"""``Blend``: stacking of already-configured mflib estimators.

The members are fitted on the training ratings; their predictions of a part they did
not train on (the ``eval_set`` given to ``fit``, or a holdout carved from the training
ratings) are the columns of a least-squares problem whose solution, non-negative
(:func:`scipy.optimize.nnls`) or ridge, is the blend's weights:

    r_hat = intercept + sum_k w_k r_hat^(k)

Any estimator with ``fit(X, eval_set=...)`` and ``predict(X, return_known=True)`` can be a
member (every mflib estimator, a Blend included).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import nnls
from sklearn.base import clone

from ..base import FactorizationEstimator, FactorState
from ..data.ratings import RatingMatrix
from ..data.split import make_split
from ..validation import (
    BOOLEAN,
    NONE,
    NONNEGATIVE,
    Constraint,
    DataError,
    Interval,
    Options,
)
from .als import ALS
from .baselines import BiasBaseline

BLEND_METHODS = ("nnls", "ridge")
HOLDOUT_SPLITS = ("auto", "temporal", "user", "random")


class Members(Constraint):
    """A list of ``(name, estimator)`` pairs with distinct string names, each estimator
    having ``fit`` and ``predict``."""

    def accepts(self, value) -> bool:
        if not isinstance(value, (list, tuple)) or not value:
            return False
        names = []
        for pair in value:
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
                return False
            if not all(callable(getattr(pair[1], m, None)) for m in ("fit", "predict")):
                return False
            names.append(pair[0])
        return len(set(names)) == len(names)

    def describe(self) -> str:
        return ("a non-empty list of (name, estimator) pairs with distinct names, e.g. "
                "[('biases', BiasBaseline()), ('als', ALS())]")


def blend_weights(predictions, ratings, *, method: str = "nnls", alpha: float = 1.0,
                  fit_intercept: bool = True) -> tuple[np.ndarray, float]:
    """Weights and intercept of the least-squares blend of ``predictions`` (n, m).

    ``method="nnls"``: weights >= 0 minimising ``|y - b - A w|^2``; ``"ridge"``: any sign,
    minimising ``|y - b - A w|^2 + alpha |w|^2``. The intercept ``b`` is not penalised
    (0 when ``fit_intercept`` is False); with one, the problem is solved on centred
    columns, which is exact for an unpenalised intercept.
    """
    A = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(ratings, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != len(y):
        raise DataError(f"predictions must be (n, m) with n = len(ratings) = {len(y)}, got "
                        f"shape {A.shape}")
    if len(y) < 2:
        raise DataError(f"fitting blend weights needs at least 2 ratings, got {len(y)}")
    if not (np.isfinite(A).all() and np.isfinite(y).all()):
        raise DataError("member predictions or ratings are not all finite; a member diverged?")
    if fit_intercept:
        a_mean, y_mean = A.mean(axis=0), y.mean()
        A, y = A - a_mean, y - y_mean
    if method == "nnls":
        w = nnls(A, y)[0]
    elif method == "ridge":
        w = np.linalg.solve(A.T @ A + alpha * np.eye(A.shape[1]), A.T @ y)
    else:
        raise ValueError(f"method must be one of {BLEND_METHODS}, got {method!r}")
    intercept = float(y_mean - a_mean @ w) if fit_intercept else 0.0
    return w, intercept


@dataclass
class BlendState(FactorState):
    """Fitted members, weights and intercept (copies share the members)."""

    members: list = dataclasses.field(default_factory=list)
    weights: np.ndarray | None = None
    intercept: float = 0.0

    def copy(self):
        return dataclasses.replace(self)

    def combine(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Blended predictions of ``X`` and whether any member predicted a row by its
        model (rather than its fallback)."""
        preds, knowns = [], []
        for _, model in self.members:
            p, k = model.predict(X, return_known=True)
            preds.append(p)
            knowns.append(k)
        out = self.intercept + np.column_stack(preds) @ self.weights
        return out, np.any(knowns, axis=0)


class Blend(FactorizationEstimator):
    """Stacking: a least-squares blend of the predictions of several estimators.

    Fit: each member (a clone of the configured estimator) is fitted on the training
    ratings; the weights are fitted on the members' predictions of the ``eval_set`` given
    to ``fit`` (members are then reused as they are), or, without one, of a holdout of
    ``holdout`` of the training ratings that the members are first fitted without (then
    refitted on all training ratings when ``refit``). Prediction::

        r_hat = intercept_ + sum_k weights_[k] * members_[k].predict(X)

    A pair that every member predicts by its fallback is predicted by the blend's own
    fallback (:mod:`mflib.base`).

    Parameters
    ----------
    estimators : list of (name, estimator) or None, default None
        The members, configured; they are cloned, never fitted in place. None: a
        regularised bias baseline and ALS.
    method : {"nnls", "ridge"}, default "nnls"
        Non-negative least squares, or ridge regression with penalty ``alpha``.
    alpha : float, default 1.0
        Ridge penalty on the weights (``method="ridge"``).
    fit_intercept : bool, default True
    holdout : float in (0, 1), default 0.15
        Fraction of the training ratings held out to fit the weights when ``fit`` gets
        no ``eval_set``.
    holdout_split : {"auto", "temporal", "user", "random"}, default "auto"
        How the holdout is drawn (:func:`mflib.data.make_split`): "auto" takes each
        user's latest ratings when there are timestamps ("temporal"), else a per-user
        random share ("user").
    refit : bool, default True
        After fitting the weights on a holdout, refit the members on all training
        ratings (False: keep the members fitted without the holdout).
    n_jobs : int or None, default None
    random_state : int, Generator or None
        Seeds a random holdout.
    verbose : int, default 0

    Attributes
    ----------
    estimators_ : list of (name, fitted estimator)
    weights_ : pandas Series
        One weight per member name.
    intercept_ : float
    blend_source_ : str
        "eval_set" or "holdout": where the weights were fitted.
    """

    _parameter_constraints = {
        "estimators": [NONE, Members()],
        "method": [Options(*BLEND_METHODS)],
        "alpha": [NONNEGATIVE],
        "fit_intercept": [BOOLEAN],
        "holdout": [Interval("real", 0, 1, closed="neither")],
        "holdout_split": [Options(*HOLDOUT_SPLITS)],
        "refit": [BOOLEAN],
    }
    _contract_params = {"estimators": [("biases", BiasBaseline(max_iter=5)),
                                       ("als", ALS(n_factors=2, max_iter=3, random_state=0))]}

    def __init__(self, estimators=None, method="nnls", alpha=1.0, fit_intercept=True,
                 holdout=0.15, holdout_split="auto", refit=True, n_jobs=None,
                 random_state=None, verbose=0):
        self.estimators = estimators
        self.method = method
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.holdout = holdout
        self.holdout_split = holdout_split
        self.refit = refit
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _members(self) -> list:
        if self.estimators is None:
            return [("biases", BiasBaseline(regularization=3.0)),
                    ("als", ALS(regularization=20.0, bias_regularization=3.0,
                                random_state=self.random_state))]
        return list(self.estimators)

    def fit(self, X, y=None, *, eval_set=None):
        """Fit the members and the weights (see the class docstring); returns ``self``.

        ``eval_set`` (a RatingMatrix or ``(X_val, y_val)``), when given, is where the
        weights are fitted; it is also recorded as ``val_rmse`` like for any estimator.
        """
        self._weight_part = eval_set
        try:
            return super().fit(X, y, eval_set=eval_set)
        finally:
            del self._weight_part

    def _init_state(self, train):
        return BlendState(float(train.ratings.mean()))

    def _fit_members(self, train, eval_set) -> list:
        return [(name, clone(est).fit(train, eval_set=eval_set)) for name, est in
                self._members()]

    def _step(self, state, train):
        part = self._weight_part
        if part is not None:
            if not isinstance(part, RatingMatrix):
                part = RatingMatrix.from_pairs(*part)
            members = self._fit_members(train, part)
            self.blend_source_ = "eval_set"
        else:
            kind = self.holdout_split
            if kind == "auto":
                kind = "temporal" if train.timestamps is not None else "user"
            extra = {} if kind == "temporal" else {"random_state": self.random_state}
            split = make_split(train, kind, test_size=self.holdout, val_size=0.0, **extra)
            members = self._fit_members(split.train, split.test)
            part = split.test
            self.blend_source_ = "holdout"
        columns = np.column_stack([m.predict(part) for _, m in members])
        state.weights, state.intercept = blend_weights(
            columns, part.ratings, method=self.method, alpha=float(self.alpha),
            fit_intercept=bool(self.fit_intercept))
        if self.blend_source_ == "holdout" and self.refit:
            members = self._fit_members(train, None)
        state.members = members
        return {"converged": True}

    def _finalize(self, state):
        self.global_mean_ = float(state.global_mean)
        self.estimators_ = state.members
        self.weights_ = pd.Series(state.weights, index=[n for n, _ in state.members],
                                  name="weight")
        self.intercept_ = float(state.intercept)

    def _fitted_state(self):
        return BlendState(self.global_mean_, members=self.estimators_,
                          weights=self.weights_.to_numpy(), intercept=self.intercept_)

    # ------------------------------------------------------------------ prediction
    def _pairs_of(self, users, items) -> RatingMatrix:
        """Inner training pairs as a RatingMatrix sharing the training id maps (members
        fitted on the same ratings read it without a lookup)."""
        idx = self._train_index
        return RatingMatrix(users.astype(np.int32), items.astype(np.int32),
                            np.zeros(len(users)), idx.user_ids, idx.item_ids)

    def _predict_pairs(self, state, users, items):
        out = np.empty(len(users))
        known = np.zeros(len(users), dtype=bool)
        inside = np.flatnonzero((users >= 0) & (items >= 0))
        if inside.size:
            out[inside], known[inside] = state.combine(self._pairs_of(users[inside],
                                                                      items[inside]))
        self._fallback_rows(users, items, out, known)
        return out, known

    def _fallback_rows(self, users, items, out, known) -> None:
        rest = np.flatnonzero(~known)
        if not rest.size:
            return
        u, i = users[rest], items[rest]
        ku, ki = u >= 0, i >= 0
        ku[ku] = self.user_counts_[u[ku]] > 0
        ki[ki] = self.item_counts_[i[ki]] > 0
        out[rest] = self.fallback_.predict(u, i, ku, ki)

    def predict(self, X, *, clip: bool = False, return_known: bool = False):
        """Blended predictions of raw (user, item) pairs or a RatingMatrix (each member
        sees ``X`` itself, timestamps and unknown raw ids included); pairs every member
        predicts by its fallback get the blend's fallback."""
        self._check_fitted()
        users, items = self.map_pairs(X)
        out, known = self._fitted_state().combine(X)
        self._fallback_rows(users, items, out, known)
        if clip:
            np.clip(out, *self.rating_scale_, out=out)
        return (out, known) if return_known else out

    def score_items(self, users) -> np.ndarray:
        """Blended scores of every item (members share the training id maps); users
        without training ratings get the fallback ranking."""
        self._check_fitted()
        users = np.array(users, dtype=np.int64, ndmin=1)
        ok = users >= 0
        ok[ok] = self.user_counts_[users[ok]] > 0
        out = np.empty((len(users), len(self.item_ids_)))
        out[~ok] = self.fallback_.item_scores()
        if ok.any():
            w = self.weights_.to_numpy()
            total = np.full((int(ok.sum()), len(self.item_ids_)), self.intercept_)
            for weight, (_, model) in zip(w, self.estimators_, strict=True):
                if weight != 0:
                    total += weight * model.score_items(users[ok])
            out[ok] = total
        return out




__all__ = ["BLEND_METHODS", "Blend", "BlendState", "Members", "blend_weights"]
