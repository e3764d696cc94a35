"""What every Grassmann estimator shares: its state, the Armijo gradient step, and the
estimator base (centring, the variable-projection problem, the initial point, the exact
final user factors).

The model fitted by every optimiser of the family is ``r_hat = mu + b_u + c_i + w_u . U_i``
with offsets from :func:`mflib.solvers.baselines.center`, ``U`` orthonormal (items x k)
and ``w_u`` the exact ridge solution for ``U`` (see :mod:`.completion`). After the fit
``item_factors_ = U`` and ``user_factors_ = W`` (solved exactly for the final ``U``), so
``predict`` works like every estimator's.

History columns: ``objective`` (f), ``grad_norm`` (Riemannian gradient norm),
``train_rmse`` (from the residuals f was evaluated with), ``step_size``,
``user_gradients`` (cumulative per-user solve+gradient evaluations; a full evaluation
of f costs ``n_users`` of them), solver-specific extras (``kappa``...).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as spla

from ... import execution
from ...base import FactorizationEstimator, FactorState
from ...data.layout import training_layout
from ...fitting import StopFit
from ...validation import (
    NONE,
    NONNEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    HasMethods,
    Options,
    check_random_state,
)
from ..baselines import CENTER_CONSTRAINT, center
from .completion import VariableProjectionProblem
from .line_search import ArmijoLineSearch, barzilai_borwein_step
from .manifolds import RETRACTIONS, Grassmann
from .objectives import FullObjective

INITS = ("random", "svd")


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
    search finds no sufficient decrease (never returns a zero step), and
    :class:`~mflib.fitting.StopFit` ``("converged")`` when the gradient is exactly zero
    (e.g. constant ratings, whose centred values are all 0): ``point`` is stationary.
    """
    g_norm = manifold.norm(point, gradient)
    if g_norm == 0.0:
        raise StopFit("converged")
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


# ====================================================================== estimator base
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


class GrassmannEstimator(FactorizationEstimator):
    """Shared set-up: centring, the problem, the initial point, the exact final W."""

    _parameter_constraints = {
        "n_factors": [POSITIVE_INT],
        "regularization": [POSITIVE],
        "bias_regularization": [NONNEGATIVE],
        "center": CENTER_CONSTRAINT,
        "init": [Options(*INITS)],
        "retraction": [Options(*RETRACTIONS)],
        "line_search": [NONE, HasMethods("search", "initial_step")],
    }
    _contract_params = {"n_factors": 2, "max_iter": 3, "random_state": 0}
    _mpi = "whole"  # each rank sums its block of users (DistributedProblem)
    _devices = ("cpu", "gpu")  # f and its full gradient on the GPU (DeviceProblem)

    def _check_size(self, train):
        if self.n_factors > train.n_items:
            raise ValueError(f"n_factors={self.n_factors} exceeds the number of items "
                             f"({train.n_items}); choose n_factors <= {train.n_items}")

    def _centred_problem(self, train):
        """``(centering, problem)``: the offsets and f on the centred ratings."""
        offsets = center(train, self.center, self.bias_regularization)
        layout = training_layout(train)
        matrix = layout.csr_matrix(layout.to_csr(offsets.values))
        manifold = Grassmann(train.n_items, self.n_factors, self.retraction)
        exchange, policy = execution.exchange(), execution.current()
        if policy.device == "gpu":  # the ridge solves, residuals and gradient on the GPU
            if exchange is not None:
                raise ValueError(f"{type(self).__name__}: device='gpu' under MPI is not "
                                 "supported; use one GPU process, or the CPU across ranks")
            from .completion_xp import DeviceProblem  # noqa: PLC0415

            return offsets, DeviceProblem(matrix, self.regularization, manifold, policy.xp)
        if exchange is not None:  # each rank's block of users; f and gradients summed
            from ...distributed.variable_projection import DistributedProblem  # noqa: PLC0415

            return offsets, DistributedProblem(matrix, self.regularization, manifold, exchange)
        return offsets, VariableProjectionProblem(matrix, self.regularization, manifold)

    def _initial_point(self, manifold, matrix, rng):
        # centred ratings that are all 0 (constant data) single out no subspace
        if self.init == "random" or not matrix.count_nonzero():
            return manifold.random_point(rng)
        # top-k right singular vectors of the centred ratings (start vector from rng)
        v0 = rng.standard_normal(min(matrix.shape))
        if self.n_factors < min(matrix.shape):
            _, _, vt = spla.svds(matrix, k=self.n_factors, v0=v0)
        else:  # svds needs k < min(shape); a matrix that small is decomposed densely,
            # completing the top singular vectors to k orthonormal ones
            vt = np.linalg.svd(matrix.toarray(), full_matrices=True)[2][: self.n_factors]
        return np.linalg.qr(vt.T)[0]

    def _init_state(self, train):
        self._check_size(train)
        rng = check_random_state(self.random_state)
        offsets, self._problem = self._centred_problem(train)
        self._rng = rng
        # every rank starts from the same point, from the whole matrix
        matrix = getattr(self._problem, "global_matrix", self._problem.matrix)
        U = self._initial_point(self._problem.manifold, matrix, rng)
        ev = self._problem.evaluate(U)
        state = GrassmannState(offsets.mean, offsets.user_bias, offsets.item_bias,
                               ev.user_factors, U, ev.value,
                               self._problem.riemannian_gradient(U, ev), ev,
                               user_gradients=self._problem.n_active_users)
        try:
            self._setup(state)
        except StopFit as stop:  # e.g. a stationary starting point: nothing to calibrate
            stop.state = state
            raise
        return state

    def _setup(self, state):
        """Solver-specific initial working variables (subclasses)."""

    def _accept(self, state, U, evaluation=None, gradient=None):
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
        # the evaluation's residuals are those of the model (centred rating - w_u . U_i
        # = r - r_hat), so the training RMSE needs no prediction pass
        residuals = evaluation.residuals
        return {"objective": evaluation.value,
                "grad_norm": float(np.linalg.norm(gradient)),
                "train_rmse": float(np.sqrt(residuals @ residuals / residuals.size)),
                "user_gradients": state.user_gradients}

    def _line_search(self):
        return self.line_search if getattr(self, "line_search", None) is not None \
            else ArmijoLineSearch()

    def _auto_learning_rate(self, state):
        """A fixed step for the stochastic methods: ``learning_rate`` if a number, else
        (``"auto"``) a quarter of the Armijo step of a full-gradient search at the initial
        point (Armijo accepts steps up to ~2/L, so this is ~1/(2L)). The search's
        accepted point becomes the starting point, so its evaluations are not wasted."""
        if self.learning_rate not in ("auto", "bb"):
            return float(self.learning_rate)
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


COMMON_DOC = """
    n_factors : int, default 3
        Rank k (dimension of the subspace). Only the users' ``w_u`` carry a penalty: an
        item's row of U is free but for the orthonormality of U, so a rarely rated item
        is fitted more closely the higher the rank. The default was chosen with
        ``regularization`` on 10% validation parts of ml-100k u1.base and of the Netflix
        course training set (RGD, ranks 1-10, lam 0.001-3): rank 3 with lam 0.3 was the
        one setting among the best on both (validation RMSE 0.925 and 0.934 against the
        bias baseline's 0.944 and 0.943), where rank 10 overfits the sparser Netflix set
        (0.943) and the former defaults (rank 10, lam 1e-4) overfit both (1.27 and
        1.44).
    regularization : float, default 0.3
        ``lam``, the ridge penalty ``lam |w_u|^2`` of every user's solve (scaled like the
        data term, see :mod:`mflib.solvers.riemannian.completion`). As U is orthonormal,
        ``U_Iu^T U_Iu`` is about ``(n_u / n_items) I``, so ``lam`` weighs against a
        user's share of the catalogue, not against a rating scale.
    bias_regularization : float, default 10.0
        ``lambda`` of the bias baseline removed first (``center="biases"``).
    center : {"biases", "mean", "none"}, default "biases"
        Centre by the regularised bias baseline, by the global mean, or not at all
        (:func:`mflib.solvers.baselines.center`).
    init : {"random", "svd"}, default "random"
        Initial subspace: uniform random, or the top-k right singular vectors of the
        centred rating matrix.
    retraction : {"qr", "polar", "cayley"}, default "qr"
    max_iter : int
    tol : float
        Relative change of the objective that stops the fit.
    n_jobs : int or None, default None
        numba threads (None: all); results do not depend on it.
    device : {"cpu", "gpu", "auto"}, default "cpu"
        "gpu": f, the user solves and the full gradient run on the GPU (CuPy); the
        manifold steps (items x k) and minibatch gradients stay on the host.
    random_state : int, Generator or None
    verbose : int, default 0
    callbacks : list of callables, optional
"""
