"""The hybrid CF + content model and the time-aware (drift) biases: gradients against
finite differences, monotone block updates, the cold-start path, the drift clock."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mflib
from mflib.data import RatingMatrix, make_low_rank, make_split
from mflib.data.content import item_features, make_content_ratings
from mflib.metrics import rmse
from mflib.solvers.temporal import UserTimeline, solve_bias_and_drift


@pytest.fixture(scope="module")
def content_data():
    return make_content_ratings(random_state=0, drift=0.8)


def _random_state_of(model, train, seed=0):
    """A fitted-shape state with random values everywhere (for derivative checks)."""
    model._validate_params()
    model._remember_training_data(train)
    state = model._init_state(train)
    rng = np.random.default_rng(seed)
    for name in ("mean_user_bias", "user_drift", "item_bias", "user_factors",
                 "item_factors", "feature_weights"):
        value = getattr(state, name)
        if value is not None:
            setattr(state, name, rng.normal(0, 0.3, value.shape))
    state.user_bias = state.current_user_bias()
    return state


def test_hybrid_gradient_matches_finite_differences():
    small = make_content_ratings(15, 12, n_genres=4, rank=2, density=0.5, random_state=1)
    model = mflib.Hybrid(n_factors=2, regularization=0.7, bias_regularization=0.3,
                         feature_regularization=0.5, drift_regularization=0.9)
    state = _random_state_of(model, small)
    grad = model.gradient(state)
    assert set(grad) == {"mean_user_bias", "user_drift", "item_bias", "user_factors",
                         "item_factors", "feature_weights"}
    rng = np.random.default_rng(5)
    h = 1e-6
    for name, g in grad.items():
        base = getattr(state, name)
        for flat in rng.choice(base.size, min(6, base.size), replace=False):
            idx = np.unravel_index(flat, base.shape)
            values = []
            for sign in (1, -1):
                moved = base.copy()
                moved[idx] += sign * h
                setattr(state, name, moved)
                values.append(model.objective(state))
            setattr(state, name, base)
            numeric = (values[0] - values[1]) / (2 * h)
            assert numeric == pytest.approx(g[idx], rel=1e-5, abs=1e-5), (name, idx)


def test_hybrid_objective_never_rises_and_blocks_are_optimal(content_data):
    model = mflib.Hybrid(n_factors=3, regularization=2.0, feature_regularization=0.5,
                         drift_regularization=3.0, max_iter=12, tol=0, random_state=0)
    model.fit(content_data)
    obj = model.history_["objective"]
    assert np.all(np.diff(obj) <= 1e-10 * obj[0]), np.diff(obj)
    assert obj[-1] < 0.7 * obj[0]


def test_exact_blocks_zero_their_gradient(content_data):
    # after one step, the last exact block (items) is optimal given the others, up to the
    # feature block that ran after it; run the item block alone by zero feature CG steps
    model = mflib.Hybrid(n_factors=3, regularization=2.0, item_features="none",
                         drift_regularization=3.0, max_iter=1, tol=0, random_state=0)
    state = _random_state_of(model, content_data)
    model._step(state, content_data)
    grad = model.gradient(state)
    scale = np.abs(model.gradient(_random_state_of(model, content_data))["item_factors"]).max()
    assert np.abs(grad["item_factors"]).max() < 1e-8 * scale
    assert np.abs(grad["item_bias"]).max() < 1e-8 * scale


def test_feature_block_reaches_the_least_squares_solution():
    small = make_content_ratings(12, 10, n_genres=3, rank=2, density=0.6, random_state=2)
    model = mflib.Hybrid(n_factors=2, feature_regularization=0.4, feature_cg_steps=200)
    state = _random_state_of(model, small)
    s = model._layout
    P1 = np.column_stack([np.ones(s.n_users), state.user_factors])
    users, items = s.user_of_rating, s.user_items
    mu_part = (state.global_mean + state.mean_user_bias[users] + state.item_bias[items]
               + np.einsum("na,na->n", state.user_factors[users], state.item_factors[items]))
    if state.user_drift is not None:
        mu_part += state.user_drift[users] * state.drift_csr
    targets = s.ratings_csr - mu_part
    solved = model._feature_block(state, P1, targets)
    # dense reference: rows kron(f_i, [1, p_u]) of the design, ridge solution
    F = state.features.toarray()
    design = np.einsum("nd,nk->ndk", F[items], P1[users]).reshape(len(items), -1)
    d = design.shape[1]
    reference = np.linalg.solve(design.T @ design + 0.4 * np.eye(d), design.T @ targets)
    np.testing.assert_allclose(solved.ravel(), reference, atol=1e-8)


def test_cold_start_prediction_uses_the_features(content_data):
    split = make_split(content_data, "cold_start", test_size=0.2, random_state=3)
    F = item_features(split.train)
    cold = int(split.test.items[0])
    user = int(split.test.users[0])
    raw_pair = np.array([[split.test.user_ids[user], split.test.item_ids[cold]]])
    params = dict(n_factors=3, regularization=2.0, feature_regularization=0.5, random_state=0)
    base = mflib.Hybrid(item_features=F, **params).fit(split.train)
    p0, known = base.predict(raw_pair, return_known=True)
    assert known[0]  # predicted by the model from content, not by a fallback
    # change only the cold item's features: training is unchanged, its prediction moves
    changed = F.matrix.tolil()
    changed[cold] = 0
    changed[cold, 0] = 1.0
    F_changed = type(F)(changed.tocsr(), F.item_ids, F.feature_names, F.fitted, F.vectorizer)
    moved = mflib.Hybrid(item_features=F_changed, **params).fit(split.train)
    np.testing.assert_allclose(moved.user_factors_, base.user_factors_)
    assert abs(moved.predict(raw_pair)[0] - p0[0]) > 1e-3
    # all-zero features: the model's fallback for an unknown item, mu + b_u
    changed[cold] = 0
    zero = changed.tocsr()
    zero.eliminate_zeros()
    F_zero = type(F)(zero, F.item_ids, F.feature_names, F.fitted, F.vectorizer)
    empty = mflib.Hybrid(item_features=F_zero, **params).fit(split.train)
    pz, kz = empty.predict(raw_pair, return_known=True)
    assert not kz[0]
    np.testing.assert_allclose(pz[0], empty.global_mean_ + empty.user_bias_[user])


def test_cold_start_items_beat_the_bias_fallback(content_data):
    split = make_split(content_data, "cold_start", test_size=0.2, random_state=3)
    hybrid = mflib.Hybrid(n_factors=3, regularization=2.0, feature_regularization=0.5,
                          random_state=0).fit(split.train)
    fallback = mflib.BiasBaseline(3.0).fit(split.train)
    got = rmse(split.test.ratings, hybrid.predict(split.test))
    assert got < rmse(split.test.ratings, fallback.predict(split.test)) - 0.02


def test_predictions_for_unseen_raw_items_with_features():
    rm = make_content_ratings(random_state=4)
    keep = rm.items != 0  # item 0 never enters training, not even its id
    train = RatingMatrix.from_arrays(rm.user_ids[rm.users[keep]], rm.item_ids[rm.items[keep]],
                                     rm.ratings[keep], item_info=rm.item_info)
    assert 0 not in set(train.item_ids)
    model = mflib.Hybrid(n_factors=2, random_state=0).fit(train)
    pred, known = model.predict(np.array([[1, 0], [1, 10_000]]), return_known=True)
    assert known.tolist() == [True, False]
    rows = model.item_features_.rows([0])
    u = model.map_pairs(np.array([[1, 0]]))[0]
    np.testing.assert_allclose(pred[0], model._content_scores(u, rows))


@pytest.mark.realdata
def test_hybrid_beats_the_fallback_on_cold_items_of_ml_latest_small(ml_latest_small):
    split = make_split(ml_latest_small, "cold_start", test_size=0.1, val_size=0.1,
                       random_state=0)
    hybrid = mflib.Hybrid(regularization=20.0, feature_regularization=30.0,
                          drift_regularization=10.0, random_state=0)
    hybrid.fit(split.train)
    fallback = mflib.BiasBaseline(3.0).fit(split.train)
    got = rmse(split.test.ratings, hybrid.predict(split.test))
    assert got < rmse(split.test.ratings, fallback.predict(split.test)) - 0.02


# ---------------------------------------------------------------------- drift
def test_timeline_mid_ranks_on_a_hand_made_table():
    # user 0: times 10, 20, 20, 30; user 1: one rating at 5
    rm = RatingMatrix.from_arrays([0, 0, 0, 0, 1], [0, 1, 2, 3, 0], [1.0, 2, 3, 4, 5],
                                  [20, 10, 30, 20, 5])
    tl = UserTimeline.fit(rm)
    pos = tl.position(np.array([0, 0, 0, 0, 0, 0, 1]), np.array([10, 20, 30, 5, 99, 25, 5]))
    np.testing.assert_allclose(pos, [1 / 8, 4 / 8, 7 / 8, 0.0, 1.0, 6 / 8, 0.5])
    train_pos = tl.position(rm.users, rm.timestamps)
    assert np.allclose(np.bincount(rm.users, train_pos) / rm.user_counts(), 0.5)
    assert UserTimeline.fit(RatingMatrix.from_arrays([0], [0], [1.0])) is None


def test_bias_and_drift_solve_is_the_two_by_two_optimum():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 5, 80)
    res, d = rng.normal(size=80), rng.uniform(-0.5, 0.5, 80)
    b, a = solve_bias_and_drift(users, res, d, 6, 0.7, 1.3)
    for u in range(5):
        X = np.column_stack([np.ones((users == u).sum()), d[users == u]])
        ref = np.linalg.solve(X.T @ X + np.diag([0.7, 1.3]), X.T @ res[users == u])
        np.testing.assert_allclose([b[u], a[u]], ref)
    assert b[5] == 0 and a[5] == 0  # a user without ratings


def test_drift_baseline_recovers_a_planted_drift():
    rm, _ = make_low_rank(150, 80, 1, 0.5, noise=0.2, factor_scale=0.0, random_state=7)
    rng = np.random.default_rng(7)
    times = rng.permutation(rm.nnz) * 1000  # distinct times, a random order per user
    rm.timestamps = times.astype(np.int64)
    slopes = rng.normal(0, 1.0, rm.n_users)
    s = UserTimeline.fit(rm).position(rm.users, rm.timestamps)
    drifted = rm.with_ratings(rm.ratings + slopes[rm.users] * (s - 1))
    model = mflib.DriftBaseline(regularization=1.0, drift_regularization=1.0).fit(drifted)
    obj = model.history_["objective"]
    assert np.all(np.diff(obj) <= 1e-10 * obj[0])
    assert np.corrcoef(model.user_drift_, slopes)[0, 1] > 0.9
    plain = mflib.BiasBaseline(1.0).fit(drifted)
    assert model.history_["train_rmse"][-1] < plain.history_["train_rmse"][-1] - 0.05


def test_drift_moves_predictions_only_inside_the_history(content_data):
    split = make_split(content_data, "temporal", test_size=0.2, val_size=0.0)
    model = mflib.DriftBaseline().fit(split.train)
    now = model.predict(split.test.pairs())
    np.testing.assert_allclose(model.predict(split.test), now)  # test times are later
    past = model.predict(split.train)
    np.testing.assert_allclose(
        past - model.predict(split.train.pairs()),
        model.user_drift_[split.train.users]
        * model.timeline_.drift(split.train.users, split.train.timestamps))
    # the recorded training RMSE is that of the predictions at the ratings' own times
    assert model.history_["train_rmse"][-1] == pytest.approx(rmse(split.train.ratings, past))


def test_without_timestamps_there_is_no_drift():
    rm, _ = make_low_rank(30, 20, 2, 0.5, random_state=0)
    model = mflib.DriftBaseline().fit(rm)
    assert model.timeline_ is None and not model.user_drift_.any()
    hybrid = mflib.Hybrid(n_factors=2, drift_regularization=1.0, max_iter=2).fit(rm)
    assert not hybrid.user_drift_.any()


@pytest.mark.realdata
def test_drift_beats_biases_on_the_temporal_split(ml_latest_small):
    split = make_split(ml_latest_small, "temporal", test_size=0.15, val_size=0.15)
    drift = mflib.DriftBaseline(3.0, 10.0).fit(split.train)
    biases = mflib.BiasBaseline(3.0).fit(split.train)
    for part in (split.validation, split.test):
        assert rmse(part.ratings, drift.predict(part)) < rmse(part.ratings,
                                                              biases.predict(part)) - 0.01


def test_frame_of_known_flags_is_unchanged_for_unknown_users(content_data):
    model = mflib.Hybrid(n_factors=2, max_iter=2, random_state=0).fit(content_data)
    pred, known = model.predict(np.array([[10_000, 3]]), return_known=True)
    assert not known[0]
    item = model.map_pairs(np.array([[0, 3]]))[1][0]
    assert pred[0] == pytest.approx(model.fallback_.mean + model.fallback_.item_bias[item])
    assert isinstance(model.item_features_.examples([3]), pd.DataFrame)
