"""The array-module minibatch SGD epoch (the GPU path's logic, run with NumPy)."""

from __future__ import annotations

import numpy as np

from mflib.data import make_low_rank
from mflib.kernels import sgd as kernels
from mflib.kernels.sgd_xp import minibatch_epoch


def _setup(seed=0):
    rm, _ = make_low_rank(30, 25, 2, 0.5, random_state=seed)
    rng = np.random.default_rng(seed)
    params = (np.zeros(rm.n_users), np.zeros(rm.n_items), rng.normal(0, 0.1, (rm.n_users, 3)),
              rng.normal(0, 0.1, (rm.n_items, 3)))
    order = rng.permutation(rm.nnz)
    return rm, params, order


def test_batches_of_one_are_the_sequential_epoch():
    rm, (bu, bi, P, Q), order = _setup()
    ref = [a.copy() for a in (bu, bi, P, Q)]
    mu = rm.ratings.mean()
    minibatch_epoch(np, rm.users.astype(np.int64), rm.items.astype(np.int64), rm.ratings,
                    order, 1, mu, bu, bi, P, Q, 0.05, 0.02)
    kernels.sgd_epoch(rm.users[order].astype(np.int32), rm.items[order].astype(np.int32),
                      rm.ratings[order], mu, *ref, 0.05, 0.02)
    for got, want in zip((bu, bi, P, Q), ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_a_batch_sums_the_steps_taken_from_its_start():
    rm, (bu, bi, P, Q), order = _setup(1)
    mu, lr, lam, B = rm.ratings.mean(), 0.05, 0.02, 16
    ref = [a.copy() for a in (bu, bi, P, Q)]
    minibatch_epoch(np, rm.users.astype(np.int64), rm.items.astype(np.int64), rm.ratings,
                    order, B, mu, bu, bi, P, Q, lr, lam)
    rbu, rbi, rP, rQ = ref
    for s in range(0, rm.nnz, B):  # the reference: explicit per-rating steps, then sums
        start = [a.copy() for a in ref]
        for j in order[s:s + B]:
            u, i = rm.users[j], rm.items[j]
            e = rm.ratings[j] - (mu + start[0][u] + start[1][i] + start[2][u] @ start[3][i])
            rbu[u] += lr * (e - lam * start[0][u])
            rbi[i] += lr * (e - lam * start[1][i])
            rP[u] += lr * (e * start[3][i] - lam * start[2][u])
            rQ[i] += lr * (e * start[2][u] - lam * start[3][i])
    for got, want in zip((bu, bi, P, Q), ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_the_gpu_path_runs_the_minibatch_epoch_and_records_its_loss():
    """SGD(device="gpu") with NumPy as the array module: each epoch is the minibatch
    epoch of the kernel above (from the same seeded order), and the recorded objective and
    training RMSE are those of the model it returns."""
    import mflib
    from mflib.backend import emulated_gpu

    rm, _ = make_low_rank(40, 30, 2, 0.5, random_state=3)
    with emulated_gpu():
        model = mflib.SGD(n_factors=3, max_iter=4, batch_size=7, learning_rate=0.005,
                          regularization=0.02, random_state=0, device="gpu").fit(rm)
    assert model.parallel_mode_ == "gpu"
    rng = np.random.default_rng(0)
    P = rng.normal(0, 0.1, (rm.n_users, 3))
    Q = rng.normal(0, 0.1, (rm.n_items, 3))
    bu, bi, mu = np.zeros(rm.n_users), np.zeros(rm.n_items), rm.ratings.mean()
    for _ in range(4):
        minibatch_epoch(np, rm.users.astype(np.int64), rm.items.astype(np.int64), rm.ratings,
                        rng.permutation(rm.nnz), 7, mu, bu, bi, P, Q, 0.005, 0.02)
    np.testing.assert_allclose(model.user_factors_, P, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(model.item_bias_, bi, rtol=1e-12, atol=1e-14)
    pred = model.predict(rm)
    np.testing.assert_allclose(model.history_["train_rmse"][-1],
                               np.sqrt(np.mean((rm.ratings - pred) ** 2)), rtol=1e-10)
