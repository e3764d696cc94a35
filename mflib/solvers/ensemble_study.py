"""The CF-ensemble study of notebook 10: base classifiers, their out-of-fold probability
matrix, the trainers side by side, and the ensemble against the usual combinations.

* :func:`stacked_probabilities` trains scikit-learn base classifiers and returns the
  instances x classifiers probabilities: out-of-fold (``cross_val_predict``) for the
  training instances, from the classifiers refitted on all of them for held-out ones.
* :func:`trainer_agreement` puts fitted trainers of one objective side by side: final
  objective and its relative gap, correlation of predictions, iterations and seconds to
  come within a tolerance of the best objective.
* :func:`confidence_mf_trainers` fits :class:`~mflib.solvers.weighted.WeightedALS` and
  :class:`~mflib.solvers.weighted.AdamMF` on the probability matrix with weights
  ``|r - 0.5|``; :func:`ensemble_study` fits :class:`~mflib.solvers.ensemble.CFEnsemble`
  with each solver and tabulates held-out accuracy and ROC-AUC beside every base
  classifier, the best of them (chosen by out-of-fold AUC, not on the test part), the mean
  of probabilities and scikit-learn's ``StackingClassifier``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_breast_cancer, make_classification
from sklearn.ensemble import (
    GradientBoostingClassifier,
    RandomForestClassifier,
    StackingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ..fitting import History
from ..validation import check_choice
from .ensemble import CFEnsemble
from .ensemble_problem import confidence
from .weighted import AdamMF, WeightedALS, dense_ratings

CLASSIFICATION_DATASETS = ("breast_cancer", "make_classification")


def load_classification(name: str = "breast_cancer", *, random_state=0):
    """``(X, y)`` of a binary dataset shipped with scikit-learn: ``"breast_cancer"``
    (569 x 30) or ``"make_classification"`` (1000 x 20, 6 informative features, 5% of
    labels flipped, seeded by ``random_state``)."""
    check_choice(name, "dataset", CLASSIFICATION_DATASETS)
    if name == "breast_cancer":
        return load_breast_cancer(return_X_y=True)
    return make_classification(n_samples=1000, n_features=20, n_informative=6,
                               n_redundant=4, flip_y=0.05, class_sep=0.8,
                               random_state=random_state)


def base_classifiers(random_state=0) -> list[tuple[str, object]]:
    """Six kinds of scikit-learn classifiers with probabilities: logistic regression,
    random forest, gradient boosting, k-nearest neighbours, Gaussian naive Bayes and an
    RBF SVM with Platt-scaled probabilities (scale-sensitive ones standardise first)."""
    def scaled(model):
        return make_pipeline(StandardScaler(), model)

    return [
        ("logistic_regression", scaled(LogisticRegression(max_iter=1000))),
        ("random_forest", RandomForestClassifier(n_estimators=200,
                                                 random_state=random_state)),
        ("gradient_boosting", GradientBoostingClassifier(random_state=random_state)),
        ("k_nearest_neighbors", scaled(KNeighborsClassifier(n_neighbors=7))),
        ("naive_bayes", GaussianNB()),
        ("svm", CalibratedClassifierCV(scaled(SVC()), method="sigmoid", ensemble=False)),
    ]


@dataclass
class StackedProbabilities:
    """Probabilities of the positive class, one column per base classifier.

    ``train``: out-of-fold, (n_train, m); ``test``: from the classifiers refitted on all
    training instances, (n_test, m). The features and labels of both parts are kept for
    combiners that start from the features (``StackingClassifier``).
    """

    names: list[str]
    train: np.ndarray
    test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    X_train: np.ndarray
    X_test: np.ndarray
    cv: object


def stacked_probabilities(estimators, X, y, *, test_size=0.3, cv=5, random_state=0,
                          n_jobs=None) -> StackedProbabilities:
    """Split ``(X, y)`` (stratified), then per base classifier the out-of-fold training
    probabilities (``cv`` stratified, shuffled folds) and the held-out probabilities.

    Parameters
    ----------
    estimators : list of (name, classifier)
        Binary classifiers with ``predict_proba`` (cloned, not modified).
    test_size : float
        Held-out fraction.
    cv : int
        Folds of the out-of-fold predictions.
    n_jobs : int or None
        Passed to ``cross_val_predict``.
    """
    y = np.asarray(y)
    if len(np.unique(y)) != 2:
        raise ValueError(f"y has {len(np.unique(y))} classes; the CF-ensemble study is for "
                         "binary classification")
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=random_state)
    folds = StratifiedKFold(cv, shuffle=True, random_state=random_state)
    train, test = [], []
    for _, estimator in estimators:  # a handful of classifiers, not a hot path
        train.append(cross_val_predict(clone(estimator), X_train, y_train, cv=folds,
                                       method="predict_proba", n_jobs=n_jobs)[:, 1])
        test.append(clone(estimator).fit(X_train, y_train).predict_proba(X_test)[:, 1])
    return StackedProbabilities([name for name, _ in estimators], np.column_stack(train),
                                np.column_stack(test), y_train, y_test, X_train, X_test, folds)


# ---------------------------------------------------------------------- agreement
def _predictions(model, X) -> np.ndarray:
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)[:, 1]
    return model.predict(X)


def trainer_agreement(models: dict, X, *, reference=None, objective_rtol=1e-3,
                      min_correlation=0.99, history=()) -> pd.DataFrame:
    """Fitted trainers of one objective side by side.

    Parameters
    ----------
    models : dict of name -> fitted estimator
        Each records ``objective`` (and ``grad_norm``) in its ``history_``.
    X :
        What their predictions are compared on (ratings for a factorisation, base
        classifiers' probabilities for a :class:`CFEnsemble`, which is compared on its
        probability of the positive class).
    reference : str, optional
        The model the others are compared with; the first by default.
    objective_rtol, min_correlation : float
        The claim checked: final objectives within ``objective_rtol`` (relative) of the
        reference's and predictions correlated above ``min_correlation``.
    history : tuple of str
        Further history keys whose last values become columns (e.g. the CF-ensemble's
        ``reconstruction`` and ``bce``).

    Returns
    -------
    DataFrame, one row per model: ``objective``, ``objective_gap`` (relative to the
    reference), ``grad_norm``, ``prediction_correlation`` (Pearson, with the reference's),
    ``max_abs_difference``, ``agrees`` (both parts of the claim), ``n_iter``,
    ``solver_seconds``, and ``iterations_to_rtol`` / ``seconds_to_rtol``: the first
    iteration (and its solver time) whose objective is within ``objective_rtol`` of the
    lowest final objective of all models (NaN if never).
    """
    reference = next(iter(models)) if reference is None else reference
    finals = {name: float(m.history_["objective"][-1]) for name, m in models.items()}
    best = min(finals.values())
    ref_pred = _predictions(models[reference], X)
    rows = []
    for name, model in models.items():  # a few fitted models
        h = model.history_
        pred = _predictions(model, X)
        gap = (finals[name] - finals[reference]) / abs(finals[reference])
        corr = float(np.corrcoef(pred, ref_pred)[0, 1])
        reached = np.flatnonzero(h["objective"] <= best + objective_rtol * abs(best))
        rows.append({
            "model": name, "objective": finals[name], "objective_gap": gap,
            "grad_norm": float(h["grad_norm"][-1]), "prediction_correlation": corr,
            "max_abs_difference": float(np.max(np.abs(pred - ref_pred))),
            "agrees": bool(abs(gap) <= objective_rtol and corr > min_correlation),
            "n_iter": model.n_iter_, "solver_seconds": float(h["time"][-1]),
            "iterations_to_rtol": int(reached[0]) + 1 if reached.size else np.nan,
            "seconds_to_rtol": float(h["time"][reached[0]]) if reached.size else np.nan,
            **{key: float(h[key][-1]) for key in history},
        })
    return pd.DataFrame(rows).set_index("model")


def suboptimality_histories(models: dict) -> dict:
    """Each model's history with a ``suboptimality`` column, ``(J - J*) / |J*|``, where
    ``J*`` is the lowest objective any of ``models`` recorded: for plotting the trainers'
    progress towards the common minimum on a log scale (``plot_history`` takes the dict).
    """
    best = min(float(np.min(m.history_["objective"])) for m in models.values())
    out = {}
    for name, model in models.items():  # a few fitted models
        frame = model.history_.to_frame().reset_index()
        frame["suboptimality"] = (frame["objective"] - best) / abs(best)
        out[name] = History(frame.to_dict("records"))
    return out


def plot_prediction_agreement(models: dict, X, *, reference=None, ax=None, title=None):
    """Each model's predictions on ``X`` against the reference's (the first by default),
    with the diagonal: points on it are predictions the trainers agree on."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    reference = next(iter(models)) if reference is None else reference
    ax = ax or plt.subplots(figsize=(4.2, 4.0))[1]
    ref = _predictions(models[reference], X)
    for name, model in models.items():  # a few fitted models
        if name != reference:
            ax.scatter(ref, _predictions(model, X), s=8, alpha=0.6, label=name)
    low, high = float(ref.min()), float(ref.max())
    ax.plot([low, high], [low, high], color="gray", lw=1, ls="--")
    ax.set(xlabel=f"{reference} prediction", ylabel="other trainer's prediction",
           title=title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax


@dataclass
class TrainerComparison:
    """Fitted trainers (``models``) and their :func:`trainer_agreement` table."""

    models: dict
    agreement: pd.DataFrame


def confidence_mf_trainers(probabilities, *, n_factors=3, regularization=0.1,
                           als_max_iter=200, adam_max_iter=5000, learning_rate=0.01,
                           tol=1e-12, random_state=0, n_jobs=1) -> TrainerComparison:
    """Weighted ALS and Adam on ``sum c (r - x_u . y_i)^2 + lambda (|X|^2 + |Y|^2)`` for the
    classifiers x instances matrix ``R = probabilities^T`` with ``c = |r - 0.5|``.

    Both start from the same factors (same ``random_state``); ALS stops when the objective
    changes by less than ``tol`` relatively, Adam after ``adam_max_iter`` steps.
    Predictions are compared on every cell of ``R``. ``n_jobs=1`` by default: on a
    matrix this small, waking threads costs more than the solves.
    """
    R = np.asarray(probabilities, dtype=np.float64).T
    ratings = dense_ratings(R, name="classifiers x instances")
    weights = confidence(R).ravel()
    # the original objective has no offsets: probabilities are factorised as they are
    common = {"n_factors": n_factors, "regularization": regularization, "center": "none",
              "random_state": random_state, "n_jobs": n_jobs}
    models = {
        "WeightedALS": WeightedALS(max_iter=als_max_iter, tol=tol, **common),
        "AdamMF": AdamMF(max_iter=adam_max_iter, learning_rate=learning_rate, **common),
    }
    for model in models.values():
        model.fit(ratings, sample_weight=weights)
    return TrainerComparison(models, trainer_agreement(models, ratings))


# ---------------------------------------------------------------------- the study
@dataclass
class EnsembleStudy:
    """What :func:`ensemble_study` returns: the held-out ``table``, the fitted CF-ensembles
    (``models``), their ``agreement`` and the ``probabilities`` they were fitted on."""

    table: pd.DataFrame
    models: dict
    agreement: pd.DataFrame
    probabilities: StackedProbabilities


def _scores(y, proba) -> dict:
    return {"accuracy": accuracy_score(y, proba > 0.5), "roc_auc": roc_auc_score(y, proba)}


def ensemble_study(dataset="breast_cancer", *, test_size=0.3, cv=5, n_factors=3,
                   reconstruction_weight=0.5, regularization=0.1,
                   aggregator_regularization=0.01, als_max_iter=200, adam_max_iter=10000,
                   learning_rate=0.01, random_state=0, n_jobs=None) -> EnsembleStudy:
    """The CF-ensemble on a scikit-learn dataset against the usual ways to combine.

    Base classifiers: :func:`base_classifiers`; their probabilities:
    :func:`stacked_probabilities`. The CF-ensemble is fitted on the out-of-fold training
    probabilities with each solver (``"als"``, ``"als-ridge"``, ``"adam"``; same
    parameters, same SVD start) and predicts the held-out instances by folding them in.

    Returns
    -------
    EnsembleStudy
        ``table``: one row per method, columns ``accuracy`` and ``roc_auc`` on the held-out
        part, ``oof_roc_auc`` (base classifiers: what picks the best single one).
        ``agreement``: :func:`trainer_agreement` of the three solvers on the held-out
        probabilities, the exact alternation as reference.
    """
    X, y = load_classification(dataset, random_state=random_state)
    estimators = base_classifiers(random_state)
    data = stacked_probabilities(estimators, X, y, test_size=test_size, cv=cv,
                                 random_state=random_state, n_jobs=n_jobs)
    rows = {}
    for j, name in enumerate(data.names):
        rows[name] = {**_scores(data.y_test, data.test[:, j]),
                      "oof_roc_auc": roc_auc_score(data.y_train, data.train[:, j])}
    best = data.names[int(np.argmax([rows[n]["oof_roc_auc"] for n in data.names]))]
    rows[f"best single ({best}, by out-of-fold AUC)"] = {
        k: rows[best][k] for k in ("accuracy", "roc_auc")}
    rows["mean of probabilities"] = _scores(data.y_test, data.test.mean(axis=1))
    stacking = StackingClassifier(estimators, final_estimator=LogisticRegression(),
                                  cv=data.cv, stack_method="predict_proba", n_jobs=n_jobs)
    stacking.fit(data.X_train, data.y_train)
    rows["StackingClassifier (logistic regression)"] = _scores(
        data.y_test, stacking.predict_proba(data.X_test)[:, 1])
    common = {"n_factors": n_factors, "reconstruction_weight": reconstruction_weight,
              "regularization": regularization,
              "aggregator_regularization": aggregator_regularization,
              "random_state": random_state, "n_jobs": 1}
    models = {
        "CF-ensemble (ALS)": CFEnsemble(solver="als", max_iter=als_max_iter, **common),
        "CF-ensemble (ALS-ridge, original)": CFEnsemble(solver="als-ridge",
                                                        max_iter=als_max_iter, **common),
        "CF-ensemble (Adam)": CFEnsemble(solver="adam", max_iter=adam_max_iter,
                                         learning_rate=learning_rate, **common),
    }
    for name, model in models.items():
        model.fit(data.train, data.y_train)
        rows[name] = _scores(data.y_test, model.predict_proba(data.test)[:, 1])
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    agreement = trainer_agreement(models, data.test, history=("reconstruction", "bce"))
    return EnsembleStudy(table, models, agreement, data)


__all__ = [
    "CLASSIFICATION_DATASETS",
    "EnsembleStudy",
    "StackedProbabilities",
    "TrainerComparison",
    "base_classifiers",
    "confidence_mf_trainers",
    "ensemble_study",
    "load_classification",
    "plot_prediction_agreement",
    "stacked_probabilities",
    "suboptimality_histories",
    "trainer_agreement",
]
