"""Variance-reduced stochastic methods on the Grassmann manifold: R-SVRG, R-SARAH and
R-SPIDER (one ``_step`` = one epoch), and the epoch functions Catalyst's inner solver
reuses on its proximal objective.

f is a finite sum over users, so a minibatch of users gives an unbiased gradient
estimate (:meth:`VariableProjectionProblem.sample_users`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...validation import NONE, POSITIVE, POSITIVE_INT, Interval, Options
from .base import COMMON_DOC, GrassmannEstimator
from .completion import SAMPLINGS
from .line_search import barzilai_borwein_step
from .objectives import ProximalObjective

INNER_SOLVERS = ("svrg", "sarah", "spider")


def _stochastic_gradient(problem, U, users, weights, proximal, evaluation=None):
    g = problem.batch_riemannian_gradient(U, users, weights, evaluation)
    return g if proximal is None else g + proximal.proximal_gradient(U)


def _full_gradient(problem, U, proximal):
    ev = problem.evaluate(U)
    g = problem.riemannian_gradient(U, ev)
    if proximal is not None:
        g = g + proximal.proximal_gradient(U)
    return ev, g


@dataclass
class HeavyBall:
    """Polyak momentum on the manifold, carried from one inner step (and epoch) to the next.

    ``m_t = beta T(m_{t-1}) + (1 - beta) v_t`` with ``T`` the projection transport to the
    current point and ``v_t`` the (variance-reduced) gradient estimate; the step is along
    ``-m_t``. Along a constant gradient ``m_t`` tends to the gradient, so ``learning_rate``
    keeps its meaning; in directions where successive estimates agree (the flat,
    slowly converging ones) steps add up, while oscillating components cancel.
    """

    beta: float
    velocity: np.ndarray | None = None

    def direction(self, manifold, point, estimate):
        """Update the velocity with ``estimate`` (tangent at ``point``) and return it."""
        if self.velocity is None:
            self.velocity = (1.0 - self.beta) * estimate
        else:
            self.velocity = (self.beta * manifold.transport(None, point, self.velocity)
                             + (1.0 - self.beta) * estimate)
        return self.velocity

    def copy(self):
        return HeavyBall(self.beta, None if self.velocity is None else self.velocity.copy())


def variance_reduced_epoch(method, problem, point, learning_rate, inner_steps, batch_size,
                           sampling, rng, retraction=None, proximal=None, snapshot_gradient=None,
                           max_step_length=None, snapshot_evaluation=None, heavy_ball=None):
    """One epoch of R-SVRG, R-SARAH or R-SPIDER from ``point``.

    The objective is f, or ``f + kappa/2 dist^2(., centre)`` when ``proximal`` (a
    :class:`ProximalObjective`) is given: its exact gradient term is added to every
    stochastic gradient of f, so the inner solver minimises the proximal objective.

    * ``"svrg"``: ``v = g_B(U) - T(g_B(S) - g(S))`` with the snapshot ``S = point``;
    * ``"sarah"``: ``v_t = g_B(U_t) - T(g_B(U_t-1)) + T(v_t-1)``, ``v_0 = g(S)``;
    * ``"spider"``: the SARAH estimator with a normalised step: the move is
      ``min(learning_rate |v_t|, max_step_length)`` long (Fang et al. 2018; Zhou, Chen et
      al. 2019 on manifolds: ``eta_t = min(eps / (L n0 |v_t|), 1 / (2 L n0))``, i.e. a
      step of fixed length ``eps / (L n0)`` while ``|v_t| > 2 eps``). ``max_step_length``
      is required and stays fixed; tied to the epoch's first step it would never bind,
      as the estimates shrink within an epoch, and SPIDER would be SARAH.

    ``T`` is vector transport by projection; steps are ``U <- R_U(-learning_rate v)``.

    With ``heavy_ball`` (a :class:`HeavyBall`, SVRG only) the step direction is the
    transported running average of the estimators (Polyak momentum on the manifold).

    SVRG's minibatch gradients at the snapshot ``g_B(S)`` are read from the snapshot's full
    evaluation (``snapshot_evaluation``, :meth:`VariableProjectionProblem.evaluate` at
    ``point``; computed here with the snapshot gradient when neither is given), which
    already holds every user's factors and residuals: an inner step then costs
    ``batch_size`` user-gradients, not twice that. Without ``snapshot_evaluation`` but with
    ``snapshot_gradient``, ``g_B(S)`` is solved afresh (and counted).

    Returns
    -------
    point : ndarray (n, k)
        The last iterate.
    user_gradients : int
        Per-user gradient evaluations spent (the snapshot's full gradient included).
    """
    if method not in INNER_SOLVERS:
        raise ValueError(f"method must be one of {INNER_SOLVERS}, got {method!r}")
    if method == "spider" and not (max_step_length is not None and max_step_length >= 0):
        # (0 is a stationary start's default: a zero gradient, and no move)
        raise ValueError("the spider epoch needs max_step_length >= 0 (its normalised step "
                         f"length), got {max_step_length!r}; see spider_step_length")
    manifold = problem.manifold
    user_gradients = 0
    if snapshot_gradient is None:
        snapshot_evaluation, snapshot_gradient = _full_gradient(problem, point, proximal)
        user_gradients += problem.n_active_users
    snapshot = point
    U = point
    if method == "svrg":
        for t in range(inner_steps):
            if t == 0:
                # at U = S the estimator is g_B(S) - (g_B(S) - g(S)) = g(S) whatever the batch
                v = snapshot_gradient
            else:
                users, weights = problem.sample_users(rng, batch_size, sampling)
                here = _stochastic_gradient(problem, U, users, weights, proximal)
                there = _stochastic_gradient(problem, snapshot, users, weights, proximal,
                                             snapshot_evaluation)
                v = here - manifold.transport(snapshot, U, there - snapshot_gradient)
                user_gradients += len(users) * (1 if snapshot_evaluation is not None else 2)
            if heavy_ball is not None:
                v = heavy_ball.direction(manifold, U, v)
            U = manifold.retraction(U, -learning_rate * v, retraction)
        return U, user_gradients
    v = snapshot_gradient
    previous = U
    radius = max_step_length
    for t in range(inner_steps):
        if t > 0:
            users, weights = problem.sample_users(rng, batch_size, sampling)
            here = _stochastic_gradient(problem, U, users, weights, proximal)
            there = _stochastic_gradient(problem, previous, users, weights, proximal)
            v = here + manifold.transport(previous, U, v - there)
            user_gradients += 2 * len(users)
        step = learning_rate
        if method == "spider":
            step = min(learning_rate, radius / max(manifold.norm(U, v), 1e-300))
        previous = U
        U = manifold.retraction(U, -step * v, retraction)
    return U, user_gradients


#: the default SPIDER accuracy ``eps`` as a fraction of the initial gradient norm
SPIDER_ACCURACY = 0.1


def spider_step_length(learning_rate: float, initial_gradient_norm: float) -> float:
    """The default longest SPIDER move ``eps / (L n0) = 2 learning_rate eps`` (with
    ``learning_rate = 1 / (2 L n0)``) for the accuracy ``eps = SPIDER_ACCURACY`` times the
    gradient norm at the initial point: while the estimate is longer than ``2 eps`` the
    method moves by this fixed length, then like SARAH."""
    return 2.0 * learning_rate * SPIDER_ACCURACY * initial_gradient_norm


def snapshot_bb_step(manifold, snapshot, gradient, previous_snapshot,
                     previous_gradient) -> float | None:
    """Barzilai-Borwein quotient ``<s, s> / <s, y>`` between two SVRG snapshots (the
    SVRG-BB idea of Tan, Ma, Dai & Qian 2016, on the manifold).

    ``s = -log_S(S_prev)`` is the geodesic step from the previous snapshot, tangent at the
    current one, and ``y = g(S) - T(g(S_prev))`` the change of the full gradient. The
    previous gradient is first expressed in the representative ``S_prev O`` of its
    subspace closest to ``S`` (``O`` the orthogonal Procrustes rotation), because tangent
    vectors at a subspace are lifted relative to its orthonormal basis. None when
    ``<s, y> <= 0``.
    """
    left, _, right = np.linalg.svd(previous_snapshot.T @ snapshot)
    aligned = previous_gradient @ (left @ right)
    step = -manifold.log(snapshot, previous_snapshot)
    change = gradient - manifold.transport(previous_snapshot, snapshot, aligned)
    return barzilai_borwein_step(manifold, snapshot, step, change)


def solve_proximal(method, problem, centre, kappa, start, learning_rate, epochs, inner_steps,
                   batch_size, sampling, rng, retraction=None, max_step_length=None):
    """Catalyst's inner solver: ``epochs`` variance-reduced epochs on
    ``f + kappa/2 dist^2(., centre)`` from ``start`` (``max_step_length``: SPIDER's).

    Returns ``(point, proximal_objective, user_gradients)``.
    """
    proximal = ProximalObjective(problem, centre, kappa)
    U, used = start, 0
    for _ in range(epochs):
        U, n = variance_reduced_epoch(method, problem, U, learning_rate, inner_steps,
                                      batch_size, sampling, rng, retraction, proximal,
                                      max_step_length=max_step_length)
        used += n
    return U, proximal, used



class VarianceReduced(GrassmannEstimator):
    """One ``_step`` = one epoch of the variance-reduced method ``_method``."""

    _method = "svrg"
    _parameter_constraints = {
        "learning_rate": [POSITIVE, Options("auto", "bb")],
        "batch_size": [POSITIVE_INT],
        "inner_steps": [NONE, POSITIVE_INT],
        "sampling": [Options(*SAMPLINGS)],
        "bb_scale": [NONE, POSITIVE],
        "epoch_length": [POSITIVE],
    }

    def _inner_steps(self):
        if self.inner_steps is not None:
            return self.inner_steps
        length = getattr(self, "epoch_length", 1.0)
        return max(1, int(length * self._problem.n_active_users // self.batch_size))

    def _setup(self, state):
        state.extra.update(previous_snapshot=None, previous_gradient=None)
        momentum = getattr(self, "momentum", 0.0)
        if momentum > 0:
            state.extra["heavy_ball"] = HeavyBall(momentum)

    def _snapshot_step_size(self, state):
        """``learning_rate="bb"``: ``bb_scale`` (default ``1 / inner_steps``, SVRG-BB's
        choice) times the Barzilai-Borwein quotient of the last two snapshots (their full
        gradients are known anyway, so this costs no user-gradient); the previous step
        while there is no pair or no positive curvature along it."""
        previous = state.extra["previous_snapshot"]
        if self.learning_rate != "bb" or previous is None:
            return state.step_size
        bb = snapshot_bb_step(self._problem.manifold, state.item_factors, state.gradient,
                              previous, state.extra["previous_gradient"])
        if bb is None:
            return state.step_size
        scale = 1.0 / self._inner_steps() if self.bb_scale is None else self.bb_scale
        return scale * bb

    def _first_step_size(self, state):
        """The fixed step, before the first epoch: with "auto" its line search is solver
        work (on the clock, in the first iteration), not set-up."""
        state.step_size = self._auto_learning_rate(state)
        if self._method == "spider":
            state.extra["max_step_length"] = self.max_step_length or spider_step_length(
                state.step_size, float(np.linalg.norm(state.gradient)))

    def _step(self, state, train):
        if state.step_size is None:
            self._first_step_size(state)
        state.step_size = self._snapshot_step_size(state)
        state.extra.update(previous_snapshot=state.item_factors,
                           previous_gradient=state.gradient)
        U, used = variance_reduced_epoch(
            self._method, self._problem, state.item_factors, state.step_size,
            self._inner_steps(), self.batch_size, self.sampling, self._rng, self.retraction,
            snapshot_gradient=state.gradient,
            max_step_length=state.extra.get("max_step_length"),
            snapshot_evaluation=state.evaluation, heavy_ball=state.extra.get("heavy_ball"))
        state.user_gradients += used
        return {**self._accept(state, U), "step_size": state.step_size}


VR_DOC = """    learning_rate : float, "auto" or "bb", default "auto"
        Fixed step; "auto" takes a quarter of the Armijo step of a full-gradient search at the
        initial point; "bb" starts like "auto" and then sets each epoch's step to ``bb_scale``
        times the Barzilai-Borwein quotient of the last two snapshots' full gradients
        (SVRG-BB, Tan et al. 2016).
    batch_size : int, default 256 (512 for R-SARAH)
        Users per stochastic gradient. Chosen on 10% validation parts of ml-100k u1.base
        and of the Netflix course training set (64-1024 users, rank 3, lam 0.3): with 64
        users R-SARAH's and R-SPIDER's recursive estimates, which carry the noise of every
        batch of an epoch, ended no better than the bias baseline, and R-SVRG ended
        0.004 above its 256-user result on Netflix; R-SARAH still wandered at 256 on
        Netflix and settles at 512. With these, all three reach RGD's level (0.925-0.926
        on ml-100k, 0.935-0.937 on Netflix, against the bias baseline's 0.944 and 0.943).
    inner_steps : int, optional
        Stochastic steps per epoch (default ``n_users // batch_size``).
    sampling : {"uniform", "count", "poisson"}, default "uniform" ("count" for R-SVRG)
        Users drawn uniformly, with probability proportional to their rating count, or
        each included independently with probability proportional to its count
        (capped at 1); see :meth:`VariableProjectionProblem.sample_users`.
    bb_scale : float, optional
        Factor on the snapshot Barzilai-Borwein quotient (``learning_rate="bb"``); default
        ``1 / inner_steps``.
    epoch_length : float, default 1.0
        Default ``inner_steps`` is ``floor(epoch_length * n_users / batch_size)``.

    R-SVRG reads its snapshot's minibatch gradients from the snapshot's full evaluation,
    so an inner step costs ``batch_size`` user-gradients (``history_["user_gradients"]``
    counts every per-user solve: snapshots, inner steps and the "auto" line search).
"""


def vr_init(self, n_factors, regularization, bias_regularization, center, init, retraction,
            learning_rate, batch_size, inner_steps, sampling, max_iter, tol, n_jobs, device,
            random_state, verbose, callbacks, **step_rule):
    """Store the parameters every variance-reduced estimator (and Catalyst) has."""
    # bb_scale and epoch_length (the R-SVRG/SARAH/SPIDER estimators, not Catalyst)
    for name, value in step_rule.items():
        setattr(self, name, value)
    self.n_factors = n_factors
    self.regularization = regularization
    self.bias_regularization = bias_regularization
    self.center = center
    self.init = init
    self.retraction = retraction
    self.learning_rate = learning_rate
    self.batch_size = batch_size
    self.inner_steps = inner_steps
    self.sampling = sampling
    self.max_iter = max_iter
    self.tol = tol
    self.n_jobs = n_jobs
    self.device = device
    self.random_state = random_state
    self.verbose = verbose
    self.callbacks = callbacks


class RSVRG(VarianceReduced):
    __doc__ = """Riemannian SVRG (Zhang, Reddi & Sra 2016; Sato, Kasai & Mishra 2019): per
    epoch a snapshot full gradient, then ``v = g_B(U) - T(g_B(S) - g(S))`` steps with
    projection transport, averaged by heavy-ball momentum.

    The first inner step of an epoch is at the snapshot, where ``v = g(S)`` exactly, so it
    draws no minibatch; later ones read ``g_B(S)`` from the snapshot's evaluation.

    Parameters
    ----------""" + COMMON_DOC + VR_DOC + """    momentum : float, default 0.6
        ``beta`` of :class:`HeavyBall` (0 for plain R-SVRG). On the quick profile
        (ml-100k, rank 10) momentum 0.6 brought the median user-gradients to reach RGD's
        30-iteration objective from 0.50 to 0.44 of RGD's over 16 seeds
        (``benchmarks/bench_riemannian.py``).
    """

    _method = "svrg"

    _parameter_constraints = {"momentum": [Interval("real", 0, 1, closed="left")]}

    def __init__(self, n_factors=3, regularization=0.3, bias_regularization=10.0,
                 center="biases", init="random", retraction="qr", learning_rate="auto",
                 batch_size=256, inner_steps=None, sampling="count", momentum=0.6,
                 bb_scale=None, epoch_length=1.0, max_iter=30, tol=1e-7, n_jobs=None,
                 device="cpu", random_state=None, verbose=0, callbacks=None):
        vr_init(self, n_factors, regularization, bias_regularization, center, init,
                retraction, learning_rate, batch_size, inner_steps, sampling, max_iter, tol,
                n_jobs, device, random_state, verbose, callbacks, bb_scale=bb_scale,
                epoch_length=epoch_length)
        self.momentum = momentum


class RSARAH(VarianceReduced):
    __doc__ = """Riemannian SARAH: the recursive estimator
    ``v_t = g_B(U_t) - T(g_B(U_t-1)) + T(v_t-1)``, restarted with a full gradient each
    epoch.

    Parameters
    ----------""" + COMMON_DOC + VR_DOC

    _method = "sarah"

    def __init__(self, n_factors=3, regularization=0.3, bias_regularization=10.0,
                 center="biases", init="random", retraction="qr", learning_rate="auto",
                 batch_size=512, inner_steps=None, sampling="uniform", bb_scale=None,
                 epoch_length=1.0, max_iter=30, tol=1e-7, n_jobs=None, device="cpu",
                 random_state=None, verbose=0, callbacks=None):
        vr_init(self, n_factors, regularization, bias_regularization, center, init,
                retraction, learning_rate, batch_size, inner_steps, sampling, max_iter, tol,
                n_jobs, device, random_state, verbose, callbacks, bb_scale=bb_scale,
                epoch_length=epoch_length)


class RSPIDER(VarianceReduced):
    __doc__ = """Riemannian SPIDER (Zhou, Chen et al. 2019, after Fang et al. 2018): the
    SARAH estimator with normalised steps: each inner step moves
    ``min(learning_rate |v|, max_step_length)`` along ``-v``, so far from a stationary
    point it takes steps of a fixed length, and near one the steps of SARAH.

    Parameters
    ----------""" + COMMON_DOC + VR_DOC + """    max_step_length : float, optional
        Longest move per inner step, fixed for the fit. Default
        :func:`spider_step_length`: ``2 lr eps`` for the accuracy ``eps`` = 0.1 x the
        gradient norm at the initial point (the papers' ``eps / (L n0)`` with
        ``lr = 1 / (2 L n0)``).
    """

    _method = "spider"

    _parameter_constraints = {"max_step_length": [NONE, POSITIVE]}

    def __init__(self, n_factors=3, regularization=0.3, bias_regularization=10.0,
                 center="biases", init="random", retraction="qr", learning_rate="auto",
                 batch_size=256, inner_steps=None, sampling="uniform", max_step_length=None,
                 bb_scale=None, epoch_length=1.0, max_iter=30, tol=1e-7, n_jobs=None,
                 device="cpu", random_state=None, verbose=0, callbacks=None):
        vr_init(self, n_factors, regularization, bias_regularization, center, init,
                retraction, learning_rate, batch_size, inner_steps, sampling, max_iter, tol,
                n_jobs, device, random_state, verbose, callbacks, bb_scale=bb_scale,
                epoch_length=epoch_length)
        self.max_step_length = max_step_length
