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
    """A non-empty list of members with distinct string names, each either a
    ``(name, estimator)`` pair (an object with ``fit`` and ``predict``) or a
    ``(name, class_name, params)`` triple naming an mflib estimator and its parameters
    (plain data: YAML profiles, the command line and model files can hold it)."""

    def accepts(self, value) -> bool:
        if not isinstance(value, (list, tuple)) or not value:
            return False
        names = []
        for member in value:
            if not isinstance(member, (list, tuple)) or not member:
                return False
            if not isinstance(member[0], str):
                return False
            if len(member) == 2:
                if not all(callable(getattr(member[1], m, None)) for m in ("fit", "predict")):
                    return False
            elif len(member) == 3:
                if not (isinstance(member[1], str) and member[1].lower() in _registered()
                        and isinstance(member[2], dict)):
                    return False
            else:
                return False
            names.append(member[0])
        return len(set(names)) == len(names)

    def describe(self) -> str:
        return ("a non-empty list of (name, estimator) pairs or (name, class name, params) "
                "triples with distinct names, e.g. [('biases', BiasBaseline()), "
                "('als', 'ALS', {'n_factors': 10})]")


def _registered() -> dict:
    from ..registry import estimators  # noqa: PLC0415  (the registry imports this module)

    return estimators()


def member_estimator(member) -> object:
    """The configured estimator of one member: the object of a pair, or a new instance of
    a ``(name, class_name, params)`` triple."""
    if len(member) == 3:
        from ..registry import make_estimator  # noqa: PLC0415

        return make_estimator(member[1], **member[2])
    return member[1]


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
    estimators : list or None, default None
        The members: ``(name, estimator)`` pairs of configured estimators (cloned, never
        fitted in place), or ``(name, class_name, params)`` triples such as
        ``("als", "ALS", {"n_factors": 10})`` (plain data, which YAML profiles, the
        command line and model files hold). None: a regularised bias baseline and ALS. A
        model file stores the fitted members either way; it cannot store estimator
        objects as the *parameter*, which is then loaded as None (with a warning).
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
    member_names_ : ndarray of str
    weights_ : ndarray of shape (n_members,)
        One weight per member, in ``member_names_`` order; ``named_weights_`` is the same
        as a pandas Series indexed by name.
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
    # members as plain data, which a model file stores like any other parameter
    _contract_params = {"estimators": [("biases", "BiasBaseline", {"max_iter": 5}),
                                       ("als", "ALS", {"n_factors": 2, "max_iter": 3,
                                                       "random_state": 0})]}

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
        return [(member[0], member_estimator(member)) for member in self.estimators]

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
        self._members = state.members
        self.member_names_ = np.array([n for n, _ in state.members], dtype=str)
        self.weights_ = np.asarray(state.weights, dtype=np.float64)
        self.intercept_ = float(state.intercept)
        for stale in ("member_files_", "member_offsets_"):  # of an earlier save
            self.__dict__.pop(stale, None)

    def _fitted_state(self):
        return BlendState(self.global_mean_, members=self.estimators_, weights=self.weights_,
                          intercept=self.intercept_)

    @property
    def estimators_(self) -> list:
        """The fitted members, ``[(name, estimator), ...]`` (read back from the embedded
        member files for a blend loaded from a model file)."""
        members = self.__dict__.get("_members")
        if members is None:
            if not hasattr(self, "member_files_"):
                raise AttributeError("estimators_ exists after fit")
            members = self._unpack_members()
            self._members = members
        return members

    @property
    def named_weights_(self) -> pd.Series:
        """``weights_`` indexed by member name."""
        return pd.Series(self.weights_, index=self.member_names_, name="weight")

    # ------------------------------------------------------------------ model files
    def save(self, path, *, include_seen: bool = False):
        """Write the blend to one model file (see :meth:`FactorizationEstimator.save`):
        each member is written in its own model-file format and embedded as bytes
        (``member_files_``, ``member_offsets_``), so loading runs no code either."""
        self._check_fitted()
        import tempfile  # noqa: PLC0415
        from pathlib import Path  # noqa: PLC0415

        blobs = []
        with tempfile.TemporaryDirectory() as tmp:
            for k, (_, model) in enumerate(self.estimators_):
                blobs.append(Path(model.save(Path(tmp) / f"member{k}.npz")).read_bytes())
        self.member_offsets_ = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        self.member_files_ = np.frombuffer(b"".join(blobs), dtype=np.uint8).copy()
        return super().save(path, include_seen=include_seen)

    def _unpack_members(self) -> list:
        import tempfile  # noqa: PLC0415
        from pathlib import Path  # noqa: PLC0415

        from ..persistence import load_model  # noqa: PLC0415 (imports the estimators)

        members = []
        with tempfile.TemporaryDirectory() as tmp:
            for k, name in enumerate(self.member_names_):
                start, stop = self.member_offsets_[k], self.member_offsets_[k + 1]
                path = Path(tmp) / f"member{k}.npz"
                path.write_bytes(self.member_files_[start:stop].tobytes())
                members.append((str(name), load_model(path)))
        return members

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
            w = self.weights_
            total = np.full((int(ok.sum()), len(self.item_ids_)), self.intercept_)
            for weight, (_, model) in zip(w, self.estimators_, strict=True):
                if weight != 0:
                    total += weight * model.score_items(users[ok])
            out[ok] = total
        return out




__all__ = ["BLEND_METHODS", "Blend", "BlendState", "Members", "blend_weights"]
