"""Content-based prediction from item features, and what every content model shares.

:class:`ContentBased` is a regularised linear model on item features per user, on top of
the biases: a user's weights ``w_u`` say how much they like each feature beyond the
average, and a shared vector ``g`` turns an item's content into an item bias, which is
what a cold-start item (no training rating, hence ``c_i = 0``) is predicted from.

:class:`ContentPredictions` is the prediction side of content models (this one and
:class:`~mflib.solvers.hybrid.Hybrid`): an item without training ratings but with a
non-zero feature row is predicted by the model from its features (``return_known`` is
True for it), whether it is in the training id map (an item of the dataset that the
training part never rated) or a raw id the model has never seen but its
:class:`~mflib.data.content.ItemFeatures` has a row for. An item with no content is
predicted from the user part ``mu + b_u`` (:class:`~mflib.solvers.temporal.UserPartFallback`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..base import FactorizationEstimator, FactorState
from ..data.content import ItemFeatures, item_features
from ..data.layout import training_layout
from ..data.ratings import RatingMatrix
from ..fitting import StopFit
from ..kernels.ridge import ridge_rows
from ..validation import (
    NONE,
    NONNEGATIVE,
    POSITIVE_INT,
    InstanceOf,
    Options,
    check_pairs,
)
from .als import augmented
from .temporal import UserPartFallback, add_query_drift

#: the accepted values of an ``item_features`` parameter
ITEM_FEATURES_CONSTRAINT = [NONE, Options("none"),
                            InstanceOf(ItemFeatures, "an ItemFeatures (mflib.data.content)")]
#: ContentBased densifies its features: beyond this many, ask for n_components
MAX_DENSE_FEATURES = 512
#: ``n_components="auto"``: TruncatedSVD to this many dimensions when there are more
#: features, the features as they are otherwise
AUTO_COMPONENTS = 32


def resolve_item_features(spec, train: RatingMatrix, n_components=None,
                          random_state=None) -> ItemFeatures | None:
    """The features a content model fits with, rows aligned with ``train``'s items.

    ``spec`` None builds them from ``train`` (its genres and training tags, fitted on the
    training part only: :func:`~mflib.data.content.item_features`), or gives None when
    ``train`` has neither item metadata nor tags; ``"none"`` gives None; an
    :class:`ItemFeatures` is used as given. ``n_components`` reduces them by TruncatedSVD;
    ``"auto"`` reduces them to :data:`AUTO_COMPONENTS` dimensions only when they have more
    columns than that.
    """
    if isinstance(spec, str) and spec == "none":
        return None
    if spec is None:
        if train.item_info is None and train.tags is None:
            return None
        spec = item_features(train)
    if isinstance(n_components, str) and n_components == "auto":
        n_components = AUTO_COMPONENTS if spec.n_features > AUTO_COMPONENTS else None
    if n_components is not None:
        spec = spec.reduce(n_components, random_state)
    return spec.aligned(train.item_ids)


def raw_item_ids(X) -> np.ndarray:
    """The raw item id of each row of ``X`` (a RatingMatrix or (n, 2) raw ids)."""
    if isinstance(X, RatingMatrix):
        return X.item_ids[X.items]
    return check_pairs(X)[:, 1]


def row_dots(A: np.ndarray, B) -> np.ndarray:
    """``sum_a A[n, a] B[n, a]`` per row; ``B`` may be sparse."""
    if sp.issparse(B):
        return np.asarray(B.multiply(A).sum(axis=1)).ravel()
    return np.einsum("na,na->n", A, B)


class ContentPredictions(UserPartFallback):
    """Mixin: predictions of items without training ratings from their features.

    A subclass calls :meth:`_keep_features` in ``_init_state`` (features aligned with the
    training items, or None) and implements ``_content_scores(users, rows)``: the model's
    score of inner ``users`` for items with feature ``rows`` and no other term. The
    features are kept as plain fitted attributes (``feature_matrix_``,
    ``feature_item_ids_``, ``feature_names_``, ``item_has_content_``), which model files
    hold; ``item_features_`` rebuilds an :class:`ItemFeatures` view of them.
    """

    def _keep_features(self, feats: ItemFeatures | None, n_items: int) -> None:
        if feats is None:
            self.feature_matrix_ = self.feature_item_ids_ = self.feature_names_ = None
            self.item_has_content_ = np.zeros(n_items, dtype=bool)
            return
        self.feature_matrix_ = feats.matrix
        self.feature_item_ids_ = np.asarray(feats.item_ids)
        self.feature_names_ = np.asarray(feats.feature_names, dtype=str)
        self.item_has_content_ = feats.nonzero_rows()[:n_items]

    @property
    def item_features_(self) -> ItemFeatures | None:
        """The features the model was fitted with (rows by raw item id; without the
        vectorizer, which prediction does not need)."""
        if not hasattr(self, "item_has_content_"):
            raise AttributeError("item_features_ exists after fit")
        if self.feature_matrix_ is None:
            return None
        fitted = np.zeros(len(self.feature_item_ids_), dtype=bool)
        n = len(self.item_has_content_)
        fitted[:n] = self.item_counts_ > 0
        return ItemFeatures(self.feature_matrix_, self.feature_item_ids_, self.feature_names_,
                            fitted, None)

    def _training_features(self):
        """Feature rows of the training items (n_items, n_features); (n_items, 0) without
        features."""
        n = len(self.item_has_content_)
        if self.feature_matrix_ is None:
            return np.zeros((n, 0))
        return self.feature_matrix_[:n]

    def _unscored_items(self) -> np.ndarray:
        return (self.item_counts_ == 0) & ~self.item_has_content_

    def _predict_pairs(self, state, users, items):
        pred, known = super()._predict_pairs(state, users, items)
        rows = np.flatnonzero(~known & self._known_users(users) & (items >= 0))
        rows = rows[self.item_has_content_[items[rows]]]
        if rows.size:  # the state's item terms of these items are their content terms
            pred[rows] = state.predict(users[rows], items[rows])
            known[rows] = True
        return pred, known

    def predict(self, X, *, clip: bool = False, return_known: bool = False):
        """Predicted ratings of raw (user, item) pairs or a RatingMatrix (see
        :meth:`FactorizationEstimator.predict`); items without training ratings are
        predicted from their features where they have any."""
        self._check_fitted()
        users, items = self.map_pairs(X)
        pred, known = self._predict_pairs(self._fitted_state(), users, items)
        outside = np.flatnonzero((items < 0) & self._known_users(users))
        if outside.size and self.feature_matrix_ is not None:
            feats = self.item_features_
            raw = raw_item_ids(X)[outside]
            has = feats.has_content(raw)
            rows = outside[has]
            if rows.size:
                pred[rows] = self._content_scores(users[rows], feats.rows(raw[has]))
                known[rows] = True
        add_query_drift(self, X, users, pred, known)
        if clip:
            np.clip(pred, *self.rating_scale_, out=pred)
        return (pred, known) if return_known else pred

    def _content_scores(self, users, rows) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


def dense_rows(F) -> np.ndarray:
    return F.toarray() if sp.issparse(F) else np.asarray(F, dtype=np.float64)


@dataclass
class ContentState(FactorState):
    """Biases, user weights ``W`` (as ``user_factors``), the shared feature vector ``g``
    and the (shared, not copied) item features ``Z`` (as ``item_factors``)."""

    feature_bias: np.ndarray | None = None
    features: np.ndarray | None = None

    def copy(self):
        out = FactorState.copy(dataclasses.replace(self, features=None, item_factors=None))
        out.features = out.item_factors = self.features
        return out

    def _effective(self) -> FactorState:
        return FactorState(self.global_mean, self.user_bias,
                           self.item_bias + self.features @ self.feature_bias,
                           self.user_factors, self.features)

    def predict(self, users, items):
        return self._effective().predict(users, items)

    def score_users(self, users, n_items):
        return self._effective().score_users(users, n_items)


class ContentBased(ContentPredictions, FactorizationEstimator):
    """A regularised linear model on item features per user, with biases.

    Model, with ``z_i`` the item's feature row (TF-IDF of its genres and training tags,
    reduced to ``n_components`` by TruncatedSVD)::

        r_hat_ui = mu + b_u + c_i + (g + w_u) . z_i

    ``mu`` is the training mean; the objective

        sum_Omega (r_ui - r_hat_ui)^2 + bias_regularization (|b|^2 + |c|^2)
            + regularization sum_u |w_u|^2 + feature_regularization |g|^2

    is minimised by exact alternating blocks: every user's ``(b_u, w_u)`` (a ridge
    problem per user, :func:`~mflib.kernels.ridge.ridge_rows`), the item biases ``c``, and
    ``g`` (one ``n_components``-dimensional ridge problem); the objective never rises. An
    item without training ratings has ``c_i = 0`` and is predicted from its content,
    ``mu + b_u + (g + w_u) . z_i``. Without features (no item metadata, or
    ``item_features="none"``) the model is the regularised bias baseline.

    Parameters
    ----------
    n_components : int, None or "auto", default "auto"
        TruncatedSVD dimensions of the TF-IDF rows (fitted on the training items' rows);
        None keeps the TF-IDF columns (sensible for genres only, e.g. ml-100k's 19);
        "auto" reduces to 32 dimensions only when there are more than 32 columns (genres,
        decades and tags of ml-latest-small), and keeps ml-100k's few genre and decade
        columns, where a fixed 32 is more than the features have and is refused.
    regularization : float, default 20.0
        ``lambda`` on the user weights ``w_u``.
    bias_regularization : float, default 3.0
        ``lambda`` on the biases.
    feature_regularization : float, default 1.0
        ``lambda`` on the shared feature vector ``g``.
    item_features : None, "none" or ItemFeatures, default None
        None: built from the training data (:func:`~mflib.data.content.item_features`, on
        the training part only); "none": no features; an ItemFeatures: used as given.
    max_iter : int, default 10
    tol : float, default 1e-6
    n_jobs : int or None, default None
    random_state : int, Generator or None
        Seeds the TruncatedSVD.
    verbose : int, default 0
    callbacks : list of callables, optional

    Attributes
    ----------
    user_factors_ : ndarray (n_users, n_features)
        The user weights ``w_u``.
    feature_bias_ : ndarray (n_features,)
        ``g``.
    feature_matrix_ : ndarray (n_rows, n_features) or None
        The (dense) feature rows used, training items first, then the other items with
        features; ``feature_item_ids_`` their raw ids, ``feature_names_`` the columns.
    item_features_ : ItemFeatures or None
        A view of the three above.
    item_has_content_ : ndarray of bool (n_items,)
    """

    _parameter_constraints = {
        "n_components": [NONE, POSITIVE_INT, Options("auto")],
        "regularization": [NONNEGATIVE],
        "bias_regularization": [NONNEGATIVE],
        "feature_regularization": [NONNEGATIVE],
        "item_features": ITEM_FEATURES_CONSTRAINT,
    }
    _contract_params = {"max_iter": 3}

    def __init__(self, n_components="auto", regularization=20.0, bias_regularization=3.0,
                 feature_regularization=1.0, item_features=None, max_iter=10, tol=1e-6,
                 n_jobs=None, random_state=None, verbose=0, callbacks=None):
        self.n_components = n_components
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.feature_regularization = feature_regularization
        self.item_features = item_features
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _init_state(self, train):
        feats = resolve_item_features(self.item_features, train, self.n_components,
                                      self.random_state)
        if feats is not None and feats.n_features > MAX_DENSE_FEATURES:
            raise ValueError(
                f"ContentBased works on dense features and got {feats.n_features}; set "
                f"n_components (e.g. 32) to reduce them, or use fewer features")
        if feats is not None and not isinstance(feats.matrix, np.ndarray):
            feats = dataclasses.replace(feats, matrix=dense_rows(feats.matrix))
        self._keep_features(feats, train.n_items)
        Z = np.ascontiguousarray(self._training_features())
        d = Z.shape[1]
        self._layout = training_layout(train)
        return ContentState(float(train.ratings.mean()), np.zeros(train.n_users),
                            np.zeros(train.n_items), np.zeros((train.n_users, d)), Z,
                            feature_bias=np.zeros(d), features=Z)

    def _step(self, state, train):
        s, mu = self._layout, state.global_mean
        Z, lam_b = state.features, float(self.bias_regularization)
        d = Z.shape[1]
        h = Z @ state.feature_bias
        # users: (b_u, w_u) jointly, features [1, z_i]
        targets = s.ratings_csr - mu - (state.item_bias + h)[s.user_items]
        solution = np.zeros((s.n_users, d + 1))
        reg_scale = np.r_[lam_b, np.full(d, float(self.regularization))]
        try:
            ridge_rows(s.user_indptr, s.user_items, targets, augmented(np.ones(s.n_items), Z),
                       1.0, out=solution, reg_scale=reg_scale)
        except np.linalg.LinAlgError as exc:
            raise StopFit(f"stopped: singular user systems: {exc}") from exc
        state.user_bias = np.ascontiguousarray(solution[:, 0])
        state.user_factors = np.ascontiguousarray(solution[:, 1:])
        # the user part of every rating, in rating order
        users, items = s.users, s.items
        user_part = mu + state.user_bias[users] + row_dots(state.user_factors[users], Z[items])
        # item biases given everything else
        resid = s.ratings - user_part - h[items]
        state.item_bias = np.bincount(items, resid, s.n_items) / (s.item_counts + lam_b)
        # g: sum_i n_i (t_i - z_i.g)^2 written as one d x d ridge system
        if d:
            t = np.bincount(items, s.ratings - user_part - state.item_bias[items], s.n_items)
            gram = Z.T @ (Z * s.item_counts[:, None]) + float(self.feature_regularization) \
                * np.eye(d)
            try:
                state.feature_bias = np.linalg.solve(gram, Z.T @ t)
            except np.linalg.LinAlgError as exc:
                raise StopFit(f"stopped: singular feature system: {exc}") from exc
        err = s.ratings - user_part - state.item_bias[items] - (Z @ state.feature_bias)[items]
        sse = float(err @ err)
        objective = (sse + lam_b * (state.user_bias @ state.user_bias
                                    + state.item_bias @ state.item_bias)
                     + float(self.regularization) * float(np.sum(state.user_factors ** 2))
                     + float(self.feature_regularization)
                     * float(state.feature_bias @ state.feature_bias))
        return {"objective": objective, "train_rmse": float(np.sqrt(sse / s.nnz))}

    def _finalize(self, state):
        self.global_mean_ = float(state.global_mean)
        self.user_bias_ = np.asarray(state.user_bias)
        self.item_bias_ = np.asarray(state.item_bias)
        self.user_factors_ = np.asarray(state.user_factors)
        self.feature_bias_ = np.asarray(state.feature_bias)
        del self._layout

    def _fitted_state(self):
        Z = self._training_features()
        return ContentState(self.global_mean_, self.user_bias_, self.item_bias_,
                            self.user_factors_, Z, feature_bias=self.feature_bias_, features=Z)

    def _content_scores(self, users, rows):
        rows = dense_rows(rows)
        return (self.global_mean_ + self.user_bias_[users] + rows @ self.feature_bias_
                + row_dots(self.user_factors_[users], rows))


__all__ = ["ContentBased", "ContentPredictions", "ContentState", "raw_item_ids",
           "resolve_item_features", "row_dots"]
