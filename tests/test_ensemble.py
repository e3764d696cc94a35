"""Confidence-weighted MF (WeightedALS, AdamMF) and the CF-ensemble: gradients against
finite differences, exact blocks against least squares and a generic optimiser, the
trainers against each other."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.ensemble import StackingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.naive_bayes import GaussianNB

from mflib import ALS, AdamMF, CFEnsemble, WeightedALS
from mflib.data import make_low_rank
from mflib.solvers.ensemble_problem import EnsembleProblem, EnsembleState, confidence, fold_in
from mflib.solvers.ensemble_study import (
    confidence_mf_trainers,
    ensemble_study,
    suboptimality_histories,
    trainer_agreement,
)
from mflib.solvers.weighted import AdamMoments, dense_ratings
from mflib.validation import DataError, ParameterError


def _numeric_gradient(objective, array, h=1e-6):
    """Central differences of ``objective()`` with respect to the entries of ``array``
    (changed in place and restored): a reference, entry by entry."""
    numeric = np.empty_like(array)
    for idx in np.ndindex(array.shape):
        old = array[idx]
        array[idx] = old + h
        up = objective()
        array[idx] = old - h
        down = objective()
        array[idx] = old
        numeric[idx] = (up - down) / (2 * h)
    return numeric


# ---------------------------------------------------------------------- weighted MF
@pytest.fixture
def weighted_data():
    rm, _ = make_low_rank(30, 25, 3, 0.5, noise=0.1, random_state=3)
    weights = np.random.default_rng(4).uniform(0.0, 2.0, rm.nnz)
    return rm, weights


def _weighted_lstsq(targets, weights, features, reg):
    """argmin_x sum w (t - F x)^2 + reg |x|^2 as one stacked least-squares problem."""
    root = np.sqrt(weights)[:, None]
    A = np.vstack([root * features, np.sqrt(reg) * np.eye(features.shape[1])])
    b = np.r_[root[:, 0] * targets, np.zeros(features.shape[1])]
    return np.linalg.lstsq(A, b, rcond=None)[0]


@pytest.mark.parametrize("side", ["user", "item"])
def test_weighted_als_half_step_is_the_exact_minimiser_of_its_block(weighted_data, side):
    rm, weights = weighted_data
    model = WeightedALS(n_factors=3, regularization=0.7, center="none", random_state=0)
    model._pending_weights = weights
    state = model._weighted_state(rm)
    model.half_step(state, side)
    own = state.user_factors if side == "user" else state.item_factors
    fixed = state.item_factors if side == "user" else state.user_factors
    rows = rm.users if side == "user" else rm.items
    others = rm.items if side == "user" else rm.users
    for r in range(own.shape[0]):  # a reference, row by row
        mask = rows == r
        expected = _weighted_lstsq(rm.ratings[mask], weights[mask], fixed[others[mask]], 0.7)
        np.testing.assert_allclose(own[r], expected, rtol=1e-9, atol=1e-11)


def test_weighted_als_with_unit_weights_is_als(weighted_data):
    rm, _ = weighted_data
    a = WeightedALS(n_factors=3, regularization=0.3, max_iter=6, tol=0, center="none",
                    random_state=1).fit(rm)
    b = ALS(n_factors=3, regularization=0.3, use_bias=False, max_iter=6, tol=0,
            random_state=1).fit(rm)
    np.testing.assert_allclose(a.user_factors_, b.user_factors_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.history_["objective"], b.history_["objective"], rtol=1e-10)


def test_zero_weights_leave_their_ratings_out(weighted_data):
    rm, weights = weighted_data
    keep = np.random.default_rng(0).random(rm.nnz) < 0.7
    w = np.where(keep, weights, 0.0)
    full = WeightedALS(n_factors=3, max_iter=5, tol=0, center="none",
                       random_state=2).fit(rm, sample_weight=w)
    part = WeightedALS(n_factors=3, max_iter=5, tol=0, center="none", random_state=2).fit(
        rm.take(keep), sample_weight=weights[keep])
    np.testing.assert_allclose(full.user_factors_, part.user_factors_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(full.history_["objective"], part.history_["objective"],
                               rtol=1e-10)


def test_weights_change_the_fit(weighted_data):
    rm, weights = weighted_data
    a = WeightedALS(n_factors=3, regularization=0.1, center="none", max_iter=5,
                    random_state=2).fit(rm)
    b = WeightedALS(n_factors=3, regularization=0.1, center="none", max_iter=5,
                    random_state=2).fit(rm, sample_weight=weights)
    assert np.abs(a.predict(rm) - b.predict(rm)).max() > 1e-3


@pytest.mark.parametrize("cls", [WeightedALS, AdamMF])
def test_recorded_metrics_are_those_of_the_fitted_model(weighted_data, cls):
    rm, weights = weighted_data
    model = cls(n_factors=3, regularization=0.4, max_iter=7, random_state=0,
                center="biases").fit(rm, sample_weight=weights)
    resid = rm.ratings - model.predict(rm)
    X, Y = model.user_factors_, model.item_factors_
    expected = weights @ resid**2 + 0.4 * (np.sum(X**2) + np.sum(Y**2))
    np.testing.assert_allclose(model.history_["objective"][-1], expected, rtol=1e-10)
    np.testing.assert_allclose(model.history_["train_rmse"][-1], np.sqrt(np.mean(resid**2)),
                               rtol=1e-10)


def test_weighted_gradient_matches_finite_differences(weighted_data):
    rm, weights = weighted_data
    model = AdamMF(n_factors=2, regularization=0.3, init_std=0.5, random_state=0,
                   center="mean")
    model._pending_weights = weights
    state = model._weighted_state(rm)
    for array, grad in ((state.user_factors, state.user_gradient),
                        (state.item_factors, state.item_gradient)):
        numeric = _numeric_gradient(lambda: model.objective(state), array)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5)


def test_weighted_als_objective_never_rises(weighted_data):
    rm, weights = weighted_data
    model = WeightedALS(n_factors=4, regularization=0.2, max_iter=40, tol=0, center="none",
                        random_state=5).fit(rm, sample_weight=weights)
    obj = model.history_["objective"]
    assert np.all(np.diff(obj) <= 1e-10 * obj[:-1])


def test_weighted_als_and_adam_reach_the_same_objective_and_predictions():
    R = np.random.default_rng(0).uniform(0, 1, (6, 40))
    comparison = confidence_mf_trainers(R.T, n_factors=2, regularization=0.05,
                                        als_max_iter=2000, adam_max_iter=6000,
                                        learning_rate=0.01, tol=1e-13)
    table = comparison.agreement
    assert abs(table.loc["AdamMF", "objective_gap"]) < 1e-3
    assert table.loc["AdamMF", "prediction_correlation"] > 0.99
    assert table["agrees"].all()


def test_adam_moments_follow_the_textbook_update():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(3, 2))
    mine, ref = p.copy(), p.copy()
    moments = AdamMoments([mine])
    m, v = np.zeros_like(p), np.zeros_like(p)
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    for t in range(1, 6):
        g = rng.normal(size=p.shape)
        moments.step([mine], [g], lr, b1, b2, eps)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        ref -= lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        np.testing.assert_allclose(mine, ref, rtol=1e-12)


@pytest.mark.parametrize("change,match", [
    ("short", "one weight per rating"),
    ("negative", "finite and >= 0"),
    ("nan", "finite and >= 0"),
])
def test_bad_sample_weight_is_refused(weighted_data, change, match):
    rm, weights = weighted_data
    bad = weights.copy()
    if change == "short":
        bad = bad[:5]
    else:
        bad[3] = -1.0 if change == "negative" else np.nan
    with pytest.raises(DataError, match=match):
        WeightedALS(n_factors=2, max_iter=2).fit(rm, sample_weight=bad)


def test_sample_weight_goes_through_grid_search(weighted_data):
    rm, weights = weighted_data
    search = GridSearchCV(WeightedALS(n_factors=2, max_iter=3, random_state=0),
                          {"regularization": [0.1, 1.0]}, cv=KFold(2, shuffle=True,
                                                                   random_state=0))
    search.fit(rm.pairs(), rm.ratings, sample_weight=weights)
    assert np.isfinite(search.best_score_)
    model = search.best_estimator_
    e = model.predict(rm) - rm.ratings
    np.testing.assert_allclose(model.score(rm, sample_weight=weights),
                               -np.sqrt(weights @ e**2 / weights.sum()))


def test_dense_ratings_keeps_every_cell():
    R = np.arange(12.0).reshape(3, 4)
    rm = dense_ratings(R)
    assert rm.shape == (3, 4) and rm.nnz == 12
    np.testing.assert_array_equal(rm.to_csr().toarray(), R)
    with pytest.raises(DataError, match="2-D"):
        dense_ratings(np.ones(3))


# ---------------------------------------------------------------------- CF-ensemble
def _problem(m=4, n=14, k=2, seed=0, labelled_fraction=0.7):
    rng = np.random.default_rng(seed)
    R = rng.uniform(0.02, 0.98, (m, n))
    labelled = rng.random(n) < labelled_fraction
    labels = (rng.random(n) < 0.5).astype(float)
    problem = EnsembleProblem(R, confidence(R), labels, labelled, rho=0.6, lam=0.3,
                              alpha=0.05)
    state = EnsembleState(rng.normal(size=(m, k)), rng.normal(size=(n, k)),
                          rng.normal(size=m), rng.normal(size=1))
    return problem, state


def test_joint_gradient_matches_finite_differences():
    problem, state = _problem()
    grads = problem.gradient(state)
    for array, grad in zip(state.parameters, grads, strict=True):
        numeric = _numeric_gradient(lambda: problem.objective(state), array)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


def _block_minimum(problem, state, parameter):
    """The minimum of J over one parameter array, the others fixed, by BFGS."""
    array = getattr(state, parameter)
    trial = state.copy()

    def f(x):
        getattr(trial, parameter)[...] = x.reshape(array.shape)
        return problem.objective(trial)

    start = array.ravel() + 0.3
    return minimize(f, start, method="BFGS", options={"gtol": 1e-10}).fun


@pytest.mark.parametrize("block", ["aggregator", "classifier_factors", "instance_factors"])
def test_each_alternating_block_is_the_exact_minimiser(block):
    problem, state = _problem(seed=1)
    getattr(problem, f"solve_{block}")(state)
    grads = dict(zip(["classifier_factors", "instance_factors", "weights", "intercept"],
                     problem.gradient(state), strict=True))
    names = ["weights", "intercept"] if block == "aggregator" else [block]
    for name in names:  # first-order optimality of a strictly convex block
        assert np.abs(grads[name]).max() < 1e-8, (name, np.abs(grads[name]).max())
    reached = problem.objective(state)
    for name in names:  # and no generic optimiser finds lower along the block
        assert _block_minimum(problem, state, name) >= reached - 1e-9


def test_unlabelled_instances_are_weighted_ridge_solutions():
    problem, state = _problem(seed=2, labelled_fraction=0.5)
    problem.solve_instance_factors(state)
    P = state.classifier_factors
    for i in problem.U:  # a reference, row by row
        expected = _weighted_lstsq(problem.R[:, i], problem.rho * problem.C[:, i], P,
                                   problem.lam)
        np.testing.assert_allclose(state.instance_factors[i], expected, rtol=1e-9, atol=1e-11)


def test_ridge_factor_steps_solve_the_reconstruction_rows():
    problem, state = _problem(seed=3)
    Q_old = state.instance_factors.copy()
    problem.ridge_factors(state)
    reg = problem.lam / problem.rho
    for u in range(problem.R.shape[0]):
        np.testing.assert_allclose(state.classifier_factors[u],
                                   _weighted_lstsq(problem.R[u], problem.C[u], Q_old, reg),
                                   rtol=1e-9, atol=1e-11)
    for i in range(problem.R.shape[1]):
        np.testing.assert_allclose(
            state.instance_factors[i],
            _weighted_lstsq(problem.R[:, i], problem.C[:, i], state.classifier_factors, reg),
            rtol=1e-9, atol=1e-11)


@pytest.fixture(scope="module")
def ensemble_data():
    X, y = make_classification(n_samples=160, n_features=8, n_informative=4,
                               random_state=0)
    rng = np.random.default_rng(0)
    # five noisy "classifiers" of different quality around the true labels
    quality = np.array([2.5, 2.0, 1.5, 1.0, 0.5])
    logits = (2 * y - 1)[:, None] * quality + rng.normal(0, 1.5, (len(y), 5))
    Z = 1 / (1 + np.exp(-logits))
    return Z[:120], y[:120], Z[120:], y[120:]


def test_als_objective_never_rises(ensemble_data):
    Z, y, _, _ = ensemble_data
    model = CFEnsemble(n_factors=2, n_jobs=1, solver="als", max_iter=60, tol=0).fit(Z, y)
    obj = model.history_["objective"]
    assert np.all(np.diff(obj) <= 1e-12 * obj[:-1])
    assert model.history_["grad_norm"][-1] < 1e-3


def test_trainers_agree_on_a_small_problem(ensemble_data):
    Z, y, Z_test, _ = ensemble_data
    models = {
        "als": CFEnsemble(n_factors=2, n_jobs=1, solver="als", max_iter=500).fit(Z, y),
        "adam": CFEnsemble(n_factors=2, n_jobs=1, solver="adam", max_iter=8000,
                           learning_rate=0.01).fit(Z, y),
    }
    table = trainer_agreement(models, Z_test)
    assert abs(table.loc["adam", "objective_gap"]) < 1e-3
    assert table.loc["adam", "prediction_correlation"] > 0.99
    np.testing.assert_allclose(models["als"].objective_, models["als"].history_["objective"][-1])


def test_ridge_alternation_does_not_minimise_the_joint_objective(ensemble_data):
    # the original scheme's factor steps ignore the classification term
    Z, y, _, _ = ensemble_data
    exact = CFEnsemble(n_factors=2, n_jobs=1, solver="als", max_iter=100).fit(Z, y)
    ridge = CFEnsemble(n_factors=2, n_jobs=1, solver="als-ridge", max_iter=200).fit(Z, y)
    assert ridge.objective_ > exact.objective_ * 1.001
    assert ridge.history_["grad_norm"][-1] > 1e3 * exact.history_["grad_norm"][-1]


def test_unlabelled_rows_enter_the_reconstruction_and_fold_in_predicts_them(ensemble_data):
    Z, y, Z_test, _ = ensemble_data
    Z_all = np.vstack([Z, Z_test])
    y_all = np.r_[y, -np.ones(len(Z_test), dtype=int)]
    model = CFEnsemble(n_factors=2, n_jobs=1, solver="als").fit(Z_all, y_all)
    # the instance block is the last of a sweep: unlabelled rows are fold-in solutions
    np.testing.assert_allclose(model.instance_factors_[len(Z):],
                               model.instance_factors(Z_test), rtol=1e-9, atol=1e-12)
    R = Z_test.T
    np.testing.assert_allclose(
        model.instance_factors(Z_test),
        fold_in(R, confidence(R), model.classifier_factors_, 0.1 / 0.5))


def test_cf_ensemble_is_a_scikit_learn_classifier(ensemble_data):
    Z, y, Z_test, y_test = ensemble_data
    model = CFEnsemble(n_factors=2, n_jobs=1)
    twin = clone(model)
    assert twin.get_params() == model.get_params()
    model.fit(Z, y)
    proba = model.predict_proba(Z_test)
    assert proba.shape == (len(Z_test), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert model.score(Z_test, y_test) > 0.8
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).predict(Z_test),
                                  model.predict(Z_test))
    labels = np.where(y == 1, "yes", "no")
    assert set(CFEnsemble(n_factors=2, n_jobs=1).fit(Z, labels).predict(Z_test)) <= {"yes", "no"}


def test_cf_ensemble_as_the_final_estimator_of_stacking():
    X, y = make_classification(n_samples=150, n_features=6, random_state=1)
    stack = StackingClassifier([("nb", GaussianNB()), ("lr", LogisticRegression()),
                                ("lr2", LogisticRegression(C=0.01))],
                               final_estimator=CFEnsemble(n_factors=2, n_jobs=1),
                               stack_method="predict_proba", cv=3)
    assert stack.fit(X, y).score(X, y) > 0.7


@pytest.mark.parametrize("param,value", [("reconstruction_weight", 1.0), ("solver", "sgd"),
                                         ("n_factors", 0), ("regularization", 0.0),
                                         ("tol", -1.0)])
def test_cf_ensemble_parameters_are_checked_by_name(ensemble_data, param, value):
    Z, y, _, _ = ensemble_data
    with pytest.raises(ParameterError, match=f"CFEnsemble: {param} must be"):
        CFEnsemble(**{param: value}).fit(Z, y)


def test_cf_ensemble_refuses_bad_input(ensemble_data):
    Z, y, _, _ = ensemble_data
    with pytest.raises(DataError, match=r"probabilities in \[0, 1\]"):
        CFEnsemble().fit(Z * 2, y)
    with pytest.raises(DataError, match="exactly two"):
        CFEnsemble().fit(Z, np.zeros(len(y)))
    with pytest.raises(DataError, match="exceeds the 5 base classifiers"):
        CFEnsemble(n_factors=6).fit(Z, y)
    with pytest.raises(DataError, match="one label per row"):
        CFEnsemble().fit(Z, y[:-1])
    model = CFEnsemble(n_factors=2, n_jobs=1).fit(Z, y)
    with pytest.raises(DataError, match="fitted on 5 base classifiers"):
        model.predict(Z[:, :4])
    with pytest.raises(AttributeError, match="not fitted"):
        CFEnsemble().predict(Z)


def test_trainer_agreement_reports_gaps_and_correlations(ensemble_data):
    Z, y, Z_test, _ = ensemble_data
    a = CFEnsemble(n_factors=2, n_jobs=1, solver="als").fit(Z, y)
    b = CFEnsemble(n_factors=2, n_jobs=1, solver="adam", max_iter=50).fit(Z, y)
    table = trainer_agreement({"a": a, "b": b}, Z_test)
    gap = (b.objective_ - a.objective_) / a.objective_
    np.testing.assert_allclose(table.loc["b", "objective_gap"], gap)
    pa, pb = a.predict_proba(Z_test)[:, 1], b.predict_proba(Z_test)[:, 1]
    np.testing.assert_allclose(table.loc["b", "prediction_correlation"],
                               np.corrcoef(pa, pb)[0, 1])
    assert table.loc["a", "agrees"] and not table.loc["b", "agrees"]
    assert np.isnan(table.loc["b", "iterations_to_rtol"])
    curves = suboptimality_histories({"a": a, "b": b})
    best = min(a.history_["objective"].min(), b.history_["objective"].min())
    np.testing.assert_allclose(curves["b"]["suboptimality"],
                               (b.history_["objective"] - best) / best)
    np.testing.assert_array_equal(curves["a"]["time"], a.history_["time"])


@pytest.mark.slow
def test_ensemble_study_tabulates_every_method():
    study = ensemble_study("make_classification", cv=3, als_max_iter=50,
                           adam_max_iter=500)
    table = study.table
    assert {"mean of probabilities", "StackingClassifier (logistic regression)",
            "CF-ensemble (ALS)", "CF-ensemble (Adam)"} <= set(table.index)
    assert len(study.probabilities.names) >= 5
    assert table["roc_auc"].between(0.5, 1.0).all()
    assert study.probabilities.train.shape[1] == len(study.probabilities.names)
