"""Batched ridge and Lasso row kernels against small NumPy / scikit-learn references."""

import numpy as np
import pytest
import scipy.sparse as sp

from mflib.execution import numba_threads, resolve_n_jobs
from mflib.kernels.lasso import lasso_rows
from mflib.kernels.ridge import ridge_rows


def _problem(n_rows=40, n_cols=30, k=6, density=0.3, seed=0):
    rng = np.random.default_rng(seed)
    M = sp.random(n_rows, n_cols, density=density, random_state=seed, format="csr")
    M.data = rng.normal(size=M.nnz)
    M.sort_indices()
    return M, rng.normal(size=(n_cols, k)), rng


def _reference(M, Y, reg, weights=None, scale=None):
    k = Y.shape[1]
    scale = np.ones(k) if scale is None else scale
    out = np.zeros((M.shape[0], k))
    for r in range(M.shape[0]):  # reference only: a plain loop over rows
        sl = slice(M.indptr[r], M.indptr[r + 1])
        J, v = M.indices[sl], M.data[sl]
        if len(J) == 0:
            continue
        w = np.ones(len(J)) if weights is None else weights[sl]
        # least squares on the stacked system [sqrt(W) Y_J; sqrt(reg_r S)] x = [sqrt(W) v; 0]
        A = np.vstack([np.sqrt(w)[:, None] * Y[J], np.diag(np.sqrt(reg[r] * scale))])
        rhs = np.concatenate([np.sqrt(w) * v, np.zeros(k)])
        out[r] = np.linalg.lstsq(A, rhs, rcond=None)[0]
    return out


def test_cholesky_matches_least_squares_with_row_penalties_and_weights():
    M, Y, rng = _problem()
    reg = rng.uniform(0.1, 2.0, M.shape[0])
    weights = rng.uniform(0.5, 3.0, M.nnz)
    np.testing.assert_allclose(ridge_rows(M.indptr, M.indices, M.data, Y, reg),
                               _reference(M, Y, reg), atol=1e-10)
    np.testing.assert_allclose(ridge_rows(M.indptr, M.indices, M.data, Y, reg, weights=weights),
                               _reference(M, Y, reg, weights), atol=1e-10)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_per_coordinate_penalty_matches_least_squares(solver):
    M, Y, rng = _problem(k=4)
    reg = rng.uniform(0.5, 2.0, M.shape[0])
    scale = np.array([0.01, 1.0, 2.0, 5.0])
    got = ridge_rows(M.indptr, M.indices, M.data, Y, reg, reg_scale=scale, solver=solver,
                     cg_steps=4)
    # scaling coordinate a by 1/sqrt(s_a) turns the penalty back into a plain ridge
    ref = _reference(M, Y / np.sqrt(scale), reg) / np.sqrt(scale)
    np.testing.assert_allclose(got, ref, atol=1e-8)
    with pytest.raises(ValueError, match="reg_scale"):
        ridge_rows(M.indptr, M.indices, M.data, Y, reg, reg_scale=[1.0, 2.0])


@pytest.mark.parametrize("weighted", [False, True])
def test_short_rows_solved_through_the_dual_match_least_squares(weighted):
    # k = 40 exceeds every row's count (about 9), so every row takes the n_r x n_r
    # dual system; per-row and per-coordinate penalties and weights all enter it
    M, Y, rng = _problem(k=40)
    assert np.diff(M.indptr).max() < 40
    reg = rng.uniform(0.1, 2.0, M.shape[0])
    scale = rng.uniform(0.2, 3.0, 40)
    weights = rng.uniform(0.5, 3.0, M.nnz) if weighted else None
    got = ridge_rows(M.indptr, M.indices, M.data, Y, reg, weights=weights, reg_scale=scale)
    ref = _reference(M, Y / np.sqrt(scale), reg, weights) / np.sqrt(scale)
    np.testing.assert_allclose(got, ref, atol=1e-10)
    # an unpenalised coordinate (a free bias) rules the dual out; the primal solves it
    scale[0] = 0.0
    Y[:, 0] = 1.0
    got = ridge_rows(M.indptr, M.indices, M.data, Y, reg, weights=weights, reg_scale=scale)
    np.testing.assert_allclose(got, _reference(M, Y, reg, weights, scale), atol=1e-8)


@pytest.mark.parametrize("k, n_cols", [(64, 300), (65, 300), (20, 1500), (64, 1500)],
                         ids=["blocked", "blocked-odd", "sliced", "blocked-sliced"])
def test_blocked_gram_at_large_rank_matches_least_squares(k, n_cols):
    # rows of about 120 entries >= k: the primal path with the 2 x 2 block Gram; rows of
    # about 600 (>= 512) entries: the Gram summed over slices of rows
    M, Y, rng = _problem(n_rows=25, n_cols=n_cols, k=k, density=0.4)
    assert np.diff(M.indptr).min() >= (512 if n_cols > 1000 else k)
    reg = rng.uniform(0.1, 2.0, M.shape[0])
    weights = rng.uniform(0.5, 3.0, M.nnz)
    for w in (None, weights):
        got = ridge_rows(M.indptr, M.indices, M.data, Y, reg, weights=w)
        np.testing.assert_allclose(got, _reference(M, Y, reg, w), atol=1e-10)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("shape", [dict(k=6), dict(k=40), dict(n_rows=25, n_cols=300, k=64,
                                                                 density=0.4)],
                         ids=["primal", "dual", "blocked"])
def test_row_sse_is_each_rows_residual_sum_of_squares(solver, shape):
    M, Y, rng = _problem(density=shape.pop("density", 0.3), **shape)
    reg = rng.uniform(0.1, 2.0, M.shape[0])
    rows = np.repeat(np.arange(M.shape[0]), np.diff(M.indptr))
    for weights in (None, rng.uniform(0.5, 3.0, M.nnz)):
        for dtype, rtol in ((np.float64, 1e-10), (np.float32, 1e-4)):
            sse = np.full(M.shape[0], np.nan)
            X = ridge_rows(M.indptr, M.indices, M.data, Y, reg, weights=weights,
                           solver=solver, dtype=dtype, row_sse=sse)
            X = X.astype(np.float64)
            w = np.ones(M.nnz) if weights is None else weights
            resid = M.data - np.einsum("nk,nk->n", X[rows], Y[M.indices])
            expected = np.bincount(rows, w * resid**2, M.shape[0])
            np.testing.assert_allclose(sse, expected, rtol=rtol, atol=1e-12)
    with pytest.raises(ValueError, match="row_sse"):
        ridge_rows(M.indptr, M.indices, M.data, Y, reg, row_sse=np.zeros(3))


def test_negative_or_misshaped_weights_are_refused():
    M, Y, _ = _problem()
    with pytest.raises(ValueError, match="non-negative"):
        ridge_rows(M.indptr, M.indices, M.data, Y, 1.0, weights=-np.ones(M.nnz))
    with pytest.raises(ValueError, match="one per entry"):
        ridge_rows(M.indptr, M.indices, M.data, Y, 1.0, weights=np.ones(3))


def test_empty_rows_get_zero_and_scalar_reg_broadcasts():
    M, Y, _ = _problem(density=0.05)
    empty = np.diff(M.indptr) == 0
    assert empty.any()
    out = ridge_rows(M.indptr, M.indices, M.data, Y, 0.5, out=np.full((M.shape[0], 6), 7.0))
    assert np.all(out[empty] == 0)
    np.testing.assert_allclose(out, _reference(M, Y, np.full(M.shape[0], 0.5)), atol=1e-10)


def test_float32_path_is_close_to_float64():
    M, Y, _ = _problem()
    x64 = ridge_rows(M.indptr, M.indices, M.data, Y, 1.0)
    x32 = ridge_rows(M.indptr, M.indices, M.data, Y, 1.0, dtype=np.float32)
    assert x32.dtype == np.float32
    np.testing.assert_allclose(x32, x64, atol=1e-4)


def test_cg_converges_to_exact_and_never_raises_row_objective():
    M, Y, rng = _problem(k=5)
    reg = 0.3
    exact = ridge_rows(M.indptr, M.indices, M.data, Y, reg)
    # k CG steps solve a k x k SPD system exactly (up to rounding)
    full = ridge_rows(M.indptr, M.indices, M.data, Y, reg, solver="cg", cg_steps=5)
    np.testing.assert_allclose(full, exact, atol=1e-8)

    def row_objectives(X):
        pred = np.einsum("nk,nk->n", X[np.repeat(np.arange(M.shape[0]), np.diff(M.indptr))],
                         Y[M.indices])
        sq = np.bincount(np.repeat(np.arange(M.shape[0]), np.diff(M.indptr)),
                         (M.data - pred) ** 2, M.shape[0])
        return sq + reg * np.sum(X**2, axis=1)

    start = rng.normal(size=exact.shape)
    one_step = ridge_rows(M.indptr, M.indices, M.data, Y, reg, solver="cg", cg_steps=1,
                          out=start.copy())
    assert np.all(row_objectives(one_step) <= row_objectives(start) + 1e-12)
    assert np.all(row_objectives(one_step) >= row_objectives(exact) - 1e-12)
    assert not np.allclose(one_step, exact)  # one step is genuinely inexact here


def test_singular_system_raises_clear_error():
    M, Y, _ = _problem(k=6, density=0.1)  # rows with fewer than k ratings and reg=0
    with pytest.raises(np.linalg.LinAlgError, match="positive regularization"):
        ridge_rows(M.indptr, M.indices, M.data, Y, 0.0)


def test_bad_solver_and_out_are_refused():
    M, Y, _ = _problem()
    with pytest.raises(ValueError, match="solver"):
        ridge_rows(M.indptr, M.indices, M.data, Y, 1.0, solver="qr")
    with pytest.raises(ValueError, match="out must be"):
        ridge_rows(M.indptr, M.indices, M.data, Y, 1.0, out=np.zeros((3, 3)))


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_thread_count_does_not_change_results(solver):
    M, Y, _ = _problem(n_rows=300, n_cols=200, k=12)
    with numba_threads(1):
        one = ridge_rows(M.indptr, M.indices, M.data, Y, 0.2, solver=solver)
    with numba_threads(2):
        two = ridge_rows(M.indptr, M.indices, M.data, Y, 0.2, solver=solver)
    np.testing.assert_array_equal(one, two)


def test_numba_threads_restores_and_n_jobs_is_validated():
    import numba

    before = numba.get_num_threads()
    with numba_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with pytest.raises(ValueError, match="n_jobs"):
        resolve_n_jobs(0)
    with pytest.raises(ValueError, match="exceeds"):
        resolve_n_jobs(10_000)
    assert resolve_n_jobs(None) == resolve_n_jobs(-1) == numba.config.NUMBA_NUM_THREADS


def test_lasso_rows_match_sklearn_lasso():
    from sklearn.linear_model import Lasso

    M, Y, rng = _problem(n_rows=25, n_cols=40, k=5, density=0.4)
    alpha = rng.uniform(0.5, 6.0, M.shape[0])
    X, sweeps = lasso_rows(M.indptr, M.indices, M.data, Y, alpha, max_sweeps=10_000, tol=1e-12)
    n_zero = 0
    for r in range(M.shape[0]):
        sl = slice(M.indptr[r], M.indptr[r + 1])
        n = sl.stop - sl.start
        if n == 0:
            assert np.all(X[r] == 0)
            continue
        # sklearn: (1/(2n))|v - Yx|^2 + a|x|_1  ==  (|v - Yx|^2 + alpha|x|_1) / (2n)
        ref = Lasso(alpha=alpha[r] / (2 * n), fit_intercept=False, tol=1e-12, max_iter=100_000)
        ref.fit(Y[M.indices[sl]], M.data[sl])
        np.testing.assert_allclose(X[r], ref.coef_, atol=1e-7)
        n_zero += int(np.sum(ref.coef_ == 0))
    assert n_zero > 0  # the test exercises the thresholding, not only ridge-like rows
    assert sweeps.max() > 1


def test_lasso_rows_large_alpha_gives_zero_and_checks_alpha():
    M, Y, _ = _problem()
    X, _ = lasso_rows(M.indptr, M.indices, M.data, Y, 1e6)
    assert np.all(X == 0)
    with pytest.raises(ValueError, match="alpha"):
        lasso_rows(M.indptr, M.indices, M.data, Y, -1.0)


@pytest.mark.parametrize("k", [33, 64, 65])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_syrk_gram_matches_the_gemm_path_and_least_squares(k, dtype, monkeypatch):
    """Long unweighted rows take one BLAS syrk; forced on every row (and off), both
    Gram paths give the least-squares solution, and the same one up to rounding."""
    from mflib.kernels import ridge

    M, Y, rng = _problem(n_rows=25, n_cols=300, k=k, density=0.4)
    reg = rng.uniform(0.1, 2.0, M.shape[0])
    solutions = {}
    for path, rows in (("syrk", 0), ("gemm", ridge._NEVER)):
        monkeypatch.setattr(ridge, "SYRK_FROM_ROWS", rows)
        row_sse = np.empty(M.shape[0])
        solutions[path] = ridge_rows(M.indptr, M.indices, M.data, Y.astype(dtype), reg,
                                     dtype=dtype, row_sse=row_sse)
        ref = _reference(M, Y.astype(dtype).astype(float), reg)
        tol = 1e-10 if dtype == np.float64 else 2e-4
        np.testing.assert_allclose(solutions[path], ref, atol=tol, rtol=tol)
        residual = [np.sum((M.data[M.indptr[r]:M.indptr[r + 1]]
                            - Y[M.indices[M.indptr[r]:M.indptr[r + 1]]] @ ref[r]) ** 2)
                    for r in range(M.shape[0])]
        np.testing.assert_allclose(row_sse, residual, rtol=10 * tol)
    assert solutions["syrk"].dtype == dtype
    np.testing.assert_allclose(solutions["syrk"], solutions["gemm"],
                               rtol=1e-12 if dtype == np.float64 else 1e-4,
                               atol=1e-12 if dtype == np.float64 else 1e-5)
