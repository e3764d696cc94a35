"""``FactorizationEstimator``: the fit template, predict, score, recommend, save/load.

A subclass supplies ``_init_state(train) -> state``, ``_step(state, train) -> dict``
and, when its model is not ``mu + b_u + c_i + p_u . q_i``, ``_finalize``. The loop
itself lives in :func:`mflib.fitting.run_loop`; no estimator writes its own. The fit
runs under the estimator's execution policy (:func:`mflib.execution.fit_context`:
threads, BLAS, device, communicator), and every parameter is checked against the
class's declared ``_parameter_constraints`` before anything is computed.

Unknown users and items
-----------------------
A pair is *known* when both its user and its item have at least one training rating.
Known pairs are predicted by the model. Every other pair is predicted by the
:class:`Fallback` fitted alongside every model,
``mu + b_u [user known] + c_i [item known]``, with damped mean offsets
``c_i = sum(r - mu) / (n_i + FALLBACK_DAMPING)`` and then
``b_u = sum(r - mu - c_i) / (n_u + FALLBACK_DAMPING)``. Predictions are therefore
always finite; ``predict(..., return_known=True)`` tells which rows used the fallback.

Model files
-----------
:meth:`FactorizationEstimator.save` writes NumPy arrays and a JSON document (no pickle)
and :meth:`FactorizationEstimator.load` / :func:`mflib.load` read them without running any
code from the file (:mod:`mflib.persistence`). ``pickle.dumps(model)`` also works, as
scikit-learn expects, but unpickling runs code chosen by whoever wrote the file: unpickle
only files you made yourself, and share models with ``save``.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from . import execution
from .backend import array_module, to_numpy
from .data.ratings import RatingMatrix, as_rating_matrix
from .fitting import History, LoopResult, StopFit, run_loop, warn_if_unfinished
from .kernels import pair_dots
from .validation import (
    BOOLEAN,
    N_JOBS,
    NONE,
    NONNEGATIVE,
    POSITIVE_INT,
    RANDOM_STATE,
    Callbacks,
    DataError,
    Interval,
    Options,
    check_constraints,
    check_pairs,
    check_positive_int,
)

FALLBACK_DAMPING = 10.0

# settings whose warm-up already ran in this process (FactorizationEstimator._warm_up),
# and whether a warm-up fit is running (its own fit must not warm up again)
_WARMED_UP: set = set()
_warming_up: contextvars.ContextVar[bool] = contextvars.ContextVar("mflib_warming_up",
                                                                   default=False)


@dataclasses.dataclass
class FactorState:
    """Parameters of ``r_hat = global_mean + user_bias[u] + item_bias[i] + P[u] . Q[i]``.

    Any field may be None (absent). Arrays may live on the GPU while fitting.
    Solvers subclass it to carry their own working variables.
    """

    global_mean: float = 0.0
    user_bias: object = None
    item_bias: object = None
    user_factors: object = None
    item_factors: object = None

    def copy(self):
        values = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            values[f.name] = v.copy() if hasattr(v, "copy") else v
        return type(self)(**values)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of (users[n], items[n]) for inner indices, as a float64 NumPy array."""
        out = np.full(len(users), float(self.global_mean))
        if self.user_bias is not None:
            out += to_numpy(self.user_bias)[users]
        if self.item_bias is not None:
            out += to_numpy(self.item_bias)[items]
        if self.user_factors is not None and self.item_factors is not None:
            P, Q = self.user_factors, self.item_factors
            if isinstance(P, np.ndarray):
                out += pair_dots(P, Q, users, items)
            else:  # GPU arrays: products on the device, one chunk at a time
                xp, chunk = array_module(P), execution.GPU_CHUNK
                for s in range(0, len(users), chunk):
                    u = xp.asarray(users[s : s + chunk])
                    i = xp.asarray(items[s : s + chunk])
                    out[s : s + len(u)] += to_numpy((P[u] * Q[i]).sum(axis=1))
        return out

    def score_users(self, users: np.ndarray, n_items: int) -> np.ndarray:
        """Scores of every item for each of ``users``: shape (len(users), n_items)."""
        out = np.full((len(users), n_items), float(self.global_mean))
        if self.user_bias is not None:
            out += to_numpy(self.user_bias)[users][:, None]
        if self.item_bias is not None:
            out += to_numpy(self.item_bias)[None, :]
        if self.user_factors is not None and self.item_factors is not None:
            P = to_numpy(self.user_factors)
            out += P[users] @ to_numpy(self.item_factors).T
        return out


@dataclasses.dataclass
class Fallback:
    """The model of pairs whose user or item has no training rating:
    ``mean + user_bias[u] [user known] + item_bias[i] [item known]``.

    Offsets are damped means, ``item_bias = sum(r - mean) / (n_i + damping)`` and then
    ``user_bias = sum(r - mean - item_bias) / (n_u + damping)``, so an id with few
    ratings stays close to the mean.
    """

    mean: float
    user_bias: np.ndarray
    item_bias: np.ndarray
    damping: float = FALLBACK_DAMPING

    @classmethod
    def fit(cls, train: RatingMatrix, damping: float = FALLBACK_DAMPING, *, user_counts=None,
            item_counts=None) -> Fallback:
        """The fallback of ``train`` (its rating counts per user and item may be passed)."""
        mu = float(train.ratings.mean())
        c = np.bincount(train.items, weights=train.ratings - mu, minlength=train.n_items)
        c /= (train.item_counts() if item_counts is None else item_counts) + damping
        b = np.bincount(train.users, weights=train.ratings - mu - c[train.items],
                        minlength=train.n_users)
        b /= (train.user_counts() if user_counts is None else user_counts) + damping
        return cls(mu, b, c, damping)

    def predict(self, users, items, known_users, known_items) -> np.ndarray:
        """Scores of (users[n], items[n]); an offset applies only where its id is known."""
        out = np.full(len(users), self.mean)
        out[known_users] += self.user_bias[users[known_users]]
        out[known_items] += self.item_bias[items[known_items]]
        return out

    def item_scores(self) -> np.ndarray:
        """Every item's score for a user the model does not know: ``mean + item_bias``."""
        return self.mean + self.item_bias


class FactorizationEstimator(BaseEstimator):
    """Base class of every mflib estimator (scikit-learn conventions).

    ``fit(X, y=None, eval_set=None)`` takes a :class:`RatingMatrix` or an (n, 2) array
    of raw (user, item) ids with ratings ``y``; ``eval_set`` (a RatingMatrix or an
    ``(X, y)`` tuple) adds ``val_rmse`` to the history. Fitted attributes end in ``_``.
    """

    #: accepted values of each ``__init__`` parameter (a list of
    #: :class:`~mflib.validation.Constraint`, any one of which must hold); subclasses list
    #: their own parameters and inherit these common ones
    _parameter_constraints: dict = {
        "max_iter": [POSITIVE_INT],
        "tol": [NONNEGATIVE],
        "n_jobs": list(N_JOBS),
        "random_state": [NONE, RANDOM_STATE],
        "verbose": [BOOLEAN, Interval("int", 0)],
        "callbacks": [NONE, Callbacks()],
        "device": [Options("cpu", "gpu", "auto")],
    }
    #: devices this estimator has a path for (``device="gpu"`` is refused otherwise)
    _devices: tuple = ("cpu",)
    #: "shards": fits across MPI ranks and on per-rank shards of the data; "whole": across
    #: ranks, each holding all the data; None: no MPI path (every rank fits alone)
    _mpi: str | None = None
    #: small settings under which the shared contract tests run this estimator quickly
    _contract_params: dict = {}
    #: metric the tolerance test watches
    _monitor = "objective"
    #: True when ``_monitor`` is itself a change (e.g. the relative change of the
    #: factors): the fit converges when it falls below ``tol``, rather than when its
    #: relative change between iterations does
    _monitor_change = False
    #: False for solvers whose fit ends with a polishing step after the last recorded
    #: iteration (e.g. softImpute-ALS's final SVD), so the history's last train RMSE
    #: describes the iterate before it
    _history_describes_final_model = True

    # ------------------------------------------------------------------ template
    def _init_state(self, train: RatingMatrix):
        raise NotImplementedError

    def _step(self, state, train: RatingMatrix) -> dict:
        raise NotImplementedError

    def _finalize(self, state) -> None:
        """Copy the final state into public NumPy attributes."""
        self.global_mean_ = float(state.global_mean)
        for name in ("user_bias", "item_bias", "user_factors", "item_factors"):
            setattr(self, name + "_", to_numpy(getattr(state, name)))

    def _fitted_state(self):
        """The model as a state object, for prediction after fitting."""
        return FactorState(
            self.global_mean_,
            getattr(self, "user_bias_", None),
            getattr(self, "item_bias_", None),
            getattr(self, "user_factors_", None),
            getattr(self, "item_factors_", None),
        )

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, *, eval_set=None):
        """Fit the model; returns ``self``.

        Parameters
        ----------
        X : RatingMatrix or array-like of shape (n, 2)
            Training ratings, or raw (user, item) ids.
        y : array-like of shape (n,), optional
            Ratings when ``X`` is an id array.
        eval_set : RatingMatrix or tuple (X_val, y_val), optional
            Validation ratings; their RMSE is recorded every iteration as ``val_rmse``.
        """
        self._validate_params()
        train = as_rating_matrix(X, y)
        self._remember_training_data(train)
        val = self._validation_pairs(eval_set)
        self._warm_up()
        train_u = train.users.astype(np.int64)
        train_i = train.items.astype(np.int64)

        def evaluate(state, reported):
            # a solver that gets the training RMSE for free (from its residuals) reports it
            metrics = {}
            if "train_rmse" not in reported:
                pred = self._predict_pairs(state, train_u, train_i)[0]
                metrics["train_rmse"] = _rmse(pred, train.ratings)
            if val is not None:
                metrics["val_rmse"] = _rmse(self._predict_pairs(state, val[0], val[1])[0], val[2])
            return metrics

        with execution.fit_context(self):
            try:
                state = self._init_state(train)
            except StopFit as stop:
                if stop.state is None:
                    raise
                # the set-up ended the fit (e.g. a stationary starting point): the initial
                # state is the model, with the reason as stop reason
                warn_if_unfinished(type(self).__name__, stop.reason, 0, stacklevel=2)
                result = LoopResult(stop.state, History(), stop.reason, 0)
            else:
                result = run_loop(
                    lambda s: self._step(s, train),
                    state,
                    max_iter=getattr(self, "max_iter", 1),
                    tol=float(getattr(self, "tol", 0.0) or 0.0),
                    monitor=self._monitor,
                    monitor_change=self._monitor_change,
                    evaluate=evaluate,
                    callbacks=getattr(self, "callbacks", None) or (),
                    model=self,
                    verbose=getattr(self, "verbose", 0),
                    desc=type(self).__name__,
                    copy_state=lambda s: s.copy(),
                )
            self.history_ = result.history
            self.n_iter_ = result.n_iter
            self.stop_reason_ = result.stop_reason
            self._finalize(result.state)
        return self

    def _warm_up_key(self) -> tuple:
        """What selects compiled code: the class, the settings that are names, flags or
        dtypes (not the numbers) and whether the fit has several threads."""
        kinds = (str, bool, type(None), type, np.dtype)
        settings = tuple(sorted((name, repr(value)) for name, value in
                                self.get_params(deep=False).items() if isinstance(value, kinds)))
        return type(self), settings, execution.policy_for(self).n_jobs > 1

    def _warm_up(self):
        """Fit a copy of this estimator (its ``_contract_params`` on top of its settings)
        on a tiny problem, once per process and :meth:`_warm_up_key`, so that numba
        compiles or loads from its cache every kernel the real fit will call before the
        fit's clock starts: the history's ``time`` is then the solver's alone, not
        0.5-2 s of loading in the first iteration. With several threads the copy is
        fitted twice, the second time with every size cut-off at 0
        (:func:`mflib.execution.every_path_parallel`), so the parallel entry points a
        large problem takes are loaded too. Skipped inside a warm-up and for
        distributed fits (a tiny problem cannot be split across ranks).

        Returns the exception a warm-up raised, or None: a warm-up only saves time, and
        the real fit that follows reports any problem with the settings itself.
        """
        key = self._warm_up_key()
        if key in _WARMED_UP or _warming_up.get():
            return None
        _WARMED_UP.add(key)
        policy = execution.policy_for(self)
        if policy.distributed:
            return None
        from .data.synthetic import make_low_rank  # noqa: PLC0415  (data imports base)

        train, _ = make_low_rank(40, 30, 2, 0.5, noise=0.1, random_state=1)
        val = train.take(np.arange(0, train.nnz, 7))
        params = {name: value if isinstance(value, (str, bool, int, float, type(None)))
                  else copy.deepcopy(value)
                  for name, value in self.get_params(deep=False).items()
                  if name not in ("callbacks", "random_state")}
        params.update(self._contract_params)
        for name, value in (("verbose", 0), ("random_state", 0), ("callbacks", None)):
            if name in self.get_params(deep=False):
                params[name] = value
        paths = (contextlib.nullcontext, execution.every_path_parallel)
        token = _warming_up.set(True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for path in paths[: 2 if policy.n_jobs > 1 else 1]:
                    with path():
                        type(self)(**params).fit(train, eval_set=val)
        except Exception as exc:  # noqa: BLE001  (see the docstring)
            return exc
        finally:
            _warming_up.reset(token)
        return None

    @classmethod
    def _constraints(cls) -> dict:
        """The parameter constraints of this class and its bases, merged."""
        out = {}
        for klass in reversed(cls.__mro__):
            out.update(vars(klass).get("_parameter_constraints", {}))
        return out

    def _validate_params(self) -> None:
        """Check every parameter against the declared constraints, before fitting."""
        check_constraints(type(self).__name__, self._constraints(), self.get_params(deep=False))

    def _validation_pairs(self, eval_set):
        """``(users, items, ratings)`` of ``eval_set`` in the training index, or None."""
        if eval_set is None:
            return None
        if isinstance(eval_set, RatingMatrix):
            val_rm = eval_set
        elif isinstance(eval_set, (tuple, list)) and len(eval_set) == 2:
            val_rm = as_rating_matrix(*eval_set, name="eval_set")
        else:
            raise DataError(
                "eval_set must be a RatingMatrix or a tuple (X_val, y_val), got "
                f"{type(eval_set).__name__}"
            )
        users, items = self.map_pairs(val_rm)
        return users, items, val_rm.ratings

    def _remember_training_data(self, train: RatingMatrix) -> None:
        from .persistence import training_provenance  # noqa: PLC0415 (imports this module)

        self.provenance_ = training_provenance(train)
        self._train_index = train.take(np.arange(0))  # the id maps, without the ratings
        self.user_ids_ = train.user_ids
        self.item_ids_ = train.item_ids
        comm = execution.current().comm
        if (train.provenance or {}).get("shard"):
            if comm is None or self._mpi != "shards":
                raise ValueError(
                    f"{type(self).__name__} cannot fit one rank's shard of the ratings "
                    + ("outside a communicator (use mflib.config_context(comm=...))"
                       if comm is None else "(it has no sharded MPI path; ALS has)")
                    + "; load the whole training data on every rank instead")
            from .distributed.comm import Exchange  # noqa: PLC0415  (needs mpi4py)
            from .distributed.training import remember_shard  # noqa: PLC0415

            remember_shard(self, train, Exchange(comm))
            return
        self.user_counts_ = train.user_counts()
        self.item_counts_ = train.item_counts()
        self.rating_scale_ = (float(train.ratings.min()), float(train.ratings.max()))
        self.fallback_ = Fallback.fit(train, user_counts=self.user_counts_,
                                      item_counts=self.item_counts_)
        self._seen = train.to_csr()

    # ------------------------------------------------------------------ ids
    def map_pairs(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Inner (user, item) indices of ``X`` (a RatingMatrix or (n, 2) raw ids) in the
        training index; -1 for ids without a training rating."""
        if not hasattr(self, "_train_index"):
            self._check_fitted()
        if isinstance(X, RatingMatrix):
            if X.shares_index_with(self._train_index):
                return X.users.astype(np.int64), X.items.astype(np.int64)
            X = X.pairs()
        X = check_pairs(X)
        return self._train_index.user_index(X[:, 0]), self._train_index.item_index(X[:, 1])

    def seen_items(self, users):
        """Training items of inner ``users`` (each >= 0) as CSR rows, (len(users), n_items).

        Raises ``ValueError`` for a model loaded from a file saved without its training
        ratings (see :meth:`restore_seen_items`)."""
        self._check_fitted()
        if getattr(self, "_seen", None) is None:
            raise ValueError(
                f"this {type(self).__name__} was loaded from a model file saved without its "
                "training ratings, so the items each user rated in training are unknown and "
                "cannot be excluded; pass exclude_seen=False, give them back with "
                "model.restore_seen_items(train) (the model's own training ratings, e.g. the "
                "split re-created from model.provenance_), or save it with include_seen=True"
            )
        return self._seen[np.asarray(users, dtype=np.int64)]

    def restore_seen_items(self, train: RatingMatrix):
        """Give a model loaded without its training ratings the items each user rated in
        ``train``, which must be exactly its training ratings (checked against the
        fingerprint in ``provenance_``); returns ``self``."""
        from .persistence import check_training_data  # noqa: PLC0415 (imports this module)

        self._check_fitted()
        check_training_data(self, train)
        self._seen = train.to_csr()
        return self

    # ------------------------------------------------------------------ predict
    def _predict_pairs(self, state, users, items) -> tuple[np.ndarray, np.ndarray]:
        known_u = users >= 0
        known_u[known_u] = self.user_counts_[users[known_u]] > 0
        known_i = items >= 0
        known_i[known_i] = self.item_counts_[items[known_i]] > 0
        known = known_u & known_i
        out = np.empty(len(users))
        out[known] = state.predict(users[known], items[known])
        if not known.all():
            rest = ~known
            out[rest] = self.fallback_.predict(users[rest], items[rest], known_u[rest],
                                               known_i[rest])
        return out, known

    def predict(self, X, *, clip: bool = False, return_known: bool = False):
        """Predicted ratings for raw (user, item) pairs or a RatingMatrix.

        Unknown users/items get the fallback described in the module docstring.

        Parameters
        ----------
        X : RatingMatrix or array-like of shape (n, 2)
        clip : bool, default False
            Clip to the rating range seen in training (``rating_scale_``).
        return_known : bool, default False
            Also return a boolean array, True where the model (not the fallback) predicted.

        Returns
        -------
        ndarray of shape (n,) [, ndarray of bool of shape (n,)]
        """
        self._check_fitted()
        users, items = self.map_pairs(X)
        pred, known = self._predict_pairs(self._fitted_state(), users, items)
        if clip:
            np.clip(pred, *self.rating_scale_, out=pred)
        return (pred, known) if return_known else pred

    def score(self, X, y=None) -> float:
        """Negative RMSE (higher is better, as scikit-learn's model selection expects)."""
        rm = as_rating_matrix(X, y)
        return -_rmse(self.predict(rm), rm.ratings)

    def score_items(self, users) -> np.ndarray:
        """Scores of every item for inner ``users`` (from :meth:`map_pairs`; -1 for a user
        without training ratings, ranked by the fallback): shape (len(users), n_items)."""
        self._check_fitted()
        users = np.array(users, dtype=np.int64, ndmin=1)
        n_items = len(self.item_ids_)
        known_u = users >= 0
        known_u[known_u] = self.user_counts_[users[known_u]] > 0
        known_i = self.item_counts_ > 0
        out = np.empty((len(users), n_items))
        out[~known_u] = self.fallback_.item_scores()
        if known_u.any():
            ku = users[known_u]
            scores = self._fitted_state().score_users(ku, n_items)
            fb = self.fallback_
            scores[:, ~known_i] = (fb.mean + fb.user_bias[ku])[:, None]
            out[known_u] = scores
        return out

    def recommend(self, user, k: int = 10, *, exclude_seen: bool = True) -> pd.DataFrame:
        """Top-``k`` items for one raw user id, ranked over the whole catalogue.

        Items rated in training are excluded unless ``exclude_seen=False``. An unknown
        user gets the fallback ranking (items by ``mu + c_i``). ``user`` is one id: a list
        or array raises ``TypeError``, an id of another type than the training ids
        :class:`~mflib.validation.IdTypeError`.

        Returns
        -------
        DataFrame with columns ``item`` (raw id), ``score`` and ``rank`` (1-based).
        """
        self._check_fitted()
        check_positive_int(k, "k")
        if user is None or np.ndim(user) != 0:
            raise TypeError(f"recommend takes one raw user id, got {user!r}; call it once "
                            "per user")
        u = int(self._train_index.user_index([user])[0])
        scores = self.score_items([u])[0]
        if exclude_seen and u >= 0:
            scores[self.seen_items([u]).indices] = -np.inf
        k = min(k, int(np.isfinite(scores).sum()))
        top = np.argpartition(-scores, k - 1)[:k] if k else np.array([], dtype=int)
        top = top[np.argsort(-scores[top], kind="stable")]
        return pd.DataFrame(
            {"item": self.item_ids_[top], "score": scores[top], "rank": np.arange(1, k + 1)}
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path, *, include_seen: bool = False) -> Path:
        """Write the fitted model to ``path``: NumPy arrays and a JSON document in one
        ``.npz`` file, no pickle (format in :mod:`mflib.persistence`).

        The file holds the class, its parameters, every fitted attribute, the id maps and
        ``provenance_`` (the data and split it was fitted on, mflib version, git revision).

        Parameters
        ----------
        path : str or Path
            The file to write (replaced atomically); ``.npz`` is the usual suffix.
        include_seen : bool, default False
            Also store the training ratings (the items each user rated, for
            ``recommend(..., exclude_seen=True)`` and ranking metrics) and the item table
            (titles, genres). Off by default: a model file then holds no rating data.

        Returns
        -------
        Path of the written file.
        """
        from .persistence import save_model  # noqa: PLC0415 (imports this module)

        return save_model(self, path, include_seen=include_seen)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save` (no code from the file is run).

        The file's class must be an mflib estimator (found by name in
        :mod:`mflib.registry`) and an instance of ``cls``; its format, array shapes and
        dtypes are verified. Raises :class:`mflib.persistence.ModelFileError` for a corrupt,
        truncated or foreign file, naming the file and the problem.
        """
        from .persistence import load_model  # noqa: PLC0415 (imports this module)

        return load_model(path, expected=cls)

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_iter_"):
            raise AttributeError(
                f"this {type(self).__name__} is not fitted yet; call fit(X, y) first"
            )


def _rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    # no finiteness check: a diverging fit must show up in its history as non-finite
    return float(np.sqrt(np.mean((np.asarray(pred) - truth) ** 2)))
