"""Honest clocks: every estimator's fit first warms its kernels up on a tiny problem."""

from __future__ import annotations

import numba
import pytest

from mflib import base, execution
from mflib.data import make_low_rank
from mflib.registry import estimators

ESTIMATORS = sorted(estimators().items())


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_warm_up_fits_every_estimator_without_error(name, cls, monkeypatch):
    # a warm-up that failed would leave compilation inside the clock without a word
    monkeypatch.setattr(base, "_WARMED_UP", set())
    est = cls()
    assert est._warm_up() is None
    assert est._warm_up_key() in base._WARMED_UP


def test_warm_up_runs_once_per_setting_and_not_inside_itself(monkeypatch):
    from mflib import SGD

    monkeypatch.setattr(base, "_WARMED_UP", set())
    fits = []
    original = base.FactorizationEstimator.fit

    def counting_fit(self, X, y=None, *, eval_set=None):
        fits.append((type(self).__name__, base._warming_up.get(), self.get_params()["dtype"]))
        return original(self, X, y, eval_set=eval_set)

    monkeypatch.setattr(base.FactorizationEstimator, "fit", counting_fit)
    rm, _ = make_low_rank(30, 20, 2, 0.5, random_state=0)
    SGD(n_factors=2, max_iter=1, verbose=0).fit(rm)
    n_paths = 2 if execution.policy_for(SGD()).n_jobs > 1 else 1
    assert fits[0] == ("SGD", False, "float64")
    assert fits[1:] == [("SGD", True, "float64")] * n_paths
    fits.clear()
    SGD(n_factors=5, max_iter=2, learning_rate=0.1, verbose=0).fit(rm)  # numbers: same key
    assert len(fits) == 1
    fits.clear()
    SGD(n_factors=2, max_iter=1, dtype="float32", verbose=0).fit(rm)  # a dtype: new key
    assert len(fits) == 1 + n_paths


def test_every_path_parallel_makes_each_cut_off_zero():
    size = 1
    with execution.numba_threads(min(2, execution.max_threads())):
        assert not execution.run_parallel("pair_dots", size)
        with execution.every_path_parallel():
            assert execution.run_parallel("pair_dots", size) == (numba.get_num_threads() > 1)
        assert not execution.run_parallel("pair_dots", size)
