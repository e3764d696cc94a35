"""``Blend``: weights recover a planted mixture, members are clones, eval_set and holdout
modes, refit or reuse, any mflib estimator as a member."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

import mflib
from mflib.data import make_low_rank, make_split
from mflib.data.content import make_content_ratings
from mflib.solvers.blend import blend_weights
from mflib.validation import DataError, ParameterError


@pytest.fixture(scope="module")
def data():
    rm, _ = make_low_rank(80, 60, 3, 0.4, noise=0.2, random_state=0)
    return make_split(rm, "random", test_size=0.2, val_size=0.2, random_state=0)


def _members():
    return [("biases", mflib.BiasBaseline(regularization=3.0)),
            ("als", mflib.ALS(n_factors=3, regularization=1.0, max_iter=8, random_state=0))]


def test_weights_recover_a_planted_mixture():
    rng = np.random.default_rng(0)
    truth = rng.normal(3.5, 1.0, 4000)
    # three noisy predictors of the truth, mixed 0.5 / 0.3 / 0.2 plus an intercept
    A = truth[:, None] + rng.normal(0, [0.5, 0.8, 1.0], (4000, 3))
    w_true, b_true = np.array([0.5, 0.3, 0.2]), 0.25
    y = b_true + A @ w_true + rng.normal(0, 0.05, 4000)
    w, b = blend_weights(A, y)
    np.testing.assert_allclose(w, w_true, atol=0.01)
    assert b == pytest.approx(b_true, abs=0.05)
    w_ridge, b_ridge = blend_weights(A, y, method="ridge", alpha=1e-6)
    np.testing.assert_allclose(w_ridge, w_true, atol=0.01)
    w0, b0 = blend_weights(A, A @ w_true, fit_intercept=False)
    np.testing.assert_allclose(w0, w_true, atol=1e-10)
    assert b0 == 0.0


def test_nnls_weights_are_non_negative_where_ridge_ones_are_not():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=3000)
    A = np.column_stack([truth + rng.normal(0, 0.3, 3000), -truth + rng.normal(0, 0.3, 3000)])
    y = truth - 0.5 * A[:, 1] + rng.normal(0, 0.05, 3000)
    w_nnls, _ = blend_weights(A, y)
    w_ridge, _ = blend_weights(A, y, method="ridge", alpha=1e-3)
    assert (w_nnls >= 0).all() and (w_ridge < 0).any()
    with pytest.raises(DataError, match="not all finite"):
        blend_weights(np.array([[1.0], [np.nan]]), np.array([1.0, 2.0]))


def test_blend_fits_weights_on_the_eval_set(data):
    configured = _members()
    blend = mflib.Blend(configured).fit(data.train, eval_set=data.validation)
    assert blend.blend_source_ == "eval_set"
    assert list(blend.member_names_) == ["biases", "als"] and (blend.weights_ >= 0).all()
    assert not hasattr(configured[1][1], "n_iter_")  # the configured members stay unfitted
    fitted = dict(blend.estimators_)
    assert fitted["als"].user_counts_.sum() == data.train.nnz
    expected = blend.intercept_ + sum(w * fitted[n].predict(data.test)
                                      for n, w in blend.named_weights_.items())
    np.testing.assert_allclose(blend.predict(data.test), expected)
    # the weights are those of the members' validation predictions
    cols = np.column_stack([fitted[n].predict(data.validation) for n in blend.member_names_])
    w, b = blend_weights(cols, data.validation.ratings)
    np.testing.assert_allclose(blend.weights_, w)
    # a blend is at least as good on validation as its best member (least squares)
    best = min(np.mean((fitted[n].predict(data.validation) - data.validation.ratings) ** 2)
               for n in fitted)
    assert np.mean((blend.predict(data.validation) - data.validation.ratings) ** 2) <= best


def test_blend_holdout_refits_or_reuses(data):
    refit = mflib.Blend(_members(), holdout=0.25, random_state=0).fit(data.train)
    assert refit.blend_source_ == "holdout"
    assert dict(refit.estimators_)["als"].user_counts_.sum() == data.train.nnz
    reuse = mflib.Blend(_members(), holdout=0.25, refit=False, random_state=0).fit(data.train)
    assert dict(reuse.estimators_)["als"].user_counts_.sum() < data.train.nnz
    np.testing.assert_allclose(refit.weights_, reuse.weights_)


def test_blend_takes_any_mflib_estimator():
    rm = make_content_ratings(random_state=2)
    split = make_split(rm, "temporal", test_size=0.2, val_size=0.2)
    inner = mflib.Blend([("biases", mflib.BiasBaseline())], random_state=0)
    members = [
        ("drift", mflib.DriftBaseline()),
        ("content", mflib.ContentBased(n_components=None)),
        ("hybrid", mflib.Hybrid(n_factors=2, max_iter=3, random_state=0)),
        ("sgd", mflib.SGD(n_factors=2, max_iter=3, random_state=0)),
        ("softimpute", mflib.SoftImpute(regularization=5.0, max_iter=3)),
        ("blend", inner),
    ]
    blend = mflib.Blend(members).fit(split.train, eval_set=split.validation)
    pred, known = blend.predict(split.test, return_known=True)
    assert np.isfinite(pred).all() and known.all()  # content members know the cold items
    assert len(blend.weights_) == len(members)
    scores = blend.score_items(np.array([0, 1]))
    assert scores.shape == (2, rm.n_items) and np.isfinite(scores).all()
    assert clone(blend).get_params()["estimators"][0][0] == "drift"


def test_pairs_no_member_knows_get_the_blend_fallback(data):
    blend = mflib.Blend(_members()).fit(data.train, eval_set=data.validation)
    pred, known = blend.predict(np.array([[10_000, 10_001]]), return_known=True)
    assert not known[0] and pred[0] == pytest.approx(blend.fallback_.mean)


def test_bad_members_are_refused(data):
    for bad in ([("a", 3)], [("a", mflib.ALS()), ("a", mflib.ALS())], []):
        with pytest.raises(ParameterError, match="Blend: estimators must be"):
            mflib.Blend(bad).fit(data.train)


def test_members_as_plain_data_and_model_files(data, tmp_path):
    spec = [("biases", "BiasBaseline", {"regularization": 3.0}),
            ("als", "ALS", {"n_factors": 3, "regularization": 1.0, "max_iter": 8,
                            "random_state": 0})]
    by_name = mflib.Blend(spec).fit(data.train, eval_set=data.validation)
    by_object = mflib.Blend(_members()).fit(data.train, eval_set=data.validation)
    np.testing.assert_array_equal(by_name.predict(data.test), by_object.predict(data.test))
    loaded = mflib.load(by_name.save(tmp_path / "blend.npz"))
    assert loaded.get_params()["estimators"] == spec
    np.testing.assert_array_equal(loaded.predict(data.test), by_name.predict(data.test))
    assert [type(m).__name__ for _, m in loaded.estimators_] == ["BiasBaseline", "ALS"]
    with pytest.raises(ParameterError, match="estimators must be"):
        mflib.Blend([("x", "NoSuchModel", {})]).fit(data.train)
