"""What the notebook ``09_second_order`` studies beside the estimators: the original
study's broken rank-1 Newton method (:class:`HandBuiltRank1Newton`), ALS recording the
gradient of the second-order methods' objective (:class:`MonitoredALS`), a small dense
block of a rating matrix, the first iteration reaching a gradient norm, and the measured
cost of each operation the methods are built from."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from .. import execution
from ..data.ratings import RatingMatrix
from ..fitting import StopFit
from ..validation import Constraint, check_positive_int, check_random_state
from .als import ALS
from .newton_steps import eigenvalue_shift_direction
from .second_order import NewtonMF, factorization_problem
from .state import initial_factors

# ====================================================================== the original study
ORIGINAL_ERRORS = ("gradient_factor", "cross_term", "shift")


class _SubsetOf(Constraint):
    """A tuple or list of distinct values from ``values``."""

    def __init__(self, *values):
        self.values = values

    def accepts(self, value) -> bool:
        return (isinstance(value, (tuple, list)) and len(set(value)) == len(value)
                and all(isinstance(v, str) and v in self.values for v in value))

    def describe(self) -> str:
        return "a tuple of distinct values from " + ", ".join(map(repr, self.values))


class HandBuiltRank1Newton(NewtonMF):
    """The original study's Newton method for ``min sum_Omega (r_ui - u_i v_j)^2``,
    rebuilt with its errors, to show what they do. Do not use it to fit models.

    The original notebook is not in this repository; the issue that asked for this
    study (#14) says its hand-built Hessian and gradient had wrong factors, that the
    Hessian was shifted by its smallest eigenvalue, and that it never converged. This
    class makes those errors explicit, each switchable through ``errors``, on the exact
    derivatives of :class:`NewtonMF` (rank 1, no biases). Written for
    ``F = sum (r_ij - u_i v_j)^2`` (``2N f`` with ``regularization=0``):

    ``"gradient_factor"``
        ``dF/du_i`` written ``-sum_j (r_ij - u_i v_j) v_j``: the 2 of the square is
        missing, while the Hessian keeps it, so every direction is half the Newton
        step and the Armijo slope is half the true one.
    ``"cross_term"``
        ``d2F/du_i dv_j`` written ``-2 (r_ij - u_i v_j)``; the product rule gives
        ``-2 (r_ij - 2 u_i v_j)``: the ``2 u_i v_j`` from differentiating the residual's
        own ``v_j`` is missing, so the matrix is neither the Hessian nor its
        Gauss-Newton part.
    ``"shift"``
        ``H - lambda_min(H) I`` for the direction: whatever the sign of ``lambda_min``
        this matrix is singular (its smallest eigenvalue is exactly 0), so the solve
        returns a huge step along that eigenvector or fails.

    Without ``"shift"``, the direction uses :class:`NewtonMF`'s eigenvalue shift. The
    recorded ``grad_norm`` is always the true gradient's; ``used_grad_norm`` is that of
    the gradient the method believed.

    Parameters
    ----------
    errors : tuple of str, default ("gradient_factor", "cross_term", "shift")
    regularization : float, default 0.0
        The original had none.
    init_std, line_search, max_iter, tol, n_jobs, random_state, verbose, callbacks :
        As :class:`NewtonMF`.
    """

    # the original model: rank 1, no biases, dense eigenvalue-shifted Newton
    n_factors = 1
    center = "none"
    use_bias = False
    bias_regularization = None
    hessian_modification = "eigenvalue_shift"
    curvature_floor = 1e-8

    _parameter_constraints = {"errors": [_SubsetOf(*ORIGINAL_ERRORS)]}

    def __init__(self, errors=ORIGINAL_ERRORS, regularization=0.0, init_std=0.1,
                 max_dense_variables=2000, line_search=None, max_iter=30, tol=1e-8,
                 n_jobs=None, random_state=None, verbose=0, callbacks=None):
        self.errors = errors
        self.regularization = regularization
        self.init_std = init_std
        self.max_dense_variables = max_dense_variables
        self.line_search = line_search
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _direction(self, state):
        g, H = hand_built_derivatives(state.problem, state.x, state.residuals, self.errors)
        if "shift" not in self.errors:
            d, tau, lam_min = eigenvalue_shift_direction(H, g, self.curvature_floor)
            extra = {"shift": tau, "min_eigenvalue": lam_min}
        else:
            try:
                d, lam_min = original_shift_direction(H, g)
            except np.linalg.LinAlgError as exc:
                raise StopFit(f"singular shifted Hessian H - lambda_min I: {exc}") from exc
            extra = {"shift": -lam_min, "min_eigenvalue": lam_min}
        extra.update(used_grad_norm=float(np.linalg.norm(g)),
                     direction_norm=float(np.linalg.norm(d)))
        return d, float(g @ d), extra


def hand_built_derivatives(problem, x, e, errors=ORIGINAL_ERRORS):
    """The gradient and Hessian of f (rank 1, ``1/(2N)`` scale) as the original built
    them, with ``errors`` (see :class:`HandBuiltRank1Newton`): ``(g, H)``."""
    if problem.k != 1:
        raise ValueError(f"the original model has rank 1, got n_factors={problem.k}")
    errors = set(errors)
    g = problem.gradient(x, e) * (0.5 if "gradient_factor" in errors else 1.0)
    H = problem.hessian(x, e)
    if "cross_term" in errors:  # drop the u_i v_j of the product rule
        P, Q, _, _ = problem.split(x)
        rows, cols = problem.cross_indices()
        uv = (P[problem.rows, 0] * Q[problem.cols, 0]) / problem.nnz
        H[rows, cols] -= uv
        H[cols, rows] -= uv
    return g, H


def original_shift_direction(H, g) -> tuple[np.ndarray, float]:
    """``-(H - lambda_min I)^-1 g``, the original's shift: ``(d, lambda_min)``. The matrix
    is singular by construction; NumPy's LU may or may not notice (LinAlgError)."""
    lam_min = float(np.linalg.eigvalsh(H)[0])
    return np.linalg.solve(H - lam_min * np.eye(len(g)), -g), lam_min


def diagnose_hand_built(train, errors=ORIGINAL_ERRORS, *, regularization=0.0, init_std=0.1,
                        random_state=None) -> pd.Series:
    """What the original's derivatives and shift do at the initial point of
    :class:`HandBuiltRank1Newton` (same ``random_state``), beside the exact ones.

    Returns a Series: the hand gradient's norm relative to the true one, the relative
    Frobenius error of the hand Hessian, the smallest eigenvalues of the Hessian, of the
    hand Hessian and of the original's shifted matrix, that matrix's condition number,
    and for the original and the fixed (:class:`NewtonMF`) directions their length and
    slope ``g^T d`` (negative: descent)."""
    problem = factorization_problem(train, 1, regularization, None, "none", False)
    rng = check_random_state(random_state)
    x = problem.pack(*initial_factors(rng, train.n_users, train.n_items, 1, init_std))
    e = problem.residuals(x)
    g, H = problem.gradient(x, e), problem.hessian(x, e)
    g_hand, H_hand = hand_built_derivatives(problem, x, e, errors)
    lam_hand = float(np.linalg.eigvalsh(H_hand)[0])
    shifted = np.linalg.eigvalsh(H_hand - lam_hand * np.eye(len(g)))
    d_fixed, _, _ = eigenvalue_shift_direction(H, g, NewtonMF().curvature_floor)
    try:
        d_orig = original_shift_direction(H_hand, g_hand)[0]
    except np.linalg.LinAlgError:
        d_orig = np.full_like(g, np.nan)
    return pd.Series({
        "|hand gradient| / |gradient|": np.linalg.norm(g_hand) / np.linalg.norm(g),
        "|hand Hessian - Hessian| / |Hessian|": np.linalg.norm(H_hand - H) / np.linalg.norm(H),
        "smallest eigenvalue of the Hessian": float(np.linalg.eigvalsh(H)[0]),
        "smallest eigenvalue of the hand Hessian": lam_hand,
        "smallest eigenvalue after the original shift": float(shifted[0]),
        "condition number after the original shift": float(shifted[-1] / abs(shifted[0]))
        if shifted[0] != 0 else np.inf,
        "original direction: length": float(np.linalg.norm(d_orig)),
        "original direction: slope g.d": float(g @ d_orig),
        "fixed direction: length": float(np.linalg.norm(d_fixed)),
        "fixed direction: slope g.d": float(g @ d_fixed),
    }, name="at the initial point")


# ====================================================================== ALS, monitored
class MonitoredALS(ALS):
    """:class:`~mflib.solvers.als.ALS` that also records, at every epoch's iterate, the
    objective f of the second-order methods and its gradient norm, so ALS appears on
    their convergence plots.

    With ``regularization_scale="sum"`` (required) ALS minimises ``2N f`` (``f`` as in
    :mod:`mflib.solvers.second_order`, ``bias_regularization`` None meaning
    ``regularization``). The history's ``objective`` is f (ALS's own objective divided
    by ``2N``), ``grad_norm`` the Euclidean norm of its gradient; computing it costs
    one residual pass and one gradient per epoch, which the recorded ``time`` includes.
    Parameters as :class:`~mflib.solvers.als.ALS`.
    """

    def _init_state(self, train):
        if self.regularization_scale != "sum":
            raise ValueError(
                f"MonitoredALS reports f, which ALS minimises only with "
                f"regularization_scale='sum', got {self.regularization_scale!r}")
        self._factorization = factorization_problem(
            train, self.n_factors, self.regularization, self.bias_regularization,
            "mean" if self.use_bias else "none", self.use_bias)
        return super()._init_state(train)

    def _step(self, state, train):
        metrics = super()._step(state, train)
        problem = self._factorization
        x = problem.pack(state.user_factors, state.item_factors, state.user_bias,
                         state.item_bias)
        value, e = problem.cost(x)
        metrics.update(objective=value,
                       grad_norm=float(np.linalg.norm(problem.gradient(x, e))))
        return metrics

    def _finalize(self, state):
        super()._finalize(state)
        del self._factorization


# ====================================================================== notebook helpers
def densest_block(ratings: RatingMatrix, n_users: int, n_items: int) -> RatingMatrix:
    """The ratings of the ``n_users`` most active users on the ``n_items`` most rated
    items (ties by inner index), as a new RatingMatrix of those users and items only (raw
    ids kept): a small problem for dense-Hessian methods."""
    check_positive_int(n_users, "n_users")
    check_positive_int(n_items, "n_items")
    users = np.argsort(-ratings.user_counts(), kind="stable")[:n_users]
    items = np.argsort(-ratings.item_counts(), kind="stable")[:n_items]
    keep = np.isin(ratings.users, users) & np.isin(ratings.items, items)
    if not keep.any():
        raise ValueError(f"the {n_users} most active users rated none of the {n_items} "
                         "most rated items; take more of either")
    return RatingMatrix.from_arrays(ratings.user_ids[ratings.users[keep]],
                                    ratings.item_ids[ratings.items[keep]],
                                    ratings.ratings[keep], name=f"{ratings.name} block")


def first_reached(models: dict, thresholds=(1e-4, 1e-8), key: str = "grad_norm"
                  ) -> pd.DataFrame:
    """Iteration and solver seconds at which each fitted model's history first has
    ``key`` at or below each threshold (NaN: never), with its seconds per iteration.

    Returns a DataFrame indexed by model name.
    """
    rows = []
    for name, model in models.items():
        h = model.history_
        values, seconds = h[key], h["time"]
        row = {"model": name, "iterations": len(h),
               "seconds_per_iteration": float(seconds[-1] / len(h)) if len(h) else np.nan}
        for t in thresholds:
            hit = np.flatnonzero(values <= t)
            row[f"iteration to {t:g}"] = int(hit[0]) + 1 if hit.size else np.nan
            row[f"seconds to {t:g}"] = float(seconds[hit[0]]) if hit.size else np.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def derivative_costs(train, n_factors: int = 10, regularization: float = 0.1, *,
                     use_bias: bool = True, repeats: int = 5, random_state=0,
                     dense: bool | None = None, n_jobs=None) -> pd.DataFrame:
    """Measured seconds (median of ``repeats``) of the operations the methods are built
    from, at a random point of f on ``train``: residuals + value, gradient, one Hessian-
    and one Gauss-Newton-vector product, the block-Jacobi set-up, one ALS epoch, and (when
    ``dense`` or, by default, when ``d <= 2000``) the dense Hessian and its
    eigendecomposition, under the execution policy of ``n_jobs`` (as a fit would run them).
    Returns a DataFrame with ``seconds`` and ``relative to a gradient`` (residuals and
    value plus gradient: one full gradient evaluation).
    """
    check_positive_int(repeats, "repeats")
    with execution.use_policy(execution.ExecutionPolicy(execution.resolve_n_jobs(n_jobs))):
        table = _operation_seconds(train, n_factors, regularization, use_bias, repeats,
                                   random_state, dense)
    table["relative to a gradient"] = table["seconds"] / (
        table.loc["gradient (from residuals)", "seconds"]
        + table.loc["residuals and value", "seconds"])
    return table


def _operation_seconds(train, n_factors, regularization, use_bias, repeats, random_state,
                       dense) -> pd.DataFrame:
    problem = factorization_problem(train, n_factors, regularization, None,
                                    "mean" if use_bias else "none", use_bias)
    rng = check_random_state(random_state)
    x = rng.normal(0.0, 0.1, problem.n_variables)
    v = rng.normal(size=problem.n_variables)
    e = problem.residuals(x)
    curvature = problem.curvature(x, e)
    operations = {
        "residuals and value": lambda: problem.cost(x),
        "gradient (from residuals)": lambda: problem.gradient(x, e),
        "Hessian-vector product": lambda: curvature.hessian_vector(v),
        "Gauss-Newton-vector product": lambda: curvature.gauss_newton_vector(v),
        "block-Jacobi preconditioner set-up": lambda: curvature.preconditioner(0.0),
    }
    if dense or (dense is None and problem.n_variables <= 2000):
        operations["dense Hessian"] = lambda: problem.hessian(x, e)
        H = problem.hessian(x, e)
        operations["eigendecomposition of the Hessian"] = lambda: np.linalg.eigh(H)
    rows = []
    for name, op in operations.items():
        op()  # compile and warm caches outside the clock
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            op()
            times.append(time.perf_counter() - t0)
        rows.append({"operation": name, "seconds": float(np.median(times))})
    # an ALS epoch as its own fit records it (set-up excluded), after a compiling fit
    als = ALS(n_factors=n_factors, regularization=regularization, use_bias=use_bias,
              max_iter=repeats, tol=0.0, random_state=random_state,
              n_jobs=execution.current().n_jobs)
    als.set_params(max_iter=1).fit(train)
    epochs = np.diff(np.r_[0.0, als.set_params(max_iter=repeats).fit(train).history_["time"]])
    rows.append({"operation": "ALS epoch", "seconds": float(np.median(epochs))})
    return pd.DataFrame(rows).set_index("operation")


__all__ = [
    "ORIGINAL_ERRORS",
    "HandBuiltRank1Newton",
    "diagnose_hand_built",
    "hand_built_derivatives",
    "original_shift_direction",
    "MonitoredALS",
    "densest_block",
    "derivative_costs",
    "first_reached",
]
