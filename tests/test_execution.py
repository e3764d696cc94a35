"""The one execution policy: threads, BLAS, cut-offs, device and communicator."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info

import mflib
from mflib import execution
from mflib.backend import resolve_device
from mflib.data import make_low_rank
from mflib.registry import estimators


def _blas_threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


class _Probe:
    """A callback that records the policy and the thread counts seen inside the fit."""

    def __call__(self, iteration, metrics, model):
        self.policy = execution.current()
        self.numba = numba.get_num_threads()
        self.blas = _blas_threads()


@pytest.mark.parametrize("name", sorted(estimators()))
def test_every_estimator_accepts_n_jobs_and_fits_under_the_policy(name):
    cls = estimators()[name]
    assert "n_jobs" in cls().get_params(), f"{cls.__name__} has no n_jobs"
    rm, _ = make_low_rank(30, 20, 2, 0.5, random_state=0)
    probe = _Probe()
    params = {**cls._contract_params, "n_jobs": 1}
    if "callbacks" in cls().get_params():
        params["callbacks"] = [probe]
        cls(**params).fit(rm)
        assert probe.policy.n_jobs == 1 and probe.numba == 1
        assert all(t == 1 for t in probe.blas)


def test_policy_is_restored_after_fit():
    before = numba.get_num_threads()
    rm, _ = make_low_rank(30, 20, 2, 0.5, random_state=0)
    mflib.ALS(n_factors=2, max_iter=2, n_jobs=1).fit(rm)
    assert numba.get_num_threads() == before
    assert execution._current.get() is None


def test_config_context_sets_defaults_and_rejects_unknown_keys():
    with execution.config_context(n_jobs=1):
        assert execution.current().n_jobs == 1
        assert execution.policy_for(mflib.ALS()).n_jobs == 1
        assert execution.policy_for(mflib.ALS(n_jobs=2)).n_jobs == min(
            2, execution.max_threads())
    assert execution.current().n_jobs == execution.max_threads()
    with pytest.raises(TypeError, match="unknown setting"):
        with execution.config_context(threads=2):
            pass


def test_cut_offs_come_from_one_table():
    with execution.numba_threads(1):
        assert not execution.run_parallel("pair_dots", 10**9)
    if execution.max_threads() > 1:
        with execution.numba_threads(2):
            assert execution.run_parallel("pair_dots", execution.SERIAL_BELOW["pair_dots"])
            assert not execution.run_parallel("pair_dots",
                                              execution.SERIAL_BELOW["pair_dots"] - 1)
            with execution.kernel_threads("variable_projection", 10):
                assert numba.get_num_threads() == 1
            assert numba.get_num_threads() == 2


def test_devices_are_resolved_by_name():
    assert resolve_device("auto", supported=("cpu",)) == "cpu"
    with pytest.raises(ValueError, match="ALS has no GPU path"):
        resolve_device("gpu", supported=("cpu",), owner="ALS")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    assert execution.policy_for(mflib.SoftImpute(device="auto")).device in ("cpu", "gpu")
    assert execution.policy_for(mflib.SoftImpute()).xp is np


def test_single_threaded_blas_inside_and_outside_a_fit():
    with execution.single_threaded_blas():
        assert all(t == 1 for t in _blas_threads())
