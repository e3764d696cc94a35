"""The array-module ridge kernel (the GPU path's logic, run here with NumPy) against the
numba kernel and against the Gaussian it samples from."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mflib.kernels.ridge import ridge_rows
from mflib.kernels.ridge_xp import BucketPlan, ridge_rows_xp


def _problem(n_rows=70, n_cols=40, k=5, density=0.25, seed=0):
    rng = np.random.default_rng(seed)
    M = sp.random(n_rows, n_cols, density=density, random_state=seed, format="csr",
                  data_rvs=lambda n: rng.normal(size=n))
    M.sort_indices()
    M.data[:5] = 0.0  # explicit zeros are entries too
    return M, rng.normal(size=(n_cols, k)), rng


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("max_elements", [1 << 26, 64])  # one batch per bucket, or many
def test_matches_the_numba_kernel(weighted, max_elements):
    M, Y, rng = _problem()
    w = rng.uniform(0.1, 2.0, M.nnz) if weighted else None
    reg = rng.uniform(0.5, 2.0, M.shape[0])
    scale = np.array([0.0, 1.0, 1.0, 2.0, 1.0])  # a free coordinate, as a bias column is
    expected_sse = np.empty(M.shape[0])
    expected = ridge_rows(M.indptr, M.indices, M.data, Y, reg, weights=w, reg_scale=scale,
                          row_sse=expected_sse)
    plan = BucketPlan(M.indptr.astype(np.int64), Y.shape[1], max_elements)
    got, sse = ridge_rows_xp(np, plan, M.indices, M.data, Y, reg, weights=w, reg_scale=scale)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(sse, expected_sse, rtol=1e-8, atol=1e-10)
    assert not got[np.diff(M.indptr) == 0].any()  # rows without entries get 0


def test_float32_on_the_device_dtype():
    M, Y, _ = _problem()
    plan = BucketPlan(M.indptr.astype(np.int64), Y.shape[1])
    got, _ = ridge_rows_xp(np, plan, M.indices, M.data.astype(np.float32),
                           Y.astype(np.float32), 1.0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ridge_rows(M.indptr, M.indices, M.data, Y, 1.0), atol=1e-4)


def test_samples_have_the_conditional_mean_and_covariance():
    M, Y, rng = _problem(n_rows=1, n_cols=30, k=3, density=0.8)
    plan = BucketPlan(M.indptr.astype(np.int64), 3)
    precision, reg, n = 4.0, 0.7, 20000
    J = M.indices
    A = Y[J].T @ Y[J] + reg * np.eye(3)
    mean = np.linalg.solve(A, Y[J].T @ M.data)
    draws = np.empty((n, 3))
    normals = rng.standard_normal((n, 1, 3))
    for t in range(n):  # one row, many independent draws (a test, not a hot path)
        draws[t] = ridge_rows_xp(np, plan, M.indices, M.data, Y, reg,
                                 sample=(precision, normals[t]))[0][0]
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=4 * np.sqrt(
        np.diag(np.linalg.inv(A)) / precision / n).max())
    np.testing.assert_allclose(np.cov(draws.T), np.linalg.inv(A) / precision, atol=2e-3)


@pytest.mark.parametrize("averaging", [False, True])
def test_gibbs_draws_match_the_numba_sampler(averaging):
    from mflib.kernels.gibbs import sample_rows
    from mflib.kernels.ridge_xp import sample_rows_xp

    M, F, rng = _problem(k=4)
    d = F.shape[1]
    B = rng.normal(size=(d, d))
    Lambda = B @ B.T + d * np.eye(d)
    shift = rng.normal(size=d)
    normals = rng.standard_normal((M.shape[0], d))
    col = rng.normal(size=F.shape[0])
    mean_in = rng.normal(size=M.nnz) if averaging else None
    kw = dict(offset=0.3, column_offset=col, residual_mean=mean_in, weight=0.25)
    want = sample_rows(M.indptr, M.indices, M.data, F, 2.0, Lambda, shift, normals, **kw)
    plan = BucketPlan(M.indptr.astype(np.int64), d, max_elements=256)
    got = sample_rows_xp(np, plan, M.indices, M.data, F, 2.0, Lambda, shift, normals, **kw)
    for g, w in zip(got, want, strict=True):
        if w is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-11)
