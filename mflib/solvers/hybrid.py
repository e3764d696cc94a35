"""Hybrid collaborative + content model: CF factors and a projection of item features,
learned jointly, with an optional per-user drift.

Model (``f_i`` the item's content row, ``d_ui`` the drift feature of
:mod:`mflib.solvers.temporal`, 0 at the end of the user's training history)::

    r_hat_ui = mu + b_u + alpha_u d_ui + c_i + g . f_i + p_u . (q_i + E^T f_i)

The item factor is a free part ``q_i`` plus a feature part ``E^T f_i`` (``E``: features x
rank), and ``g`` turns content into an item bias. Objective, with ``mu`` the training
mean and ``b_bar_u = b_u - alpha_u / 2`` the user's mean bias over the history::

    sum_Omega (r_ui - r_hat_ui)^2
        + regularization (sum_u |p_u|^2 + sum_i |q_i|^2)
        + bias_regularization (sum_u b_bar_u^2 + sum_i c_i^2)
        + drift_regularization sum_u alpha_u^2            (only with a drift term)
        + feature_regularization (|g|^2 + |E|_F^2)

Fitted by ALS-style blocks, each minimising the objective over its variables with the
others fixed, so the objective never rises:

1. users: every ``(b_bar_u, p_u)`` is a ridge problem on the features ``[1, q_i + E^T f_i]``
   (:func:`~mflib.kernels.ridge.ridge_rows`, exact); with drift, then every
   ``(b_bar_u, alpha_u)`` in closed form (a 2 x 2 system per user);
2. items: every ``(c_i, q_i)`` is a ridge problem on ``[1, p_u]`` (exact);
3. features: ``[g, E]`` solves one linear least-squares problem in ``features x (rank+1)``
   unknowns, ``sum (t_ui - [1, p_u] . [g, E]^T f_i)^2 + lambda_f |[g, E]|^2``, by
   ``feature_cg_steps`` conjugate-gradient steps warm-started at the current value (CG
   minimises the quadratic over a space containing its start, so it never rises); the
   operator is applied through the features and the rating matrix, never formed.

Cold-start items (no training rating) have ``c_i = 0`` and ``q_i = 0`` (the ridge
solution of an item without data) and are predicted from their features,
``mu + b_u + g . f_i + p_u . E^T f_i``; an item without any content gets ``mu + b_u``.
Without features the model is biased matrix factorisation (with drift if asked).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..base import FactorizationEstimator, FactorState
from ..data.layout import training_layout
from ..fitting import StopFit
from ..kernels import pair_dots
from ..kernels.ridge import ridge_rows
from ..validation import (
    NONE,
    NONNEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    check_random_state,
)
from .als import augmented
from .content import ITEM_FEATURES_CONSTRAINT, ContentPredictions, resolve_item_features, row_dots
from .state import initial_factors
from .temporal import (
    TimelineAttribute,
    UserTimeline,
    centred_drift,
    keep_timeline,
    solve_bias_and_drift,
)


@dataclass
class HybridState(FactorState):
    """Free parts (``item_bias`` = c, ``item_factors`` = Q), user biases *now*
    (``user_bias``), the user's mean biases, drift slopes, the feature weights ``[g, E]``
    as one (n_features, k + 1) array, and shared read-only inputs (features aligned with
    the training items, per-rating drift in CSR order)."""

    mean_user_bias: np.ndarray | None = None
    user_drift: np.ndarray | None = None
    feature_weights: np.ndarray | None = None
    features: object = None
    drift_csr: np.ndarray | None = None

    def copy(self):
        out = FactorState.copy(dataclasses.replace(self, features=None, drift_csr=None))
        out.features, out.drift_csr = self.features, self.drift_csr
        return out

    def content_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """``(F g, F E)``: each training item's content bias and content factor."""
        G = np.asarray(self.features @ self.feature_weights)
        return np.ascontiguousarray(G[:, 0]), np.ascontiguousarray(G[:, 1:])

    def current_user_bias(self) -> np.ndarray:
        """``b_u`` now: the mean bias plus half the drift slope (``user_bias`` when the
        state holds no mean biases, as a fitted model's does not)."""
        if self.mean_user_bias is None:
            return self.user_bias
        return self.mean_user_bias + (0.0 if self.user_drift is None else 0.5 * self.user_drift)

    def effective(self) -> FactorState:
        """The model as ``mu + b_u + c'_i + p_u . q'_i`` with the content folded in."""
        h, C = self.content_terms()
        return FactorState(self.global_mean, self.current_user_bias(), self.item_bias + h,
                           self.user_factors, self.item_factors + C)

    def predict(self, users, items):
        return self.effective().predict(users, items)

    def score_users(self, users, n_items):
        return self.effective().score_users(users, n_items)


class Hybrid(TimelineAttribute, ContentPredictions, FactorizationEstimator):
    """Matrix factorisation whose item factors have a content part (see the module
    docstring for the model, the objective and the blocks).

    Parameters
    ----------
    n_factors : int, default 10
        Rank ``k``.
    regularization : float, default 10.0
        ``lambda`` on ``P`` and the free item factors ``Q``.
    bias_regularization : float, default 3.0
        ``lambda`` on the (mean) user biases and the item biases.
    feature_regularization : float, default 1.0
        ``lambda`` on the feature weights ``g`` and ``E``.
    drift_regularization : float or None, default None
        ``lambda`` on the per-user drift slopes; None: no drift term. Needs training
        timestamps (without them the drift is zero).
    item_features : None, "none" or ItemFeatures, default None
        None: built from the training data (genres, decades and training tags; fitted on
        the training part only); "none": no features; an ItemFeatures: used as given.
    n_components : int or None, default None
        Reduce the TF-IDF rows to this many TruncatedSVD dimensions first (None: the
        sparse TF-IDF rows themselves).
    feature_cg_steps : int, default 5
        Conjugate-gradient steps of the feature block per iteration.
    max_iter : int, default 15
    tol : float, default 1e-6
        Stop when the objective's relative change is below ``tol``.
    init_std : float, default 0.1
        ``P`` and ``Q`` start as N(0, init_std^2) entries; biases and ``[g, E]`` at 0.
    n_jobs : int or None, default None
    random_state : int, Generator or None
    verbose : int, default 0
    callbacks : list of callables, optional

    Attributes
    ----------
    user_factors_ : ndarray (n_users, k)
    item_factors_ : ndarray (n_items, k)
        The free parts ``q_i`` (0 for items without training ratings).
    user_bias_ : ndarray (n_users,)
        Biases now (end of training).
    user_drift_ : ndarray (n_users,) or None
    item_bias_ : ndarray (n_items,)
        The free parts ``c_i``.
    feature_bias_ : ndarray (n_features,)
        ``g``.
    feature_factors_ : ndarray (n_features, k)
        ``E``.
    feature_matrix_ : sparse matrix or ndarray (n_rows, n_features) or None
        The feature rows used, training items first; ``feature_item_ids_`` their raw
        ids, ``feature_names_`` the columns; ``item_features_`` a view of the three.
    item_has_content_ : ndarray of bool (n_items,)
    timeline_ : UserTimeline or None
        With a drift term: each user's training times.
    """

    _parameter_constraints = {
        "n_factors": [POSITIVE_INT],
        "regularization": [NONNEGATIVE],
        "bias_regularization": [NONNEGATIVE],
        "feature_regularization": [NONNEGATIVE],
        "drift_regularization": [NONE, NONNEGATIVE],
        "item_features": ITEM_FEATURES_CONSTRAINT,
        "n_components": [NONE, POSITIVE_INT],
        "feature_cg_steps": [POSITIVE_INT],
        "init_std": [POSITIVE],
    }
    _contract_params = {"n_factors": 2, "max_iter": 3}

    def __init__(self, n_factors=10, regularization=10.0, bias_regularization=3.0,
                 feature_regularization=1.0, drift_regularization=None, item_features=None,
                 n_components=None, feature_cg_steps=5, max_iter=15, tol=1e-6, init_std=0.1,
                 n_jobs=None, random_state=None, verbose=0, callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.feature_regularization = feature_regularization
        self.drift_regularization = drift_regularization
        self.item_features = item_features
        self.n_components = n_components
        self.feature_cg_steps = feature_cg_steps
        self.max_iter = max_iter
        self.tol = tol
        self.init_std = init_std
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    # ------------------------------------------------------------------ template
    def _init_state(self, train):
        rng = check_random_state(self.random_state)
        feats = resolve_item_features(self.item_features, train, self.n_components, rng)
        n_users, n_items, k = train.n_users, train.n_items, self.n_factors
        self._keep_features(feats, n_items)
        F = self._training_features()
        layout = training_layout(train)
        self._layout = layout
        drifting = self.drift_regularization is not None
        timeline = UserTimeline.fit(train) if drifting else None
        keep_timeline(self, timeline)
        drift_csr = layout.to_csr(centred_drift(train, timeline))
        P, Q = initial_factors(rng, n_users, n_items, k, self.init_std)
        return HybridState(
            float(train.ratings.mean()), np.zeros(n_users), np.zeros(n_items), P, Q,
            mean_user_bias=np.zeros(n_users),
            user_drift=np.zeros(n_users) if drifting else None,
            feature_weights=np.zeros((F.shape[1], k + 1)), features=F, drift_csr=drift_csr)

    def _step(self, state, train):
        s, mu = self._layout, state.global_mean
        lam, lam_b = float(self.regularization), float(self.bias_regularization)
        k = self.n_factors
        reg_scale = np.r_[lam_b, np.full(k, lam)]
        users, items = s.user_of_rating, s.user_items  # CSR order
        drift = state.drift_csr
        alpha = state.user_drift
        # the drift term of every rating at the mean-bias parametrisation: alpha (s - 1/2)
        drift_term = 0.0 if alpha is None else alpha[users] * drift

        # 1. users: (mean bias, p_u) given the items, then (mean bias, alpha_u)
        h, C = state.content_terms()
        Y = state.item_factors + C
        targets = s.ratings_csr - mu - (state.item_bias + h)[items] - drift_term
        solution = augmented(state.mean_user_bias, state.user_factors)
        self._ridge(s.user_indptr, s.user_items, targets, augmented(np.ones(s.n_items), Y),
                    solution, reg_scale)
        state.mean_user_bias = np.ascontiguousarray(solution[:, 0])
        state.user_factors = np.ascontiguousarray(solution[:, 1:])
        if alpha is not None:
            rest = (s.ratings_csr - mu - (state.item_bias + h)[items]
                    - pair_dots(state.user_factors, Y, users, items))
            state.mean_user_bias, state.user_drift = solve_bias_and_drift(
                users, rest, drift, s.n_users, lam_b, float(self.drift_regularization))
            alpha = state.user_drift
            drift_term = alpha[users] * drift
        state.user_bias = state.current_user_bias()

        # 2. items: (c_i, q_i) given the users and the content part
        user_part = mu + state.mean_user_bias[users] + drift_term
        targets = (s.ratings_csr - user_part - h[items]
                   - pair_dots(state.user_factors, C, users, items))
        solution = augmented(state.item_bias, state.item_factors)
        self._ridge(s.item_indptr, s.item_users, s.csr_to_csc(targets),
                    augmented(np.ones(s.n_users), state.user_factors), solution, reg_scale)
        state.item_bias = np.ascontiguousarray(solution[:, 0])
        state.item_factors = np.ascontiguousarray(solution[:, 1:])

        # 3. features: [g, E] given everything else
        t = (s.ratings_csr - user_part - state.item_bias[items]
             - pair_dots(state.user_factors, state.item_factors, users, items))
        P1 = augmented(np.ones(s.n_users), state.user_factors)
        if state.feature_weights.shape[0]:
            state.feature_weights = self._feature_block(state, P1, t)
        err = t - pair_dots(P1, np.ascontiguousarray(state.features @ state.feature_weights),
                            users, items) if state.feature_weights.shape[0] else t
        sse = float(err @ err)
        return {"objective": self.objective(state, sse=sse),
                "train_rmse": float(np.sqrt(sse / s.nnz))}

    def _ridge(self, indptr, indices, targets, features, out, reg_scale):
        try:
            ridge_rows(indptr, indices, targets, features, 1.0, out=out, reg_scale=reg_scale)
        except np.linalg.LinAlgError as exc:
            raise StopFit(f"stopped: singular or non-finite row systems: {exc}") from exc

    def _feature_operator(self, state, P1):
        """``V -> sum_ui f_i ([1, p_u] . V^T f_i) [1, p_u]^T + lambda_f V`` on
        (n_features, k + 1) arrays, through the features and the rating matrix."""
        s, F = self._layout, state.features
        users, items = s.user_of_rating, s.user_items
        lam_f = float(self.feature_regularization)

        def back(values_csr):  # sum over ratings of value * f_i [1, p_u]^T
            return np.asarray(F.T @ (s.csr_matrix(values_csr).T @ P1))

        def apply(V):
            z = pair_dots(P1, np.ascontiguousarray(F @ V), users, items)
            return back(z) + lam_f * V

        return apply, back

    def _feature_block(self, state, P1, targets) -> np.ndarray:
        """``feature_cg_steps`` CG steps on the feature block's normal equations, from the
        current weights (each step lowers the block's quadratic or leaves it)."""
        apply, back = self._feature_operator(state, P1)
        V = state.feature_weights.copy()
        R = back(targets) - apply(V)
        D = R.copy()
        rr = float(np.sum(R * R))
        for _ in range(self.feature_cg_steps):  # a few CG steps, each a pass over ratings
            if rr <= 1e-300:
                break
            AD = apply(D)
            step = rr / float(np.sum(D * AD))
            V += step * D
            R -= step * AD
            rr_next = float(np.sum(R * R))
            D = R + (rr_next / rr) * D
            rr = rr_next
        return V

    def objective(self, state, sse=None) -> float:
        """The objective of the module docstring at ``state`` (``sse`` computed unless
        given)."""
        if sse is None:
            err = self._residuals(state)
            sse = float(err @ err)
        lam, lam_b = float(self.regularization), float(self.bias_regularization)
        pen = lam * (float(np.sum(state.user_factors ** 2))
                     + float(np.sum(state.item_factors ** 2)))
        pen += lam_b * (float(state.mean_user_bias @ state.mean_user_bias)
                        + float(state.item_bias @ state.item_bias))
        if state.user_drift is not None:
            pen += float(self.drift_regularization) * float(state.user_drift @ state.user_drift)
        pen += float(self.feature_regularization) * float(np.sum(state.feature_weights ** 2))
        return sse + pen

    def _residuals(self, state) -> np.ndarray:
        """``r - r_hat`` of every training rating (CSR order), with its drift."""
        s = self._layout
        users, items = s.user_of_rating, s.user_items
        eff = state.effective()
        pred = eff.predict(users, items)
        if state.user_drift is not None:  # from now (s = 1) back to the rating's position
            pred += state.user_drift[users] * (state.drift_csr - 0.5)
        return s.ratings_csr - pred

    def gradient(self, state) -> dict:
        """Gradient of :meth:`objective` with respect to every block (for checks against
        finite differences): keys ``mean_user_bias``, ``user_factors``, ``user_drift``
        (with drift), ``item_bias``, ``item_factors``, ``feature_weights``."""
        s = self._layout
        users, items = s.user_of_rating, s.user_items
        e = -2.0 * self._residuals(state)  # d sse / d r_hat
        lam, lam_b = float(self.regularization), float(self.bias_regularization)
        lam_f = float(self.feature_regularization)
        h, C = state.content_terms()
        Y = state.item_factors + C
        P1 = augmented(np.ones(s.n_users), state.user_factors)
        E_csr = s.csr_matrix(e)
        out = {
            "mean_user_bias": np.bincount(users, e, s.n_users)
            + 2 * lam_b * state.mean_user_bias,
            "user_factors": np.asarray(E_csr @ Y) + 2 * lam * state.user_factors,
            "item_bias": np.bincount(items, e, s.n_items) + 2 * lam_b * state.item_bias,
            "item_factors": np.asarray(E_csr.T @ state.user_factors)
            + 2 * lam * state.item_factors,
            "feature_weights": np.asarray(state.features.T @ (E_csr.T @ P1))
            + 2 * lam_f * state.feature_weights,
        }
        if state.user_drift is not None:
            # r_hat depends on alpha through b_u = b_bar_u + alpha_u / 2 and alpha_u d_ui
            out["user_drift"] = (np.bincount(users, e * state.drift_csr, s.n_users)
                                 + 2 * float(self.drift_regularization) * state.user_drift)
        return out

    def _finalize(self, state):
        self.global_mean_ = float(state.global_mean)
        self.user_bias_ = np.asarray(state.user_bias)
        self.user_drift_ = None if state.user_drift is None else np.asarray(state.user_drift)
        self.item_bias_ = np.asarray(state.item_bias)
        self.user_factors_ = np.asarray(state.user_factors)
        self.item_factors_ = np.asarray(state.item_factors)
        self.feature_bias_ = np.asarray(state.feature_weights[:, 0])
        self.feature_factors_ = np.asarray(state.feature_weights[:, 1:])
        del self._layout

    def _fitted_state(self):
        return HybridState(self.global_mean_, self.user_bias_, self.item_bias_,
                           self.user_factors_, self.item_factors_,
                           user_drift=self.user_drift_,
                           feature_weights=np.column_stack([self.feature_bias_,
                                                            self.feature_factors_]),
                           features=self._training_features())

    def _content_scores(self, users, rows):
        return (self.global_mean_ + self.user_bias_[users] + rows @ self.feature_bias_
                + row_dots(self.user_factors_[users], np.asarray(rows @ self.feature_factors_)))


__all__ = ["Hybrid", "HybridState"]
