"""BayesianMF: the row conditional against NumPy, the Normal-Wishart step, recovery of a
planted matrix, the averaged prediction, reproducibility and thread independence."""

import numpy as np
import pytest

from mflib import ConvergenceWarning, make_low_rank, make_split
from mflib.data.layout import training_layout
from mflib.execution import max_threads
from mflib.kernels.gibbs import sample_rows
from mflib.solvers.bayes import (
    BayesianMF,
    NormalWishart,
    normal_wishart_posterior,
    sample_normal_wishart,
)


def _random_problem(rng, n_rows=6, n_cols=9, d=4):
    """A CSR pattern (one empty row), targets, features and an SPD prior."""
    mask = rng.random((n_rows, n_cols)) < 0.6
    mask[2] = False  # a row without data
    indptr = np.r_[0, np.cumsum(mask.sum(axis=1))]
    indices = np.nonzero(mask)[1]
    values = rng.normal(size=len(indices))
    F = rng.normal(size=(n_cols, d))
    B = rng.normal(size=(d, d))
    prior_precision = B @ B.T + d * np.eye(d)
    prior_mean = rng.normal(size=d)
    return indptr, indices, values, F, prior_precision, prior_mean


def test_row_conditional_mean_and_covariance_match_numpy():
    # the draw is mean + L^-T z: with z = 0 it is the mean, with z = e_j its offset from
    # the mean is column j of L^-T, and L^-T L^-1 is the covariance
    rng = np.random.default_rng(0)
    indptr, indices, values, F, Lam, m0 = _random_problem(rng)
    n_rows, d, alpha = len(indptr) - 1, F.shape[1], 1.7
    shift = Lam @ m0
    offset, column_offset = 0.3, rng.normal(size=F.shape[0])  # targets: r - 0.3 - c[j]

    def draw(z_row):
        return sample_rows(indptr, indices, values, F, alpha, Lam, shift,
                           np.tile(z_row, (n_rows, 1)), offset=offset,
                           column_offset=column_offset)[0]

    mean = draw(np.zeros(d))
    offsets = np.stack([draw(np.eye(d)[j]) - mean for j in range(d)], axis=2)
    for r in range(n_rows):
        cols = indices[indptr[r]:indptr[r + 1]]
        if len(cols) == 0:
            np.testing.assert_array_equal(mean[r], 0.0)  # integrated out, left at 0
            continue
        Fr, vr = F[cols], values[indptr[r]:indptr[r + 1]] - offset - column_offset[cols]
        precision = Lam + alpha * Fr.T @ Fr
        np.testing.assert_allclose(mean[r], np.linalg.solve(precision, shift + alpha * Fr.T @ vr),
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(offsets[r] @ offsets[r].T, np.linalg.inv(precision),
                                   rtol=1e-9, atol=1e-12)
        # the factor is triangular as described: L^-T is upper triangular
        np.testing.assert_allclose(np.tril(offsets[r], -1), 0.0, atol=1e-14)


def test_row_draws_report_residuals_and_their_running_mean():
    rng = np.random.default_rng(1)
    indptr, indices, values, F, Lam, m0 = _random_problem(rng)
    n_rows, d = len(indptr) - 1, F.shape[1]
    z = rng.standard_normal((n_rows, d))
    old_mean = rng.normal(size=len(values))
    x, sse, new_mean, mean_sse = sample_rows(indptr, indices, values, F, 0.8, Lam, Lam @ m0, z,
                                             offset=-1.0, residual_mean=old_mean, weight=0.25)
    rows = np.repeat(np.arange(n_rows), np.diff(indptr))
    resid = values + 1.0 - np.sum(F[indices] * x[rows], axis=1)
    np.testing.assert_allclose(sse, np.bincount(rows, resid**2, minlength=n_rows), rtol=1e-12)
    expected = old_mean + 0.25 * (resid - old_mean)
    np.testing.assert_allclose(new_mean, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(mean_sse, np.bincount(rows, expected**2, minlength=n_rows),
                               rtol=1e-12)


def test_normal_wishart_posterior_matches_the_conjugate_update():
    # an equivalent form of the scale update: W_n^-1 = W0^-1 + sum x x^T + beta0 m0 m0^T
    # - beta_n m_n m_n^T
    rng = np.random.default_rng(2)
    d = 3
    B = rng.normal(size=(d, d))
    prior = NormalWishart(rng.normal(size=d), 2.5, np.linalg.inv(B @ B.T + np.eye(d)), 4.0)
    X = rng.normal(size=(40, d)) + 1.0
    post = normal_wishart_posterior(X, prior)
    assert post.beta == 42.5 and post.dof == 44.0
    np.testing.assert_allclose(post.mean, (2.5 * prior.mean + X.sum(axis=0)) / 42.5)
    scale_inv = (np.linalg.inv(prior.scale) + X.T @ X + 2.5 * np.outer(prior.mean, prior.mean)
                 - 42.5 * np.outer(post.mean, post.mean))
    np.testing.assert_allclose(np.linalg.inv(post.scale), scale_inv, rtol=1e-10)


def test_normal_wishart_draws_have_the_right_moments():
    rng = np.random.default_rng(3)
    d, n = 3, 20_000
    B = rng.normal(size=(d, d))
    params = NormalWishart(np.array([0.5, -1.0, 2.0]), 3.0, 0.1 * (B @ B.T) + 0.2 * np.eye(d),
                           6.0)
    draws = [sample_normal_wishart(params, rng) for _ in range(n)]
    means = np.array([m for m, _ in draws])
    precisions = np.array([P for _, P in draws])
    W, nu = params.scale, params.dof
    # E[Lambda] = nu W, Var[Lambda_ab] = nu (W_ab^2 + W_aa W_bb)
    sd = np.sqrt(nu * (W**2 + np.outer(np.diag(W), np.diag(W))) / n)
    assert np.all(np.abs(precisions.mean(axis=0) - nu * W) < 5 * sd)
    # m | Lambda ~ N(mean, (beta Lambda)^-1): E[m] = mean and, integrating over Lambda,
    # Cov(m) = E[(beta Lambda)^-1] = W^-1 / (beta (nu - d - 1))
    cov = np.linalg.inv(W) / (params.beta * (nu - d - 1))
    assert np.all(np.abs(means.mean(axis=0) - params.mean) < 5 * np.sqrt(np.diag(cov) / n))
    np.testing.assert_allclose(np.cov(means.T), cov, rtol=0.1, atol=0.1 * np.abs(cov).max())


def _fit(train, **kw):
    eval_set = kw.pop("eval_set", None)
    params = {"n_factors": 3, "max_iter": 12, "burn_in": 4, "random_state": 0}
    params.update(kw)
    return BayesianMF(**params).fit(train, eval_set=eval_set)


def test_sampler_recovers_a_planted_low_rank_matrix():
    rm, truth = make_low_rank(150, 120, 3, 0.3, noise=0.1, random_state=4)
    m = BayesianMF(n_factors=3, max_iter=60, burn_in=20, random_state=0).fit(rm)
    users, items = np.meshgrid(np.arange(150), np.arange(120), indexing="ij")
    X = np.column_stack([users.ravel(), items.ravel()])
    error = m.predict(X) - truth.dense().ravel()
    # every cell, observed or not, within a fraction of the noise level (0.1) of the truth
    assert np.sqrt(np.mean(error**2)) < 0.055
    # the sampled noise precision finds 1 / 0.1^2
    assert 80 < m.precision_ < 120
    assert m.history_["train_rmse"][-1] < 0.1


def test_prediction_is_the_average_of_the_kept_samples(small_low_rank):
    train, _ = small_low_rank
    m = _fit(train, max_iter=10, burn_in=3, thinning=2)
    assert m.n_samples_ == 3  # sweeps 5, 7, 9
    P, Q = m.factor_samples()
    assert P.shape == (3, train.n_users, 3) and Q.shape == (3, train.n_items, 3)
    sample_preds = [m.global_mean_ + m.user_bias_samples_[s][train.users]
                    + m.item_bias_samples_[s][train.items]
                    + np.sum(P[s][train.users] * Q[s][train.items], axis=1) for s in range(3)]
    np.testing.assert_allclose(m.predict(train), np.mean(sample_preds, axis=0), rtol=1e-12)
    # the mean prediction is not the prediction of the mean factors
    means = (m.global_mean_ + m.user_bias_[train.users] + m.item_bias_[train.items]
             + np.sum(P.mean(0)[train.users] * Q.mean(0)[train.items], axis=1))
    assert np.abs(means - m.predict(train)).max() > 1e-6
    h = m.history_
    np.testing.assert_array_equal(h["n_samples"], [0, 0, 0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(h["burn_in"], [1, 1, 1, 0, 0, 0, 0, 0, 0, 0])


def test_history_is_the_running_average_at_every_sweep(small_low_rank):
    # a chain is a prefix of a longer one with the same seed, so the running-average RMSE
    # recorded at sweep t of a long fit is the RMSE of the model fitted for t sweeps
    train, _ = small_low_rank
    split = make_split(train, "random", test_size=0.2, random_state=0)
    long = _fit(split.train, max_iter=12, eval_set=split.test)
    for t in (5, 9, 12):
        short = _fit(split.train, max_iter=t)
        for part, key in ((split.train, "train_rmse"), (split.test, "val_rmse")):
            got = np.sqrt(np.mean((short.predict(part) - part.ratings) ** 2))
            assert long.history_[key][t - 1] == pytest.approx(got, rel=1e-10)
        # the same draws (factor_samples undoes a 1/sqrt(S) scaling that depends on S)
        np.testing.assert_allclose(short.factor_samples()[0], long.factor_samples()[0][: t - 4],
                                   rtol=1e-13, atol=1e-15)


def test_same_seed_same_samples_and_other_seed_other_samples(small_low_rank):
    train, _ = small_low_rank
    a, b, c = (_fit(train, random_state=s) for s in (5, 5, 6))
    for x, y in zip(a.factor_samples(), b.factor_samples(), strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.user_bias_samples_, b.user_bias_samples_)
    np.testing.assert_array_equal(a.history_["precision"], b.history_["precision"])
    assert not np.array_equal(a.factor_samples()[0], c.factor_samples()[0])


@pytest.mark.skipif(max_threads() < 2, reason="numba was started with one thread")
def test_thread_count_does_not_change_the_samples():
    rm, _ = make_low_rank(300, 200, 4, 0.3, noise=0.1, random_state=7)
    serial, threaded = (_fit(rm, n_factors=6, n_jobs=n_jobs) for n_jobs in (1, 2))
    for x, y in zip(serial.factor_samples(), threaded.factor_samples(), strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(serial.history_["train_rmse"], threaded.history_["train_rmse"])


def test_fixed_precision_and_no_biases(small_low_rank):
    train, _ = small_low_rank
    m = _fit(train, precision=50.0, use_bias=False)
    assert m.user_bias_ is None and m.user_bias_samples_ is None
    np.testing.assert_array_equal(m.history_["precision"], 50.0)
    assert m.user_factors_.shape == (train.n_users, 3 * m.n_samples_)
    assert np.isfinite(m.predict(train)).all()


def test_rows_without_ratings_are_left_out(small_low_rank):
    train, _ = small_low_rank
    # the training part of a split keeps the whole index: some users have no rating in it
    part = train.take(train.users >= 5)
    assert part.shares_index_with(train) and (part.user_counts()[:5] == 0).all()
    m = _fit(part)
    assert np.all(m.user_factors_[:5] == 0.0)
    layout = training_layout(part)
    assert layout.user_counts[:5].sum() == 0


def test_no_kept_sample_gives_the_last_sample_with_a_warning(small_low_rank):
    train, _ = small_low_rank
    with pytest.warns(ConvergenceWarning, match=r"kept no sample.*10 sweep\(s\).*burn_in=20"):
        m = BayesianMF(n_factors=3, max_iter=10, burn_in=20, random_state=0).fit(train)
    assert m.n_samples_ == 0 and m.user_factors_.shape == (train.n_users, 3)
    h = m.history_
    assert h["train_rmse"][-1] == h["sample_train_rmse"][-1]
    assert h["train_rmse"][-1] == pytest.approx(
        np.sqrt(np.mean((m.predict(train) - train.ratings) ** 2)), rel=1e-10)


def test_constant_ratings_are_fitted():
    rm, _ = make_low_rank(40, 30, 2, 0.5, random_state=1)
    X = rm.pairs()
    # no variance to start a sampled precision from: it starts at 1 and grows as the
    # residuals shrink (a sample's own noise keeps them from reaching 0)
    m = BayesianMF(n_factors=2, max_iter=8, burn_in=2, random_state=0).fit(X, np.full(len(X), 3.0))
    assert m.history_["precision"][0] == 1.0 and m.precision_ > 100
    assert np.sqrt(np.mean((m.predict(X) - 3.0) ** 2)) < 0.02


@pytest.mark.realdata
def test_u1_target_with_settings_chosen_on_validation(ml100k_u1):
    # the settings benchmarks/bench_bayes.py chose on a validation part of u1.base (never
    # on u1.test; there: 0.9038); this checks they still reach the target
    m = BayesianMF(n_factors=20, precision=1.5, max_iter=342, burn_in=20, random_state=0)
    m.fit(ml100k_u1.train)
    pred = m.predict(ml100k_u1.test, clip=True)
    assert np.sqrt(np.mean((pred - ml100k_u1.test.ratings) ** 2)) <= 0.910
