"""LassoMF: agreement with scikit-learn's Lasso, monotone objective, KKT, sparsity."""

import numpy as np
import pytest
from sklearn.linear_model import Lasso

from mflib.solvers.lasso_mf import LassoMF


def _fit(train, **kw):
    params = {"n_factors": 3, "regularization": 0.002, "regularization_scale": "weighted",
              "max_iter": 6, "tol": 0.0, "center": "none", "max_sweeps": 500,
              "sweep_tol": 1e-12, "random_state": 0, "verbose": 0}
    params.update(kw)
    return LassoMF(**params).fit(train)


ROW_ALPHA = {  # alpha_r of the row problem |r - P q|^2 + alpha_r |q|_1, as documented
    "sum": lambda lam, n, nnz: lam,
    "weighted": lambda lam, n, nnz: lam * n,
    "course": lambda lam, n, nnz: lam * nnz,
    "sklearn": lambda lam, n, nnz: 2 * lam * n,
}


@pytest.mark.parametrize("scale,lam", [("sum", 0.05), ("weighted", 0.004), ("course", 2e-4),
                                       ("sklearn", 0.002)])
def test_item_half_step_agrees_with_sklearn_lasso(small_low_rank, scale, lam):
    train, _ = small_low_rank
    m = _fit(train, regularization=lam, regularization_scale=scale, max_iter=2)
    P, Q = m.user_factors_, m.item_factors_
    for i in range(train.n_items):  # the item pass ran last, on the final P
        rows = np.flatnonzero(train.items == i)
        n = len(rows)
        alpha = ROW_ALPHA[scale](lam, n, train.nnz)
        ref = Lasso(alpha=alpha / (2 * n), fit_intercept=False, tol=1e-12, max_iter=100_000)
        ref.fit(P[train.users[rows]], train.ratings[rows])
        np.testing.assert_allclose(Q[i], ref.coef_, atol=1e-7)


def test_centred_rows_are_lasso_fits_of_what_the_bias_baseline_leaves(small_low_rank):
    from mflib import BiasBaseline

    train, _ = small_low_rank
    lam = 0.004
    m = _fit(train, regularization=lam, center="biases", bias_regularization=3.0, max_iter=2)
    # the bias baseline's minimiser: its alternating updates run to machine precision
    base = BiasBaseline(regularization=3.0, max_iter=5000, tol=1e-16).fit(train)
    np.testing.assert_allclose(m.user_bias_, base.user_bias_, atol=1e-8)
    np.testing.assert_allclose(m.item_bias_, base.item_bias_, atol=1e-8)
    offsets = base.predict(train)
    P, Q = m.user_factors_, m.item_factors_
    for i in range(train.n_items):
        rows = np.flatnonzero(train.items == i)
        ref = Lasso(alpha=lam * len(rows) / (2 * len(rows)), fit_intercept=False, tol=1e-12,
                    max_iter=100_000)
        ref.fit(P[train.users[rows]], train.ratings[rows] - offsets[rows])
        np.testing.assert_allclose(Q[i], ref.coef_, atol=1e-7)
    np.testing.assert_allclose(m.predict(train), offsets + np.sum(
        P[train.users] * Q[train.items], axis=1), atol=1e-12)


def test_sklearn_scale_is_weighted_with_twice_the_lambda(small_low_rank):
    train, _ = small_low_rank
    a = _fit(train, regularization=0.002, regularization_scale="sklearn")
    b = _fit(train, regularization=0.004, regularization_scale="weighted")
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)


def test_objective_never_rises_and_matches_formula(small_low_rank):
    train, _ = small_low_rank
    lam = 0.002
    m = _fit(train, regularization=lam, regularization_scale="sklearn", max_iter=15)
    obj = m.history_["objective"]
    assert np.all(np.diff(obj) <= 1e-12 * obj[0])
    e = train.ratings - m.predict(train)
    l1 = (np.abs(m.user_factors_).sum(axis=1) @ train.user_counts()
          + np.abs(m.item_factors_).sum(axis=1) @ train.item_counts())
    assert obj[-1] == pytest.approx(np.mean(e**2) + 2 * lam / train.nnz * l1, rel=1e-12)


def test_sparsity_grows_with_lambda_and_is_reported(small_low_rank):
    train, _ = small_low_rank
    fractions = []
    for lam in (1e-4, 0.01, 0.05):
        m = _fit(train, regularization=lam, max_iter=10)
        assert m.user_zero_fraction_ == pytest.approx(np.mean(m.user_factors_ == 0))
        assert m.history_["zero_fraction_Q"][-1] == m.item_zero_fraction_
        fractions.append(m.user_zero_fraction_ + m.item_zero_fraction_)
    assert fractions[0] < fractions[1] < fractions[2]
    assert fractions[2] > 0


def test_course_convention_zeroes_everything_when_penalty_dominates(netflix_split):
    # lambda |Omega| / 2 exceeds every |Q_J^T r_u| at the small start, so 0 is optimal
    m = LassoMF(n_factors=3, regularization=0.1, regularization_scale="course", max_iter=3,
                center="none", random_state=0, verbose=0).fit(netflix_split.train)
    assert m.user_zero_fraction_ == 1.0 and m.item_zero_fraction_ == 1.0


def test_netflix_course_settings(netflix_split):
    # the course code: one sklearn Lasso(alpha=0.1) per row
    m = LassoMF(n_factors=3, regularization=0.1, regularization_scale="sklearn", max_iter=10,
                center="none", random_state=0, verbose=0).fit(netflix_split.train,
                                                              eval_set=netflix_split.test)
    assert m.history_["val_rmse"][-1] < 1.05
    assert 0 < m.user_zero_fraction_ < 1


def test_threads_and_seed(small_low_rank):
    train, _ = small_low_rank
    a, b = _fit(train, n_jobs=1), _fit(train, n_jobs=2)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    assert not np.allclose(a.user_factors_, _fit(train, random_state=5).user_factors_)


def test_bad_parameters_are_refused(small_low_rank):
    with pytest.raises(ValueError, match="regularization_scale"):
        _fit(small_low_rank[0], regularization_scale="mean")
    with pytest.raises(ValueError, match="max_sweeps"):
        _fit(small_low_rank[0], max_sweeps=0)


def test_recorded_objective_and_rmse_equal_a_direct_computation(small_low_rank):
    from mflib.data.layout import training_layout
    from mflib.solvers.state import LayoutState

    rm, _ = small_low_rank
    kw = dict(n_factors=2, regularization=0.05, tol=0.0, random_state=3, verbose=0)
    history = LassoMF(max_iter=3, **kw).fit(rm).history_
    for n in (1, 3):
        m = LassoMF(max_iter=n, **kw).fit(rm)
        state = LayoutState(m.global_mean_, m.user_bias_, m.item_bias_, m.user_factors_,
                            m.item_factors_, layout=training_layout(rm))
        assert history["objective"][n - 1] == pytest.approx(m.objective(state), rel=1e-10)
        direct = np.sqrt(np.mean((m.predict(rm) - rm.ratings) ** 2))
        assert history["train_rmse"][n - 1] == pytest.approx(direct, rel=1e-10)


def test_lasso_row_sse_is_each_rows_residual_sum_of_squares():
    import scipy.sparse as sp

    from mflib.kernels.lasso import lasso_rows

    rng = np.random.default_rng(0)
    M = sp.random(30, 20, density=0.4, random_state=0, format="csr")
    M.data = rng.normal(size=M.nnz)
    Y = rng.normal(size=(20, 4))
    row_sse = np.empty(30)
    X, _ = lasso_rows(M.indptr, M.indices, M.data, Y, 0.3, row_sse=row_sse)
    for r in range(30):
        sl = slice(M.indptr[r], M.indptr[r + 1])
        assert row_sse[r] == pytest.approx(np.sum((M.data[sl] - Y[M.indices[sl]] @ X[r]) ** 2),
                                           rel=1e-10, abs=1e-14)
    with pytest.raises(ValueError, match="row_sse"):
        lasso_rows(M.indptr, M.indices, M.data, Y, 0.3, row_sse=np.empty(3))
