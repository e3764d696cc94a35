"""SoftImpute, softImpute-ALS and the lambda path, checked against the mathematics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mflib import BiasBaseline, SoftImpute, SoftImputeALS, make_low_rank, make_split
from mflib.backend import DeviceError, gpu_available, gpu_unavailable_reason
from mflib.kernels import pair_dots
from mflib.kernels.lowrank import (
    augment_basis,
    dense_objective,
    low_rank_on_pairs,
    observed_pattern,
    residual_matrix,
    residuals_on_pairs,
    sparse_plus_low_rank,
    thin_svd,
)
from mflib.solvers.baselines import center
from mflib.solvers.soft_impute import lambda_max, soft_impute_path

gpu = pytest.mark.skipif(not gpu_available(), reason=f"no GPU: {gpu_unavailable_reason()}")


def _dense(rm):
    X = np.zeros(rm.shape)
    mask = np.zeros(rm.shape, dtype=bool)
    X[rm.users, rm.items] = rm.ratings
    mask[rm.users, rm.items] = True
    return X, mask


def _Z(model):
    return model.user_factors_ @ model.item_factors_.T


@pytest.fixture(scope="module")
def pure_low_rank():
    """80 x 60, planted rank 3, no offsets, 40% observed, noise 0.05."""
    rm, truth = make_low_rank(80, 60, 3, 0.4, noise=0.05, global_mean=0.0, bias_scale=0.0,
                              random_state=1)
    return rm, truth


@pytest.fixture(scope="module")
def lam(pure_low_rank):
    return 0.1 * lambda_max(pure_low_rank[0], center="none")


@pytest.fixture(scope="module")
def reference(pure_low_rank, lam):
    """The dense textbook iteration run to tight convergence."""
    return SoftImpute(lam, center="none", algorithm="dense", acceleration=None,
                      convergence="factors", tol=1e-13, max_iter=2000,
                      verbose=0).fit(pure_low_rank[0])


# ---------------------------------------------------------------------------- kernels
def test_sparse_plus_low_rank_operator_matches_dense():
    rng = np.random.default_rng(0)
    m, n, r = 30, 20, 4
    mask = rng.random((m, n)) < 0.3
    users, items = np.nonzero(mask)
    X = np.where(mask, rng.standard_normal((m, n)), 0.0)
    U = np.linalg.qr(rng.standard_normal((m, r)))[0]
    V = np.linalg.qr(rng.standard_normal((n, r)))[0]
    s = np.array([3.0, 2.0, 1.0, 0.5])
    Z = U @ np.diag(s) @ V.T
    dense = np.where(mask, X - Z, 0.0) + Z  # P_Omega(X - Z) + Z

    perm = rng.permutation(len(users))  # the pattern must cope with unsorted input
    pattern, order = observed_pattern(users[perm], items[perm], (m, n))
    u, i = users[perm][order], items[perm][order]
    S, resid = residual_matrix(pattern, X[u, i], u, i, U, s, V)
    np.testing.assert_allclose(S.toarray(), np.where(mask, X - Z, 0.0), atol=1e-12)
    np.testing.assert_allclose(resid, (X - Z)[u, i], atol=1e-12)

    op = sparse_plus_low_rank(S, U, s, V)
    W, Q = rng.standard_normal((n, 5)), rng.standard_normal((m, 5))
    np.testing.assert_allclose(op @ W, dense @ W, atol=1e-12)
    np.testing.assert_allclose(op.T @ Q, dense.T @ Q, atol=1e-12)
    np.testing.assert_allclose(op.matvec(W[:, 0]), dense @ W[:, 0], atol=1e-12)
    np.testing.assert_allclose(op.rmatvec(Q[:, 0]), dense.T @ Q[:, 0], atol=1e-12)
    top = sp.linalg.svds(op, k=2, return_singular_vectors=False)
    np.testing.assert_allclose(np.sort(top), np.linalg.svd(dense, compute_uv=False)[1::-1],
                               rtol=1e-8)
    np.testing.assert_allclose(low_rank_on_pairs(U * s, V, u, i), Z[u, i], atol=1e-12)


def test_fused_residual_kernel_matches_pair_dots():
    rng = np.random.default_rng(3)
    P, Q = rng.standard_normal((50, 7)), rng.standard_normal((40, 7))
    users, items = rng.integers(0, 50, 500), rng.integers(0, 40, 500)
    observed = rng.standard_normal(500)
    expected = observed - pair_dots(P, Q, users, items)
    np.testing.assert_allclose(residuals_on_pairs(P, Q, users, items, observed), expected,
                               rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(
        residuals_on_pairs(P, Q, users.astype(np.int32), items.astype(np.int32), observed),
        expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("decay", [0.5, 0.9])
def test_tall_gram_svd_matches_lapack(decay):
    rng = np.random.default_rng(4)
    m, k = 5000, 30  # tall enough for the Gram path
    sigma = 100.0 * decay ** np.arange(k)
    sigma[-3:] = 0.0  # rank deficient: those directions are completed at random
    B = np.linalg.qr(rng.standard_normal((m, k)))[0] @ np.diag(sigma) @ np.linalg.qr(
        rng.standard_normal((k, k)))[0]
    L, s, Rt = thin_svd(B)
    s_ref = np.linalg.svd(B, compute_uv=False)
    big = s_ref > 1e-6 * s_ref[0]
    # the documented accuracy: absolute error about eps * sigma_max^2 / sigma_j
    assert np.all(np.abs(s[big] - s_ref[big]) <= 1e-13 * s_ref[0] ** 2 / s_ref[big])
    top = s_ref > 1e-3 * s_ref[0]
    np.testing.assert_allclose(s[top], s_ref[top], rtol=1e-9)
    np.testing.assert_allclose(L.T @ L, np.eye(k), atol=1e-12)
    np.testing.assert_allclose(Rt @ Rt.T, np.eye(k), atol=1e-12)
    np.testing.assert_allclose(L @ np.diag(s) @ Rt, B, atol=1e-8 * s_ref[0])


# ---------------------------------------------------------------------------- solver
@pytest.mark.parametrize("model", [
    SoftImpute(center="none", max_iter=40, tol=0, verbose=0, random_state=0, init_rank=2),
    SoftImpute(center="none", algorithm="dense", max_iter=40, tol=0, verbose=0),
    SoftImpute(center="none", acceleration=None, max_iter=40, tol=0, verbose=0,
               random_state=0, init_rank=2),
    SoftImpute(center="none", algorithm="dense", acceleration=None, max_iter=40, tol=0,
               verbose=0),
    SoftImputeALS(center="none", n_factors=8, max_iter=40, tol=0, verbose=0, random_state=0),
], ids=["subspace-nesterov", "dense-nesterov", "subspace-plain", "dense-plain", "als"])
def test_objective_never_rises(model, pure_low_rank, lam):
    model.set_params(regularization=lam).fit(pure_low_rank[0])
    obj = model.history_["objective"]
    assert len(obj) == 40
    assert np.all(np.diff(obj) <= 1e-10 * obj[:-1]), np.diff(obj).max()
    half_sq_norm = 0.5 * np.sum(pure_low_rank[0].ratings ** 2)  # the objective at Z = 0
    assert obj[-1] < obj[0] < half_sq_norm


@pytest.mark.parametrize("acceleration", ["nesterov", None])
def test_objective_matches_dense_reference(pure_low_rank, lam, reference, acceleration):
    rm = pure_low_rank[0]
    fast = SoftImpute(lam, center="none", convergence="factors", tol=1e-13, max_iter=2000,
                      acceleration=acceleration, verbose=0, random_state=0).fit(rm)
    assert fast.stop_reason_ == reference.stop_reason_ == "converged"
    X, mask = _dense(rm)
    # objectives recomputed from the dense matrices, independently of the solvers
    f_ref = dense_objective(X, mask, _Z(reference), lam)
    f_fast = dense_objective(X, mask, _Z(fast), lam)
    assert abs(f_fast - f_ref) <= 1e-6 * f_ref
    assert abs(fast.objective_ - f_fast) <= 1e-9 * f_fast
    assert fast.rank_ == reference.rank_
    np.testing.assert_allclose(_Z(fast), _Z(reference), atol=1e-5 * np.abs(_Z(reference)).max())


@pytest.fixture(scope="module")
def sparse_low_rank():
    """600 x 300, planted rank 4, 4% observed: plain SoftImpute contracts slowly here."""
    rm, _ = make_low_rank(600, 300, 4, 0.04, noise=0.1, global_mean=0.0, bias_scale=0.0,
                          random_state=3)
    return rm, 0.3 * lambda_max(rm, center="none")


def test_acceleration_reaches_the_plain_solution_in_fewer_iterations(sparse_low_rank):
    rm, lam = sparse_low_rank
    kw = dict(regularization=lam, center="none", tol=1e-12, max_iter=3000, verbose=0,
              random_state=0)
    plain = SoftImpute(acceleration=None, **kw).fit(rm)
    fast = SoftImpute(acceleration="nesterov", **kw).fit(rm)
    assert plain.stop_reason_ == fast.stop_reason_ == "converged"
    assert fast.rank_ == plain.rank_
    X, mask = _dense(rm)
    f_plain = dense_objective(X, mask, _Z(plain), lam)
    f_fast = dense_objective(X, mask, _Z(fast), lam)
    # at 4% observed the plain iteration contracts by ~0.99 a step, so when its steps
    # change Z by 1e-6 it is still ~1e-4 away: the accelerated fit ends at least as low
    assert f_fast <= f_plain * (1 + 1e-12)
    assert f_plain - f_fast <= 1e-6 * f_plain
    np.testing.assert_allclose(_Z(fast), _Z(plain), atol=2e-3 * np.abs(_Z(plain)).max())
    assert fast.n_iter_ < 0.5 * plain.n_iter_, (fast.n_iter_, plain.n_iter_)
    # momentum was used, and each restart set it back to zero for one step
    momentum, restarted = fast.history_["momentum"], fast.history_["restarted"]
    assert momentum.max() > 0.5
    assert np.all(momentum[restarted == 1] > 0)
    after = np.flatnonzero(restarted[:-1] == 1) + 1
    assert np.all(momentum[after] == 0)
    obj = fast.history_["objective"]
    assert np.all(np.diff(obj) <= 1e-10 * obj[:-1])


def test_rank_capped_steps_take_no_momentum(sparse_low_rank):
    # the planted rank is 4; with max_rank=2 every step is capped, so the accelerated
    # fit must run the plain iteration step for step (and still test convergence)
    rm, lam = sparse_low_rank
    kw = dict(regularization=0.3 * lam, center="none", max_rank=2, tol=1e-6, max_iter=400,
              verbose=0, random_state=0)
    fast = SoftImpute(acceleration="nesterov", **kw).fit(rm)
    plain = SoftImpute(acceleration=None, **kw).fit(rm)
    assert np.all(fast.history_["rank_capped"] == 1)
    assert np.all(fast.history_["momentum"] == 0)
    assert fast.stop_reason_ == plain.stop_reason_ == "converged"
    assert fast.n_iter_ == plain.n_iter_
    np.testing.assert_array_equal(_Z(fast), _Z(plain))
    # uncapped (max_rank above the solution's rank), the same data still accelerates
    uncapped = SoftImpute(acceleration="nesterov", **{**kw, "max_rank": 50}).fit(rm)
    assert uncapped.history_["momentum"].max() > 0.5


def test_extrapolated_point_is_the_combination_of_iterates(sparse_low_rank):
    # Y = Z_k + m (Z_k - Z_k-1) as stacked signed factors, with residuals combined
    # from the stored ones: checked against the dense Y and a fresh residual pass
    rm, lam = sparse_low_rank
    model = SoftImpute(lam, center="none", verbose=0, random_state=0)
    state = model._init_state(rm)
    for _ in range(6):
        model._step(state, rm)
    U0, s0, V0, _ = state.previous
    U, s, V, R = SoftImpute._extrapolate(state, 0.7)
    Z1 = (state.left * state.singular_values) @ state.right.T
    Y = Z1 + 0.7 * (Z1 - (U0 * s0) @ V0.T)
    np.testing.assert_allclose((U * s) @ V.T, Y, atol=1e-12 * np.abs(Y).max())
    np.testing.assert_allclose(R, state.problem.residuals(U, s, V), atol=1e-10)
    basis = augment_basis(np, state.subspace, V0)
    np.testing.assert_allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-12)
    np.testing.assert_allclose(basis[:, :state.subspace.shape[1]], state.subspace)
    # the augmented subspace holds Y's row space: Y W W^T = Y
    np.testing.assert_allclose(Y @ basis @ basis.T, Y, atol=1e-10 * np.abs(Y).max())


@pytest.mark.parametrize("cls", [SoftImpute, SoftImputeALS])
def test_train_rmse_comes_from_the_residuals(cls, small_low_rank):
    rm = small_low_rank[0]
    model = cls(2.0, max_iter=5, tol=0, verbose=0, random_state=0).fit(rm)
    state = model._init_state(rm)
    metrics = model._step(state, rm)
    # the step reports it (so the fit loop skips its own prediction pass), and it is the
    # RMSE of the full prediction offsets + Z, centring included
    pred = state.predict(rm.users.astype(np.int64), rm.items.astype(np.int64))
    np.testing.assert_allclose(metrics["train_rmse"], np.sqrt(np.mean((pred - rm.ratings) ** 2)),
                               rtol=1e-10)


def test_solution_satisfies_optimality_conditions(pure_low_rank, lam, reference):
    # 0 in  -P(X - Z) + lam * d|Z|_*  <=>  S V = lam U, S^T U = lam V, |S_perp|_2 <= lam
    X, mask = _dense(pure_low_rank[0])
    U, s, V = (reference.left_singular_vectors_, reference.singular_values_,
               reference.right_singular_vectors_)
    S = np.where(mask, X - U @ np.diag(s) @ V.T, 0.0)
    np.testing.assert_allclose(S @ V, lam * U, atol=2e-5 * lam)
    np.testing.assert_allclose(S.T @ U, lam * V, atol=2e-5 * lam)
    rest = (S - U @ (U.T @ S)) - (S - U @ (U.T @ S)) @ V @ V.T
    assert np.linalg.norm(rest, 2) <= lam * (1 + 1e-6)
    assert np.all(s > 0)


def test_als_converges_to_the_softimpute_solution(pure_low_rank, lam, reference):
    rm = pure_low_rank[0]
    als = SoftImputeALS(lam, n_factors=10, center="none", convergence="factors", tol=1e-13,
                        max_iter=3000, verbose=0, random_state=0).fit(rm)
    assert als.stop_reason_ == "converged"
    assert als.rank_ == reference.rank_
    assert abs(als.objective_ - reference.objective_) <= 1e-6 * reference.objective_
    np.testing.assert_allclose(_Z(als), _Z(reference), atol=1e-4 * np.abs(_Z(reference)).max())


def test_lambda_max_is_the_top_singular_value_and_gives_zero(pure_low_rank):
    rm = pure_low_rank[0]
    X, _ = _dense(rm)
    top = lambda_max(rm, center="none")
    np.testing.assert_allclose(top, np.linalg.svd(X, compute_uv=False)[0], rtol=1e-10)
    # SoftImpute from Z = 0 thresholds everything in one step; ALS shrinks D towards 0
    # geometrically (rate lambda_max / lambda) and its final thresholding zeroes it
    for model in (SoftImpute(top * (1 + 1e-9), max_iter=20),
                  SoftImputeALS(top * 1.01, n_factors=5, max_iter=300)):
        at_max = model.set_params(center="none", verbose=0, random_state=0).fit(rm)
        assert at_max.rank_ == 0
        assert np.all(at_max.predict(rm.pairs()) == 0.0)
    below = SoftImpute(0.9 * top, center="none", max_iter=20, verbose=0, random_state=0).fit(rm)
    assert below.rank_ >= 1


def test_warm_start_reproduces_cold_start(pure_low_rank, lam, reference):
    rm = pure_low_rank[0]
    model = SoftImpute(3 * lam, center="none", convergence="factors", tol=1e-13, max_iter=2000,
                       verbose=0, warm_start=True, random_state=5).fit(rm)
    model.set_params(regularization=lam).fit(rm)
    assert model.rank_ == reference.rank_
    np.testing.assert_allclose(_Z(model), _Z(reference), atol=1e-5 * np.abs(_Z(reference)).max())
    # it started from the 3 * lambda answer, not from Z = 0
    assert model.history_["objective"][0] < reference.history_["objective"][0]


def test_gram_svd_path_gives_the_lapack_path_result(monkeypatch):
    import mflib.kernels.lowrank as lowrank

    rm, _ = make_low_rank(2500, 80, 4, 0.1, noise=0.1, random_state=7)
    kw = dict(regularization=0.2 * lambda_max(rm), max_iter=60, tol=0, verbose=0,
              random_state=0)
    gram = SoftImpute(**kw).fit(rm)  # 2500 x w panels take the Gram path
    obj = gram.history_["objective"]
    assert np.all(np.diff(obj) <= 1e-10 * obj[:-1])
    monkeypatch.setattr(lowrank, "TALL_MIN_ROWS", 10**9)
    lapack = SoftImpute(**kw).fit(rm)
    np.testing.assert_allclose(obj, lapack.history_["objective"], rtol=1e-9)
    assert gram.rank_ == lapack.rank_


def test_rank_cap_is_reported(pure_low_rank, lam):
    model = SoftImpute(0.01 * lam, center="none", max_rank=2, max_iter=5, verbose=0,
                       random_state=0).fit(pure_low_rank[0])
    assert model.rank_ == 2
    assert model.history_["rank_capped"][-1] == 1.0


def test_same_seed_same_result(small_low_rank):
    rm = small_low_rank[0]
    a = SoftImpute(2.0, max_iter=10, verbose=0, random_state=3).fit(rm)
    b = SoftImpute(2.0, max_iter=10, verbose=0, random_state=3).fit(rm)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.history_["objective"], b.history_["objective"])


@pytest.mark.parametrize("center", ["none", "mean", "biases"])
def test_centering_options_predict_offset_plus_z(small_low_rank, center):
    rm = small_low_rank[0]
    model = SoftImpute(3.0, center=center, max_iter=30, verbose=0, random_state=0).fit(rm)
    z = np.sum(model.user_factors_[rm.users] * model.item_factors_[rm.items], axis=1)
    offset = model.global_mean_ + (0 if center != "biases" else
                                   model.user_bias_[rm.users] + model.item_bias_[rm.items])
    np.testing.assert_allclose(model.predict(rm), offset + z, atol=1e-12)
    if center == "none":
        assert model.global_mean_ == 0.0 and model.user_bias_ is None
    if center == "biases":  # the converged regularised bias baseline
        # (alternating updates run to machine precision reach the minimiser to ~1e-9)
        base = BiasBaseline(max_iter=5000, tol=1e-16, verbose=0).fit(rm)
        np.testing.assert_allclose(model.user_bias_, base.user_bias_, atol=1e-8)
    # the planted rank-3 signal is captured: far below the bias baseline's error (~1)
    assert -model.score(rm) < 0.5 * -BiasBaseline(verbose=0).fit(rm).score(rm)


def test_convergence_on_change_of_z(pure_low_rank, lam):
    model = SoftImpute(lam, center="none", convergence="factors", tol=1e-8, max_iter=500,
                       verbose=0, random_state=0).fit(pure_low_rank[0])
    assert model.stop_reason_ == "converged"
    change = model.history_["relative_change"]
    assert change[-1] < 1e-8 <= change[-2]


@pytest.mark.parametrize("cls", [SoftImpute, SoftImputeALS])
@pytest.mark.parametrize("convergence", ["factors", "objective"])
def test_tolerance_is_tested_from_the_fourth_step(cls, convergence, small_low_rank):
    # a huge tol stops at the first step allowed; before it, Z may still be 0 only
    # because the warm subspace has not yet found the directions above lambda
    model = cls(2.0, convergence=convergence, tol=10.0, verbose=0, random_state=0)
    model.fit(small_low_rank[0])
    assert model.stop_reason_ == "converged" and model.n_iter_ == 4


def test_lambda_path_recovers_planted_matrix():
    rm, truth = make_low_rank(150, 120, 3, 0.35, noise=0.1, random_state=2)
    split = make_split(rm, "random", test_size=0.15, val_size=0.15, random_state=0)
    path, best = soft_impute_path(split.train, split.validation, n_lambdas=8,
                                  estimator=SoftImpute(max_iter=100, tol=1e-4, verbose=0,
                                                       random_state=0))
    assert list(path["regularization"]) == sorted(path["regularization"], reverse=True)
    assert path["rank"].iloc[0] == 0  # lambda_max
    assert path["selected"].sum() == 1
    chosen = path[path["selected"]].iloc[0]
    assert chosen["val_rmse"] == path["val_rmse"].min()
    assert best.regularization == chosen["regularization"] and not best.warm_start
    # three directions dominate (the rest: shrunken noise and bias left by the baseline)
    s = best.singular_values_
    assert best.rank_ >= 3 and s[3] < 0.3 * s[2]
    # error against the noiseless truth on held-out cells, vs the bias baseline's
    test = split.test
    truth_test = truth.predict(rm.user_ids[test.users], rm.item_ids[test.items])
    err = np.sqrt(np.mean((best.predict(test) - truth_test) ** 2))
    base = BiasBaseline(verbose=0).fit(split.train)
    assert err < 0.3 * np.sqrt(np.mean((base.predict(test) - truth_test) ** 2))
    assert err < 0.2


def test_path_with_als_estimator(small_low_rank):
    rm = small_low_rank[0]
    split = make_split(rm, "random", test_size=0.2, val_size=0.2, random_state=0)
    path, best = soft_impute_path(split.train, split.validation, n_lambdas=4,
                                  estimator=SoftImputeALS(n_factors=6, max_iter=50,
                                                          verbose=0, random_state=0))
    assert isinstance(best, SoftImputeALS)
    assert path["rank"].iloc[-1] >= 1
    # at lambda_max ALS is still shrinking towards Z = 0: objective ~ 1/2 |P(X)|^2
    target = center(split.train, "biases").values
    np.testing.assert_allclose(path["objective"].iloc[0], 0.5 * target @ target, rtol=1e-3)


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize("params, message", [
    ({"center": "median"}, "center"),
    ({"max_rank": 0}, "max_rank"),
    ({"regularization": -1.0}, "regularization"),
    ({"algorithm": "lanczos"}, "algorithm"),
    ({"convergence": "gradient"}, "convergence"),
    ({"acceleration": "adam"}, "acceleration"),
])
def test_bad_parameters_are_named(small_low_rank, params, message):
    with pytest.raises(ValueError, match=message):
        SoftImpute(verbose=0, **params).fit(small_low_rank[0])


def test_dense_path_refuses_large_matrices(monkeypatch, small_low_rank):
    import mflib.solvers.soft_impute as module

    monkeypatch.setattr(module, "DENSE_CELL_LIMIT", 100)
    with pytest.raises(ValueError, match="algorithm='subspace'"):
        SoftImpute(algorithm="dense", verbose=0).fit(small_low_rank[0])


def test_warm_start_on_other_shape_is_refused(small_low_rank, pure_low_rank):
    model = SoftImpute(2.0, max_iter=2, warm_start=True, verbose=0).fit(small_low_rank[0])
    with pytest.raises(ValueError, match="warm_start"):
        model.fit(pure_low_rank[0])


@pytest.mark.skipif(gpu_available(), reason="a GPU is present, so no error is expected")
@pytest.mark.parametrize("cls", [SoftImpute, SoftImputeALS])
def test_gpu_without_gpu_is_a_clear_error(cls, small_low_rank):
    with pytest.raises(DeviceError, match="device='cpu'"):
        cls(device="gpu", verbose=0).fit(small_low_rank[0])


# ---------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("cls, extra", [
    (SoftImpute, {}), (SoftImpute, {"algorithm": "dense"}), (SoftImputeALS, {"n_factors": 8}),
])
def test_gpu_matches_cpu(cls, extra, pure_low_rank, lam):
    rm = pure_low_rank[0]
    kw = dict(regularization=lam, center="biases", max_iter=300, tol=1e-12, verbose=0,
              random_state=0, **extra)
    cpu = cls(device="cpu", **kw).fit(rm)
    gpu_model = cls(device="gpu", **kw).fit(rm)
    assert isinstance(gpu_model.user_factors_, np.ndarray)
    assert gpu_model.rank_ == cpu.rank_
    np.testing.assert_allclose(gpu_model.objective_, cpu.objective_, rtol=1e-6)
    np.testing.assert_allclose(gpu_model.predict(rm), cpu.predict(rm), atol=1e-5)


# ---------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_ml100k_beats_bias_baseline(ml100k_u1):
    train, test = ml100k_u1.train, ml100k_u1.test
    base = BiasBaseline(verbose=0).fit(train)
    model = SoftImpute(0.25 * lambda_max(train), max_iter=15, verbose=0,
                       random_state=0).fit(train, eval_set=test)
    obj = model.history_["objective"]
    assert np.all(np.diff(obj) <= 1e-10 * obj[:-1])
    assert 1 <= model.rank_ <= 100
    assert -model.score(test) < -base.score(test)
