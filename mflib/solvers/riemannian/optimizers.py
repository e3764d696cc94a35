"""Optimisers for variable-projection matrix completion on the Grassmann manifold.

Every class is an estimator on the shared fit loop: one ``_step`` is one outer
iteration (an RGD step, an SVRG epoch, a Catalyst outer step, a DANE round). The
inner loops of Catalyst and DANE are plain functions below, called inside one step.

The model fitted by all of them (except :class:`EuclideanGD`, which optimises the
same factorisation without the manifold) is ``r_hat = mu + b_u + c_i + w_u . U_i``
with biases from :class:`~mflib.solvers.baselines.BiasBaseline` (``center="bias"``),
``U`` orthonormal (items x k) and ``w_u`` the exact ridge solution for ``U``
(see :mod:`.completion`). After the fit ``item_factors_ = U`` and ``user_factors_ = W``
(solved exactly for the final ``U``), so ``predict`` works like every estimator's.

History columns: ``objective`` (f), ``grad_norm`` (Riemannian gradient norm),
``step_size``, ``user_gradients`` (cumulative per-user solve+gradient evaluations; a
full evaluation of f costs ``n_users`` of them), solver-specific extras (``kappa``...).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from threadpoolctl import threadpool_limits

from ...base import FactorizationEstimator, FactorState
from ...fitting import StopFit
from ...kernels import pair_dots
from ...validation import (
    check_choice,
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_random_state,
)
from ..baselines import BiasBaseline
from .completion import SAMPLINGS, Evaluation, VariableProjectionProblem, kernel_threads
from .line_search import ArmijoLineSearch, barzilai_borwein_step
from .manifolds import RETRACTIONS, Grassmann

CENTERS = ("bias", "mean", "none")
INITS = ("random", "svd")
INNER_SOLVERS = ("svrg", "sarah", "spider")


# ====================================================================== objectives
class FullObjective:
    """f itself: ``cost(U) -> (value, evaluation)``, ``gradient(U, evaluation)``."""

    def __init__(self, problem: VariableProjectionProblem):
        self.problem = problem

    def cost(self, U):
        return self.problem.cost(U)

    def gradient(self, U, evaluation):
        return self.problem.riemannian_gradient(U, evaluation)


class ProximalObjective:
    """``F(U) = f(U) + kappa/2 * dist(U, centre)^2`` (Catalyst's subproblem).

    ``grad F = grad f - kappa * log_U(centre)`` (the gradient of half the squared
    geodesic distance is minus the logarithm).
    """

    def __init__(self, problem, centre, kappa):
        self.problem, self.centre, self.kappa = problem, centre, float(kappa)

    def proximal_term(self, U) -> float:
        return 0.5 * self.kappa * self.problem.manifold.dist(U, self.centre) ** 2

    def proximal_gradient(self, U):
        return -self.kappa * self.problem.manifold.log(U, self.centre)

    def cost(self, U):
        value, ev = self.problem.cost(U)
        return value + self.proximal_term(U), ev

    def gradient(self, U, evaluation):
        return self.problem.riemannian_gradient(U, evaluation) + self.proximal_gradient(U)


class DaneLocalObjective:
    """A DANE worker's corrected local problem around the current point ``U0``:

    ``F_j(V) = m f_j(V) - <a, V V^T U0> + mu/2 * (k - |U0^T V|_F^2)``,
    ``a = m grad f_j(U0) - grad f(U0)``

    with ``m`` workers and ``f = sum_j f_j``. Both extra terms are functions of the
    subspace of V (invariant under ``V -> V O``); at ``V = U0`` the linear term has
    Riemannian gradient ``a``, so ``grad F_j(U0) = grad f(U0)`` (DANE's gradient
    correction), and the last term is the smooth chordal proximity ``sum sin^2``.
    """

    def __init__(self, part: VariableProjectionProblem, centre, correction, mu, n_workers):
        self.part, self.centre = part, centre
        self.correction, self.mu, self.m = correction, float(mu), float(n_workers)

    def cost(self, V):
        value, ev = self.part.cost(V)
        linear = np.vdot(self.correction, V @ (V.T @ self.centre))
        proximity = self.part.manifold.chordal_dist2(self.centre, V)
        return self.m * value - linear + 0.5 * self.mu * proximity, ev

    def gradient(self, V, evaluation):
        manifold = self.part.manifold
        a, c = self.correction, self.centre
        euclid = (c @ (a.T @ V) + a @ (c.T @ V)) + self.mu * (c @ (c.T @ V))
        return self.m * self.part.riemannian_gradient(V, evaluation) - manifold.projection(
            V, euclid)


# ====================================================================== descent steps
@dataclass
class DescentStep:
    """Outcome of one Armijo gradient step."""

    point: np.ndarray
    value: float
    evaluation: object
    gradient: np.ndarray
    step: float
    n_evaluations: int
    bb_step: float | None


def armijo_gradient_step(objective, manifold, point, value, gradient, line_search,
                         previous_step=None, bb_step=None, retraction=None) -> DescentStep:
    """One Riemannian gradient step with Armijo backtracking on ``objective``.

    Raises :class:`~mflib.solvers.riemannian.line_search.LineSearchFailed` when the
    search finds no sufficient decrease (never returns a zero step).
    """
    g_norm = manifold.norm(point, gradient)
    t0 = line_search.initial_step(previous_step, g_norm, bb_step)
    res = line_search.search(objective.cost, manifold, point, -gradient, value, -g_norm ** 2,
                             t0, retraction)
    new_gradient = objective.gradient(res.point, res.payload)
    # BB quotient for the next step: s = transported step, y = gradient change
    s = manifold.transport(point, res.point, -res.step * gradient)
    y = new_gradient - manifold.transport(point, res.point, gradient)
    bb = barzilai_borwein_step(manifold, res.point, s, y)
    return DescentStep(res.point, res.value, res.payload, new_gradient, res.step,
                       res.n_evaluations, bb)


def gradient_descent(objective, manifold, point, n_steps, line_search, retraction=None,
                     previous_step=None):
    """``n_steps`` Armijo steps from ``point`` (the local solver of DANE).

    Returns ``(point, last_step_size, n_evaluations)``. A failed line search ends the
    loop early (the point is then stationary to working precision).
    """
    value, ev = objective.cost(point)
    gradient = objective.gradient(point, ev)
    n_evals, step, bb = 1, previous_step, None
    for _ in range(n_steps):
        if manifold.norm(point, gradient) == 0.0:
            break
        try:
            out = armijo_gradient_step(objective, manifold, point, value, gradient, line_search,
                                       step, bb, retraction)
        except StopFit:
            break
        point, value, gradient, step, bb = out.point, out.value, out.gradient, out.step, \
            out.bb_step
        n_evals += out.n_evaluations
    return point, step, n_evals


# ====================================================================== stochastic epochs
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
    * ``"spider"``: the SARAH estimator with a normalised step of length at most
      ``max_step_length`` (default: the length of the first, full-gradient step).

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
    check_choice(method, "method", INNER_SOLVERS)
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
    if method == "spider" and radius is None:
        radius = learning_rate * manifold.norm(U, v)
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
                   batch_size, sampling, rng, retraction=None):
    """Catalyst's inner solver: ``epochs`` variance-reduced epochs on
    ``f + kappa/2 dist^2(., centre)`` from ``start``.

    Returns ``(point, proximal_objective, user_gradients)``.
    """
    proximal = ProximalObjective(problem, centre, kappa)
    U, used = start, 0
    for _ in range(epochs):
        U, n = variance_reduced_epoch(method, problem, U, learning_rate, inner_steps,
                                      batch_size, sampling, rng, retraction, proximal)
        used += n
    return U, proximal, used


# ====================================================================== estimators
@dataclass
class GrassmannState(FactorState):
    """The model (FactorState fields; ``item_factors`` is U, ``user_factors`` is W(U))
    and the optimiser's working variables."""

    value: float = np.nan
    gradient: object = None
    evaluation: object = None
    step_size: float | None = None
    bb_step: float | None = None
    user_gradients: int = 0
    extra: dict = dataclasses.field(default_factory=dict)

    def copy(self):
        out = super().copy()
        out.extra = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in self.extra.items()}
        return out


class _GrassmannEstimator(FactorizationEstimator):
    """Shared set-up: centring, the problem, the initial point, the exact final W."""

    _contract_params = {"n_factors": 2, "max_iter": 3, "random_state": 0}

    def fit(self, X, y=None, *, eval_set=None):
        """Fit (see :meth:`FactorizationEstimator.fit`) with BLAS limited to one thread.

        The dense work here is on (n_items, k) and (k, k) matrices, for which OpenBLAS's
        threads cost far more than they save (10-30x slower on a loaded 2-core machine,
        and nested inside numba's parallel ridge kernel); the heavy loops are numba's.
        """
        with threadpool_limits(limits=1, user_api="blas"):
            return super().fit(X, y, eval_set=eval_set)

    def _check_common(self, train):
        check_positive_int(self.n_factors, "n_factors")
        check_positive(self.regularization, "regularization")
        check_nonnegative(self.bias_regularization, "bias_regularization")
        check_choice(self.center, "center", CENTERS)
        check_choice(self.init, "init", INITS)
        check_choice(self.retraction, "retraction", RETRACTIONS)
        if self.n_factors > train.n_items:
            raise ValueError(f"n_factors={self.n_factors} exceeds the number of items "
                             f"({train.n_items}); choose n_factors <= {train.n_items}")

    def _centre(self, train):
        """(mu, user_bias, item_bias, centred CSR matrix)."""
        if self.center == "bias":
            base = BiasBaseline(regularization=self.bias_regularization, max_iter=20,
                                tol=1e-10, verbose=0).fit(train)
            mu, b, c = base.global_mean_, base.user_bias_, base.item_bias_
        else:
            mu = float(train.ratings.mean()) if self.center == "mean" else 0.0
            b, c = np.zeros(train.n_users), np.zeros(train.n_items)
        centred = train.ratings - mu - b[train.users] - c[train.items]
        matrix = sp.csr_matrix((centred, (train.users, train.items)), shape=train.shape)
        matrix.sort_indices()
        return mu, b, c, matrix

    def _initial_point(self, manifold, matrix, rng):
        if self.init == "random":
            return manifold.random_point(rng)
        # top-k right singular vectors of the centred ratings (start vector from rng)
        v0 = rng.standard_normal(min(matrix.shape))
        _, _, vt = spla.svds(matrix, k=self.n_factors, v0=v0)
        return np.linalg.qr(vt.T)[0]

    def _init_state(self, train):
        self._check_common(train)
        self._check_params()
        rng = check_random_state(self.random_state)
        mu, b, c, matrix = self._centre(train)
        manifold = Grassmann(train.n_items, self.n_factors, self.retraction)
        self._problem = VariableProjectionProblem(matrix, self.regularization, manifold)
        self._rng = rng
        U = self._initial_point(manifold, matrix, rng)
        ev = self._problem.evaluate(U)
        state = GrassmannState(mu, b, c, ev.user_factors, U, ev.value,
                               self._problem.riemannian_gradient(U, ev), ev,
                               user_gradients=self._problem.n_active_users)
        self._setup(state)
        return state

    def _check_params(self):
        """Validate solver-specific parameters (subclasses)."""

    def _setup(self, state):
        """Solver-specific initial working variables (subclasses)."""

    def _accept(self, state, U, evaluation=None, gradient=None, objective=None):
        """Move the state to U (evaluating f there unless given) and return the metrics."""
        problem = self._problem
        if evaluation is None:
            evaluation = problem.evaluate(U)
            state.user_gradients += problem.n_active_users
        if gradient is None:
            gradient = problem.riemannian_gradient(U, evaluation)
        state.item_factors, state.evaluation = U, evaluation
        self._current_point = U  # for callbacks such as PathRecorder
        state.user_factors, state.value, state.gradient = (evaluation.user_factors,
                                                           evaluation.value, gradient)
        return {"objective": evaluation.value,
                "grad_norm": float(np.linalg.norm(gradient)),
                "user_gradients": state.user_gradients}

    def _line_search(self):
        ls = self.line_search if getattr(self, "line_search", None) is not None \
            else ArmijoLineSearch()
        if not hasattr(ls, "search"):
            raise TypeError(f"line_search must have a search method, got {ls!r}")
        return ls

    def _auto_learning_rate(self, state):
        """A fixed step for the stochastic methods: ``learning_rate`` if a number, else
        (``"auto"``) a quarter of the Armijo step of a full-gradient search at the initial
        point (Armijo accepts steps up to ~2/L, so this is ~1/(2L)). The search's
        accepted point becomes the starting point, so its evaluations are not wasted."""
        if self.learning_rate not in ("auto", "bb"):
            return check_positive(self.learning_rate, "learning_rate")
        out = armijo_gradient_step(FullObjective(self._problem), self._problem.manifold,
                                   state.item_factors, state.value, state.gradient,
                                   ArmijoLineSearch(growth=1.0), None, None, self.retraction)
        state.user_gradients += out.n_evaluations * self._problem.n_active_users
        self._accept(state, out.point, out.evaluation, out.gradient)
        return 0.25 * out.step

    def _finalize(self, state):
        # the exact user factors of the final subspace (W is never a gradient iterate)
        state.user_factors = self._problem.solve_user_factors(state.item_factors)
        state.extra = {}
        state.evaluation = None
        super()._finalize(state)
        del self._problem, self._rng
        self.__dict__.pop("_current_point", None)


_COMMON_DOC = """
    n_factors : int, default 10
        Rank k (dimension of the subspace).
    regularization : float, default 1e-2
        ``lam``; every user solve is a ridge regression with penalty ``lam**2``.
    bias_regularization : float, default 10.0
        Penalty of the bias baseline that centres the ratings (``center="bias"``).
    center : {"bias", "mean", "none"}, default "bias"
        Centre by the regularised bias baseline, by the global mean, or not at all.
    init : {"random", "svd"}, default "random"
        Initial subspace: uniform random, or the top-k right singular vectors of the
        centred rating matrix.
    retraction : {"qr", "polar", "cayley"}, default "qr"
    max_iter : int
    tol : float
        Relative change of the objective that stops the fit.
    random_state : int, Generator or None
    verbose : int, default 1
    callbacks : list of callables, optional
"""


class RGD(_GrassmannEstimator):
    __doc__ = """Riemannian gradient descent with Armijo backtracking.

    Parameters
    ----------""" + _COMMON_DOC + """    line_search : ArmijoLineSearch, optional
        Default ``ArmijoLineSearch()`` (contraction 0.5, sufficient decrease 1e-4,
        Barzilai-Borwein initial steps; ``initial="previous"`` starts from twice the
        previous accepted step instead).
    """

    def __init__(self, n_factors=10, regularization=1e-2, bias_regularization=10.0,
                 center="bias", init="random", retraction="qr", line_search=None, max_iter=100,
                 tol=1e-7, random_state=None, verbose=1, callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.center = center
        self.init = init
        self.retraction = retraction
        self.line_search = line_search
        self.max_iter = max_iter
        self.tol = tol
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


class RAGD(_GrassmannEstimator):
    __doc__ = """Riemannian accelerated gradient descent (Zhang & Sra 2018, constant-step
    scheme with the estimate-sequence parameters ``gamma``, ``mu``, ``beta``).

    Per iteration, with step ``h`` (an Armijo step, started from the previous one):
    ``alpha^2 = h((1 - alpha) gamma + alpha mu)``, ``gbar = (1 - alpha) gamma + alpha mu``,
    ``y = Exp_x(alpha gamma / (gamma + alpha mu) Log_x(v))``,
    ``x+ = R_y(-h grad f(y))``,
    ``v+ = Exp_y(((1 - alpha) gamma / gbar) Log_y(v) - (alpha / gbar) grad f(y))``,
    ``gamma+ = gbar / (1 + beta)``. f is not geodesically convex here, so when ``x+``
    is worse than ``x`` the momentum is restarted (``v = x``) from a plain Armijo step
    at ``x``; ``restarts`` counts these in the history.

    Parameters
    ----------""" + _COMMON_DOC + """    gamma, mu, beta : float, default 1, 5, 5
    line_search : ArmijoLineSearch, optional
    """

    def __init__(self, n_factors=10, regularization=1e-2, bias_regularization=10.0,
                 center="bias", init="random", retraction="qr", gamma=1.0, mu=5.0, beta=5.0,
                 line_search=None, max_iter=100, tol=1e-7, random_state=None, verbose=1,
                 callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.center = center
        self.init = init
        self.retraction = retraction
        self.gamma = gamma
        self.mu = mu
        self.beta = beta
        self.line_search = line_search
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _check_params(self):
        check_positive(self.gamma, "gamma")
        check_positive(self.mu, "mu")
        check_nonnegative(self.beta, "beta")

    def _setup(self, state):
        state.extra.update(v=state.item_factors.copy(), gamma=float(self.gamma), restarts=0)

    def _step(self, state, train):
        problem, manifold = self._problem, self._problem.manifold
        objective, ls = FullObjective(problem), self._line_search()
        x, v, gamma, mu = state.item_factors, state.extra["v"], state.extra["gamma"], self.mu
        h = state.step_size if state.step_size is not None else \
            ls.initial_step(None, float(np.linalg.norm(state.gradient)))
        # alpha solves alpha^2 - h (mu - gamma) alpha - h gamma = 0 (positive root)
        alpha = 0.5 * (h * (mu - gamma) + np.sqrt((h * (mu - gamma)) ** 2 + 4 * h * gamma))
        alpha = min(alpha, 1.0)
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


class _VarianceReduced(_GrassmannEstimator):
    """One ``_step`` = one epoch of the variance-reduced method ``_method``."""

    _method = "svrg"

    def _check_params(self):
        check_positive_int(self.batch_size, "batch_size")
        check_choice(self.sampling, "sampling", SAMPLINGS)
        if self.inner_steps is not None:
            check_positive_int(self.inner_steps, "inner_steps")
        if self.learning_rate not in self._step_rules:
            check_positive(self.learning_rate, "learning_rate")
        if getattr(self, "bb_scale", None) is not None:
            check_positive(self.bb_scale, "bb_scale")
        check_positive(getattr(self, "epoch_length", 1.0), "epoch_length")

    _step_rules = ("auto", "bb")

    def _inner_steps(self):
        if self.inner_steps is not None:
            return self.inner_steps
        length = getattr(self, "epoch_length", 1.0)
        return max(1, int(length * self._problem.n_active_users // self.batch_size))

    def _setup(self, state):
        state.step_size = self._auto_learning_rate(state)
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

    def _step(self, state, train):
        state.step_size = self._snapshot_step_size(state)
        state.extra.update(previous_snapshot=state.item_factors,
                           previous_gradient=state.gradient)
        U, used = variance_reduced_epoch(
            self._method, self._problem, state.item_factors, state.step_size,
            self._inner_steps(), self.batch_size, self.sampling, self._rng, self.retraction,
            snapshot_gradient=state.gradient, max_step_length=getattr(self, "max_step_length",
                                                                      None),
            snapshot_evaluation=state.evaluation, heavy_ball=state.extra.get("heavy_ball"))
        state.user_gradients += used
        return {**self._accept(state, U), "step_size": state.step_size}


_VR_DOC = """    learning_rate : float, "auto" or "bb", default "auto"
        Fixed step; "auto" takes a quarter of the Armijo step of a full-gradient search at the
        initial point; "bb" starts like "auto" and then sets each epoch's step to ``bb_scale``
        times the Barzilai-Borwein quotient of the last two snapshots' full gradients
        (SVRG-BB, Tan et al. 2016).
    batch_size : int, default 64
        Users per stochastic gradient.
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


def _vr_init(self, n_factors, regularization, bias_regularization, center, init, retraction,
             learning_rate, batch_size, inner_steps, sampling, max_iter, tol, random_state,
             verbose, callbacks, **step_rule):
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
    self.random_state = random_state
    self.verbose = verbose
    self.callbacks = callbacks


class RSVRG(_VarianceReduced):
    __doc__ = """Riemannian SVRG (Zhang, Reddi & Sra 2016; Sato, Kasai & Mishra 2019): per
    epoch a snapshot full gradient, then ``v = g_B(U) - T(g_B(S) - g(S))`` steps with
    projection transport, averaged by heavy-ball momentum.

    The first inner step of an epoch is at the snapshot, where ``v = g(S)`` exactly, so it
    draws no minibatch; later ones read ``g_B(S)`` from the snapshot's evaluation.

    Parameters
    ----------""" + _COMMON_DOC + _VR_DOC + """    momentum : float, default 0.6
        ``beta`` of :class:`HeavyBall` (0 for plain R-SVRG). On the quick profile
        (ml-100k, rank 10) momentum 0.6 brought the median user-gradients to reach RGD's
        30-iteration objective from 0.50 to 0.44 of RGD's over 16 seeds
        (``benchmarks/bench_riemannian.py``).
    """

    _method = "svrg"

    def __init__(self, n_factors=10, regularization=1e-2, bias_regularization=10.0,
                 center="bias", init="random", retraction="qr", learning_rate="auto",
                 batch_size=64, inner_steps=None, sampling="count", momentum=0.6,
                 bb_scale=None, epoch_length=1.0, max_iter=30, tol=1e-7, random_state=None,
                 verbose=1, callbacks=None):
        _vr_init(self, n_factors, regularization, bias_regularization, center, init,
                 retraction, learning_rate, batch_size, inner_steps, sampling, max_iter, tol,
                 random_state, verbose, callbacks, bb_scale=bb_scale,
                 epoch_length=epoch_length)
        self.momentum = momentum

    def _check_params(self):
        super()._check_params()
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be a number in [0, 1), got {self.momentum!r}")


class RSARAH(_VarianceReduced):
    __doc__ = """Riemannian SARAH: the recursive estimator
    ``v_t = g_B(U_t) - T(g_B(U_t-1)) + T(v_t-1)``, restarted with a full gradient each
    epoch.

    Parameters
    ----------""" + _COMMON_DOC + _VR_DOC

    _method = "sarah"

    def __init__(self, n_factors=10, regularization=1e-2, bias_regularization=10.0,
                 center="bias", init="random", retraction="qr", learning_rate="auto",
                 batch_size=64, inner_steps=None, sampling="uniform", bb_scale=None,
                 epoch_length=1.0, max_iter=30, tol=1e-7, random_state=None, verbose=1,
                 callbacks=None):
        _vr_init(self, n_factors, regularization, bias_regularization, center, init,
                 retraction, learning_rate, batch_size, inner_steps, sampling, max_iter, tol,
                 random_state, verbose, callbacks, bb_scale=bb_scale,
                 epoch_length=epoch_length)


class RSPIDER(_VarianceReduced):
    __doc__ = """Riemannian SPIDER: the SARAH estimator with normalised steps
    ``min(learning_rate, max_step_length / |v|)``.

    Parameters
    ----------""" + _COMMON_DOC + _VR_DOC + """    max_step_length : float, optional
        Longest move per inner step; default the length of the epoch's first
        (full-gradient) step.
    """

    _method = "spider"

    def __init__(self, n_factors=10, regularization=1e-2, bias_regularization=10.0,
                 center="bias", init="random", retraction="qr", learning_rate="auto",
                 batch_size=64, inner_steps=None, sampling="uniform", max_step_length=None,
                 bb_scale=None, epoch_length=1.0, max_iter=30, tol=1e-7, random_state=None,
                 verbose=1, callbacks=None):
        _vr_init(self, n_factors, regularization, bias_regularization, center, init,
                 retraction, learning_rate, batch_size, inner_steps, sampling, max_iter, tol,
                 random_state, verbose, callbacks, bb_scale=bb_scale,
                 epoch_length=epoch_length)
        self.max_step_length = max_step_length

    def _check_params(self):
        super()._check_params()
        if self.max_step_length is not None:
            check_positive(self.max_step_length, "max_step_length")


class Catalyst(_GrassmannEstimator):
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
    ----------""" + _COMMON_DOC + _VR_DOC + """    inner_solver : {"svrg", "sarah", "spider"}
        Default "svrg".
    inner_epochs : int, default 1
        Epochs of the inner solver per proximal subproblem.
    kappa : float, default 0.1
        Initial kappa of the proximal-point step (doubled adaptively, kept afterwards).
    kappa_cvx : float, default 0.1
        Kappa of the extrapolated step.
    max_doublings : int, default 10
    """

    def __init__(self, n_factors=10, regularization=1e-2, bias_regularization=10.0,
                 center="bias", init="random", retraction="qr", inner_solver="svrg",
                 inner_epochs=1, kappa=0.1, kappa_cvx=0.1, max_doublings=10,
                 learning_rate="auto", batch_size=64, inner_steps=None, sampling="uniform",
                 max_iter=20, tol=1e-7, random_state=None, verbose=1, callbacks=None):
        _vr_init(self, n_factors, regularization, bias_regularization, center, init,
                 retraction, learning_rate, batch_size, inner_steps, sampling, max_iter, tol,
                 random_state, verbose, callbacks)
        self.inner_solver = inner_solver
        self.inner_epochs = inner_epochs
        self.kappa = kappa
        self.kappa_cvx = kappa_cvx
        self.max_doublings = max_doublings

    _contract_params = {"n_factors": 2, "max_iter": 2, "random_state": 0, "max_doublings": 2}
    _step_rules = ("auto",)

    def _check_params(self):
        _VarianceReduced._check_params(self)
        check_choice(self.inner_solver, "inner_solver", INNER_SOLVERS)
        check_positive_int(self.inner_epochs, "inner_epochs")
        check_positive(self.kappa, "kappa")
        check_positive(self.kappa_cvx, "kappa_cvx")
        check_positive_int(self.max_doublings, "max_doublings", minimum=0)

    _inner_steps = _VarianceReduced._inner_steps

    def _setup(self, state):
        state.step_size = self._auto_learning_rate(state)
        state.extra.update(v=state.item_factors.copy(), alpha=1.0, kappa=float(self.kappa),
                           doublings=0)

    def _prox(self, centre, kappa, start, state):
        lr = 1.0 / (1.0 / state.step_size + kappa)
        point, proximal, used = solve_proximal(
            self.inner_solver, self._problem, centre, kappa, start, lr, self.inner_epochs,
            self._inner_steps(), self.batch_size, self.sampling, self._rng, self.retraction)
        ev = self._problem.evaluate(point)
        grad_f = self._problem.riemannian_gradient(point, ev)
        grad_prox = grad_f + proximal.proximal_gradient(point)
        state.user_gradients += used + self._problem.n_active_users
        return point, ev, grad_f, ev.value + proximal.proximal_term(point), grad_prox

    def _step(self, state, train):
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


# ====================================================================== DANE
def partition_users(user_counts, n_workers) -> list[np.ndarray]:
    """Split users into ``n_workers`` contiguous blocks with about equal rating counts."""
    check_positive_int(n_workers, "n_workers")
    cum = np.cumsum(user_counts)
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, n_workers) / n_workers)
    return [b for b in np.split(np.arange(len(user_counts)), cuts)]


def dane_worker_gradient(part: VariableProjectionProblem, U):
    """A worker's share: ``(f_j(U), grad f_j(U), evaluation)``; f and its gradient
    are the sums of these over workers (an all-reduce under MPI)."""
    ev = part.evaluate(U)
    return ev.value, part.riemannian_gradient(U, ev), ev


def dane_worker_solve(part, U, local_gradient, global_gradient, mu, n_workers, local_steps,
                      line_search, retraction=None, previous_step=None):
    """A worker's DANE subproblem: ``local_steps`` Armijo RGD steps on
    :class:`DaneLocalObjective` from ``U``; returns ``(V_j, step, n_evaluations)``."""
    correction = n_workers * local_gradient - global_gradient
    objective = DaneLocalObjective(part, U, correction, mu, n_workers)
    return gradient_descent(objective, part.manifold, U, local_steps, line_search, retraction,
                            previous_step)


def _allreduce_sum(arrays):
    """Sum over workers (in-process here; ``comm.allreduce`` under MPI)."""
    return sum(arrays[1:], arrays[0])


class DANE(_GrassmannEstimator):
    __doc__ = """DANE (Shamir, Srebro & Zhang 2014) on the Grassmann manifold, users
    partitioned across ``n_workers`` workers (simulated in one process; the worker
    functions :func:`dane_worker_gradient` and :func:`dane_worker_solve` only exchange
    sums of arrays, so they run unchanged under MPI).

    Round: global gradient ``g = sum_j grad f_j(U)``; each worker runs ``local_steps``
    Armijo RGD steps on its corrected local problem (see :class:`DaneLocalObjective`);
    the new point is the tangent-space average ``Exp_U(mean_j Log_U(V_j))`` (one
    Karcher-mean step).

    Parameters
    ----------""" + _COMMON_DOC + """    n_workers : int, default 4
    mu : float, default 0.01
        Weight of the proximity term ``mu/2 (k - |U^T V|^2)`` of the local problems.
        f is an average over ratings, so its curvature is small: on ml-100k at rank 10,
        ``mu=0.1`` keeps the workers almost still and ``mu=0`` lets them drift apart.
    local_steps : int, default 5
    line_search : ArmijoLineSearch, optional
    """

    def __init__(self, n_factors=10, regularization=1e-2, bias_regularization=10.0,
                 center="bias", init="random", retraction="qr", n_workers=4, mu=0.01,
                 local_steps=5, line_search=None, max_iter=30, tol=1e-7, random_state=None,
                 verbose=1, callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.center = center
        self.init = init
        self.retraction = retraction
        self.n_workers = n_workers
        self.mu = mu
        self.local_steps = local_steps
        self.line_search = line_search
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _check_params(self):
        check_positive_int(self.n_workers, "n_workers")
        check_nonnegative(self.mu, "mu")
        check_positive_int(self.local_steps, "local_steps")

    def _setup(self, state):
        problem = self._problem
        blocks = partition_users(problem.user_counts, self.n_workers)
        self._workers = [(users, problem.restrict(users)) for users in blocks]
        state.extra["steps"] = np.full(self.n_workers, np.nan)

    def _step(self, state, train):
        U, manifold, ls = state.item_factors, self._problem.manifold, self._line_search()
        shares = [dane_worker_gradient(part, U) for _, part in self._workers]
        global_gradient = _allreduce_sum([g for _, g, _ in shares])
        logs, evals = [], 0
        for j, ((_, part), (_, g_j, _)) in enumerate(zip(self._workers, shares, strict=True)):
            prev = state.extra["steps"][j]
            V, step, n = dane_worker_solve(part, U, g_j, global_gradient, self.mu,
                                           self.n_workers, self.local_steps, ls,
                                           self.retraction, None if np.isnan(prev) else prev)
            state.extra["steps"][j] = np.nan if step is None else step
            logs.append(manifold.log(U, V))
            evals += n * part.n_active_users
        U_new = manifold.exp(U, _allreduce_sum(logs) / self.n_workers)
        # the objective and user factors at U_new, assembled from the workers' shares
        shares = [dane_worker_gradient(part, U_new) for _, part in self._workers]
        W = np.zeros_like(state.user_factors)
        residuals = []
        for (users, _), (_, _, ev) in zip(self._workers, shares, strict=True):
            W[users] = ev.user_factors
            residuals.append(ev.residuals)
        ev = Evaluation(sum(v for v, _, _ in shares), W, np.concatenate(residuals))
        state.user_gradients += evals + 2 * self._problem.n_active_users
        metrics = self._accept(state, U_new, ev, _allreduce_sum([g for _, g, _ in shares]))
        return {**metrics, "consensus": float(np.sqrt(np.mean([np.sum(lg ** 2)
                                                               for lg in logs])))}

    def _finalize(self, state):
        super()._finalize(state)
        del self._workers


# ====================================================================== Euclidean GD
@dataclass
class EuclideanState(FactorState):
    value: float = np.nan
    gradient: object = None
    step_size: float | None = None
    bb_step: float | None = None


class _Euclidean:
    """R^d with the identity retraction (so the Armijo search works unchanged)."""

    @staticmethod
    def retraction(point, vector, method=None):
        return point + vector

    @staticmethod
    def norm(point, vector):
        return float(np.linalg.norm(vector))

    @staticmethod
    def inner(point, a, b):
        return float(np.vdot(a, b))


class EuclideanGD(_GrassmannEstimator):
    __doc__ = """Plain gradient descent on all of ``(U, W, b, c)`` with Armijo steps:

    ``E = 1/(2N) [ sum_Omega (r - mu - b_u - c_i - w_u . U_i)^2
    + lam^2 (|U|^2 + |W|^2 + |b|^2 + |c|^2) ]``

    (``mu`` fixed at the centring mean; biases start from the centring baseline, U
    from the chosen init, W from its exact ridge solution). A baseline for the
    manifold methods: same factorisation, no elimination of W, no geometry.

    Parameters
    ----------""" + _COMMON_DOC + """    line_search : ArmijoLineSearch, optional
    """

    def __init__(self, n_factors=10, regularization=1e-2, bias_regularization=10.0,
                 center="bias", init="random", line_search=None, max_iter=200, tol=1e-7,
                 random_state=None, verbose=1, callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.center = center
        self.init = init
        self.line_search = line_search
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    retraction = "qr"  # the shared checks expect it; unused by Euclidean steps

    def _init_state(self, train):
        self._check_common(train)
        rng = check_random_state(self.random_state)
        mu, b, c, matrix = self._centre(train)
        self._problem = VariableProjectionProblem(
            matrix, self.regularization, Grassmann(train.n_items, self.n_factors))
        U = self._initial_point(self._problem.manifold, matrix, rng)
        W = self._problem.solve_user_factors(U)
        # ratings relative to mu only: the biases are variables here
        data = matrix.data + b[np.repeat(np.arange(train.n_users), np.diff(matrix.indptr))] \
            + c[matrix.indices]
        self._ratings = sp.csr_matrix((data, matrix.indices, matrix.indptr), shape=matrix.shape)
        self._shapes = [(train.n_items, self.n_factors), (train.n_users, self.n_factors),
                        (train.n_users,), (train.n_items,)]
        x = np.concatenate([U.ravel(), W.ravel(), b, c])
        value, grad = self._value_and_gradient(x)
        state = EuclideanState(mu, None, None, None, None, value, grad)
        self._unpack_into(state, x)
        return state

    def _split(self, x):
        out, start = [], 0
        for shape in self._shapes:
            size = int(np.prod(shape))
            out.append(x[start:start + size].reshape(shape))
            start += size
        return out

    def _unpack_into(self, state, x):
        U, W, b, c = self._split(x)
        state.item_factors, state.user_factors, state.user_bias, state.item_bias = U, W, b, c

    def _residuals(self, x):
        U, W, b, c = self._split(x)
        p = self._problem
        return self._ratings.data - b[p._rows] - c[p._indices] - pair_dots_rows(W, U, p)

    def _value(self, x):
        e = self._residuals(x)
        return 0.5 * (e @ e + self._problem.ridge * (x @ x)) / self._problem.nnz, e

    def _value_and_gradient(self, x):
        value, e = self._value(x)
        return value, self._gradient(x, e)

    def _gradient(self, x, e):
        U, W, b, c = self._split(x)
        p, lam2 = self._problem, self._problem.ridge
        E = sp.csr_matrix((e, self._ratings.indices, self._ratings.indptr),
                          shape=self._ratings.shape)
        parts = [-(E.T @ W) + lam2 * U, -(E @ U) + lam2 * W,
                 -np.asarray(E.sum(axis=1)).ravel() + lam2 * b,
                 -np.asarray(E.sum(axis=0)).ravel() + lam2 * c]
        return np.concatenate([q.ravel() for q in parts]) / p.nnz

    def _step(self, state, train):
        x = np.concatenate([state.item_factors.ravel(), state.user_factors.ravel(),
                            state.user_bias, state.item_bias])
        ls = self._line_search()
        g = state.gradient
        g_norm = float(np.linalg.norm(g))
        if g_norm == 0.0:
            return {"objective": state.value, "grad_norm": 0.0, "converged": True}
        res = ls.search(self._value, _Euclidean, x, -g, state.value, -g_norm ** 2,
                        ls.initial_step(state.step_size, g_norm, state.bb_step))
        state.value, state.step_size = res.value, res.step
        state.gradient = self._gradient(res.point, res.payload)
        state.bb_step = barzilai_borwein_step(_Euclidean, x, -res.step * g, state.gradient - g)
        self._unpack_into(state, res.point)
        self._current_point = state.item_factors
        return {"objective": res.value, "grad_norm": float(np.linalg.norm(state.gradient)),
                "step_size": res.step, "evaluations": res.n_evaluations}

    def _finalize(self, state):
        state.gradient = None
        FactorizationEstimator._finalize(self, state)
        del self._problem, self._ratings, self._shapes
        self.__dict__.pop("_current_point", None)


def pair_dots_rows(W, U, problem):
    """``w_u . U_i`` for every stored rating of ``problem`` (CSR order)."""
    with kernel_threads(problem.nnz):
        return pair_dots(W, U, problem._rows, problem._indices)


# ====================================================================== notebook helpers
class PathRecorder:
    """Callback keeping every iterate ``U`` of a Grassmann estimator (``points``), for
    pictures of the optimisation path; memory is ``n_items * k`` floats per iteration."""

    def __init__(self):
        self.points: list[np.ndarray] = []

    def __call__(self, iteration, metrics, model):
        self.points.append(model._current_point.copy())


def trajectory_pca(points, n_components: int = 2) -> np.ndarray:
    """Coordinates (len(points), n_components) of a path on Gr(n, k) for plotting.

    Each representative is rotated onto the last point (orthogonal Procrustes,
    ``U O`` with ``O = polar(U^T U_last)``), so the coordinates depend on the
    subspaces only; then ordinary PCA of the flattened aligned matrices.
    """
    last = points[-1]
    aligned = []
    for U in points:
        a, _, bt = np.linalg.svd(U.T @ last)
        aligned.append((U @ (a @ bt)).ravel())
    X = np.asarray(aligned)
    X = X - X.mean(axis=0)
    left, s, _ = np.linalg.svd(X, full_matrices=False)
    return left[:, :n_components] * s[:n_components]


def fit_models(models: dict, split) -> dict:
    """Fit every model on ``split.train`` with ``eval_set=split.validation``; returns the
    same dict (fitted)."""
    for model in models.values():
        model.fit(split.train, eval_set=split.validation)
    return models


def summary_table(models: dict):
    """One row per fitted model: final objective and gradient norm, best and final
    validation RMSE, iterations, solver seconds, user-gradients, stop reason; sorted by
    best validation RMSE."""
    import pandas as pd  # noqa: PLC0415

    rows = []
    for name, m in models.items():
        h = m.history_
        last = h[len(h) - 1]
        rows.append({"model": name, "objective": last.get("objective", np.nan),
                     "grad_norm": last.get("grad_norm", np.nan),
                     "best_val_rmse": float(np.nanmin(h["val_rmse"])),
                     "final_val_rmse": last["val_rmse"], "iterations": m.n_iter_,
                     "seconds": last["time"],
                     "user_gradients": last.get("user_gradients", np.nan),
                     "stop_reason": m.stop_reason_})
    return pd.DataFrame(rows).sort_values("best_val_rmse").reset_index(drop=True)
