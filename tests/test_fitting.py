"""The fit loop: stop reasons, history, callbacks, divergence handling."""

from __future__ import annotations

import numpy as np
import pytest

from mflib import EarlyStopping, History, StopFit, TimeBudget, run_loop
from mflib.base import FactorState
from mflib.fitting import ConvergenceWarning


def _halving(state):
    state.global_mean *= 0.5
    return {"objective": 1.0 + state.global_mean}


def test_max_iter_and_history():
    res = run_loop(_halving, FactorState(1.0), max_iter=4)
    assert res.stop_reason == "max_iter" and res.n_iter == 4 and len(res.history) == 4
    np.testing.assert_allclose(res.history["objective"], 1 + 0.5 ** np.arange(1, 5))
    assert np.all(np.diff(res.history["time"]) >= 0)
    assert list(res.history.to_frame().columns[:2]) == ["time", "wall_time"]


def test_tolerance_on_relative_change():
    res = run_loop(_halving, FactorState(1.0), max_iter=100, tol=1e-3)
    assert res.stop_reason == "converged"
    obj = res.history["objective"]
    assert abs(obj[-1] - obj[-2]) / obj[-2] < 1e-3 <= abs(obj[-2] - obj[-3]) / obj[-3]


def test_step_can_stop_the_fit_and_keeps_the_previous_state():
    def step(state):
        if state.global_mean < 0.3:
            state.global_mean = -99.0
            raise StopFit("line search failed")
        return _halving(state)

    res = run_loop(step, FactorState(1.0), max_iter=10, copy_state=lambda s: s.copy())
    assert res.stop_reason == "line search failed"
    assert res.state.global_mean == 0.25 and res.n_iter == 2


def test_divergence_restores_last_finite_state_and_warns():
    def step(state):
        state.global_mean *= 1e200
        return {"objective": state.global_mean * 1e200}

    with pytest.warns(ConvergenceWarning, match="diverged"):
        res = run_loop(step, FactorState(1.0), max_iter=5, copy_state=lambda s: s.copy())
    assert res.stop_reason.startswith("diverged") and "learning_rate" in res.stop_reason
    assert np.isfinite(res.state.global_mean) and res.n_iter == 0


def test_early_stopping_on_validation_rmse():
    values = iter([3.0, 2.0, 2.5, 2.4, 2.6, 1.0])

    res = run_loop(lambda s: {"val_rmse": next(values)}, FactorState(), max_iter=6,
                   callbacks=[EarlyStopping(patience=2)])
    assert res.n_iter == 4 and res.stop_reason.startswith("early_stopping")


def test_early_stopping_names_a_missing_metric():
    with pytest.raises(KeyError, match="eval_set"):
        run_loop(lambda s: {"objective": 1.0}, FactorState(), max_iter=3,
                 callbacks=[EarlyStopping()])


def test_time_budget_stops():
    import time

    def slow(state):
        time.sleep(0.02)
        return {"objective": 1.0}

    res = run_loop(slow, FactorState(), max_iter=1000, callbacks=[TimeBudget(0.05)])
    assert res.stop_reason.startswith("time_budget") and res.n_iter < 10


def test_history_reports_unknown_keys():
    h = History([{"iteration": 1, "objective": 2.0}])
    with pytest.raises(KeyError, match="recorded keys"):
        h["val_rmse"]
    assert "objective" in h and h["objective"].tolist() == [2.0]


def test_progress_bar_can_be_shown_and_turned_off(monkeypatch, capsys):
    monkeypatch.setenv("MFLIB_PROGRESS", "1")
    run_loop(_halving, FactorState(1.0), max_iter=3, verbose=1, desc="demo")
    assert "demo" in capsys.readouterr().err
    run_loop(_halving, FactorState(1.0), max_iter=3, verbose=0, desc="demo")
    assert "demo" not in capsys.readouterr().err
    monkeypatch.setenv("MFLIB_PROGRESS", "0")
    run_loop(_halving, FactorState(1.0), max_iter=3, verbose=1, desc="demo")
    assert "demo" not in capsys.readouterr().err
