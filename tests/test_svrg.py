"""SVRG: full gradient, variance reduction at the snapshot, lazy kernel vs dense reference."""

from __future__ import annotations

import numpy as np
import pytest

from mflib import ConvergenceWarning, make_low_rank
from mflib.kernels import sgd as kernels
from mflib.metrics import rmse
from mflib.solvers.sgd import (
    SVRG,
    StochasticState,
    _Workspace,
    compute_residuals,
    full_gradient,
    objective,
)

LAM = 0.1
MU = 3.0


@pytest.fixture
def tiny():
    rng = np.random.default_rng(4)
    rm, _ = make_low_rank(9, 7, 2, 0.5, noise=0.3, random_state=4)
    params = (rng.normal(0, 0.3, rm.n_users), rng.normal(0, 0.3, rm.n_items),
              rng.normal(0, 0.5, (rm.n_users, 3)), rng.normal(0, 0.5, (rm.n_items, 3)))
    return rm, params


def _state(rm, params):
    return StochasticState(MU, *(a.copy() for a in params), workspace=_Workspace.build(rm))


def _flat(parts):
    return np.concatenate([np.ravel(p) for p in parts])


def _unflat(x, like):
    out, start = [], 0
    for a in like:
        out.append(x[start : start + a.size].reshape(a.shape))
        start += a.size
    return out


def dense_vr_gradient(rm, params, snap, full, batch, lam=LAM):
    """1/B sum_batch (grad l_j(params) - grad l_j(snap)) + full, as dense arrays (NumPy)."""
    out = [g.copy() for g in full]
    for theta, sign in ((params, 1.0), (snap, -1.0)):
        bu, bi, P, Q = theta
        for j in batch:
            u, i = rm.users[j], rm.items[j]
            e = rm.ratings[j] - (MU + bu[u] + bi[i] + P[u] @ Q[i])
            w = sign / len(batch)
            out[0][u] += w * (-e + lam * bu[u])
            out[1][i] += w * (-e + lam * bi[i])
            out[2][u] += w * (-e * Q[i] + lam * P[u])
            out[3][i] += w * (-e * P[u] + lam * Q[i])
    return out


def reference_inner_loop(rm, params, order, batch_size, n_steps, lr, lam=LAM, clip=0.0):
    """SVRG inner loop updating every row at every step (no laziness), in NumPy."""
    snap = [a.copy() for a in params]
    full = full_gradient(_state(rm, snap), lam)
    theta = [a.copy() for a in params]
    for t in range(n_steps):
        batch = order[t * batch_size : (t + 1) * batch_size]
        v = dense_vr_gradient(rm, theta, snap, full, batch, lam)
        B = len(batch)
        if clip:  # rescale the per-row correction B * (v - full) to norm <= clip
            for gb, gf in ((0, 2), (1, 3)):
                corr_b = B * (v[gb] - full[gb])
                corr_f = B * (v[gf] - full[gf])
                norm = np.sqrt(corr_b**2 + (corr_f**2).sum(axis=1))
                scale = np.where(norm > clip, clip / np.maximum(norm, 1e-300), 1.0)
                v[gb] = full[gb] + scale * corr_b / B
                v[gf] = full[gf] + scale[:, None] * corr_f / B
        for a, g in zip(theta, v, strict=True):
            a -= lr * batch_size * g
    return theta


def _run_kernel(rm, params, order, batch_size, n_steps, lr, lam=LAM, clip=0.0):
    state = _state(rm, params)
    snap = state.copy()
    g = full_gradient(state, lam)
    resid = state.workspace.residuals.copy()
    nu, ni, k = rm.n_users, rm.n_items, params[2].shape[1]
    ws = state.workspace
    n_clipped = kernels.svrg_epoch(
        ws.users, ws.items, rm.ratings, order, batch_size, n_steps, MU,
        state.user_bias, state.item_bias, state.user_factors, state.item_factors,
        snap.user_bias, snap.item_bias, snap.user_factors, snap.item_factors, resid,
        *g, lr, lam, clip, np.zeros(nu), np.zeros(ni), np.zeros((nu, k)), np.zeros((ni, k)),
        np.zeros(nu, dtype=np.int64), np.zeros(ni, dtype=np.int64),
        np.empty(batch_size, dtype=np.int64), np.empty(batch_size, dtype=np.int64))
    return [state.user_bias, state.item_bias, state.user_factors, state.item_factors], n_clipped


def test_full_gradient_matches_finite_differences(tiny):
    rm, params = tiny
    x0 = _flat(params)

    def f(x):
        s = _state(rm, _unflat(x, params))
        return objective(s, LAM, compute_residuals(s))

    eps = 1e-6
    fd = np.array([(f(x0 + eps * e) - f(x0 - eps * e)) / (2 * eps) for e in np.eye(len(x0))])
    s = _state(rm, params)
    g = _flat(full_gradient(s, LAM))
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_variance_reduced_gradient_at_snapshot_is_full_gradient(tiny):
    rm, params = tiny
    s = _state(rm, params)
    full = full_gradient(s, LAM)
    batch = np.array([0, 3, 4, 9])
    v = dense_vr_gradient(rm, params, params, full, batch)
    for a, b in zip(v, full, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-15)
    # and the kernel's first step from the snapshot moves every row by -lr * B * full
    order = np.random.default_rng(0).permutation(rm.nnz)
    lr, B = 0.03, 5
    after, _ = _run_kernel(rm, params, order, B, 1, lr)
    for a, p, g in zip(after, params, full, strict=True):
        np.testing.assert_allclose(a, p - lr * B * g, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch_size,n_steps", [(3, 5), (1, 12), (4, 9)])
def test_lazy_kernel_matches_dense_reference(tiny, batch_size, n_steps):
    rm, params = tiny
    rng = np.random.default_rng(batch_size)
    order = np.concatenate([rng.permutation(rm.nnz), rng.permutation(rm.nnz)])
    fast, _ = _run_kernel(rm, params, order, batch_size, n_steps, 0.05)
    ref = reference_inner_loop(rm, params, order, batch_size, n_steps, 0.05)
    for a, b in zip(fast, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)
    assert not np.allclose(fast[2], params[2])


def test_clipping_matches_reference_and_is_counted(tiny):
    rm, params = tiny
    order = np.random.default_rng(2).permutation(rm.nnz)
    fast, n_clipped = _run_kernel(rm, params, order, 3, 6, 0.3, clip=0.05)
    ref = reference_inner_loop(rm, params, order, 3, 6, 0.3, clip=0.05)
    for a, b in zip(fast, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)
    assert n_clipped > 0
    _, none_clipped = _run_kernel(rm, params, order, 3, 6, 0.3, clip=1e6)
    assert none_clipped == 0


def test_learning_rate_zero_changes_nothing(tiny):
    rm, params = tiny
    order = np.random.default_rng(0).permutation(rm.nnz)
    after, _ = _run_kernel(rm, params, order, 4, 6, 0.0)
    for a, b in zip(after, params, strict=True):
        np.testing.assert_array_equal(a, b)


def test_clip_norm_in_history(small_low_rank):
    rm, _ = small_low_rank
    kw = dict(n_factors=3, max_iter=3, batch_size=20, random_state=0, verbose=0)
    clipped = SVRG(clip_norm=1e-4, **kw).fit(rm)
    assert (clipped.history_["n_clipped"] > 0).all()
    assert "n_clipped" not in SVRG(**kw).fit(rm).history_


def test_float32_fit(small_low_rank):
    rm, _ = small_low_rank
    kw = dict(n_factors=3, max_iter=5, batch_size=16, learning_rate=0.02, random_state=0,
              verbose=0)
    m32 = SVRG(dtype="float32", **kw).fit(rm)
    m64 = SVRG(**kw).fit(rm)
    assert m32.item_factors_.dtype == np.float32
    np.testing.assert_allclose(m32.history_["objective"], m64.history_["objective"], rtol=1e-4)


def test_kernel_refuses_a_short_order(tiny):
    rm, params = tiny
    with pytest.raises(ValueError, match="n_steps \\* batch_size"):
        _run_kernel(rm, params, np.arange(rm.nnz), 4, rm.nnz, 0.1)


def test_same_seed_same_fit(small_low_rank):
    rm, _ = small_low_rank
    kw = dict(n_factors=3, max_iter=3, batch_size=16, verbose=0)
    a = SVRG(random_state=1, **kw).fit(rm)
    b = SVRG(random_state=1, **kw).fit(rm)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    assert not np.allclose(a.item_factors_, SVRG(random_state=2, **kw).fit(rm).item_factors_)


def test_recovers_planted_low_rank_matrix():
    rm, truth = make_low_rank(150, 120, 3, 0.35, noise=0.05, random_state=0)
    model = SVRG(n_factors=3, learning_rate=0.02, regularization=0.005, batch_size=20,
                 schedule="constant", max_iter=150, init_std=0.3, random_state=0,
                 verbose=0).fit(rm)
    users, items = np.divmod(np.arange(150 * 120), 120)
    known = np.isin(users, rm.user_ids) & np.isin(items, rm.item_ids)
    pred = model.predict(np.column_stack([users[known], items[known]]))
    err = rmse(truth.dense().ravel()[known], pred)
    assert err < 0.1, err
    assert model.history_["grad_norm"][-1] < 0.05 * model.history_["grad_norm"][0]


def test_inner_steps_beyond_one_pass(small_low_rank):
    rm, _ = small_low_rank
    model = SVRG(n_factors=3, batch_size=50, inner_steps=3 * rm.nnz // 50 + 1, max_iter=2,
                 random_state=0, verbose=0).fit(rm)
    assert model.n_iter_ == 2 and np.isfinite(model.user_factors_).all()


def test_divergence_stops_with_advice_and_finite_predictions(small_low_rank):
    rm, _ = small_low_rank
    model = SVRG(n_factors=3, learning_rate=5.0, schedule="constant", batch_size=10,
                 max_iter=20, random_state=0, verbose=0)
    with pytest.warns(ConvergenceWarning, match="smaller learning_rate"):
        model.fit(rm)
    assert model.stop_reason_.startswith("diverged")
    assert np.isfinite(model.predict(rm.pairs())).all()


@pytest.mark.parametrize("params,match", [
    ({"batch_size": 0}, "batch_size must be an integer >= 1; got 0"),
    ({"inner_steps": 2.5}, "inner_steps must be None or an integer >= 1; got 2.5"),
    ({"clip_norm": -1.0}, "clip_norm must be None or a real number > 0"),
    ({"schedule": "step"}, "schedule must be one of .*; got 'step'"),
])
def test_bad_parameters_are_named(small_low_rank, params, match):
    rm, _ = small_low_rank
    with pytest.raises(ValueError, match=match):
        SVRG(verbose=0, **params).fit(rm)
