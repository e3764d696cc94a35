"""Baselines against hand-computed values and an exact least-squares solve."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mflib import BiasBaseline, GlobalMean, ItemMean, Popularity, UserItemMean, UserMean
from mflib.data import RatingMatrix

# users u1, u2; items a, b, c
TRAIN = RatingMatrix.from_arrays(["u1", "u1", "u2", "u2", "u2"], ["a", "b", "a", "b", "c"],
                                 [5.0, 3.0, 4.0, 2.0, 1.0])
MU = 3.0


def test_means_by_hand():
    pairs = np.array([["u1", "c"], ["u2", "a"]], dtype=object)
    np.testing.assert_allclose(GlobalMean().fit(TRAIN).predict(pairs), [MU, MU])
    np.testing.assert_allclose(UserMean().fit(TRAIN).predict(pairs), [4.0, 7 / 3])
    np.testing.assert_allclose(ItemMean().fit(TRAIN).predict(pairs), [1.0, 4.5])
    np.testing.assert_allclose(UserItemMean().fit(TRAIN).predict(pairs),
                               [(4.0 + 1.0) / 2, (7 / 3 + 4.5) / 2])


def test_bias_baseline_matches_the_exact_ridge_solution():
    rm = TRAIN
    lam = 0.7
    model = BiasBaseline(regularization=lam, max_iter=500, tol=1e-14).fit(rm)
    # normal equations of min |r - mu - A [b; c]|^2 + lam |[b; c]|^2
    A = sp.hstack([sp.csr_matrix((np.ones(rm.nnz), (np.arange(rm.nnz), rm.users))),
                   sp.csr_matrix((np.ones(rm.nnz), (np.arange(rm.nnz), rm.items)))]).toarray()
    x = np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]), A.T @ (rm.ratings - rm.ratings.mean()))
    np.testing.assert_allclose(np.r_[model.user_bias_, model.item_bias_], x, atol=1e-8)
    assert model.stop_reason_ == "converged"


def _exact_biases(rm, lam):
    # normal equations of min |r - mu - A [b; c]|^2 + lam |[b; c]|^2, solved densely
    A = sp.hstack([sp.csr_matrix((np.ones(rm.nnz), (np.arange(rm.nnz), rm.users)),
                                 shape=(rm.nnz, rm.n_users)),
                   sp.csr_matrix((np.ones(rm.nnz), (np.arange(rm.nnz), rm.items)),
                                 shape=(rm.nnz, rm.n_items))]).toarray()
    return np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]),
                           A.T @ (rm.ratings - rm.ratings.mean()))


@pytest.mark.parametrize("lam", [0.05, 0.7, 10.0])
def test_bias_solution_is_the_exact_minimiser(lam):
    # a planted matrix with an empty user and an empty item (zero biases for both)
    from mflib.data import make_low_rank
    from mflib.solvers.baselines import bias_solution

    rm, _ = make_low_rank(60, 40, 2, 0.3, noise=0.3, random_state=3)
    keep = (rm.users != 5) & (rm.items != 7)
    rm = rm.take(np.flatnonzero(keep))
    b, c = bias_solution(rm, lam)
    np.testing.assert_allclose(np.r_[b, c], _exact_biases(rm, lam), atol=1e-10)
    assert b[5] == 0.0 and c[7] == 0.0


def test_bias_solution_agrees_with_the_alternating_updates_and_centres_the_ratings(ml100k):
    from mflib.solvers.baselines import bias_solution, center

    b, c = bias_solution(ml100k, 10.0)
    model = BiasBaseline(regularization=10.0, max_iter=2000, tol=1e-16).fit(ml100k)
    np.testing.assert_allclose(b, model.user_bias_, atol=1e-7)
    np.testing.assert_allclose(c, model.item_bias_, atol=1e-7)
    centring = center(ml100k, "biases", 10.0)
    np.testing.assert_array_equal(centring.user_bias, b)
    mu = ml100k.ratings.mean()
    np.testing.assert_allclose(centring.values, ml100k.ratings - mu - b[ml100k.users]
                               - c[ml100k.items], atol=1e-12)


def test_bias_solution_needs_a_positive_penalty():
    from mflib.solvers.baselines import bias_solution

    with pytest.raises(ValueError, match="regularization > 0, got 0"):
        bias_solution(TRAIN, 0)


def test_bias_baseline_objective_never_rises(ml100k):
    model = BiasBaseline(regularization=5.0, max_iter=30, tol=0).fit(ml100k)
    obj = model.history_["objective"]
    assert np.all(np.diff(obj) <= 1e-9 * obj[:-1])


def test_popularity_ranks_by_count():
    model = Popularity().fit(TRAIN)
    assert model.recommend("u1", k=1)["item"].tolist() == ["c"]
    assert model.recommend("newcomer", k=3)["item"].tolist()[:2] == ["a", "b"]


def test_regularization_is_checked():
    with pytest.raises(ValueError, match="regularization must be a real number >= 0"):
        BiasBaseline(regularization=-1).fit(TRAIN)


@pytest.mark.realdata
def test_baseline_rmse_on_netflix_course_split(netflix_split):
    from mflib.metrics import rmse

    test = netflix_split.test
    scores = {cls.__name__: rmse(test.ratings, cls().fit(netflix_split.train).predict(test))
              for cls in (GlobalMean, UserMean, ItemMean, UserItemMean, BiasBaseline)}
    assert scores["BiasBaseline"] < scores["UserItemMean"] < scores["UserMean"]
    assert scores["UserMean"] < scores["GlobalMean"]
    assert 1.0 < scores["GlobalMean"] < 1.2


def test_user_item_mean_course_rule_fills_missing_means_with_the_global_mean():
    from mflib import UserItemMean

    X = np.array([[1, 10], [1, 11], [2, 10]])
    y = np.array([4.0, 2.0, 5.0])
    mu = y.mean()
    course = UserItemMean(unknown="course").fit(X, y)
    damped = UserItemMean().fit(X, y)
    # user 3 unseen: (mu + item mean) / 2; item 12 unseen: (user mean + mu) / 2
    pairs = np.array([[3, 10], [1, 12], [3, 12], [2, 11]])
    expected = [(mu + 4.5) / 2, (3.0 + mu) / 2, mu, (5.0 + 2.0) / 2]
    np.testing.assert_allclose(course.predict(pairs), expected)
    assert not np.allclose(damped.predict(pairs[:2]), expected[:2])
    np.testing.assert_allclose(course.predict(X), damped.predict(X))
