"""BiasedBCD: exact blocks, monotone objective, recovery, determinism, course data."""

import numpy as np
import pytest

from mflib.solvers.bcd import BiasedBCD


def _fit(train, **kw):
    params = {"n_factors": 3, "regularization": 1e-3, "bias_regularization": 0.0,
              "max_iter": 8, "tol": 0.0, "random_state": 0, "verbose": 0}
    params.update(kw)
    return BiasedBCD(**params).fit(train)


def _objective(m, train, lam, lam_b=0.0):
    pred = m.predict(train)
    return (np.mean((train.ratings - pred) ** 2)
            + lam * (np.sum(m.user_factors_**2) + np.sum(m.item_factors_**2))
            + lam_b * (np.sum((m.user_bias_ - train.ratings.mean()) ** 2)
                       + np.sum(m.item_bias_**2)))


def test_objective_never_rises_and_matches_formula(small_low_rank):
    train, _ = small_low_rank
    m = _fit(train, max_iter=25)
    obj = m.history_["objective"]
    assert len(obj) == 25
    assert np.all(np.diff(obj) <= 1e-13 * obj[0])
    assert obj[-1] == pytest.approx(_objective(m, train, 1e-3), rel=1e-12)


def test_last_block_is_the_exact_ridge_solution_and_gradient_vanishes(small_low_rank):
    train, _ = small_low_rank
    lam = 1e-3
    m = _fit(train, regularization=lam, max_iter=3)
    P, Q = m.user_factors_, m.item_factors_
    for i in range(train.n_items):
        rows = np.flatnonzero(train.items == i)
        u = train.users[rows]
        target = train.ratings[rows] - m.user_bias_[u] - m.item_bias_[i]
        A = np.vstack([P[u], np.sqrt(lam * train.nnz) * np.eye(3)])
        sol = np.linalg.lstsq(A, np.concatenate([target, np.zeros(3)]), rcond=None)[0]
        np.testing.assert_allclose(Q[i], sol, atol=1e-10)
    # dF/dQ = -(2/|Omega|) sum_u e_ui p_u + 2 lam q_i = 0 after the Q block
    e = train.ratings - m.predict(train)
    grad = np.zeros_like(Q)
    np.add.at(grad, train.items, -(2 / train.nnz) * e[:, None] * P[train.users])
    grad += 2 * lam * Q
    assert np.abs(grad).max() < 1e-10


def test_one_iteration_equals_a_numpy_reference(small_low_rank):
    train, _ = small_low_rank
    lam, k = 1e-2, 3
    m = _fit(train, regularization=lam, max_iter=1)
    rng = np.random.default_rng(0)  # the estimator's start: same seed, same draws
    P = rng.normal(0.0, 0.1, (train.n_users, k))
    Q = rng.normal(0.0, 0.1, (train.n_items, k))
    u, i, r = train.users, train.items, train.ratings

    def mean_by(index, values, n):
        return np.bincount(index, values, n) / np.maximum(np.bincount(index, minlength=n), 1)

    dots = np.sum(P[u] * Q[i], axis=1)
    mu = mean_by(u, r - dots, train.n_users)
    rho = mean_by(i, r - mu[u] - dots, train.n_items)
    target = r - mu[u] - rho[i]
    ridge = lam * train.nnz * np.eye(k)
    for a in range(train.n_users):
        s = u == a
        P[a] = np.linalg.solve(Q[i[s]].T @ Q[i[s]] + ridge, Q[i[s]].T @ target[s])
    for b in range(train.n_items):
        s = i == b
        Q[b] = np.linalg.solve(P[u[s]].T @ P[u[s]] + ridge, P[u[s]].T @ target[s])
    np.testing.assert_allclose(m.user_bias_, mu, atol=1e-12)
    np.testing.assert_allclose(m.item_bias_, rho, atol=1e-12)
    np.testing.assert_allclose(m.user_factors_, P, atol=1e-10)
    np.testing.assert_allclose(m.item_factors_, Q, atol=1e-10)


def test_penalised_intercepts_match_a_numpy_reference_and_never_raise_f(small_low_rank):
    train, _ = small_low_rank
    lam, lam_b, k = 1e-2, 2e-3, 3
    m = _fit(train, regularization=lam, bias_regularization=lam_b, max_iter=1)
    rng = np.random.default_rng(0)  # the estimator's start: same seed, same draws
    P = rng.normal(0.0, 0.1, (train.n_users, k))
    Q = rng.normal(0.0, 0.1, (train.n_items, k))
    u, i, r = train.users, train.items, train.ratings
    prior, mean = lam_b * train.nnz, r.mean()  # lambda_b |Omega| pseudo-ratings at m
    dots = np.sum(P[u] * Q[i], axis=1)
    mu = ((np.bincount(u, r - dots, train.n_users) + prior * mean)
          / (np.bincount(u, minlength=train.n_users) + prior))
    rho = (np.bincount(i, r - mu[u] - dots, train.n_items)
           / (np.bincount(i, minlength=train.n_items) + prior))
    np.testing.assert_allclose(m.user_bias_, mu, atol=1e-12)
    np.testing.assert_allclose(m.item_bias_, rho, atol=1e-12)
    # the penalised blocks are still exact: F (with the intercept penalty) never rises
    longer = _fit(train, regularization=lam, bias_regularization=lam_b, max_iter=20)
    obj = longer.history_["objective"]
    assert np.all(np.diff(obj) <= 1e-13 * obj[0])
    assert obj[-1] == pytest.approx(_objective(longer, train, lam, lam_b), rel=1e-12)
    # shrinkage: the intercepts move toward m and 0 as lambda_b grows
    plain = _fit(train, regularization=lam, max_iter=20)
    assert np.std(longer.user_bias_) < np.std(plain.user_bias_)
    assert np.abs(longer.item_bias_).mean() < np.abs(plain.item_bias_).mean()


def test_recovers_planted_biased_low_rank(small_low_rank):
    train, truth = small_low_rank
    m = _fit(train, regularization=1e-7, max_iter=150)
    full = truth.dense()[np.ix_(train.user_ids, train.item_ids)]
    users, items = np.indices(full.shape)
    approx = m.predict(np.column_stack([train.user_ids[users.ravel()],
                                        train.item_ids[items.ravel()]]))
    assert np.linalg.norm(approx - full.ravel()) / np.linalg.norm(full) < 0.05


def test_threads_and_seed_give_identical_results(small_low_rank):
    train, _ = small_low_rank
    a, b = _fit(train, n_jobs=1), _fit(train, n_jobs=2)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    np.testing.assert_array_equal(a.user_bias_, b.user_bias_)
    assert not np.allclose(a.item_factors_, _fit(train, random_state=3).item_factors_)


def test_bad_parameters_are_refused(small_low_rank):
    with pytest.raises(ValueError, match="regularization"):
        _fit(small_low_rank[0], regularization=-0.1)
    with pytest.raises(ValueError, match="n_factors"):
        _fit(small_low_rank[0], n_factors=0)


def test_netflix_course_setting(netflix_split):
    m = BiasedBCD(n_factors=3, regularization=0.1, bias_regularization=0.0, max_iter=30,
                  random_state=0, verbose=0).fit(netflix_split.train, eval_set=netflix_split.test)
    assert np.all(np.diff(m.history_["objective"]) <= 1e-12 * m.history_["objective"][0])
    # the mean-rating baseline scores about 1.07 on this split
    assert m.history_["val_rmse"][-1] < 1.0


def test_recorded_objective_and_rmse_equal_a_direct_computation(small_low_rank):
    """The item block's row sums of squares give each iteration's figures; a fit stopped
    after n iterations (same seed) is the model they describe."""
    from mflib.data.layout import training_layout
    from mflib.solvers.state import LayoutState

    rm, _ = small_low_rank
    kw = dict(n_factors=2, regularization=0.01, tol=0.0, random_state=3, verbose=0)
    history = BiasedBCD(max_iter=3, **kw).fit(rm).history_
    for n in (1, 3):
        m = BiasedBCD(max_iter=n, **kw).fit(rm)
        state = LayoutState(0.0, m.user_bias_, m.item_bias_, m.user_factors_,
                            m.item_factors_, layout=training_layout(rm))
        assert history["objective"][n - 1] == pytest.approx(m.objective(state), rel=1e-10)
        direct = np.sqrt(np.mean((m.predict(rm) - rm.ratings) ** 2))
        assert history["train_rmse"][n - 1] == pytest.approx(direct, rel=1e-10)
