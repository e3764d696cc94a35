"""The estimator contract, run against every estimator exported by mflib.

An estimator joins by being listed in ``mflib.__all__``; its ``_contract_params``
keep these checks fast.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold

import mflib
from mflib.data import make_low_rank, make_split
from mflib.fitting import History
from mflib.registry import estimators
from mflib.validation import DataError, IdTypeError, ParameterError

ESTIMATORS = sorted(estimators().items())


def _make(cls, **extra):
    params = dict(cls._contract_params)
    params.update(extra)
    names = cls().get_params()
    if "random_state" in names:
        params.setdefault("random_state", 0)
    if "verbose" in names:
        params["verbose"] = 0
    return cls(**params)


@pytest.fixture(scope="module")
def data():
    rm, _ = make_low_rank(40, 30, 2, 0.5, noise=0.1, random_state=1)
    X = rm.pairs()
    return rm, X, rm.ratings


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_init_stores_params_and_clone(name, cls):
    est = _make(cls)
    params = est.get_params()
    for key, value in params.items():
        assert getattr(est, key) is value
    twin = clone(est)
    assert twin.get_params().keys() == params.keys()
    assert not any(k.endswith("_") for k in vars(est)), "fitted attributes set in __init__"


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_fit_returns_self_and_sets_attributes(name, cls, data):
    rm, X, y = data
    est = _make(cls)
    assert est.fit(X, y) is est
    for attr in ("history_", "n_iter_", "stop_reason_", "global_mean_", "user_ids_", "item_ids_"):
        assert hasattr(est, attr), attr
    assert len(est.history_) >= est.n_iter_ >= 1 or est.n_iter_ == len(est.history_)
    assert isinstance(est.stop_reason_, str) and est.stop_reason_
    for attr in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        value = getattr(est, attr, None)
        assert value is None or type(value) is np.ndarray, f"{attr} must be NumPy"
    pred = est.predict(X)
    assert pred.shape == (len(X),) and np.isfinite(pred).all()
    frame = est.history_.to_frame()
    assert frame.index.name == "iteration" and len(frame) == len(est.history_)
    provenance = est.provenance_
    assert provenance["data"] is None and provenance["ratings"] == len(y)  # fitted on arrays
    assert len(provenance["training_sha256"]) == 64 and provenance["mflib_version"]


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_fit_on_rating_matrix_equals_fit_on_arrays(name, cls, data):
    rm, X, y = data
    a = _make(cls).fit(rm).predict(X)
    b = _make(cls).fit(X, y).predict(X)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_same_seed_same_result(name, cls, data):
    rm, X, y = data
    a = _make(cls).fit(X, y).predict(X)
    b = _make(cls).fit(X, y).predict(X)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_unknown_ids_use_the_fallback(name, cls, data):
    rm, X, y = data
    est = _make(cls).fit(X, y)
    unknown = np.array([[10_000, X[0, 1]], [X[0, 0], 10_000], [10_000, 10_001]])
    pred, known = est.predict(unknown, return_known=True)
    assert np.isfinite(pred).all() and not known.any()
    item_effect = est.fallback_.item_bias[est.map_pairs(X[:1])[1][0]]
    np.testing.assert_allclose(pred[0], est.fallback_.mean + item_effect)
    np.testing.assert_allclose(pred[2], est.fallback_.mean)


def _assert_same_value(a, b, where):
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, History):
        assert a.records == b.records, where
    elif hasattr(a, "__dataclass_fields__"):  # Fallback
        for field in a.__dataclass_fields__:
            _assert_same_value(getattr(a, field), getattr(b, field), f"{where}.{field}")
    else:
        assert type(a) is type(b) and a == b, where


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_pickle_and_save_load_round_trip(name, cls, data, tmp_path):
    rm, X, y = data
    split = make_split(rm, "random", test_size=0.25, random_state=0)
    est = _make(cls).fit(split.train)
    twin = pickle.loads(pickle.dumps(est))  # scikit-learn's way, for trusted files only
    np.testing.assert_array_equal(twin.predict(X), est.predict(X))
    path = est.save(tmp_path / "model.npz")
    with np.load(path, allow_pickle=False) as npz:  # nothing in it needs pickle
        assert all(npz[key].dtype != object for key in npz.files)
    loaded = cls.load(path)
    assert type(loaded) is cls and type(mflib.load(path)) is cls
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    assert loaded.get_params() == est.get_params()
    fitted = {k for k in vars(est) if k.endswith("_") and not k.startswith("_")}
    assert fitted == {k for k in vars(loaded) if k.endswith("_") and not k.startswith("_")}
    for key in fitted:
        _assert_same_value(getattr(est, key), getattr(loaded, key), key)
    assert loaded.provenance_["data"]["split"]["random_state"] == 0
    # without the training ratings the model says it cannot exclude seen items ...
    user = split.train.pairs()[0, 0]
    with pytest.raises(ValueError, match="saved without its training ratings"):
        loaded.recommend(user, k=3)
    np.testing.assert_array_equal(loaded.recommend(user, k=3, exclude_seen=False),
                                  est.recommend(user, k=3, exclude_seen=False))
    # ... until they are restored (checked to be its own) or saved with it
    with pytest.raises(DataError, match="not the training ratings"):
        loaded.restore_seen_items(split.test)
    restored = loaded.restore_seen_items(split.train).recommend(user, k=3)
    np.testing.assert_array_equal(restored, est.recommend(user, k=3))
    full = cls.load(est.save(tmp_path / "full.npz", include_seen=True))
    np.testing.assert_array_equal(full.recommend(user, k=3), est.recommend(user, k=3))
    twin = pickle.loads(pickle.dumps(loaded))  # a loaded model pickles like a fitted one
    np.testing.assert_array_equal(twin.predict(X), est.predict(X))


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_recommend_excludes_seen_items(name, cls, data):
    rm, X, y = data
    est = _make(cls).fit(X, y)
    user = X[0, 0]
    seen = set(X[X[:, 0] == user, 1])
    recs = est.recommend(user, k=5)
    assert list(recs.columns) == ["item", "score", "rank"]
    assert len(recs) == min(5, rm.n_items - len(seen))
    assert not seen & set(recs["item"])
    assert np.all(np.diff(recs["score"]) <= 0)
    everything = est.recommend(user, k=rm.n_items, exclude_seen=False)
    assert len(everything) == rm.n_items
    unknown = X[:, 0].max() + 1  # an id of the training ids' type that is not among them
    assert len(est.recommend(unknown, k=3)) == 3
    with pytest.raises(IdTypeError):  # a str id could never match int training ids
        est.recommend("no-such-user", k=3)
    for several in ([user, unknown], [user], np.array([user]), None):  # one id, not a list
        with pytest.raises(TypeError, match="recommend takes one raw user id"):
            est.recommend(several, k=3)
    with pytest.raises(IdTypeError, match="the item ids given are str"):
        est.predict(np.array([[user, "no-such-item"]], dtype=object))


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_grid_search_cv_works(name, cls, data):
    rm, X, y = data
    search = GridSearchCV(_make(cls), {}, cv=KFold(2, shuffle=True, random_state=0))
    search.fit(X, y)
    assert np.isfinite(search.best_score_) and search.best_score_ < 0


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_eval_set_records_validation_rmse(name, cls, data):
    rm, X, y = data
    est = _make(cls).fit(X[:-40], y[:-40], eval_set=(X[-40:], y[-40:]))
    assert "val_rmse" in est.history_ and "train_rmse" in est.history_
    assert np.isfinite(est.history_["val_rmse"]).all()


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_recorded_train_rmse_is_that_of_the_fitted_model(name, cls, data):
    # whether the loop or the solver computed it, the last train_rmse describes predict()
    rm, X, y = data
    est = _make(cls).fit(X, y)
    if not cls._history_describes_final_model:
        pytest.skip(f"{cls.__name__} polishes its model after the last recorded iteration")
    if est.stop_reason_.startswith("diverged") or est.n_iter_ != len(est.history_):
        pytest.skip(f"the last record is not the fitted state ({est.stop_reason_})")
    last = est.history_["train_rmse"][-1]
    np.testing.assert_allclose(last, np.sqrt(np.mean((est.predict(X) - y) ** 2)), rtol=1e-6)


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_bad_input_is_refused_with_a_clear_message(name, cls, data):
    rm, X, y = data
    est = _make(cls)
    with pytest.raises(DataError, match="non-finite"):
        est.fit(X, np.where(np.arange(len(y)) == 3, np.nan, y))
    with pytest.raises(DataError, match=r"\(n, 2\)"):
        est.fit(np.column_stack([X, y]), y)
    with pytest.raises(DataError, match="duplicate"):
        est.fit(np.vstack([X, X[:1]]), np.r_[y, y[:1]])
    with pytest.raises(DataError, match="empty"):
        est.fit(np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(AttributeError, match="not fitted"):
        _make(cls).predict(X)


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_every_parameter_is_declared_and_checked_by_name(name, cls, data):
    rm, X, y = data
    params = cls().get_params()
    declared = cls._constraints()
    assert set(params) <= set(declared), f"undeclared: {set(params) - set(declared)}"
    assert params.get("verbose", 0) == 0, "progress bars are opt-in (verbose=0 by default)"
    for param in params:
        est = _make(cls).set_params(**{param: object()})
        with pytest.raises(ParameterError, match=rf"{cls.__name__}: {param} must be"):
            est.fit(X, y)


def test_max_iter_none_and_bad_callbacks_are_refused(data):
    from mflib import ALS

    rm, X, y = data
    with pytest.raises(ParameterError, match="max_iter must be an integer >= 1; got None"):
        ALS(max_iter=None).fit(X, y)
    with pytest.raises(ParameterError, match="callbacks must be None or a list of callables"):
        ALS(callbacks=[1]).fit(X, y)


# ---------------------------------------------------------------------- degenerate data
def _degenerate(case):
    """``(X, y, extra parameters)`` of the degenerate cases every estimator must handle."""
    rng = np.random.default_rng(3)
    if case == "constant ratings":
        rm, _ = make_low_rank(40, 30, 2, 0.5, random_state=1)
        return rm.pairs(), np.full(rm.nnz, 3.0), {}
    if case == "one user":
        return np.column_stack([np.full(12, 7), np.arange(12)]), rng.integers(1, 6, 12) * 1.0, {}
    if case == "one item":
        return np.column_stack([np.arange(12), np.full(12, 4)]), rng.integers(1, 6, 12) * 1.0, {}
    # rank above size: 6 x 5 fully observed, a rank of 8
    users, items = np.meshgrid(np.arange(6), np.arange(5), indexing="ij")
    X = np.column_stack([users.ravel(), items.ravel()])
    return X, rng.integers(1, 6, len(X)) * 1.0, {"n_factors": 8, "max_rank": 8, "init_rank": 8}


DEGENERATE = ("constant ratings", "one user", "one item", "rank above size")


@pytest.mark.parametrize("case", DEGENERATE)
@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_degenerate_data_gives_a_clear_error_or_a_finite_fit(name, cls, case, fit_outcome):
    X, y, extra = _degenerate(case)
    params = cls().get_params()
    est = _make(cls, **{k: v for k, v in extra.items() if k in params})
    outcome = fit_outcome(est, X, y, f"{name} on {case}")
    if case == "constant ratings":  # nothing about constant data is an error, and a
        assert outcome == "fitted"  # converged model predicts the constant
        if est.stop_reason_ == "converged":
            np.testing.assert_allclose(est.predict(X), 3.0, atol=1e-6)
