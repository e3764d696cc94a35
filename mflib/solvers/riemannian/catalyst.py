"""Catalyst for non-convex problems on the Grassmann manifold, with a variance-reduced
inner solver that minimises the proximal objective."""

from __future__ import annotations

import numpy as np

from ...validation import NONNEGATIVE_INT, POSITIVE, POSITIVE_INT, Options
from .base import COMMON_DOC
from .variance_reduced import (
    INNER_SOLVERS,
    VR_DOC,
    VarianceReduced,
    solve_proximal,
    spider_step_length,
    vr_init,
)


class Catalyst(VarianceReduced):
    __doc__ = """Catalyst for non-convex problems (Paquette et al. 2018, "4WD-Catalyst"),
    on the manifold, with a variance-reduced inner solver.

    Outer step k from ``x`` (current iterate), ``v`` (extrapolation point), ``alpha``:

    1. proximal-point step: ``xbar ~ argmin F_kappa = f + kappa/2 dist^2(., x)`` from
       ``x``; while ``F_kappa(xbar) > f(x)`` (no descent) or ``|grad F_kappa(xbar)| >
       kappa dist(xbar, x)`` (not stationary enough), double ``kappa`` and solve again
       (at most ``max_doublings`` times);
    2. extrapolated step: ``y = Exp_x(alpha Log_x(v))``, ``xtilde ~ argmin f +
       kappa_cvx/2 dist^2(., y)`` from ``y``;
    3. ``v = Exp_x(Log_x(xtilde) / alpha)``, ``alpha <- (sqrt(alpha^4 + 4 alpha^2) -
       alpha^2) / 2``;
    4. the better of ``xbar`` and ``xtilde`` (smaller f) becomes ``x``.

    The inner solver (``inner_solver`` epochs of R-SVRG/SARAH/SPIDER) minimises the
    proximal objective, not f: the exact gradient of the proximal term is added to
    every stochastic gradient, with the step ``1 / (1/learning_rate + kappa)``.

    Parameters
    ----------""" + COMMON_DOC + VR_DOC + """    inner_solver : {"svrg", "sarah", "spider"}
        Default "svrg". "spider" moves at most :func:`spider_step_length` (from the
        initial step size and gradient norm) per inner step.
    inner_epochs : int, default 1
        Epochs of the inner solver per proximal subproblem.
    kappa : float, default 0.1
        Initial kappa of the proximal-point step (doubled adaptively, kept afterwards).
    kappa_cvx : float, default 0.1
        Kappa of the extrapolated step.
    max_doublings : int, default 10
    """

    _parameter_constraints = {
        "learning_rate": [POSITIVE, Options("auto")],
        "inner_solver": [Options(*INNER_SOLVERS)],
        "inner_epochs": [POSITIVE_INT],
        "kappa": [POSITIVE],
        "kappa_cvx": [POSITIVE],
        "max_doublings": [NONNEGATIVE_INT],
    }

    def __init__(self, n_factors=3, regularization=0.3, bias_regularization=10.0,
                 center="biases", init="random", retraction="qr", inner_solver="svrg",
                 inner_epochs=1, kappa=0.1, kappa_cvx=0.1, max_doublings=10,
                 learning_rate="auto", batch_size=256, inner_steps=None, sampling="uniform",
                 max_iter=20, tol=1e-7, n_jobs=None, device="cpu", random_state=None,
                 verbose=0, callbacks=None):
        vr_init(self, n_factors, regularization, bias_regularization, center, init,
                retraction, learning_rate, batch_size, inner_steps, sampling, max_iter, tol,
                n_jobs, device, random_state, verbose, callbacks)
        self.inner_solver = inner_solver
        self.inner_epochs = inner_epochs
        self.kappa = kappa
        self.kappa_cvx = kappa_cvx
        self.max_doublings = max_doublings

    _contract_params = {"n_factors": 2, "max_iter": 2, "random_state": 0, "max_doublings": 2}

    def _setup(self, state):
        state.extra.update(alpha=1.0, kappa=float(self.kappa), doublings=0)

    def _first_step_size(self, state):
        # the "auto" line search may move the start: v starts there
        super()._first_step_size(state)
        state.extra.update(v=state.item_factors.copy(), max_step_length=spider_step_length(
            state.step_size, float(np.linalg.norm(state.gradient))))

    def _prox(self, centre, kappa, start, state):
        lr = 1.0 / (1.0 / state.step_size + kappa)
        point, proximal, used = solve_proximal(
            self.inner_solver, self._problem, centre, kappa, start, lr, self.inner_epochs,
            self._inner_steps(), self.batch_size, self.sampling, self._rng, self.retraction,
            state.extra["max_step_length"])
        ev = self._problem.evaluate(point)
        grad_f = self._problem.riemannian_gradient(point, ev)
        grad_prox = grad_f + proximal.proximal_gradient(point)
        state.user_gradients += used + self._problem.n_active_users
        return point, ev, grad_f, ev.value + proximal.proximal_term(point), grad_prox

    def _step(self, state, train):
        if state.step_size is None:
            self._first_step_size(state)
        manifold = self._problem.manifold
        x, f_x = state.item_factors, state.value
        kappa, doublings = state.extra["kappa"], 0
        while True:  # 1. proximal point with adaptive kappa
            xbar, ev_bar, g_bar, F_bar, G_bar = self._prox(x, kappa, x, state)
            descent = F_bar <= f_x
            stationary = np.linalg.norm(G_bar) <= kappa * manifold.dist(xbar, x)
            if (descent and stationary) or doublings >= self.max_doublings:
                break
            kappa, doublings = 2.0 * kappa, doublings + 1
        # 2. extrapolated proximal step around y
        alpha, v = state.extra["alpha"], state.extra["v"]
        y = manifold.exp(x, alpha * manifold.log(x, v))
        xtil, ev_til, g_til, _, _ = self._prox(y, self.kappa_cvx, y, state)
        # 3. momentum point and alpha
        state.extra["v"] = manifold.exp(x, manifold.log(x, xtil) / alpha)
        state.extra["alpha"] = 0.5 * (np.sqrt(alpha ** 4 + 4 * alpha ** 2) - alpha ** 2)
        state.extra["kappa"] = kappa
        state.extra["doublings"] += doublings
        # 4. keep the better iterate
        point, ev, grad = (xbar, ev_bar, g_bar) if ev_bar.value <= ev_til.value else \
            (xtil, ev_til, g_til)
        metrics = self._accept(state, point, ev, grad)
        return {**metrics, "kappa": kappa, "doublings": doublings,
                "conditions_met": bool(descent and stationary),
                "extrapolated_kept": bool(point is xtil)}
