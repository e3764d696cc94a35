"""SGD (Funk-SVD): gradient, reference epoch, schedules, divergence, recovery, real data."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest

from mflib import ConvergenceWarning, make_low_rank
from mflib.kernels import sgd as kernels
from mflib.metrics import rmse
from mflib.solvers.sgd import SGD, StochasticState, _Workspace, compute_residuals, objective

LAM = 0.1


def rating_loss(r, mu, b_u, c_i, p_u, q_i, lam=LAM):
    """l_ui of the module docstring, written out independently of the kernels."""
    e = r - (mu + b_u + c_i + p_u @ q_i)
    return 0.5 * e**2 + 0.5 * lam * (b_u**2 + c_i**2 + p_u @ p_u + q_i @ q_i)


def reference_epoch(users, items, ratings, order, mu, bu, bi, P, Q, lr, lam):
    """Plain NumPy SGD, one rating at a time, both rows stepping from their old values."""
    for j in order:
        u, i = users[j], items[j]
        e = ratings[j] - (mu + bu[u] + bi[i] + P[u] @ Q[i])
        g_bu, g_bi = -e + lam * bu[u], -e + lam * bi[i]
        g_p, g_q = -e * Q[i] + lam * P[u], -e * P[u] + lam * Q[i]
        bu[u] -= lr * g_bu
        bi[i] -= lr * g_bi
        P[u] -= lr * g_p
        Q[i] -= lr * g_q


@pytest.fixture
def tiny():
    rng = np.random.default_rng(3)
    rm, _ = make_low_rank(7, 6, 2, 0.6, noise=0.3, random_state=3)
    params = (rng.normal(0, 0.3, rm.n_users), rng.normal(0, 0.3, rm.n_items),
              rng.normal(0, 0.5, (rm.n_users, 4)), rng.normal(0, 0.5, (rm.n_items, 4)))
    return rm, rm.users.astype(np.int64), rm.items.astype(np.int64), params


def test_rating_step_is_minus_learning_rate_times_finite_difference_gradient(tiny):
    rm, users, items, (bu, bi, P, Q) = tiny
    mu, lr, eps = 3.0, 0.5, 1e-6
    for j in (0, 5, rm.nnz - 1):
        u, i, r = users[j], items[j], rm.ratings[j]
        theta = np.concatenate([[bu[u], bi[i]], P[u], Q[i]])
        k = P.shape[1]

        def loss(t, r=r, k=k):
            return rating_loss(r, mu, t[0], t[1], t[2 : 2 + k], t[2 + k :])

        fd = np.array([(loss(theta + eps * e) - loss(theta - eps * e)) / (2 * eps)
                       for e in np.eye(len(theta))])
        b_u, b_i, P2, Q2 = bu.copy(), bi.copy(), P.copy(), Q.copy()
        kernels.sgd_epoch(users[[j]], items[[j]], rm.ratings[[j]], mu, b_u, b_i, P2, Q2, lr, LAM)
        after = np.concatenate([[b_u[u], b_i[i]], P2[u], Q2[i]])
        np.testing.assert_allclose((theta - after) / lr, fd, rtol=1e-6, atol=1e-8)
        # nothing else moved
        others = np.arange(rm.n_users) != u
        np.testing.assert_array_equal(P2[others], P[others])


def test_learning_rate_zero_changes_nothing(tiny):
    rm, users, items, (bu, bi, P, Q) = tiny
    before = [a.copy() for a in (bu, bi, P, Q)]
    order = np.random.default_rng(0).permutation(rm.nnz)
    kernels.sgd_epoch(users[order], items[order], rm.ratings[order], 3.0, bu, bi, P, Q, 0.0,
                      LAM)
    for a, b in zip(before, (bu, bi, P, Q), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kernel", ["serial", "hogwild_one_chunk"])
def test_kernel_matches_numpy_reference_epoch(tiny, kernel):
    rm, users, items, params = tiny
    fast = [a.copy() for a in params]
    ref = [a.copy() for a in params]
    rng = np.random.default_rng(1)
    for _ in range(3):
        order = rng.permutation(rm.nnz)
        visits = (users[order], items[order], rm.ratings[order])
        if kernel == "serial":
            kernels.sgd_epoch(*visits, 3.0, *fast, 0.05, LAM)
        else:  # one chunk: the parallel kernel runs the same visits in the same order
            kernels.sgd_epoch_hogwild(*visits, 3.0, *fast, 0.05, LAM, 1)
        reference_epoch(users, items, rm.ratings, order, 3.0, *ref, 0.05, LAM)
    for a, b in zip(fast, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert not np.allclose(fast[2], params[2])  # the epoch did something


def test_objective_matches_direct_sum(tiny):
    rm, users, items, (bu, bi, P, Q) = tiny
    state = StochasticState(3.0, bu, bi, P, Q, workspace=_Workspace.build(rm))
    direct = np.mean([rating_loss(r, 3.0, bu[u], bi[i], P[u], Q[i])
                      for u, i, r in zip(users, items, rm.ratings, strict=True)])
    assert objective(state, LAM, compute_residuals(state)) == pytest.approx(direct, rel=1e-12)


def test_same_seed_same_fit_and_other_seed_differs(small_low_rank):
    rm, _ = small_low_rank
    kw = dict(n_factors=4, max_iter=4, verbose=0)
    a = SGD(random_state=5, **kw).fit(rm)
    b = SGD(random_state=5, **kw).fit(rm)
    c = SGD(random_state=6, **kw).fit(rm)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.history_["objective"], b.history_["objective"])
    assert not np.allclose(a.user_factors_, c.user_factors_)


def test_recovers_planted_low_rank_matrix():
    rm, truth = make_low_rank(150, 120, 3, 0.35, noise=0.05, random_state=0)
    model = SGD(n_factors=3, learning_rate=0.02, regularization=0.005, max_iter=150,
                init_std=0.3, random_state=0, verbose=0).fit(rm)
    users, items = np.divmod(np.arange(150 * 120), 120)
    known = (np.isin(users, rm.user_ids)) & (np.isin(items, rm.item_ids))
    pred = model.predict(np.column_stack([users[known], items[known]]))
    err = rmse(truth.dense().ravel()[known], pred)
    assert err < 0.1, err  # on all cells, most of them never observed
    assert model.history_["objective"][-1] < model.history_["objective"][0]


@pytest.mark.parametrize("schedule,decay,expected", [
    ("constant", None, [0.01, 0.01, 0.01]),
    ("exponential", None, [0.01, 0.009, 0.0081]),
    ("inverse", 0.5, [0.01, 0.01 / 1.5, 0.01 / 2.0]),
])
def test_schedules(small_low_rank, schedule, decay, expected):
    rm, _ = small_low_rank
    model = SGD(n_factors=2, learning_rate=0.01, schedule=schedule, decay=decay, max_iter=3,
                random_state=0, verbose=0).fit(rm)
    np.testing.assert_allclose(model.history_["step_size"], expected, rtol=1e-12)


def test_float32_runs_in_float32_and_agrees_with_float64(small_low_rank):
    rm, _ = small_low_rank
    kw = dict(n_factors=3, max_iter=10, learning_rate=0.02, random_state=0, verbose=0)
    m32 = SGD(dtype="float32", **kw).fit(rm)
    m64 = SGD(**kw).fit(rm)
    assert m32.user_factors_.dtype == np.float32 and m32.item_bias_.dtype == np.float32
    np.testing.assert_allclose(m32.history_["train_rmse"], m64.history_["train_rmse"],
                               rtol=1e-4)


def test_hogwild_fits_as_well_as_serial():
    # Hogwild's races matter little when two threads rarely touch the same row, so the
    # matrix is not tiny (on 60 x 50 the final RMSE varied by 10% between runs)
    rm, _ = make_low_rank(300, 200, 3, 0.2, noise=0.05, random_state=0)
    kw = dict(n_factors=3, max_iter=30, learning_rate=0.02, regularization=0.02,
              random_state=0, verbose=0)
    serial = SGD(**kw).fit(rm).history_["train_rmse"]
    assert serial[-1] < 0.15 * serial[0]
    for mode in ("hogwild", "blocked"):
        parallel = SGD(parallel=mode, **kw).fit(rm).history_["train_rmse"][-1]
        assert parallel == pytest.approx(serial[-1], rel=0.1), mode


def test_blocked_kernel_matches_sequential_reference(tiny):
    """Strata run blocks in parallel; as the blocks of a stratum share no row, that must
    equal running them one after another (here: in the NumPy reference)."""
    rm, users, items, params = tiny
    g = 2
    rng = np.random.default_rng(5)
    block_of = (rng.permutation(rm.n_users) % g)[users] * g + (rng.permutation(rm.n_items)
                                                               % g)[items]
    start = np.zeros(g * g + 1, dtype=np.int64)
    np.cumsum(np.bincount(block_of, minlength=g * g), out=start[1:])
    grouped = np.argsort(block_of, kind="stable")
    schedule = np.array([[0, 3], [1, 2]])  # strata {(0,0), (1,1)} and {(0,1), (1,0)}
    # each block's positions in a random order of their own
    order = np.concatenate([start[b] + rng.permutation(start[b + 1] - start[b])
                            for b in range(g * g)])
    visits = np.concatenate([grouped[order[start[b] : start[b + 1]]]
                             for b in schedule.ravel()])
    ref = [a.copy() for a in params]
    reference_epoch(users, items, rm.ratings, visits, 3.0, *ref, 0.05, LAM)
    from mflib import execution

    for threads in ("serial", "parallel"):
        fast = [a.copy() for a in params]
        with execution.every_path_parallel() if threads == "parallel" else nullcontext():
            kernels.sgd_epoch_blocked(users[grouped], items[grouped], rm.ratings[grouped],
                                      order, start, schedule, 3.0, *fast, 0.05, LAM)
        for a, b in zip(fast, ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_shuffle_within_blocks_permutes_each_block_uniformly():
    start = np.array([0, 3, 3, 7], dtype=np.int64)
    order = np.empty(7, dtype=np.int64)
    rng = np.random.default_rng(0)
    seen = {}
    for _ in range(3000):
        kernels.shuffle_within_blocks(order, start, rng.random(7))
        assert sorted(order[:3]) == [0, 1, 2] and sorted(order[3:]) == [3, 4, 5, 6]
        key = tuple(order[:3])
        seen[key] = seen.get(key, 0) + 1
    # the 6 orders of the first block, each about 1/6 of the time (5 sigma: +-0.034)
    assert len(seen) == 6
    assert all(abs(count / 3000 - 1 / 6) < 0.035 for count in seen.values())
    kernels.shuffle_within_blocks(order, start, np.full(7, np.nextafter(1.0, 0.0)))
    assert sorted(order) == list(range(7))  # a uniform next to 1 stays in range


def test_blocked_is_deterministic_whatever_the_threads(small_low_rank):
    import numba

    rm, _ = small_low_rank
    kw = dict(n_factors=3, max_iter=4, parallel="blocked", n_blocks=3, random_state=2,
              verbose=0)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = SGD(**kw).fit(rm)
    finally:
        numba.set_num_threads(before)
    many = SGD(**kw).fit(rm)
    np.testing.assert_array_equal(one.user_factors_, many.user_factors_)
    np.testing.assert_array_equal(one.history_["objective"], many.history_["objective"])


def test_divergence_stops_with_advice_and_finite_predictions(small_low_rank):
    rm, _ = small_low_rank
    model = SGD(n_factors=3, learning_rate=3.0, max_iter=20, random_state=0, verbose=0)
    with pytest.warns(ConvergenceWarning, match="smaller learning_rate"):
        model.fit(rm)
    assert model.stop_reason_.startswith("diverged")
    assert model.n_iter_ < 20 and len(model.history_) == model.n_iter_
    assert np.isfinite(model.predict(rm.pairs())).all()


@pytest.mark.parametrize("params,match", [
    ({"schedule": "cosine"}, "schedule must be one of 'constant', 'inverse', 'exponential'; "
                             "got 'cosine'"),
    ({"learning_rate": 0}, "SGD: learning_rate must be a real number > 0; got 0"),
    ({"regularization": -1.0}, "regularization must be a real number >= 0"),
    ({"n_factors": 0}, "n_factors must be an integer >= 1"),
    ({"dtype": "int32"}, "dtype must be one of 'float64', 'float32'"),
    ({"parallel": "threads"}, "parallel must be one of 'auto', None, False, 'blocked', "
                              "'hogwild'; got 'threads'"),
    ({"parallel": "blocked", "shuffle": False}, "use shuffle=True"),
    ({"schedule": "exponential", "decay": 1.5}, r"decay must be in \(0, 1\]"),
])
def test_bad_parameters_are_named(small_low_rank, params, match):
    rm, _ = small_low_rank
    with pytest.raises(ValueError, match=match):
        SGD(verbose=0, **params).fit(rm)


def test_ml100k_u1_accuracy(ml100k_u1):
    """Surprise's SVD with these settings scores about 0.95 on u1.test."""
    train, test = ml100k_u1.train, ml100k_u1.test
    model = SGD(random_state=0, verbose=0).fit(train)
    score = rmse(test.ratings, model.predict(test, clip=True))
    assert 0.90 < score < 0.96, score
    assert np.median(model.history_["epoch_seconds"]) < 0.5  # loose: a shared CI machine


def test_estimator_equals_reference_epochs_in_data_order(tiny):
    """End to end: init N(0, init_std^2) factors (users then items), zero biases, then
    epochs in data order with the exponential schedule, as the NumPy reference does."""
    rm, users, items, _ = tiny
    model = SGD(n_factors=3, learning_rate=0.05, regularization=LAM, schedule="exponential",
                max_iter=3, shuffle=False, init_std=0.2, random_state=7, verbose=0).fit(rm)
    rng = np.random.default_rng(7)
    P = rng.normal(0, 0.2, (rm.n_users, 3))
    Q = rng.normal(0, 0.2, (rm.n_items, 3))
    bu, bi = np.zeros(rm.n_users), np.zeros(rm.n_items)
    mu = rm.ratings.mean()
    for epoch in range(3):
        reference_epoch(users, items, rm.ratings, np.arange(rm.nnz), mu, bu, bi, P, Q,
                        0.05 * 0.9**epoch, LAM)
    np.testing.assert_allclose(model.user_factors_, P, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.item_bias_, bi, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.predict(rm.pairs()),
                               mu + bu[users] + bi[items] + np.sum(P[users] * Q[items], axis=1),
                               rtol=1e-12)


def test_tolerance_and_callbacks_stop_the_fit(small_low_rank):
    from mflib import EarlyStopping, make_split

    rm, _ = small_low_rank
    converged = SGD(n_factors=3, learning_rate=0.01, max_iter=500, tol=1e-4, random_state=0,
                    verbose=0).fit(rm)
    assert converged.stop_reason_ == "converged" and converged.n_iter_ < 500
    split = make_split(rm, "random", test_size=0.2, random_state=0)
    early = SGD(n_factors=10, learning_rate=0.05, regularization=0.0, max_iter=400,
                random_state=0, verbose=0, callbacks=[EarlyStopping(patience=3)])
    early.fit(split.train, eval_set=split.test)
    assert early.stop_reason_.startswith("early_stopping") and early.n_iter_ < 400
    assert len(early.history_["val_rmse"]) == early.n_iter_


def test_training_sse_equals_direct_sum(tiny):
    rm, users, items, (bu, bi, P, Q) = tiny
    lay = _Workspace.build(rm).layout
    direct = sum((r - (3.0 + bu[u] + bi[i] + P[u] @ Q[i])) ** 2
                 for u, i, r in zip(users, items, rm.ratings, strict=True))
    for threads in ("serial", "parallel"):
        from mflib import execution

        below = dict(execution.SERIAL_BELOW)
        try:
            execution.SERIAL_BELOW["residuals"] = 0 if threads == "parallel" else 1 << 60
            sse = kernels.training_sse(lay.user_indptr, lay.user_items, lay.ratings_csr, 3.0,
                                       bu, bi, P, Q)
        finally:
            execution.SERIAL_BELOW.update(below)
        assert sse == pytest.approx(direct, rel=1e-12), threads


@pytest.mark.parametrize("params", [{}, {"dtype": "float32"}, {"parallel": "blocked"},
                                    {"record_grad_norm": True}])
def test_recorded_objective_and_rmse_equal_a_direct_computation(small_low_rank, params):
    """Every epoch's objective and train_rmse describe the model after that epoch: a fit
    of n epochs (same seed, so the same epochs) gives the model to compare with."""
    rm, _ = small_low_rank
    kw = dict(n_factors=3, learning_rate=0.02, regularization=LAM, random_state=4, verbose=0,
              **params)
    history = SGD(max_iter=3, **kw).fit(rm).history_
    users, items = rm.users, rm.items
    for n in (1, 2, 3):
        m = SGD(max_iter=n, **kw).fit(rm)
        P, Q = m.user_factors_.astype(float), m.item_factors_.astype(float)
        bu, bi = m.user_bias_.astype(float), m.item_bias_.astype(float)
        direct = np.mean([rating_loss(r, m.global_mean_, bu[u], bi[i], P[u], Q[i])
                          for u, i, r in zip(users, items, rm.ratings, strict=True)])
        rtol = 1e-5 if params.get("dtype") == "float32" else 1e-10
        assert history["objective"][n - 1] == pytest.approx(direct, rel=rtol)
        assert history["train_rmse"][n - 1] == pytest.approx(
            rmse(rm.ratings, m.predict(rm)), rel=rtol)
    assert ("grad_norm" in history) == bool(params.get("record_grad_norm"))


def test_grad_norm_when_asked_is_the_norm_of_the_full_gradient(small_low_rank):
    from mflib.solvers.sgd import full_gradient

    rm, _ = small_low_rank
    m = SGD(n_factors=3, max_iter=2, regularization=LAM, record_grad_norm=True,
            random_state=1, verbose=0).fit(rm)
    state = StochasticState(m.global_mean_, m.user_bias_, m.item_bias_, m.user_factors_,
                            m.item_factors_, workspace=_Workspace.build(rm))
    norm = np.sqrt(sum(np.sum(g ** 2) for g in full_gradient(state, LAM)))
    assert m.history_["grad_norm"][-1] == pytest.approx(norm, rel=1e-10)


def test_auto_mode_is_blocked_on_threads_only_above_the_measured_size(small_low_rank,
                                                                      monkeypatch):
    from mflib import execution

    rm, _ = small_low_rank
    calls = []
    for name in ("_sgd_epoch_blocked_serial", "_sgd_epoch_blocked_parallel"):
        kernel = getattr(kernels, name)
        monkeypatch.setattr(kernels, name,
                            lambda *a, _k=kernel, _n=name: (calls.append(_n), _k(*a))[1])
    kw = dict(max_iter=1, n_factors=2, random_state=0, verbose=0)
    small = SGD(n_jobs=2, **kw).fit(rm)
    assert small.parallel_mode_ == "blocked" and calls[-1] == "_sgd_epoch_blocked_serial"
    monkeypatch.setitem(execution.SERIAL_BELOW, "sgd_blocked", rm.nnz)
    large = SGD(n_jobs=2, **kw).fit(rm)
    threads = "parallel" if execution.max_threads() > 1 else "serial"
    assert calls[-1] == f"_sgd_epoch_blocked_{threads}"
    np.testing.assert_array_equal(small.user_factors_, large.user_factors_)
    assert SGD(shuffle=False, **kw).fit(rm).parallel_mode_ == "serial"
    assert SGD(parallel=None, **kw).fit(rm).parallel_mode_ == "serial"


def test_float32_epoch_matches_reference_in_float32(tiny):
    """The float32 kernel steps rows with its coefficients rounded to float32; a NumPy
    replay doing the same agrees to float32 precision."""
    rm, users, items, params = tiny
    fast = [a.astype(np.float32) for a in params]
    ref = [a.astype(np.float64) for a in fast]
    order = np.random.default_rng(2).permutation(rm.nnz)
    kernels.sgd_epoch(users[order].astype(np.int32), items[order].astype(np.int32),
                      rm.ratings[order], 3.0, *fast, 0.05, LAM)
    reference_epoch(users, items, rm.ratings, order, 3.0, *ref, 0.05, LAM)
    for a, b in zip(fast, ref, strict=True):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_group_ratings_by_block_is_a_stable_counting_sort():
    rng = np.random.default_rng(1)
    users = rng.integers(0, 9, 60).astype(np.int32)
    items = rng.integers(0, 7, 60).astype(np.int32)
    ratings = rng.normal(size=60)
    user_group, item_group = rng.permutation(9) % 3, rng.permutation(7) % 3
    start, u, i, r = kernels.group_ratings_by_block(users, items, ratings, user_group,
                                                    item_group, 3)
    block = user_group[users] * 3 + item_group[items]
    order = np.argsort(block, kind="stable")
    np.testing.assert_array_equal(u, users[order])
    np.testing.assert_array_equal(i, items[order])
    np.testing.assert_array_equal(r, ratings[order])
    np.testing.assert_array_equal(start, np.r_[0, np.cumsum(np.bincount(block, minlength=9))])
