"""CF-ensemble: a classifier ensemble aggregated through a confidence-weighted
factorisation of its probability matrix, trained by block-exact alternation or by Adam.

``m`` base classifiers give each of ``n`` instances a probability of the positive class:
``R`` (m x n), ``r_ui`` the probability from classifier ``u`` for instance ``i``, with
confidence ``c_ui = |r_ui - 0.5|``. The model factorises ``R ~ R_hat = P Q^T`` (``P``
classifier factors, m x k; ``Q`` instance factors, n x k) and scores an instance by a
logistic aggregator of its reconstructed column, ``s_i = w . R_hat[:, i] + b``. With
labels ``t_i in {0, 1}`` on the labelled set ``L``, it minimises

    J(P, Q, w, b) = rho sum_{u,i} c_ui (r_ui - p_u . q_i)^2 + lambda (|P|^2 + |Q|^2)
                    + alpha |w|^2 + (1 - rho) sum_{i in L} BCE(t_i, sigmoid(s_i)),

``BCE(t, p) = -t log p - (1 - t) log(1 - p)``, *summed* over ``L`` (a mean would only
rescale ``rho``), ``rho = reconstruction_weight``, ``lambda = regularization``,
``alpha = aggregator_regularization``. The original study had ``alpha = 0``; then a
labelled set that ``R_hat`` separates has no minimiser (``|w|`` grows for ever), which is
why ``alpha > 0`` by default.

Which blocks have a closed form. ``s_i = (P^T w) . q_i + b`` involves ``P`` and the
labelled ``q_i``, so only the *unlabelled* instance factors are weighted ridge problems.

* unlabelled ``q_i``: ``(rho P^T C_i P + lambda I) q = rho P^T C_i r_i``, solved exactly
  by :func:`mflib.kernels.ridge.ridge_rows` (the same solve predicts new instances:
  "folding in");
* labelled ``q_i``: ridge plus a logistic term of ``(P^T w) . q_i``, strictly convex in
  ``q_i``; solved by damped Newton steps (batched over instances) to a Newton decrement
  of ``1e-24 max(1, |f|)``, i.e. exactly up to rounding;
* ``P``: ridge in each row plus a logistic term coupling the rows through ``w``, strictly
  convex in ``P``; damped Newton on all ``m k`` entries (dense Hessian: ``m k`` is small);
* ``(w, b)``: ridge-penalised logistic regression on the columns of ``R_hat``: Newton.

Trainers (``solver``):

``"als"``
    Block coordinate descent over ``(w, b)``, ``P``, ``Q``, each block minimised exactly as
    above: ``J`` never rises.
``"als-ridge"``
    The original study's alternation: every row of ``P`` and ``Q`` by its closed-form
    weighted ridge solve *ignoring the classification term*, then one gradient step of
    size ``1 / L`` on ``(w, b)`` (``L`` the Lipschitz constant of that block's gradient).
    Its factor steps minimise the reconstruction part only, so it does not minimise ``J``
    and its fixed points are not ``J``'s stationary points (unless ``rho = 1``).
``"adam"``
    Full-batch Adam on ``(P, Q, w, b)`` jointly, with the exact gradient
    ``dJ/dP = -2 rho (C o E) Q + 2 lambda P + w (Q_L^T g)``,
    ``dJ/dQ = -2 rho (C o E)^T P + 2 lambda Q + g (P^T w)^T``,
    ``dJ/dw = R_hat_L g + 2 alpha w``, ``dJ/db = sum g``, where ``E = R - P Q^T`` and
    ``g_i = (1 - rho)(sigmoid(s_i) - t_i)`` on ``L`` (0 elsewhere).

All three run on :func:`mflib.fitting.run_loop` and record ``objective``, ``grad_norm``
(the joint gradient), ``reconstruction`` (``sum c (r - r_hat)^2``) and ``bce`` per
iteration.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin

from .. import execution
from ..fitting import StopFit, run_loop
from ..validation import (
    BOOLEAN,
    N_JOBS,
    NONE,
    NONNEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    RANDOM_STATE,
    Callbacks,
    DataError,
    Interval,
    Options,
    check_constraints,
    check_random_state,
)
from .ensemble_problem import EnsembleProblem, EnsembleState, confidence, fold_in
from .weighted import ADAM_CONSTRAINTS, AdamMoments

ENSEMBLE_SOLVERS = ("als", "als-ridge", "adam")
#: iterations when ``max_iter`` is None: alternating sweeps, Adam steps
DEFAULT_MAX_ITER = {"als": 200, "als-ridge": 200, "adam": 10000}
#: relative objective change that stops the alternating solvers when ``tol`` is None
DEFAULT_TOL = 1e-10


# ---------------------------------------------------------------------- the estimator
class CFEnsemble(ClassifierMixin, BaseEstimator):
    """Aggregate base classifiers' probabilities through the CF-ensemble objective.

    The second stage of an ensemble: ``X`` holds, for each instance (row), the probability
    of the positive class from each base classifier (column): ``R = X^T``. Use it on
    out-of-fold probabilities (:func:`mflib.solvers.ensemble_study.stacked_probabilities`)
    or as the ``final_estimator`` of a :class:`sklearn.ensemble.StackingClassifier` (with
    ``stack_method="predict_proba"``). The objective, its blocks and the three trainers
    are described in the module docstring.

    Parameters
    ----------
    n_factors : int, default 3
        Rank ``k`` (at most the number of classifiers).
    reconstruction_weight : float in (0, 1), default 0.5
        ``rho``.
    regularization : float, default 0.1
        ``lambda`` on ``P`` and ``Q``.
    aggregator_regularization : float, default 0.01
        ``alpha`` on ``w`` (0 reproduces the original objective; see module docstring).
    solver : {"als", "als-ridge", "adam"}, default "als"
    learning_rate, beta_1, beta_2, epsilon : float
        Adam's settings (``solver="adam"`` only); defaults 0.01, 0.9, 0.999, 1e-8.
    init : {"svd", "random"}, default "svd"
        ``P = U_k S_k^(1/2)``, ``Q = V_k S_k^(1/2)`` from the truncated SVD of ``R``, or
        N(0, 0.1^2) entries from ``random_state``; ``w = 0`` and ``b = 0`` either way.
    max_iter : int or None, default None
        Iterations (sweeps or Adam steps); None: 200 for the alternating solvers, 10000
        for Adam.
    tol : float or None, default None
        Stop when ``J`` changes by less than ``tol``, relatively (0 disables); None: 1e-10
        for the alternating solvers, 0 for Adam (whose objective oscillates).
    n_jobs : int or None, default None
        numba threads of the ridge solves. Probability matrices are small (classifiers x
        instances), and waking threads for each solve can cost more than the solve:
        ``n_jobs=1`` is often the fastest.
    random_state : int, Generator or None
    verbose : int, default 0
    callbacks : list of callables, optional
        ``cb(iteration, metrics, model)``, as for every mflib fit.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
    classifier_factors_ : ndarray of shape (n_classifiers, n_factors)
        ``P``.
    instance_factors_ : ndarray of shape (n_samples, n_factors)
        ``Q`` of the training instances.
    aggregator_weights_ : ndarray of shape (n_classifiers,)
        ``w``.
    aggregator_intercept_ : float
        ``b``.
    objective_ : float
        ``J`` at the fitted parameters.
    history_, n_iter_, stop_reason_ :
        As for every mflib fit: ``objective``, ``grad_norm``, ``reconstruction``, ``bce``
        and ``time`` per iteration.

    Notes
    -----
    ``fit(X, y)`` takes ``y == -1`` as "unlabelled" (scikit-learn's semi-supervised
    convention): such instances enter the reconstruction term only, e.g. the test
    instances of a transductive fit. The labelled values must be two classes other than -1.
    """

    _parameter_constraints = {
        "n_factors": [POSITIVE_INT],
        "reconstruction_weight": [Interval("real", 0, 1, closed="neither")],
        "regularization": [POSITIVE],
        "aggregator_regularization": [NONNEGATIVE],
        "solver": [Options(*ENSEMBLE_SOLVERS)],
        **ADAM_CONSTRAINTS,
        "init": [Options("svd", "random")],
        "max_iter": [NONE, POSITIVE_INT],
        "tol": [NONE, NONNEGATIVE],
        "n_jobs": list(N_JOBS),
        "random_state": [NONE, RANDOM_STATE],
        "verbose": [BOOLEAN, Interval("int", 0)],
        "callbacks": [NONE, Callbacks()],
    }

    def __init__(self, n_factors=3, reconstruction_weight=0.5, regularization=0.1,
                 aggregator_regularization=0.01, solver="als", learning_rate=0.01,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, init="svd", max_iter=None, tol=None,
                 n_jobs=None, random_state=None, verbose=0, callbacks=None):
        self.n_factors = n_factors
        self.reconstruction_weight = reconstruction_weight
        self.regularization = regularization
        self.aggregator_regularization = aggregator_regularization
        self.solver = solver
        self.learning_rate = learning_rate
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    # ------------------------------------------------------------------ fit
    def make_problem(self, X, y) -> EnsembleProblem:
        """The :class:`EnsembleProblem` of probabilities ``X`` (n, m) and labels ``y``
        (-1: unlabelled) under this estimator's parameters; sets ``classes_``."""
        Z = self._check_probabilities(X, fitted=False)
        y = np.asarray(y)
        if y.shape != (len(Z),):
            raise DataError(f"y has shape {y.shape}; expected ({len(Z)},), one label per row "
                            "of X")
        labelled = ~_is_unlabelled(y)
        classes = np.unique(y[labelled])
        if len(classes) != 2:
            raise DataError(
                f"the labelled instances carry {len(classes)} class(es) {classes.tolist()}; "
                "CFEnsemble needs exactly two (binary classification), and reads -1 as "
                "'unlabelled': encode the classes as 0 and 1")
        if self.n_factors > Z.shape[1]:
            raise DataError(f"n_factors={self.n_factors} exceeds the {Z.shape[1]} base "
                            "classifiers (columns of X); use n_factors <= "
                            f"{Z.shape[1]}")
        self.classes_ = classes
        labels = np.where(labelled, y == classes[-1], 0).astype(np.float64)
        R = np.ascontiguousarray(Z.T)
        return EnsembleProblem(R, confidence(R), labels, labelled,
                               float(self.reconstruction_weight), float(self.regularization),
                               float(self.aggregator_regularization))

    def fit(self, X, y):
        """Fit on probabilities ``X`` (n_samples, n_classifiers) in [0, 1] and labels ``y``
        (-1 for unlabelled instances); returns ``self``."""
        check_constraints(type(self).__name__, self._parameter_constraints,
                          self.get_params(deep=False))
        problem = self.make_problem(X, y)
        max_iter = self.max_iter or DEFAULT_MAX_ITER[self.solver]
        tol = self.tol if self.tol is not None else (
            0.0 if self.solver == "adam" else DEFAULT_TOL)
        with execution.fit_context(self):
            state = self._initial_state(problem)
            step = {"als": self._als_step, "als-ridge": self._als_ridge_step,
                    "adam": self._adam_step}[self.solver]
            result = run_loop(lambda s: step(problem, s), state, max_iter=max_iter, tol=tol,
                              callbacks=self.callbacks or (), model=self,
                              verbose=self.verbose, desc=type(self).__name__,
                              copy_state=EnsembleState.copy)
        final = result.state
        self.history_, self.n_iter_ = result.history, result.n_iter
        self.stop_reason_ = result.stop_reason
        self.classifier_factors_ = final.classifier_factors
        self.instance_factors_ = final.instance_factors
        self.aggregator_weights_ = final.weights
        self.aggregator_intercept_ = float(final.intercept[0])
        self.objective_ = problem.objective(final)
        self.n_features_in_ = problem.R.shape[0]
        return self

    def _initial_state(self, problem: EnsembleProblem) -> EnsembleState:
        m, n = problem.R.shape
        k = self.n_factors
        if self.init == "svd":
            U, s, Vt = np.linalg.svd(problem.R, full_matrices=False)
            root = np.sqrt(s[:k])
            P, Q = U[:, :k] * root, Vt[:k].T * root
        else:
            rng = check_random_state(self.random_state)
            P, Q = rng.normal(0, 0.1, (m, k)), rng.normal(0, 0.1, (n, k))
        state = EnsembleState(np.ascontiguousarray(P), np.ascontiguousarray(Q), np.zeros(m),
                              np.zeros(1))
        if self.solver == "adam":
            state.adam = AdamMoments(state.parameters)
            state.gradient = problem.gradient(state)
        return state

    @staticmethod
    def _metrics(problem, state) -> dict:
        """The recorded metrics at ``state``; its gradient is kept for Adam's next step."""
        state.gradient = problem.gradient(state)
        grad_sq = sum(float(np.sum(g * g)) for g in state.gradient)
        return {**problem.terms(state), "grad_norm": np.sqrt(grad_sq)}

    def _als_step(self, problem, state):
        try:
            problem.solve_aggregator(state)
            problem.solve_classifier_factors(state)
            problem.solve_instance_factors(state)
        except np.linalg.LinAlgError as exc:
            raise StopFit(f"stopped: singular block system ({exc})") from exc
        return self._metrics(problem, state)

    def _als_ridge_step(self, problem, state):
        problem.ridge_factors(state)
        problem.aggregator_gradient_step(state)
        return self._metrics(problem, state)

    def _adam_step(self, problem, state):
        state.adam.step(state.parameters, state.gradient, self.learning_rate,
                        self.beta_1, self.beta_2, self.epsilon)
        return self._metrics(problem, state)

    # ------------------------------------------------------------------ predict
    def instance_factors(self, X) -> np.ndarray:
        """Factors of new instances (rows of ``X``) by folding in: the exact ridge
        solution given the fitted ``P`` (their labels are unknown)."""
        Z = self._check_probabilities(X, fitted=True)
        R = np.ascontiguousarray(Z.T)
        rho = float(self.reconstruction_weight)
        return fold_in(R, confidence(R), self.classifier_factors_,
                       float(self.regularization) / rho)

    def decision_function(self, X) -> np.ndarray:
        """``s = w . R_hat[:, i] + b`` of each row of ``X`` (log-odds of the positive
        class ``classes_[1]``)."""
        Q = self.instance_factors(X)
        return Q @ (self.classifier_factors_.T @ self.aggregator_weights_) + (
            self.aggregator_intercept_)

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities of ``classes_`` for each row of ``X``: shape (n, 2)."""
        p = expit(self.decision_function(X))
        return np.column_stack([1 - p, p])

    def predict(self, X) -> np.ndarray:
        """The class of each row of ``X``: ``classes_[1]`` where its probability > 0.5."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(int)]

    def _check_probabilities(self, X, *, fitted: bool) -> np.ndarray:
        if fitted and not hasattr(self, "n_iter_"):
            raise AttributeError(f"this {type(self).__name__} is not fitted yet; call "
                                 "fit(X, y) first")
        Z = np.asarray(X)
        if Z.dtype.kind not in "biuf":
            raise DataError(f"X must hold probabilities (real numbers), got dtype {Z.dtype}")
        Z = Z.astype(np.float64)
        if Z.ndim != 2 or 0 in Z.shape:
            raise DataError(f"X must be a non-empty (n_samples, n_classifiers) array, got "
                            f"shape {Z.shape}")
        bad = ~np.isfinite(Z) | (Z < 0) | (Z > 1)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise DataError(
                f"X must hold probabilities in [0, 1]; {int(bad.sum())} entries do not "
                f"(first: row {r}, column {c}: {Z[r, c]!r}); pass each classifier's "
                "predict_proba(...)[:, 1]")
        if fitted and Z.shape[1] != self.n_features_in_:
            raise DataError(f"X has {Z.shape[1]} columns but the model was fitted on "
                            f"{self.n_features_in_} base classifiers")
        return Z


def _is_unlabelled(y) -> np.ndarray:
    """``y == -1`` elementwise, for numeric, string and object label arrays."""
    if y.dtype.kind in "biuf":
        return y == -1
    if y.dtype.kind in "US":
        return np.zeros(len(y), dtype=bool)
    return pd.Series(y, dtype=object).eq(-1).to_numpy()


__all__ = ["CFEnsemble", "DEFAULT_MAX_ITER", "ENSEMBLE_SOLVERS"]
