"""Second-order methods for the factorisation objective: modified Newton with a dense
exact Hessian (:class:`NewtonMF`), Gauss-Newton / Levenberg-Marquardt
(:class:`LevenbergMarquardt`) and truncated Newton-CG (:class:`NewtonCG`), the last two
matrix-free.

All three minimise, over ``x = (P, Q[, b, c])``,

    f = 1/(2N) [ sum_Omega (r_ui - o_ui - p_u . q_i [- b_u - c_i])^2
                 + regularization (|P|^2 + |Q|^2) + bias_regularization (|b|^2 + |c|^2) ]

(``N = |Omega|``; ``o_ui`` the fixed centring of ``center``: 0, the training mean
``mu``, or the bias baseline ``mu + b0_u + c0_i``; the biases ``b, c`` are variables
only with ``use_bias``; see :mod:`mflib.solvers.factorization_problem` for the
derivatives). With ``center="mean"`` and ``use_bias=True`` (the defaults), ``2N f`` is
ALS's ``regularization_scale="sum"`` objective. One ``_step`` is one outer iteration: a
search direction from second-order information, then Armijo backtracking from the unit
step (:class:`~mflib.solvers.riemannian.line_search.ArmijoLineSearch` on the Euclidean
space). The history records ``objective``, ``grad_norm`` (Euclidean norm of the
gradient of f), ``step_size`` (the accepted Armijo multiplier of the direction),
``train_rmse`` (from the step's residuals) and per method ``cg_iterations``,
``hessian_products``, ``shift``, ``damping``. ``tol`` is a bound on the gradient norm:
the fit stops as converged once ``grad_norm < tol``.

The original study's broken rank-1 Newton method and ALS with f's gradient recorded are
in :mod:`mflib.solvers.second_order_study`; the CG and Hessian-modification pieces in
:mod:`mflib.solvers.newton_steps`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..base import FactorizationEstimator, FactorState
from ..data.layout import training_layout
from ..fitting import StopFit
from ..validation import (
    BOOLEAN,
    NONE,
    NONNEGATIVE,
    NONNEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    HasMethods,
    Interval,
    Options,
    check_random_state,
)
from .baselines import CENTER_CONSTRAINT, center
from .euclidean_gd import _Euclidean
from .factorization_problem import FactorizationProblem
from .newton_steps import (
    FORCING,
    cholesky_shift_direction,
    eigenvalue_shift_direction,
    forcing_term,
    modified_cholesky_direction,
    truncated_cg,
)
from .riemannian.line_search import ArmijoLineSearch
from .state import initial_factors

HESSIAN_MODIFICATIONS = ("eigenvalue_shift", "cholesky_shift", "modified_cholesky")
PRECONDITIONERS = ("block_jacobi", "none")


@dataclass
class SecondOrderState(FactorState):
    """The model as views of one vector ``x`` (``user_factors`` is ``P`` ...), f there,
    its residuals and gradient, the problem (shared by copies) and solver extras."""

    problem: FactorizationProblem | None = None
    x: np.ndarray | None = None
    value: float = np.nan
    residuals: np.ndarray | None = None
    gradient: np.ndarray | None = None
    extra: dict = dataclasses.field(default_factory=dict)

    def move_to(self, x, value, residuals, gradient) -> None:
        self.x, self.value, self.residuals, self.gradient = x, float(value), residuals, gradient
        self.user_factors, self.item_factors, _, _ = self.problem.split(x)
        self.user_bias, self.item_bias = self.problem.biases(x)

    def copy(self):
        out = dataclasses.replace(self, extra=dict(self.extra))
        out.move_to(self.x.copy(), self.value, self.residuals.copy(), self.gradient.copy())
        return out


COMMON_DOC = """
    n_factors : int, default 10
        Rank ``k``.
    regularization : float, default 15.0
        ``regularization`` on ``|P|^2 + |Q|^2`` in the bracket of f (ALS's ``"sum"``
        convention, and its default). Chosen on 10% validation parts of ml-100k u1.base
        and of the Netflix course training set (0.1, 10, 15, 20): Newton-CG reached
        validation RMSE 0.918 and 0.935, Levenberg-Marquardt 0.919 and 0.935, against the
        bias baseline's 0.944 and 0.943; the former default 0.1 overfits (1.34-1.52).
    bias_regularization : float or None, default None
        Penalty on ``|b|^2 + |c|^2``, and the regularisation of the bias baseline that
        ``center="biases"`` removes (None: ``regularization``).
    center : {"mean", "biases", "none"}, default "mean"
        The fixed offset ``o_ui``: the training mean, the regularised bias baseline
        (:func:`mflib.solvers.baselines.center`), or nothing.
    use_bias : bool, default True
        Fit biases ``b_u + c_i`` with the factors (on top of the centring).
    init_std : float, default 0.1
        Factors start as N(0, init_std^2) entries, biases at 0.
    line_search : ArmijoLineSearch, optional
        Backtracking from the unit step; default ``ArmijoLineSearch()``.
    max_iter : int
        Outer iterations.
    tol : float, default 1e-8
        Stop as converged when the gradient norm of f falls below ``tol``.
    n_jobs : int or None, default None
        numba threads of the per-rating kernels (None: all).
    random_state : int, Generator or None
    verbose : int, default 0
    callbacks : list of callables, optional
"""

CG_DOC = """    forcing : {"eisenstat_walker", "quadratic", "superlinear"}
        Default ``"eisenstat_walker"``. Relative tolerance ``eta`` of each CG solve
        (``|A d + g| <= eta |g|``): choice 2 of Eisenstat & Walker (gamma 0.9,
        exponent 2, quadratic local convergence),
        ``min(0.5, |g|/|g_0|)`` or ``min(0.5, sqrt(|g|/|g_0|))``; see
        :func:`~mflib.solvers.factorization_problem.forcing_term`.
    cg_max_iter : int
        Products per CG solve, at most.
    preconditioner : {"block_jacobi", "none"}, default "block_jacobi"
        CG preconditioned by the inverse of the per-user and per-item diagonal blocks
        (the ALS normal matrices), or not at all.
"""


def factorization_problem(train, n_factors, regularization, bias_regularization=None,
                          center_how="mean", use_bias=True) -> FactorizationProblem:
    """The objective f of the second-order estimators on ``train`` (a RatingMatrix):
    centred by :func:`mflib.solvers.baselines.center` (``center_how``), with
    ``bias_regularization`` None meaning ``regularization``."""
    lam_b = regularization if bias_regularization is None else bias_regularization
    offsets = center(train, center_how, lam_b)
    return FactorizationProblem(training_layout(train), n_factors, regularization, lam_b,
                                use_bias, offsets.mean, offsets.user_bias, offsets.item_bias)


class _SecondOrder(FactorizationEstimator):
    """Shared set-up: the problem, the initial point, the Armijo step, the final copy."""

    _parameter_constraints = {
        "n_factors": [POSITIVE_INT],
        "regularization": [NONNEGATIVE],
        "bias_regularization": [NONE, NONNEGATIVE],
        "center": CENTER_CONSTRAINT,
        "use_bias": [BOOLEAN],
        "init_std": [POSITIVE],
        "line_search": [NONE, HasMethods("search")],
    }
    _contract_params = {"n_factors": 2, "max_iter": 4, "regularization": 0.5}
    _monitor = "grad_norm"
    _monitor_change = True  # tol bounds the gradient norm itself

    def _problem(self, train) -> FactorizationProblem:
        return factorization_problem(train, self.n_factors, self.regularization,
                                     self.bias_regularization, self.center, self.use_bias)

    def _init_state(self, train):
        problem = self._problem(train)
        self._check_problem(problem)
        rng = check_random_state(self.random_state)
        P, Q = initial_factors(rng, train.n_users, train.n_items, self.n_factors,
                               self.init_std)
        b, c = (np.zeros(train.n_users), np.zeros(train.n_items)) if self.use_bias \
            else (None, None)
        x = problem.pack(P, Q, b, c)
        value, e = problem.cost(x)
        state = SecondOrderState(global_mean=problem.global_mean, problem=problem)
        state.move_to(x, value, e, problem.gradient(x, e))
        state.extra.update(first_grad_norm=float(np.linalg.norm(state.gradient)),
                           hessian_products=0)
        return state

    def _check_problem(self, problem) -> None:
        """Refuse problems the method cannot handle (subclasses)."""

    def _line_search(self):
        return self.line_search if self.line_search is not None else ArmijoLineSearch()

    def _search_and_move(self, state, direction, slope) -> dict:
        """Armijo backtracking from the unit step along ``direction``; moves the state and
        returns the common metrics."""
        problem = state.problem
        res = self._line_search().search(problem.cost, _Euclidean, state.x, direction,
                                         state.value, slope, 1.0)
        self._check_decrease(state, res)
        state.move_to(res.point, res.value, res.payload,
                      problem.gradient(res.point, res.payload))
        e = state.residuals
        return {"objective": state.value, "grad_norm": float(np.linalg.norm(state.gradient)),
                "step_size": res.step, "evaluations": res.n_evaluations,
                "train_rmse": float(np.sqrt(e @ e / problem.nnz))}

    @staticmethod
    def _check_decrease(state, res) -> None:
        if not res.value < state.value:
            # Armijo accepted a step whose decrease is below f's rounding (after
            # backtracking to a tiny step): stop rather than repeat it until max_iter
            raise StopFit(
                f"stalled: no decrease of f in floating point (Armijo step {res.step:.3g}, "
                f"f={state.value:.17g}, gradient norm {np.linalg.norm(state.gradient):.3g}); "
                "f is at its round-off floor or the direction is of no use")

    def _move_to_point(self, state, point) -> dict:
        """Moves the state to a point of the reduced problem (users solved exactly) and
        returns the common metrics there."""
        problem = state.problem
        state.move_to(point.x, point.value, point.residuals,
                      problem.gradient(point.x, point.residuals))
        state.extra["point"] = point
        e = point.residuals
        return {"objective": state.value, "grad_norm": float(np.linalg.norm(state.gradient)),
                "train_rmse": float(np.sqrt(e @ e / problem.nnz))}

    def _finalize(self, state):
        P, Q, _, _ = state.problem.split(state.x)
        state.user_factors, state.item_factors = P.copy(), Q.copy()
        state.user_bias, state.item_bias = state.problem.biases(state.x)
        FactorizationEstimator._finalize(self, state)


class NewtonMF(_SecondOrder):
    __doc__ = """Modified Newton's method with the dense exact Hessian (small problems).

    Per iteration: the exact Hessian ``H`` of f (assembled from the sparse Jacobian and
    residual terms, :meth:`FactorizationProblem.hessian`) is made positive definite,
    ``d = -(H + F)^-1 g``, and an Armijo search runs from the unit step. Near a
    minimiser with a positive-definite Hessian no modification is needed and the
    convergence is quadratic. ``H`` has ``d^2`` entries with
    ``d = (n_users + n_items)(n_factors + use_bias)``: problems above
    ``max_dense_variables`` are refused (use :class:`NewtonCG`).

    Objective (see :mod:`mflib.solvers.second_order`):
    ``f = 1/(2N)[sum_Omega e_ui^2 + regularization (|P|^2 + |Q|^2)
    + bias_regularization (|b|^2 + |c|^2)]``.

    Parameters
    ----------""" + COMMON_DOC + """    hessian_modification : str, default "eigenvalue_shift"
        How ``H`` is made positive definite (``F`` below), when it is not; one of
        ``"eigenvalue_shift"``, ``"cholesky_shift"``, ``"modified_cholesky"``:
        ``"eigenvalue_shift"``, ``F = tau I`` with the smallest eigenvalue of ``H + F``
        set to ``max(delta, |lambda_min(H)|)`` (one symmetric eigendecomposition,
        :func:`~mflib.solvers.factorization_problem.eigenvalue_shift_direction`);
        ``"cholesky_shift"``, ``F = tau I`` found by Cholesky attempts with a doubling
        ``tau`` (no eigendecomposition, :func:`~mflib.solvers.factorization_problem.
        cholesky_shift_direction`); ``"modified_cholesky"``, the Gill-Murray-Wright
        factorisation ``L D L^T = H + F`` with ``F`` diagonal
        (:func:`~mflib.solvers.factorization_problem.modified_cholesky`). A positive
        definite ``H`` is used as is by all three.
    curvature_floor : float, default 1e-8
        ``delta``, the smallest eigenvalue (or pivot) allowed, relative to the largest
        absolute eigenvalue (or diagonal entry) of ``H``.
    max_dense_variables : int, default 2000
        Largest ``d`` for which the dense Hessian is formed.

    Attributes
    ----------
    user_factors_, item_factors_ : ndarray of shape (n_users, k), (n_items, k)
    user_bias_, item_bias_ : ndarray or None
    history_ : History
        ``objective``, ``grad_norm``, ``step_size``, ``shift`` (``tau``, or the largest
        diagonal modification), ``min_eigenvalue`` (eigenvalue shift only),
        ``train_rmse``.
    """

    _parameter_constraints = {
        "hessian_modification": [Options(*HESSIAN_MODIFICATIONS)],
        "curvature_floor": [Interval("real", 0, 1, closed="neither")],
        "max_dense_variables": [POSITIVE_INT],
    }

    def __init__(self, n_factors=10, regularization=15.0, bias_regularization=None,
                 center="mean", use_bias=True, hessian_modification="eigenvalue_shift",
                 curvature_floor=1e-8, max_dense_variables=2000, init_std=0.1,
                 line_search=None, max_iter=50, tol=1e-8, n_jobs=None, random_state=None,
                 verbose=0, callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.center = center
        self.use_bias = use_bias
        self.hessian_modification = hessian_modification
        self.curvature_floor = curvature_floor
        self.max_dense_variables = max_dense_variables
        self.init_std = init_std
        self.line_search = line_search
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _check_problem(self, problem):
        message = problem.dense_size_error(self.max_dense_variables, type(self).__name__)
        if message:
            raise ValueError(message)

    def _direction(self, state) -> tuple[np.ndarray, float, dict]:
        """``(direction, slope, metrics)`` of one modified Newton step."""
        g = state.gradient
        H = state.problem.hessian(state.x, state.residuals)
        if self.hessian_modification == "eigenvalue_shift":
            d, tau, lam_min = eigenvalue_shift_direction(H, g, self.curvature_floor)
            return d, float(g @ d), {"shift": tau, "min_eigenvalue": lam_min}
        if self.hessian_modification == "cholesky_shift":
            d, tau, attempts = cholesky_shift_direction(H, g, self.curvature_floor)
            return d, float(g @ d), {"shift": tau, "factorizations": attempts}
        d, added = modified_cholesky_direction(H, g, self.curvature_floor)
        return d, float(g @ d), {"shift": added}

    def _step(self, state, train):
        if not np.any(state.gradient):
            return {"objective": state.value, "grad_norm": 0.0, "converged": True}
        direction, slope, extra = self._direction(state)
        return {**self._search_and_move(state, direction, slope), **extra}


class _MatrixFree(_SecondOrder):
    """CG-based steps: the forcing term, the preconditioner, the bookkeeping."""

    _parameter_constraints = {
        "forcing": [Options(*FORCING)],
        "cg_max_iter": [POSITIVE_INT],
        "preconditioner": [Options(*PRECONDITIONERS)],
    }

    def _forcing(self, state) -> float:
        extra, g_norm = state.extra, float(np.linalg.norm(state.gradient))
        eta = forcing_term(self.forcing, g_norm, extra.get("previous_grad_norm"),
                           extra.get("previous_eta"), extra["first_grad_norm"],
                           float(self.tol or 0.0))
        extra.update(previous_grad_norm=g_norm, previous_eta=eta)
        return eta

    def _solve(self, state, curvature, apply, damping, eta):
        precondition = curvature.preconditioner(damping) \
            if self.preconditioner == "block_jacobi" else None
        cg = truncated_cg(apply, state.gradient, eta, self.cg_max_iter, precondition)
        return cg


class NewtonCG(_MatrixFree):
    __doc__ = """Truncated (inexact) Newton with conjugate gradients on exact
    Hessian-vector products: matrix-free, for problems of any size.

    Per iteration: preconditioned CG on ``H d = -g`` (products ``H v`` vectorised over
    the ratings), stopped at the relative residual ``forcing`` sets or at the first
    direction of non-positive curvature (then the CG iterate so far, or ``-M^-1 g`` if
    it is the first: always a descent direction), and an Armijo search from the unit
    step. With Eisenstat-Walker forcing the local convergence is quadratic.

    With ``variable_projection`` (the default) Newton-CG runs on the reduced objective
    ``g(Q, c) = min_{P, b} f(P, Q, b, c)``: every user's ``[b_u, p_u]`` is solved
    exactly (ALS's user half-step) at every point the method visits, ``H`` is the Schur
    complement ``H_QQ - H_QP H_PP^-1 H_PQ`` of the Hessian of f (matrix-free,
    :class:`~mflib.solvers.factorization_problem.ReducedCurvature`) and the
    preconditioner the item blocks of ``H_QQ``. The iterates are points of f with
    ``grad_P f = 0``, so ``grad_norm`` (always the norm of the full gradient of f) is
    that of g. Newton-CG on all of ``(P, Q, b, c)`` (``variable_projection=False``)
    preconditions with the user and item blocks: its preconditioned Hessian
    ``[[I, C], [C^T, I]]`` has eigenvalues ``1 +- sigma`` with the user-item coupling
    ``sigma`` near 1 on rating data, the reduced one ``1 - sigma^2``, about a quarter of
    the condition number (67 against about 270 at the minimiser on ml-100k at rank 10,
    lambda 10, bias-centred, where the reduced method reached 1e-8 with 119 products in
    23 iterations against 220 in 28).

    ``warm_start_sweeps`` exact ALS sweeps (an item half-step then a user half-step, each
    the minimiser of f over its block, so f never rises) come first, each one iteration
    of the fit (``warm_start`` 1 in the history, its time on the fit's clock).

    Objective (see :mod:`mflib.solvers.second_order`):
    ``f = 1/(2N)[sum_Omega e_ui^2 + regularization (|P|^2 + |Q|^2)
    + bias_regularization (|b|^2 + |c|^2)]``.

    Parameters
    ----------""" + COMMON_DOC + CG_DOC + """    variable_projection : bool, default True
        Newton-CG on the item variables with the users solved exactly (above), or on all
        variables. Needs positive-definite user systems: ``regularization > 0`` (and
        ``bias_regularization > 0`` with biases), or every user with at least
        ``n_factors + use_bias`` ratings.
    warm_start_sweeps : int, default 0
        Exact ALS sweeps before the first Newton step.

    Attributes
    ----------
    user_factors_, item_factors_ : ndarray of shape (n_users, k), (n_items, k)
    user_bias_, item_bias_ : ndarray or None
    history_ : History
        ``objective``, ``grad_norm``, ``step_size``, ``cg_iterations``,
        ``negative_curvature`` (1 when CG stopped at one), ``forcing``,
        ``hessian_products`` (cumulative), ``warm_start`` (1 for an ALS sweep),
        ``train_rmse``.
    """

    _parameter_constraints = {"variable_projection": [BOOLEAN],
                              "warm_start_sweeps": [NONNEGATIVE_INT]}
    # a sweep then Newton steps: the contract fits (and the warm-up fit that loads the
    # compiled kernels before a fit's clock starts) go through both kinds of iteration
    _contract_params = {**_MatrixFree._contract_params, "warm_start_sweeps": 1}

    def __init__(self, n_factors=10, regularization=15.0, bias_regularization=None,
                 center="mean", use_bias=True, forcing="eisenstat_walker", cg_max_iter=250,
                 preconditioner="block_jacobi", variable_projection=True, warm_start_sweeps=0,
                 init_std=0.1, line_search=None, max_iter=100, tol=1e-8, n_jobs=None,
                 random_state=None, verbose=0, callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.center = center
        self.use_bias = use_bias
        self.forcing = forcing
        self.cg_max_iter = cg_max_iter
        self.preconditioner = preconditioner
        self.variable_projection = variable_projection
        self.warm_start_sweeps = warm_start_sweeps
        self.init_std = init_std
        self.line_search = line_search
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _step(self, state, train):
        if not np.any(state.gradient):
            return {"objective": state.value, "grad_norm": 0.0, "converged": True}
        extra = state.extra
        if extra.get("sweeps", 0) < self.warm_start_sweeps:
            return self._sweep(state)
        eta = self._forcing(state)
        if self.variable_projection:
            metrics, cg = self._reduced_newton_step(state, eta)
        else:
            curvature = state.problem.curvature(state.x, state.residuals)
            cg = self._solve(state, curvature, curvature.hessian_vector, 0.0, eta)
            extra["hessian_products"] += curvature.n_products
            metrics = self._search_and_move(state, cg.direction,
                                            float(state.gradient @ cg.direction))
        return {**metrics, "cg_iterations": cg.iterations,
                "negative_curvature": int(cg.negative_curvature), "forcing": eta,
                "hessian_products": extra["hessian_products"], "warm_start": 0}

    def _reduced(self, state):
        """The reduced problem and its current point; the first call solves the users of
        the current point (inside a step, so on the fit's clock)."""
        extra = state.extra
        if "reduced" not in extra:
            extra["reduced"] = reduced = state.problem.reduced()
            self._move_to_point(state, reduced.evaluate(reduced.item_part(state.x)))
        return extra["reduced"], extra["point"]

    def _sweep(self, state) -> dict:
        """One exact ALS sweep: the items, then the users, each solved exactly."""
        reduced, point = self._reduced(state)
        before = state.value
        metrics = self._move_to_point(state, reduced.evaluate(reduced.item_sweep(point.x)))
        state.extra["sweeps"] = state.extra.get("sweeps", 0) + 1
        if not state.value <= before:  # each half-step minimises f over its block
            raise StopFit(f"stalled: an ALS sweep raised f from {before:.17g} to "
                          f"{state.value:.17g}")
        return {**metrics, "step_size": 1.0, "cg_iterations": 0, "negative_curvature": 0,
                "hessian_products": state.extra["hessian_products"], "warm_start": 1}

    def _reduced_newton_step(self, state, eta):
        """Truncated CG on the reduced Hessian and an Armijo search on g."""
        reduced, point = self._reduced(state)
        curvature = reduced.curvature(point)
        precondition = curvature.preconditioner() \
            if self.preconditioner == "block_jacobi" else None
        g = reduced.item_part(state.gradient)
        cg = truncated_cg(curvature.hessian_vector, g, eta, self.cg_max_iter, precondition)
        state.extra["hessian_products"] += curvature.n_products
        res = self._line_search().search(reduced.cost, _Euclidean, point.y, cg.direction,
                                         point.value, float(g @ cg.direction), 1.0)
        self._check_decrease(state, res)
        metrics = self._move_to_point(state, res.payload)
        return {**metrics, "step_size": res.step, "evaluations": res.n_evaluations}, cg


class LevenbergMarquardt(_MatrixFree):
    __doc__ = """Gauss-Newton / Levenberg-Marquardt, matrix-free.

    Per iteration: preconditioned CG on ``(G + mu I) d = -g`` with the Gauss-Newton
    matrix ``G = (1/N)(J^T J + Lambda)`` (products vectorised over the ratings,
    :meth:`Curvature.gauss_newton_vector`; positive definite, so no negative
    curvature), an Armijo search from the unit step, and ``mu`` updated from the gain
    ratio ``rho`` = actual / predicted (by the Gauss-Newton model) decrease:
    ``mu / 3`` when ``rho > 0.75``, ``2 mu`` when ``rho < 0.25``. ``damping=0`` with
    ``damping_update="fixed"`` is Gauss-Newton with a line search. ``G`` drops the
    residual term of the Hessian, so the local convergence is linear unless the
    residuals vanish (a noiseless planted problem).

    Objective (see :mod:`mflib.solvers.second_order`):
    ``f = 1/(2N)[sum_Omega e_ui^2 + regularization (|P|^2 + |Q|^2)
    + bias_regularization (|b|^2 + |c|^2)]``.

    Parameters
    ----------""" + COMMON_DOC + CG_DOC + """    damping : float, default 1e-3
        Initial ``mu`` relative to the mean diagonal entry of ``G`` at the initial point.
    damping_update : {"adaptive", "fixed"}, default "adaptive"

    Attributes
    ----------
    user_factors_, item_factors_ : ndarray of shape (n_users, k), (n_items, k)
    user_bias_, item_bias_ : ndarray or None
    history_ : History
        ``objective``, ``grad_norm``, ``step_size``, ``cg_iterations``, ``damping``
        (``mu`` of the step), ``gain_ratio``, ``forcing``, ``hessian_products``
        (cumulative Gauss-Newton products), ``train_rmse``.
    """

    _parameter_constraints = {"damping": [NONNEGATIVE],
                              "damping_update": [Options("adaptive", "fixed")]}

    def __init__(self, n_factors=10, regularization=15.0, bias_regularization=None,
                 center="mean", use_bias=True, damping=1e-3, damping_update="adaptive",
                 forcing="eisenstat_walker", cg_max_iter=250, preconditioner="block_jacobi",
                 init_std=0.1, line_search=None, max_iter=100, tol=1e-8, n_jobs=None,
                 random_state=None, verbose=0, callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.center = center
        self.use_bias = use_bias
        self.damping = damping
        self.damping_update = damping_update
        self.forcing = forcing
        self.cg_max_iter = cg_max_iter
        self.preconditioner = preconditioner
        self.init_std = init_std
        self.line_search = line_search
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _step(self, state, train):
        if not np.any(state.gradient):
            return {"objective": state.value, "grad_norm": 0.0, "converged": True}
        eta = self._forcing(state)
        curvature = state.problem.curvature(state.x, state.residuals)
        if "damping" not in state.extra:  # relative to G's mean diagonal at the start
            blocks = curvature.block_diagonal()
            mean_diag = np.mean(np.concatenate(
                [np.diagonal(B, axis1=1, axis2=2).ravel() for B in blocks]))
            state.extra["damping"] = float(self.damping) * float(mean_diag)
        mu = state.extra["damping"]

        def apply(v):
            return curvature.gauss_newton_vector(v) + mu * v

        cg = self._solve(state, curvature, apply, mu, eta)
        d, g, before = cg.direction, state.gradient, state.value
        slope = float(g @ d)
        metrics = self._search_and_move(state, d, slope)
        t = metrics["step_size"]
        predicted = -(t * slope + 0.5 * t * t * float(d @ curvature.gauss_newton_vector(d)))
        rho = (before - state.value) / predicted if predicted > 0 else 0.0
        if self.damping_update == "adaptive":
            if rho > 0.75:
                state.extra["damping"] = mu / 3.0
            elif rho < 0.25:
                state.extra["damping"] = mu * 2.0
        state.extra["hessian_products"] += curvature.n_products
        return {**metrics, "cg_iterations": cg.iterations, "damping": mu,
                "gain_ratio": float(rho), "forcing": eta,
                "hessian_products": state.extra["hessian_products"]}


__all__ = [
    "HESSIAN_MODIFICATIONS",
    "PRECONDITIONERS",
    "LevenbergMarquardt",
    "NewtonCG",
    "NewtonMF",
    "SecondOrderState",
    "factorization_problem",
]
