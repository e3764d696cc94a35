"""SVD++: the user-grouped kernel against Koren's literal updates, those updates against the
gradient, the objective, the implicit term, and fits."""

import numpy as np
import pytest

from mflib import SGD, ConvergenceWarning, make_low_rank, make_split
from mflib.data.layout import training_layout
from mflib.kernels.svdpp import implicit_sums, svdpp_epoch
from mflib.solvers.svdpp import SVDpp, implicit_term, svdpp_objective

LR, LAM, LAM_B, LAM_Y = 0.05, 0.1, 0.03, 0.2


def _params(rng, n_users, n_items, k):
    return {"b": rng.normal(0, 0.1, n_users), "c": rng.normal(0, 0.1, n_items),
            "P": rng.normal(0, 0.3, (n_users, k)), "Q": rng.normal(0, 0.3, (n_items, k)),
            "Y": rng.normal(0, 0.3, (n_items, k))}


def rating_loss(th, u, i, r, N, mu):
    """Koren's per-rating loss, N = the items of u."""
    z = th["Y"][N].sum(axis=0) / np.sqrt(len(N))
    e = r - (mu + th["b"][u] + th["c"][i] + th["Q"][i] @ (th["P"][u] + z))
    return (0.5 * e**2 + LAM_B / 2 * (th["b"][u] ** 2 + th["c"][i] ** 2)
            + LAM / 2 * (th["P"][u] @ th["P"][u] + th["Q"][i] @ th["Q"][i])
            + LAM_Y / 2 * np.sum(th["Y"][N] ** 2))


def literal_step(th, u, i, r, N, mu, lr):
    """Koren's SGD step for one rating, every y_j of N(u) updated (O(|N(u)| k))."""
    norm = 1 / np.sqrt(len(N))
    z = th["Y"][N].sum(axis=0) * norm
    p, q = th["P"][u].copy(), th["Q"][i].copy()
    e = r - (mu + th["b"][u] + th["c"][i] + q @ (p + z))
    th["b"][u] += lr * (e - LAM_B * th["b"][u])
    th["c"][i] += lr * (e - LAM_B * th["c"][i])
    th["Q"][i] += lr * (e * (p + z) - LAM * q)
    th["P"][u] += lr * (e * q - LAM * p)
    th["Y"][N] += lr * (e * norm * q - LAM_Y * th["Y"][N])


def test_literal_step_is_minus_lr_times_the_gradient_of_the_rating_loss():
    rng = np.random.default_rng(0)
    th = _params(rng, 3, 6, 4)
    u, i, r, N, mu = 1, 2, 4.0, np.array([0, 2, 5]), 3.5
    stepped = {key: value.copy() for key, value in th.items()}
    lr = 1e-3
    literal_step(stepped, u, i, r, N, mu, lr)
    h = 1e-6
    for key, value in th.items():
        for idx in np.ndindex(value.shape):
            plus = {k: v.copy() for k, v in th.items()}
            minus = {k: v.copy() for k, v in th.items()}
            plus[key][idx] += h
            minus[key][idx] -= h
            diff = rating_loss(plus, u, i, r, N, mu) - rating_loss(minus, u, i, r, N, mu)
            moved = stepped[key][idx] - value[idx]
            assert moved == pytest.approx(-lr * diff / (2 * h), abs=1e-10), (key, idx)


def test_grouped_kernel_equals_the_literal_algorithm():
    rm, _ = make_low_rank(30, 25, 3, 0.4, noise=0.1, random_state=1)
    s = training_layout(rm)
    rng = np.random.default_rng(2)
    k = 4
    th = _params(rng, rm.n_users, rm.n_items, k)
    ref = {key: value.copy() for key, value in th.items()}
    user_order = rng.permutation(rm.n_users)
    visit = np.argsort(s.user_of_rating + rng.random(s.nnz))
    mu = float(rm.ratings.mean())
    for _ in range(2):  # two epochs
        svdpp_epoch(user_order, s.user_indptr, s.user_items, s.ratings_csr, visit, mu, th["b"],
                    th["c"], th["P"], th["Q"], th["Y"], LR, LAM, LAM_B, LAM_Y)
        for u in user_order:
            lo, hi = s.user_indptr[u], s.user_indptr[u + 1]
            N = s.user_items[lo:hi]
            for pos in visit[lo:hi]:
                literal_step(ref, u, s.user_items[pos], s.ratings_csr[pos], N, mu, LR)
    for key in th:
        np.testing.assert_allclose(th[key], ref[key], rtol=1e-11, atol=1e-13, err_msg=key)


def test_implicit_sums_and_objective_match_direct_computation():
    rm, _ = make_low_rank(20, 15, 2, 0.5, noise=0.1, random_state=3)
    m = SVDpp(n_factors=3, max_iter=2, regularization=0.07, bias_regularization=0.01,
              implicit_regularization=0.3, random_state=0).fit(rm)
    s = training_layout(rm)
    Y = m.implicit_item_factors_
    Z = np.zeros((rm.n_users, 3))
    for u in range(rm.n_users):
        N = rm.items[rm.users == u]
        Z[u] = Y[N].sum(axis=0) / np.sqrt(len(N))
    np.testing.assert_allclose(implicit_term(s, Y), Z, rtol=1e-12)
    out = np.empty_like(Z)
    implicit_sums(s.user_indptr, s.user_items, Y, out)
    np.testing.assert_allclose(out, Z, rtol=1e-12)
    np.testing.assert_allclose(m.user_factors_, m.explicit_user_factors_ + Z, rtol=1e-12)
    # objective: the mean of the per-rating losses
    th = {"b": m.user_bias_, "c": m.item_bias_, "P": m.explicit_user_factors_,
          "Q": m.item_factors_, "Y": Y}
    total = 0.0
    for u, i, r in zip(rm.users, rm.items, rm.ratings, strict=True):
        N = rm.items[rm.users == u]
        e = r - m.predict(rm.pairs()[(rm.users == u) & (rm.items == i)])[0]
        total += (0.5 * e**2 + 0.01 / 2 * (th["b"][u] ** 2 + th["c"][i] ** 2)
                  + 0.07 / 2 * (th["P"][u] @ th["P"][u] + th["Q"][i] @ th["Q"][i])
                  + 0.3 / 2 * np.sum(Y[N] ** 2))
    assert m.history_["objective"][-1] == pytest.approx(total / rm.nnz, rel=1e-10)
    state = type("S", (), {})()  # the objective reads only these fields
    state.layout, state.user_bias, state.item_bias = s, th["b"], th["c"]
    state.explicit, state.item_factors, state.implicit = th["P"], th["Q"], Y
    resid = s.ratings_csr - m.predict(np.column_stack([s.user_of_rating, s.user_items]))
    assert svdpp_objective(state, 0.07, 0.01, 0.3, resid) == pytest.approx(total / rm.nnz,
                                                                           rel=1e-10)


def test_small_steps_lower_the_objective(small_low_rank):
    train, _ = small_low_rank
    m = SVDpp(n_factors=3, learning_rate=0.005, max_iter=15, random_state=0).fit(train)
    assert np.all(np.diff(m.history_["objective"]) < 0)


def test_fits_a_planted_matrix_and_the_implicit_term_is_used():
    rm, truth = make_low_rank(200, 150, 3, 0.3, noise=0.1, random_state=5)
    split = make_split(rm, "random", test_size=0.2, random_state=0)
    m = SVDpp(n_factors=3, learning_rate=0.02, regularization=0.01, max_iter=60,
              random_state=0).fit(split.train)
    error = m.predict(split.test) - truth.predict(split.test.users, split.test.items)
    assert np.sqrt(np.mean(error**2)) < 0.15  # biases alone leave about 0.55
    assert np.abs(m.user_factors_ - m.explicit_user_factors_).max() > 0.01


def test_divergence_stops_with_the_last_finite_model(small_low_rank):
    train, _ = small_low_rank
    with pytest.warns(ConvergenceWarning, match="diverged: objective"):
        m = SVDpp(n_factors=3, learning_rate=50.0, max_iter=5, random_state=0).fit(train)
    assert m.stop_reason_.startswith("diverged") and m.n_iter_ < 5
    assert np.isfinite(m.predict(train)).all()
    assert len(m.history_) == m.n_iter_  # the diverged epoch is not recorded
    assert all(np.isfinite(record["objective"]) for record in m.history_)


def test_exponential_decay_must_be_a_fraction(small_low_rank):
    train, _ = small_low_rank
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\]"):
        SVDpp(schedule="exponential", decay=1.5, max_iter=1).fit(train)


@pytest.mark.realdata
def test_svdpp_beats_sgd_on_a_validation_part_of_u1(ml100k_u1):
    # same rank, rate, penalty and epochs: the implicit term is what differs
    split = make_split(ml100k_u1.train, "random", test_size=0.1, random_state=0)
    common = {"n_factors": 20, "learning_rate": 0.007, "regularization": 0.05,
              "max_iter": 20, "random_state": 0}
    plus = SVDpp(**common).fit(split.train, eval_set=split.test)
    plain = SGD(**common).fit(split.train, eval_set=split.test)
    assert plus.history_["val_rmse"][-1] < plain.history_["val_rmse"][-1] - 0.005
