"""Armijo backtracking on a manifold, as a swappable object with one ``search`` method.

The object is stateless (so estimators holding it clone and pickle cleanly): the
optimiser passes the initial trial step, chosen by :meth:`ArmijoLineSearch.initial_step`
from the previous accepted step or from a Barzilai-Borwein quotient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...fitting import StopFit
from ...validation import check_choice, check_positive, check_positive_int


class LineSearchFailed(StopFit):
    """No trial step gave sufficient decrease; ends the fit with this reason."""


@dataclass
class LineSearchResult:
    """An accepted step: ``point = retraction(x, step * direction)`` with ``value``.

    ``payload`` is whatever the cost function returned beside the value at the accepted
    point (e.g. the eliminated user factors), so the caller need not recompute it.
    """

    step: float
    point: np.ndarray
    value: float
    payload: object
    n_evaluations: int


def barzilai_borwein_step(manifold, point, step_vector, gradient_change) -> float | None:
    """The BB1 quotient ``<s, s> / <s, y>`` for a step ``s`` and a gradient change ``y``
    (both tangent at ``point``); None when ``<s, y> <= 0`` (no curvature information)."""
    sy = manifold.inner(point, step_vector, gradient_change)
    if not sy > 0:
        return None
    return manifold.inner(point, step_vector, step_vector) / sy


class ArmijoLineSearch:
    """Backtracking until ``f(R_x(t d)) <= f(x) + sufficient_decrease * t * <grad, d>``.

    Parameters
    ----------
    contraction : float, default 0.5
        Factor applied to the trial step after each rejection.
    sufficient_decrease : float, default 1e-4
        Armijo constant ``c`` in (0, 1).
    max_evaluations : int, default 40
        Trial steps before the search fails (with :class:`LineSearchFailed`).
    initial : {"bb", "previous"}, default "bb"
        Initial trial step: the Barzilai-Borwein quotient when available (capped at
        ``bb_cap`` times the previous accepted step; else the previous rule), or the
        previous accepted step times ``growth``. BB needs about one evaluation per
        iteration where "previous" needs two.
    growth : float, default 2.0
        Factor on the previous accepted step, so steps can grow again after shrinking.
    initial_step_size : float, default 1.0
        First trial step of a fit, relative to ``1 / |grad|`` (a unit-length first move).
    bb_cap : float, default 100.0
        Safeguard: a BB step is never more than ``bb_cap`` times the previous step
        (BB quotients of a non-convex function can be huge).
    """

    def __init__(self, contraction=0.5, sufficient_decrease=1e-4, max_evaluations=40,
                 initial="bb", growth=2.0, initial_step_size=1.0, bb_cap=100.0):
        self.contraction = contraction
        self.sufficient_decrease = sufficient_decrease
        self.max_evaluations = max_evaluations
        self.initial = initial
        self.growth = growth
        self.initial_step_size = initial_step_size
        self.bb_cap = bb_cap

    def __repr__(self) -> str:
        return (f"ArmijoLineSearch(contraction={self.contraction}, sufficient_decrease="
                f"{self.sufficient_decrease}, initial={self.initial!r})")

    def _check(self) -> None:
        if not 0 < self.contraction < 1:
            raise ValueError(f"contraction must be in (0, 1), got {self.contraction!r}")
        if not 0 < self.sufficient_decrease < 1:
            raise ValueError(
                f"sufficient_decrease must be in (0, 1), got {self.sufficient_decrease!r}")
        check_positive_int(self.max_evaluations, "max_evaluations")
        check_choice(self.initial, "initial", ("previous", "bb"))
        check_positive(self.growth, "growth")
        check_positive(self.initial_step_size, "initial_step_size")
        check_positive(self.bb_cap, "bb_cap")

    def initial_step(self, previous_step: float | None, gradient_norm: float,
                     bb_step: float | None = None) -> float:
        """The first trial step of a search, following ``initial``."""
        self._check()
        if self.initial == "bb" and bb_step is not None and np.isfinite(bb_step):
            if previous_step is not None:
                return float(min(bb_step, self.bb_cap * previous_step))
            return float(bb_step)
        if previous_step is None:
            return self.initial_step_size / max(gradient_norm, 1e-300)
        return self.growth * previous_step

    def search(self, cost, manifold, point, direction, value, slope, initial_step,
               retraction=None) -> LineSearchResult:
        """Backtrack from ``initial_step`` along ``direction``.

        Parameters
        ----------
        cost : callable
            ``cost(point) -> (value, payload)``.
        manifold : Grassmann (or any object with ``retraction``)
        point : ndarray of shape (n, k)
        direction : ndarray of shape (n, k)
            A tangent descent direction at ``point``.
        value : float
            ``f(point)``.
        slope : float
            ``<grad f(point), direction>``; must be negative.
        initial_step : float
            First trial step (> 0).
        retraction : str, optional
            Retraction method passed to ``manifold.retraction``.

        Raises
        ------
        LineSearchFailed
            If ``direction`` is not a descent direction, or no trial step within
            ``max_evaluations`` satisfies the Armijo condition.
        """
        self._check()
        if not slope < 0:
            raise LineSearchFailed(
                f"line search failed: direction is not a descent direction (slope {slope:.3g}"
                " >= 0); the gradient may be zero, i.e. the fit has converged")
        if not (initial_step > 0 and np.isfinite(initial_step)):
            raise ValueError(f"initial_step must be a finite number > 0, got {initial_step!r}")
        step = float(initial_step)
        c = self.sufficient_decrease
        for n_eval in range(1, self.max_evaluations + 1):
            trial = manifold.retraction(point, step * direction, retraction)
            trial_value, payload = cost(trial)
            if trial_value <= value + c * step * slope:
                return LineSearchResult(step, trial, float(trial_value), payload, n_eval)
            step *= self.contraction
        raise LineSearchFailed(
            f"line search failed: no sufficient decrease after {self.max_evaluations} trial "
            f"steps (last step {step / self.contraction:.3g}, f={value:.6g}, slope "
            f"{slope:.3g}); the fit is at a numerical stationary point")
