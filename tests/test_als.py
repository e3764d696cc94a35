"""ALS: exact half-steps, monotone objective, conventions, recovery, determinism, stops."""

import numpy as np
import pytest

from mflib import make_low_rank
from mflib.execution import numba_threads
from mflib.solvers.als import ALS

SCALES = ["sum", "weighted", "course"]


def _fit(train, **kw):
    params = {"n_factors": 3, "regularization": 0.5, "max_iter": 6, "random_state": 0,
              "verbose": 0, "tol": 0.0}
    params.update(kw)
    return ALS(**params).fit(train)


def _row_penalty(scale, lam, count, nnz):
    return {"sum": lam, "weighted": lam * count, "course": lam * nnz}[scale]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("use_bias", [True, False])
def test_last_half_step_is_the_exact_ridge_solution(small_low_rank, scale, use_bias):
    train, _ = small_low_rank
    lam = 0.05 if scale == "sum" else (0.01 if scale == "weighted" else 1e-4)
    m = _fit(train, regularization=lam, regularization_scale=scale, use_bias=use_bias,
             max_iter=2)
    P, Q = m.user_factors_, m.item_factors_
    mu = m.global_mean_
    b = m.user_bias_ if use_bias else np.zeros(train.n_users)
    counts = train.item_counts()
    for i in range(train.n_items):  # the item half-step ran last: solve it with lstsq
        rows = np.flatnonzero(train.items == i)
        u = train.users[rows]
        target = train.ratings[rows] - mu - b[u]
        X = np.column_stack([np.ones(len(u)), P[u]]) if use_bias else P[u]
        pen = np.sqrt(_row_penalty(scale, lam, counts[i], train.nnz))
        A = np.vstack([X, pen * np.eye(X.shape[1])])
        sol = np.linalg.lstsq(A, np.concatenate([target, np.zeros(X.shape[1])]), rcond=None)[0]
        got = np.r_[m.item_bias_[i], Q[i]] if use_bias else Q[i]
        np.testing.assert_allclose(got, sol, atol=1e-9)


def test_bias_regularization_enters_the_normal_equations(small_low_rank):
    train, _ = small_low_rank
    lam, lam_b = 0.3, 5.0
    m = _fit(train, regularization=lam, bias_regularization=lam_b, max_iter=2)
    P, mu, b = m.user_factors_, m.global_mean_, m.user_bias_
    for i in range(train.n_items):
        rows = np.flatnonzero(train.items == i)
        u = train.users[rows]
        X = np.column_stack([np.ones(len(u)), P[u]])
        pen = np.diag(np.sqrt([lam_b, lam, lam, lam]))
        A = np.vstack([X, pen])
        rhs = np.concatenate([train.ratings[rows] - mu - b[u], np.zeros(4)])
        sol = np.linalg.lstsq(A, rhs, rcond=None)[0]
        np.testing.assert_allclose(np.r_[m.item_bias_[i], m.item_factors_[i]], sol, atol=1e-9)
    pred = m.predict(train)
    expected = (np.sum((train.ratings - pred) ** 2)
                + lam * (np.sum(P**2) + np.sum(m.item_factors_**2))
                + lam_b * (np.sum(b**2) + np.sum(m.item_bias_**2)))
    assert m.history_["objective"][-1] == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("scale", SCALES)
def test_objective_matches_formula(small_low_rank, scale, use_bias, solver):
    # the recorded objective comes from the solver's own residuals (row_sse); this
    # recomputes it from the fitted factors
    train, _ = small_low_rank
    m = _fit(train, regularization_scale=scale, regularization=0.02, max_iter=3,
             use_bias=use_bias, solver=solver)
    pred = m.predict(train)
    sse = np.sum((train.ratings - pred) ** 2)
    nu, ni = train.user_counts(), train.item_counts()
    su = np.sum(m.user_factors_**2, axis=1) + (m.user_bias_**2 if use_bias else 0)
    si = np.sum(m.item_factors_**2, axis=1) + (m.item_bias_**2 if use_bias else 0)
    expected = {
        "sum": sse + 0.02 * (su.sum() + si.sum()),
        "weighted": sse + 0.02 * (su @ nu + si @ ni),
        "course": sse / train.nnz + 0.02 * (su.sum() + si.sum()),
    }[scale]
    assert m.history_["objective"][-1] == pytest.approx(expected, rel=1e-10)
    assert m.history_["train_rmse"][-1] == pytest.approx(np.sqrt(sse / train.nnz), rel=1e-10)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("scale", SCALES)
def test_objective_never_rises(small_low_rank, solver, scale):
    train, _ = small_low_rank
    lam = {"sum": 0.1, "weighted": 0.02, "course": 1e-3}[scale]
    m = _fit(train, solver=solver, cg_steps=1, regularization_scale=scale, regularization=lam,
             n_factors=5, max_iter=12)
    obj = m.history_["objective"]
    assert len(obj) == 12
    assert np.all(np.diff(obj) <= 1e-12 * obj[0])
    assert obj[-1] < obj[0]


def test_recovers_planted_low_rank_from_30_percent():
    # (on much smaller matrices random starts can stall in a spurious stationary region)
    train, truth = make_low_rank(300, 200, 3, 0.3, noise=0.0, bias_scale=0.0, global_mean=0.0,
                                 random_state=1)
    m = ALS(n_factors=3, regularization=1e-4, use_bias=False, max_iter=50, tol=0, verbose=0,
            random_state=0).fit(train)
    full = truth.dense()[np.ix_(train.user_ids, train.item_ids)]
    approx = m.user_factors_ @ m.item_factors_.T
    assert np.linalg.norm(approx - full) / np.linalg.norm(full) < 1e-3


def test_recovery_with_biases_and_cg(small_low_rank):
    train, truth = small_low_rank
    m = ALS(n_factors=3, regularization=1e-3, solver="cg", cg_steps=3, max_iter=80, tol=0,
            verbose=0, random_state=0).fit(train)
    full = truth.dense()[np.ix_(train.user_ids, train.item_ids)]
    users, items = np.indices(full.shape)
    approx = m.predict(np.column_stack([train.user_ids[users.ravel()],
                                        train.item_ids[items.ravel()]]))
    assert np.linalg.norm(approx - full.ravel()) / np.linalg.norm(full) < 0.05


def test_same_factors_for_one_and_two_threads_and_fixed_seed(small_low_rank):
    train, _ = small_low_rank
    a = _fit(train, n_jobs=1)
    b = _fit(train, n_jobs=2)
    c = _fit(train, n_jobs=None)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    np.testing.assert_array_equal(a.item_factors_, c.item_factors_)
    d = _fit(train, random_state=1)
    assert not np.allclose(a.item_factors_, d.item_factors_)


def test_n_jobs_restores_thread_count(small_low_rank):
    import numba

    train, _ = small_low_rank
    before = numba.get_num_threads()
    with numba_threads(2):
        _fit(train, n_jobs=1, max_iter=1)
        assert numba.get_num_threads() == 2
    assert numba.get_num_threads() == before


def test_float32_agrees_with_float64(small_low_rank):
    train, _ = small_low_rank
    m64 = _fit(train)
    m32 = _fit(train, dtype="float32")
    assert m32.user_factors_.dtype == np.float32
    np.testing.assert_allclose(m32.predict(train), m64.predict(train), atol=1e-3)


def test_overflow_stops_with_clear_reason_and_keeps_finite_state():
    train, _ = make_low_rank(30, 20, 2, 0.5, random_state=0)
    huge = train.with_ratings(train.ratings * 1e200)  # Gram matrices overflow to inf
    m = ALS(n_factors=2, max_iter=5, verbose=0, random_state=0).fit(huge)
    assert m.stop_reason_.startswith("stopped") and "non-finite" in m.stop_reason_
    assert m.n_iter_ == 0
    assert np.isfinite(m.user_factors_).all()


class _NaNAfterTwo(ALS):
    """ALS whose objective turns NaN at the third epoch (exact ALS cannot diverge by itself)."""

    def objective(self, state, sse=None):
        self._calls = getattr(self, "_calls", 0) + 1
        return np.nan if self._calls >= 3 else super().objective(state, sse)


def test_non_finite_objective_stops_as_diverged_and_keeps_last_finite_state(small_low_rank):
    train, _ = small_low_rank
    ref = _fit(train, max_iter=2)
    with pytest.warns(UserWarning, match="diverged"):
        m = _NaNAfterTwo(n_factors=3, regularization=0.5, max_iter=6, random_state=0, verbose=0,
                         tol=0.0).fit(train)
    assert m.stop_reason_.startswith("diverged: objective=nan at iteration 3")
    assert m.n_iter_ == 2
    np.testing.assert_array_equal(m.user_factors_, ref.user_factors_)


def test_singular_rows_stop_with_clear_reason(small_low_rank):
    train, _ = small_low_rank
    m = ALS(n_factors=30, regularization=0.0, max_iter=3, verbose=0, random_state=0).fit(train)
    assert m.stop_reason_.startswith("stopped") and "positive regularization" in m.stop_reason_
    assert m.n_iter_ == 0
    assert np.isfinite(m.predict(train)).all()


@pytest.mark.parametrize("bad, match", [
    ({"regularization_scale": "mean"}, "regularization_scale"),
    ({"regularization": -1.0}, "regularization"),
    ({"solver": "lu"}, "solver"),
    ({"n_factors": 0}, "n_factors"),
    ({"dtype": "int32"}, "dtype"),
    ({"n_jobs": 0}, "n_jobs"),
])
def test_bad_parameters_are_refused_with_their_name(small_low_rank, bad, match):
    with pytest.raises(ValueError, match=match):
        _fit(small_low_rank[0], **bad)


def test_biased_als_on_ml100k_u1(ml100k_u1):
    m = ALS(n_factors=10, regularization=0.1, regularization_scale="weighted", max_iter=10,
            verbose=0, random_state=0).fit(ml100k_u1.train, eval_set=ml100k_u1.test)
    # a plain sanity bound (the bias baseline reaches about 0.94 here); the tuned
    # u1.test figure (issue target 0.905, not reached: about 0.92) is measured by
    # `python -m benchmarks.bench_als --tune-only`, not by a timed test
    assert m.history_["val_rmse"][-1] < 0.95
    assert np.all(np.diff(m.history_["objective"]) <= 0)


def test_large_rank_half_steps_are_exact_on_ml100k(ml100k_u1):
    # rank 80 with a bias column: short rows go through the dual system and long ones
    # through the blocked Gram; both must give the exact ridge solution of each row
    from mflib.kernels.ridge import ridge_rows

    train = ml100k_u1.train
    m = ALS(n_factors=80, regularization=0.05, bias_regularization=0.01,
            regularization_scale="weighted", max_iter=4, tol=0.0, verbose=0,
            random_state=0).fit(train)
    assert np.all(np.diff(m.history_["objective"]) <= 1e-9 * m.history_["objective"][0])
    # the recorded objective (from the solves' own residuals, dual rows included)
    sse = np.sum((train.ratings - m.predict(train)) ** 2)
    nu, ni = train.user_counts(), train.item_counts()
    penalty = (0.05 * (np.sum(m.user_factors_**2, axis=1) @ nu
                       + np.sum(m.item_factors_**2, axis=1) @ ni)
               + 0.01 * (m.user_bias_**2 @ nu + m.item_bias_**2 @ ni))
    assert m.history_["objective"][-1] == pytest.approx(sse + penalty, rel=1e-10)
    csr = train.to_csr()
    counts = np.diff(csr.indptr)
    assert (counts < 81).any() and (counts >= 81).any()
    # the last half-step solved the items given the users: redo it, and check a sample
    # of its rows (short and long) against numpy's dense solve
    users = np.c_[np.ones(train.n_users), m.user_factors_]
    items_csc = csr.tocsc()
    targets = items_csc.data - m.global_mean_ - m.user_bias_[items_csc.indices]
    scale = np.r_[0.01, np.full(80, 0.05)] / 0.05
    solved = ridge_rows(items_csc.indptr, items_csc.indices, targets, users,
                        0.05 * np.diff(items_csc.indptr), reg_scale=scale)
    for i in np.flatnonzero(np.diff(items_csc.indptr))[::97]:  # reference: a few rows
        sl = slice(items_csc.indptr[i], items_csc.indptr[i + 1])
        Y = users[items_csc.indices[sl]]
        A = Y.T @ Y + np.diag(0.05 * (sl.stop - sl.start) * scale)
        np.testing.assert_allclose(solved[i], np.linalg.solve(A, Y.T @ targets[sl]),
                                   atol=1e-9)
    np.testing.assert_allclose(solved[:, 0], m.item_bias_, atol=1e-8)
    np.testing.assert_allclose(solved[:, 1:], m.item_factors_, atol=1e-8)
