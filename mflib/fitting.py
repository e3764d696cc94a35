"""The one iteration loop of mflib, its history and its stop reasons.

Every iterative estimator supplies one step; ``run_loop`` owns the iteration count,
the tolerance test, divergence detection, callbacks (early stopping, time budget,
logging), the progress bar and the reason the fit stopped.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .callbacks import ProgressBar, progress_enabled


class ConvergenceWarning(UserWarning):
    """The fit stopped for a reason other than convergence that the user should know."""


class StopFit(Exception):
    """Raised by a step to end the fit with ``reason`` (e.g. a failed line search).

    The state as it was before that step is kept. Raised while an estimator sets up its
    initial state (``_init_state``), it ends the fit before the first iteration when it
    carries that ``state`` (e.g. a starting point that is already stationary).
    """

    def __init__(self, reason: str, state=None):
        super().__init__(reason)
        self.reason = reason
        self.state = state


class History:
    """Per-iteration records: ``iteration``, ``time`` (solver seconds, cumulative,
    evaluation excluded), ``wall_time`` and whatever metrics the solver reports
    (objective, gradient norm, train/validation RMSE, step size, rank, ...)."""

    def __init__(self, records: Iterable[dict] | None = None):
        self.records: list[dict] = list(records or [])

    def append(self, record: dict) -> None:
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, key):
        if isinstance(key, int):
            return self.records[key]
        if not any(key in r for r in self.records):
            raise KeyError(f"{key!r} is not recorded; recorded keys: {self.keys()}")
        return np.array([r.get(key, np.nan) for r in self.records], dtype=float)

    def __contains__(self, key) -> bool:
        return any(key in r for r in self.records)

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.records:
            seen.update(dict.fromkeys(r))
        return list(seen)

    def to_frame(self) -> pd.DataFrame:
        """One row per iteration, indexed by ``iteration`` (no rows when the fit stopped
        before completing one)."""
        columns = ["iteration", *(k for k in self.keys() if k != "iteration")]
        return pd.DataFrame.from_records(self.records, columns=columns).set_index("iteration")

    def __repr__(self) -> str:
        return f"History({len(self)} iterations, keys={self.keys()})"


@dataclass
class LoopResult:
    state: object
    history: History
    stop_reason: str
    n_iter: int


def _relative_change(old: float, new: float) -> float:
    return abs(old - new) / max(abs(old), abs(new), 1e-300)


def _non_finite(metrics: dict) -> list[str]:
    return [
        k
        for k, v in metrics.items()
        if isinstance(v, (float, np.floating)) and not math.isfinite(v)
    ]


#: errors of a step that mean its arithmetic ran away (e.g. Python float overflow); the
#: loop treats them as a divergence
ARITHMETIC_ERRORS = (OverflowError, FloatingPointError)
DIVERGENCE_ADVICE = "try a smaller learning_rate or a larger regularization"


def warn_if_unfinished(desc: str, stop_reason: str, n_iter: int, *, stacklevel: int = 1) -> None:
    """A :class:`ConvergenceWarning` when a fit diverged, or stopped before completing one
    iteration for any reason but convergence: its model is then its initial state, which
    has learned nothing from the ratings (never a silent result). ``stacklevel`` counts
    from the caller, as in :func:`warnings.warn`."""
    if n_iter == 0 and stop_reason != "converged":
        message = (f"{desc} learned nothing: it stopped before completing one iteration "
                   f"({stop_reason}); its predictions are those of its initial state")
    elif stop_reason.startswith("diverged"):
        message = stop_reason
    else:
        return
    warnings.warn(message, ConvergenceWarning, stacklevel=stacklevel + 1)


def run_loop(
    step: Callable[[object], dict],
    state,
    *,
    max_iter: int,
    tol: float = 0.0,
    monitor: str = "objective",
    monitor_change: bool = False,
    evaluate: Callable[[object, frozenset], dict] | None = None,
    callbacks: Iterable[Callable] = (),
    model=None,
    verbose: int | bool = 0,
    desc: str = "fit",
    copy_state: Callable[[object], object] | None = None,
) -> LoopResult:
    """Iterate ``metrics = step(state)`` until a stop condition holds.

    Parameters
    ----------
    step : callable
        Does one iteration in place on ``state`` and returns a dict of metrics. It may
        return ``{"converged": True}`` or raise :class:`StopFit`.
    max_iter : int
        Upper bound on iterations (stop reason ``"max_iter"``).
    tol : float
        Stop with ``"converged"`` when the relative change of ``metrics[monitor]``
        between iterations falls below ``tol`` (0 disables the test). A step may return
        ``{"check_tolerance": False}`` to exempt its iteration from the test (e.g. one
        whose change says nothing about convergence).
    monitor_change : bool
        ``metrics[monitor]`` is itself a change (e.g. the relative change of the
        factors): the fit converges when it falls below ``tol``.
    evaluate : callable, optional
        ``evaluate(state, reported) -> dict`` of extra metrics (train/validation RMSE),
        timed apart from the solver so ``time`` measures the solver only; ``reported`` holds
        the keys the step already returned, which ``evaluate`` need not compute again.
    callbacks : iterable of callables
        ``cb(iteration, metrics, model) -> bool | None``; True stops the fit.
    copy_state : callable, optional
        Returns a copy of the state; with it, a step that produces non-finite
        metrics is undone and the fit stops with reason ``"diverged"``.
    """
    history = History()
    callbacks = list(callbacks or ())
    bar = ProgressBar(max_iter, desc, monitor) if progress_enabled(verbose) else None
    solver_time = 0.0
    wall_start = time.perf_counter()
    previous = None
    stop_reason = "max_iter"
    last_good = copy_state(state) if copy_state else None
    iteration = 0
    try:
        for iteration in range(1, max_iter + 1):
            t0 = time.perf_counter()
            try:
                metrics = dict(step(state) or {})
            except StopFit as stop:
                if last_good is not None:
                    state = last_good
                stop_reason = stop.reason
                iteration -= 1
                break
            except ARITHMETIC_ERRORS as exc:
                # arithmetic that overflowed inside a step is a divergence like a non-finite
                # metric; without an earlier state to restore, the half-updated one is
                # unusable and the error is the only honest outcome
                if last_good is None:
                    raise
                state = last_good
                stop_reason = (
                    f"diverged: {type(exc).__name__} ({exc}) in iteration {iteration} (the "
                    f"state of iteration {iteration - 1} was kept); {DIVERGENCE_ADVICE}"
                )
                iteration -= 1
                break
            solver_time += time.perf_counter() - t0
            converged = bool(metrics.pop("converged", False))
            check_tolerance = bool(metrics.pop("check_tolerance", True))
            if evaluate is not None:
                for key, value in evaluate(state, frozenset(metrics)).items():
                    metrics.setdefault(key, value)
            bad = _non_finite(metrics)
            record = {"iteration": iteration, "time": solver_time,
                      "wall_time": time.perf_counter() - wall_start, **metrics}
            if bad:
                history.append(record)
                advice = "; ".join(f"{k}={metrics[k]!r}" for k in bad)
                if last_good is not None:
                    state = last_good
                    kept = f"the state of iteration {iteration - 1} was kept"
                else:
                    kept = "no earlier state could be restored"
                stop_reason = f"diverged: {advice} at iteration {iteration} ({kept}); " \
                    + DIVERGENCE_ADVICE
                if last_good is not None:
                    iteration -= 1
                break
            history.append(record)
            if copy_state is not None:
                last_good = copy_state(state)
            if bar is not None:
                bar(iteration, record, model)
            stop = None
            for cb in callbacks:
                if cb(iteration, record, model):
                    stop = getattr(cb, "stop_reason", None) or f"callback {type(cb).__name__}"
                    break
            if stop:
                stop_reason = stop
                break
            if converged:
                stop_reason = "converged"
                break
            value = metrics.get(monitor)
            if tol > 0 and check_tolerance and value is not None:
                change = float(value) if monitor_change else (
                    None if previous is None else _relative_change(previous, float(value)))
                if change is not None and change < tol:
                    stop_reason = "converged"
                    break
            if value is not None:
                previous = float(value)
    finally:
        if bar is not None:
            bar.close()
    warn_if_unfinished(desc, stop_reason, iteration, stacklevel=3)
    return LoopResult(state=state, history=history, stop_reason=stop_reason, n_iter=iteration)
