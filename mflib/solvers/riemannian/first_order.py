"""First-order Riemannian methods: gradient descent (RGD) and accelerated gradient
descent (RAGD), both with Armijo backtracking on f."""

from __future__ import annotations

import numpy as np

from ...validation import NONNEGATIVE, POSITIVE
from .base import COMMON_DOC, GrassmannEstimator, armijo_gradient_step
from .objectives import FullObjective


class RGD(GrassmannEstimator):
    __doc__ = """Riemannian gradient descent with Armijo backtracking.

    Parameters
    ----------""" + COMMON_DOC + """    line_search : ArmijoLineSearch, optional
        Default ``ArmijoLineSearch()`` (contraction 0.5, sufficient decrease 1e-4,
        Barzilai-Borwein initial steps; ``initial="previous"`` starts from twice the
        previous accepted step instead).
    """

    def __init__(self, n_factors=3, regularization=0.3, bias_regularization=10.0,
                 center="biases", init="random", retraction="qr", line_search=None,
                 max_iter=100, tol=1e-7, n_jobs=None, device="cpu", random_state=None,
                 verbose=0, callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.center = center
        self.init = init
        self.retraction = retraction
        self.line_search = line_search
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _step(self, state, train):
        problem = self._problem
        out = armijo_gradient_step(FullObjective(problem), problem.manifold,
                                   state.item_factors, state.value, state.gradient,
                                   self._line_search(), state.step_size, state.bb_step,
                                   self.retraction)
        state.step_size, state.bb_step = out.step, out.bb_step
        state.user_gradients += out.n_evaluations * problem.n_active_users
        metrics = self._accept(state, out.point, out.evaluation, out.gradient)
        return {**metrics, "step_size": out.step, "evaluations": out.n_evaluations}


class RAGD(GrassmannEstimator):
    __doc__ = """Riemannian accelerated gradient descent (Zhang & Sra 2018, constant-step
    scheme with the estimate-sequence parameters ``gamma``, ``mu``, ``beta``).

    Per iteration, with step ``h`` (an Armijo step, started from the previous one):
    ``alpha^2 = h((1 - alpha) gamma + alpha mu)``, ``gbar = (1 - alpha) gamma + alpha mu``,
    ``y = Exp_x(alpha gamma / (gamma + alpha mu) Log_x(v))``,
    ``x+ = R_y(-h grad f(y))``,
    ``v+ = Exp_y(((1 - alpha) gamma / gbar) Log_y(v) - (alpha / gbar) grad f(y))``,
    ``gamma+ = gbar / (1 + beta)`` (``mu`` is ``strong_convexity``). f is not
    geodesically convex here, so when ``x+``
    is worse than ``x`` the momentum is restarted (``v = x``) from a plain Armijo step
    at ``x``; ``restarts`` counts these in the history.

    Parameters
    ----------""" + COMMON_DOC + """    gamma : float, default 1
        Initial ``gamma`` of the estimate sequence.
    strong_convexity : float, default 5
        ``mu`` of Zhang & Sra: the assumed strong-convexity constant.
    beta : float, default 5
    line_search : ArmijoLineSearch, optional
    """

    _parameter_constraints = {"gamma": [POSITIVE], "strong_convexity": [POSITIVE],
                              "beta": [NONNEGATIVE]}

    def __init__(self, n_factors=3, regularization=0.3, bias_regularization=10.0,
                 center="biases", init="random", retraction="qr", gamma=1.0,
                 strong_convexity=5.0, beta=5.0, line_search=None, max_iter=100, tol=1e-7,
                 n_jobs=None, device="cpu", random_state=None, verbose=0, callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.center = center
        self.init = init
        self.retraction = retraction
        self.gamma = gamma
        self.strong_convexity = strong_convexity
        self.beta = beta
        self.line_search = line_search
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _setup(self, state):
        state.extra.update(v=state.item_factors.copy(), gamma=float(self.gamma), restarts=0)

    def _step(self, state, train):
        problem, manifold = self._problem, self._problem.manifold
        objective, ls = FullObjective(problem), self._line_search()
        x, v, gamma = state.item_factors, state.extra["v"], state.extra["gamma"]
        mu = float(self.strong_convexity)
        h = state.step_size if state.step_size is not None else \
            ls.initial_step(None, float(np.linalg.norm(state.gradient)))
        # alpha solves alpha^2 - h (mu - gamma) alpha - h gamma = 0 (positive root), capped
        # at 1; the quadratic is <= 0 at 1 exactly when h mu >= 1, so a long step (h up to
        # 1/|grad|, huge near a stationary point) gives 1 without squaring it
        alpha = 1.0 if h * mu >= 1.0 else min(
            1.0, 0.5 * (h * (mu - gamma) + np.sqrt((h * (mu - gamma)) ** 2 + 4 * h * gamma)))
        gbar = (1 - alpha) * gamma + alpha * mu
        y = manifold.exp(x, (alpha * gamma / (gamma + alpha * mu)) * manifold.log(x, v))
        y_value, y_ev = objective.cost(y)
        y_grad = objective.gradient(y, y_ev)
        out = armijo_gradient_step(objective, manifold, y, y_value, y_grad, ls, h / ls.growth,
                                   None, self.retraction)
        state.user_gradients += (1 + out.n_evaluations) * problem.n_active_users
        v_new = manifold.exp(y, ((1 - alpha) * gamma / gbar) * manifold.log(y, v)
                             - (alpha / gbar) * y_grad)
        if out.value > state.value:  # momentum made things worse: restart from x
            out = armijo_gradient_step(objective, manifold, x, state.value, state.gradient, ls,
                                       h, None, self.retraction)
            state.user_gradients += out.n_evaluations * problem.n_active_users
            v_new = out.point.copy()
            state.extra["restarts"] += 1
        state.step_size = out.step
        state.extra.update(v=v_new, gamma=gbar / (1 + self.beta))
        metrics = self._accept(state, out.point, out.evaluation, out.gradient)
        return {**metrics, "step_size": out.step, "alpha": float(alpha),
                "restarts": state.extra["restarts"]}
