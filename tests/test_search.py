"""``experiment.search``: seeded, reproducible, chooses on validation only, prints the
chosen settings; scikit-learn samplers without Optuna, Optuna's TPE with it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import loguniform, randint

import mflib
from mflib import experiment
from mflib.data import make_low_rank, make_split


@pytest.fixture(scope="module")
def split():
    rm, _ = make_low_rank(60, 50, 2, 0.4, noise=0.3, random_state=0)
    return make_split(rm, "random", test_size=0.2, val_size=0.2, random_state=1)


SPACE = {"regularization": loguniform(0.1, 100.0), "max_iter": randint(2, 30)}


def test_random_search_is_seeded_and_reproducible(split):
    log = []
    a = experiment.search(mflib.BiasBaseline(), SPACE, split, n_iter=6, random_state=3,
                          log=log.append)
    b = experiment.search(mflib.BiasBaseline(), SPACE, split, n_iter=6, random_state=3,
                          log=None)
    np.testing.assert_array_equal(a.table["regularization"], b.table["regularization"])
    np.testing.assert_array_equal(a.table["val_rmse"], b.table["val_rmse"])
    c = experiment.search(mflib.BiasBaseline(), SPACE, split, n_iter=6, random_state=4,
                          log=None)
    assert not np.array_equal(a.table["regularization"], c.table["regularization"])
    assert len(log) == 1 and "BiasBaseline" in log[0] and "val_rmse" in log[0]
    assert f"{a.best_params['regularization']!r}" in log[0]
    assert isinstance(a.best_params["regularization"], float)  # plain Python, not NumPy


def test_the_choice_is_made_on_validation_never_on_test(split):
    grid = {"regularization": [0.01, 1.0, 10.0, 1000.0]}
    result = experiment.search(mflib.BiasBaseline(), grid, split, method="grid", log=None)
    assert len(result.table) == 4 and list(result.table["regularization"]) == grid[
        "regularization"]
    assert result.best_row["val_rmse"] == result.table["val_rmse"].min()
    assert result.best_params == {"regularization": float(result.best_row["regularization"])}
    # the best model is the fitted one of that trial
    val = split.validation
    rmse = np.sqrt(np.mean((result.best_model.predict(val) - val.ratings) ** 2))
    assert rmse == pytest.approx(result.best_row["val_rmse"])
    # a split without test still searches; without validation it cannot
    experiment.search(mflib.BiasBaseline(), grid, train=split.train,
                      validation=split.validation, method="grid", log=None)
    with pytest.raises(ValueError, match="validation"):
        experiment.search(mflib.BiasBaseline(), grid, train=split.train, test=split.test,
                          method="grid", log=None)


def test_bad_searches_are_refused(split):
    with pytest.raises(ValueError, match="no parameter"):
        experiment.search(mflib.BiasBaseline(), {"n_factors": [1]}, split, log=None)
    with pytest.raises(ValueError, match="method"):
        experiment.search(mflib.BiasBaseline(), SPACE, split, method="bayes", log=None)
    with pytest.raises(ValueError, match="non-empty dict"):
        experiment.search(mflib.BiasBaseline(), {}, split, log=None)


def test_optuna_search_is_seeded():
    pytest.importorskip("optuna")  # the optional mflib[search] extra (in the dev extra)
    rm, _ = make_low_rank(60, 50, 2, 0.4, noise=0.3, random_state=0)
    split = make_split(rm, "random", test_size=0.2, val_size=0.2, random_state=1)
    space = {**SPACE, "tol": [1e-8, 1e-6]}
    a = experiment.search(mflib.BiasBaseline(), space, split, method="optuna", n_iter=5,
                          random_state=0, log=None)
    b = experiment.search(mflib.BiasBaseline(), space, split, method="optuna", n_iter=5,
                          random_state=0, log=None)
    np.testing.assert_array_equal(a.table["regularization"], b.table["regularization"])
    assert a.table["max_iter"].between(2, 29).all()
    assert set(a.table["tol"]) <= {1e-8, 1e-6}
    assert a.best_row["val_rmse"] == a.table["val_rmse"].min()
