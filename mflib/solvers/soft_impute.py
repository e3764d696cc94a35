"""Convex matrix completion: SoftImpute, softImpute-ALS and the lambda path.

Both estimators minimise, over matrices ``Z`` (users x items),

    F(Z) = 1/2 |P_Omega(X - Z)|_F^2 + lambda |Z|_*                       (1)

where ``X`` holds the (optionally centred) ratings on the observed set ``Omega`` and
``|Z|_*`` is the nuclear norm. ``Z`` is kept as factors ``U diag(s) V^T``; predictions
are ``offset_ui + z_ui`` with the offset given by ``center``.

SoftImpute (Mazumder, Hastie & Tibshirani 2010) iterates
``Z <- S_lambda(P_Omega(X) + P_Omega_perp(Z))``, with ``S_lambda`` soft-thresholding of
the singular values. The matrix inside is ``M = S + Z`` with ``S = P_Omega(X - Z)``
sparse, so it is only ever applied as an operator (:mod:`mflib.kernels.lowrank`).
Its truncated SVD is taken on a warm-started subspace, alternating sides: with
``W`` orthonormal and ``span(W)`` containing the current row space, ``M W =
L Sigma R^T`` gives the exact SVD of ``M W W^T`` (and the next step does the same
with ``M^T Q`` on the column side), i.e. block power iteration with Rayleigh-Ritz
and one sparse product per step. Because the subspace contains the current ``Z``,
``Z`` is feasible for the subspace problem and the step minimises the majorizer of
(1) over it exactly: the objective never rises, however rough the subspace.

That iteration is proximal gradient with step 1 and contracts slowly on sparse data
(about ``1 - fraction observed`` per step). By default each step is taken instead at
FISTA's extrapolated point ``Y = Z_k + theta_k (Z_k - Z_k-1)`` (as in AIS-Impute, Yao &
Kwok 2015), with the working subspace widened by the previous iterate's so that it
contains ``Y``; a step that would raise (1) is replaced by the plain one and the
momentum restarts, which keeps the objective non-increasing.

softImpute-ALS (Hastie, Mazumder, Lee & Zadeh 2015) minimises the equivalent
``1/2 |P_Omega(X - A B^T)|^2 + lambda/2 (|A|^2 + |B|^2)`` over ``A = U D``, ``B = V D``
of a fixed rank by alternating ridge solves against ``S + A B^T``; a final step
soft-thresholds the SVD of ``M V`` and returns the same kind of solution.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse.linalg as spla

from .. import execution
from ..backend import to_device, to_numpy
from ..base import FactorizationEstimator, FactorState
from ..data.layout import training_layout
from ..data.ratings import RatingMatrix, as_rating_matrix
from ..kernels.lowrank import (
    augment_basis,
    dense_objective,
    nuclear_objective,
    orthonormal,
    relative_change,
    residuals_on_pairs,
    sparse_plus_low_rank,
    splr_matmat,
    splr_rmatmat,
    thin_svd,
    with_values,
)
from ..validation import (
    BOOLEAN,
    NONNEGATIVE,
    POSITIVE_INT,
    Options,
    check_fraction,
    check_positive_int,
    check_random_state,
)
from . import baselines
from .baselines import CENTER_CONSTRAINT

ACCELERATIONS = (None, "nesterov")
#: largest users x items product the dense reference path will materialise
DENSE_CELL_LIMIT = 25_000_000


# ---------------------------------------------------------------------------- helpers
def lambda_max(train: RatingMatrix, center="biases", bias_regularization=10.0,
               random_state=0) -> float:
    """Largest singular value of ``P_Omega(X)`` for the ratings ``X`` centred by
    ``center`` (see :func:`mflib.solvers.baselines.center`).

    Every ``regularization >= lambda_max`` gives ``Z = 0``: the top of the lambda path.
    """
    layout = training_layout(train)
    values = baselines.center(train, center, bias_regularization).values
    X = layout.csr_matrix(layout.to_csr(values))
    if min(X.shape) == 1:  # a single row or column: its norm
        return float(np.sqrt(X.multiply(X).sum()))
    v0 = check_random_state(random_state).standard_normal(min(X.shape))
    return float(spla.svds(X, k=1, v0=v0, return_singular_vectors=False)[0])


class _Problem:
    """Data of one fit, shared (not copied) between state snapshots: the training
    layout's CSR structure (``pattern``, on the device) and the centred ratings
    ``observed`` with their ``users``/``items``, all in CSR order."""

    def __init__(self, train, target, xp):
        self.xp = xp
        layout = training_layout(train)
        pattern = layout.csr_matrix(np.zeros(layout.nnz))
        if xp is not np:
            import cupyx.scipy.sparse as csp  # noqa: PLC0415

            pattern = csp.csr_matrix(pattern)
        self.pattern = pattern
        self.users = to_device(layout.user_of_rating, xp)
        self.items = to_device(layout.user_items, xp)
        self.observed = to_device(layout.to_csr(target), xp)
        self.shape = train.shape
        self.dense = None  # X with zeros off Omega, and the mask (dense path only)

    def build_dense(self):
        xp = self.xp
        n_cells = self.shape[0] * self.shape[1]
        if n_cells > DENSE_CELL_LIMIT:
            raise ValueError(
                f"algorithm='dense' would build a dense {self.shape[0]} x {self.shape[1]} "
                f"matrix ({n_cells} cells > {DENSE_CELL_LIMIT}); it is meant for small "
                "teaching/checking problems. Use algorithm='subspace'."
            )
        X = xp.zeros(self.shape)
        mask = xp.zeros(self.shape, dtype=bool)
        X[self.users, self.items] = self.observed
        mask[self.users, self.items] = True
        self.dense = (X, mask)

    def residuals(self, U, s, V):
        return residuals_on_pairs(U * s, V, self.users, self.items, self.observed)


@dataclasses.dataclass
class SoftImputeState(FactorState):
    """``Z = left diag(singular_values) right^T`` plus the working variables.

    ``user_factors = left * singular_values`` and ``item_factors = right`` are kept in
    step so that ``predict`` works on the state during the fit.
    """

    left: object = None
    singular_values: object = None
    right: object = None
    subspace: object = None  # orthonormal (n_items, w) warm start of the next SVD
    scales: object = None  # softImpute-ALS: D with A = U D, B = V D (s = D^2)
    residuals: object = None  # P_Omega(X - Z) on the observed cells, pattern order
    # the previous iterate (acceleration): factors and residuals, and FISTA's t_k
    previous: tuple | None = None
    momentum_t: float = 1.0
    rank_capped: bool = False  # the last step had more than max_rank values above lambda
    n_steps: int = 0
    grown_at: int = 0  # step at which the working subspace last grew
    seed: int = 0
    problem: object = None

    def predict(self, users, items):
        P = self.user_factors
        if not isinstance(P, np.ndarray) or P.shape[1] == 0:
            return super().predict(users, items)
        offsets = FactorState(self.global_mean, self.user_bias, self.item_bias).predict(
            users, items)
        # the fused kernel computes offsets - (-P)[u] . Q[i]: the vectorised dot product
        return residuals_on_pairs(-P, self.item_factors, np.asarray(users), np.asarray(items),
                                  offsets)

    def set_factors(self, U, s, V, residuals=None):
        self.left, self.singular_values, self.right = U, s, V
        self.user_factors, self.item_factors = U * s, V
        self.residuals = self.problem.residuals(U, s, V) if residuals is None else residuals

    def copy(self):
        """A snapshot sharing the arrays: an iteration replaces them, never writes into them.

        (A deep copy would duplicate the nnz-long residuals every iteration: 80 MB and
        tens of milliseconds at 10M ratings.)
        """
        return dataclasses.replace(self)


class NuclearNormCompletion(FactorizationEstimator):
    """What SoftImpute and SoftImputeALS share: centring, devices, warm starts, output."""

    _parameter_constraints = {
        "regularization": [NONNEGATIVE],
        "center": CENTER_CONSTRAINT,
        "bias_regularization": [NONNEGATIVE],
        "convergence": [Options("objective", "factors")],
        "warm_start": [BOOLEAN],
    }
    _devices = ("cpu", "gpu")

    def _setup(self, train):
        xp = execution.current().xp
        offsets = baselines.center(train, self.center, self.bias_regularization)
        rng = check_random_state(self.random_state)
        return (xp, _Problem(train, offsets.values, xp),
                (offsets.mean, offsets.user_bias, offsets.item_bias), int(rng.integers(2**62)))

    def _warm_factors(self, train, xp):
        """Previous solution ``(U, s, V)`` when ``warm_start`` applies, else None."""
        if not (self.warm_start and hasattr(self, "singular_values_")):
            return None
        U, V = self.left_singular_vectors_, self.right_singular_vectors_
        if U.shape[0] != train.n_users or V.shape[0] != train.n_items:
            raise ValueError(
                f"warm_start=True but the previous fit was on a {U.shape[0]} x {V.shape[0]} "
                f"matrix and this one is {train.n_users} x {train.n_items}; fit the same "
                "users and items, or set warm_start=False"
            )
        return to_device(U, xp), to_device(self.singular_values_, xp), to_device(V, xp)

    def _finalize(self, state):
        self.global_mean_ = float(state.global_mean)
        self.user_bias_ = to_numpy(state.user_bias)
        self.item_bias_ = to_numpy(state.item_bias)
        self.left_singular_vectors_ = to_numpy(state.left)
        self.singular_values_ = to_numpy(state.singular_values)
        self.right_singular_vectors_ = to_numpy(state.right)
        self.user_factors_ = self.left_singular_vectors_ * self.singular_values_
        self.item_factors_ = self.right_singular_vectors_
        self.rank_ = int(self.singular_values_.shape[0])
        self.objective_ = nuclear_objective(state.residuals, state.singular_values,
                                            self.regularization)

    #: steps before the tolerance test applies: a fresh subspace may not yet show the
    #: directions above lambda, and an unchanged Z = 0 is not convergence
    _min_steps = 4

    # run_loop's tolerance test watches the relative change of Z (itself a change) or
    # the objective's relative change, as ``convergence`` says
    @property
    def _monitor(self):
        return "relative_change" if self.convergence == "factors" else "objective"

    @property
    def _monitor_change(self):
        return self.convergence == "factors"

    def _step(self, state, train):
        return self._iterate(state)


class SoftImpute(NuclearNormCompletion):
    """Nuclear-norm matrix completion by soft-thresholded SVDs (Mazumder et al. 2010).

    Minimises ``1/2 |P_Omega(X - Z)|_F^2 + regularization * |Z|_*`` over ``Z``, where
    ``X`` are the ratings after removing the offset chosen by ``center``. Predictions
    are ``mu + b_u + c_i + z_ui`` (offsets absent when ``center`` omits them).

    Parameters
    ----------
    regularization : float, default 10.0
        ``lambda``; values at or above :func:`lambda_max` give ``Z = 0``. Use
        :func:`soft_impute_path` to choose it on validation data.
    max_rank : int, default 100
        Cap on the rank of ``Z``. When more singular values exceed ``lambda`` the top
        ``max_rank`` are kept (then ``Z`` solves the rank-constrained problem; the
        history's ``rank_capped`` says so).
    rank_margin : int, default 5
        Extra directions in the working subspace beyond the current rank; the subspace
        doubles when every direction in it survives the threshold.
    init_rank : int, default 10
        Width of the random starting subspace (cold starts).
    algorithm : {"subspace", "dense"}, default "subspace"
        "subspace": a warm-started Rayleigh-Ritz step on the sparse-plus-low-rank
        operator, alternating row and column sides (one sparse product per iteration,
        never a dense users x items array). Being one power step per iteration, it
        needs more iterations than exact SVDs to reach a given objective, each far
        cheaper. "dense":
        the textbook iteration with a full SVD of the dense matrix, for teaching and
        for checking on small data.
    acceleration : {"nesterov", None}, default "nesterov"
        "nesterov": each step soft-thresholds at the extrapolated point
        ``Y = Z_k + theta_k (Z_k - Z_k-1)`` (FISTA's weights; accelerated inexact
        soft-impute, Yao & Kwok 2015) instead of at ``Z_k``. ``Y`` is sparse plus low rank
        too, and its residuals are a combination of stored ones, so a step costs about
        the same. When the extrapolated step would raise the objective it is replaced by
        the plain step and the momentum restarts: the objective still never rises, and
        the fixed points (the solution) are those of the plain iteration. On sparse data
        the plain iteration contracts by about ``1 - (fraction observed)`` per step;
        momentum makes that about ``1 - sqrt(fraction observed)``. After a step whose
        rank was capped (more than ``max_rank`` singular values above the threshold)
        the next step is plain: a truncated step is not the proximal step the
        acceleration theory rests on, and the extrapolated point would double the
        working subspace at the cap (about 4x the cost per step at rank 100). None: the
        plain iteration of Mazumder et al.
    center : {"biases", "mean", "none"}, default "biases"
        Offset removed before completion (:func:`mflib.solvers.baselines.center`);
        "none" fits the raw ratings.
    bias_regularization : float, default 10.0
        ``lambda`` of the bias baseline removed first (``center="biases"``).
    convergence : {"factors", "objective"}, default "factors"
        Stop when the relative change of ``Z`` (``relative_change`` =
        ``|Z_k+1 - Z_k|^2 / max(|Z_k|^2, |Z_k+1|^2)``, as the softImpute R package), or
        of the objective, falls below ``tol``; tested from the 4th iteration on (with
        acceleration, on accelerated steps only). The
        objective is dominated by ``1/2 |P_Omega(X)|^2`` on noisy data and can change
        by less than ``tol`` while ``Z`` still moves, hence the default.
    max_iter : int, default 100
    tol : float, default 1e-5
    warm_start : bool, default False
        Start from the previous fit's ``Z`` (same users and items), as the lambda path does.
    random_state : int, Generator or None
        Seeds the starting subspace.
    device : {"cpu", "gpu", "auto"}, default "cpu"
        "gpu" runs on CuPy and raises :class:`mflib.backend.DeviceError` without a GPU.
    n_jobs : int or None, default None
        numba threads of the residual kernels (None: all).
    verbose : int, default 0
    callbacks : list of callables, optional

    Attributes
    ----------
    left_singular_vectors_ : ndarray of shape (n_users, rank_)
    singular_values_ : ndarray of shape (rank_,)
    right_singular_vectors_ : ndarray of shape (n_items, rank_)
    user_factors_, item_factors_ : ``U * s`` and ``V``, so ``z_ui = user_factors_[u] .
        item_factors_[i]``
    rank_ : int
    objective_ : float
        Objective (1) at the returned ``Z``.
    history_ : History
        Per iteration: ``objective``, ``rank``, ``working_rank``, ``relative_change``,
        ``rank_capped``, ``train_rmse`` (from the residuals; ``val_rmse`` with
        ``eval_set``), times; with acceleration also ``momentum`` (``theta_k``, 0 after
        a restart) and ``restarted``.
    """

    _parameter_constraints = {
        "max_rank": [POSITIVE_INT],
        "rank_margin": [POSITIVE_INT],
        "init_rank": [POSITIVE_INT],
        "algorithm": [Options("subspace", "dense")],
        "acceleration": [Options(*ACCELERATIONS)],
    }
    _contract_params = {"max_iter": 3, "regularization": 5.0, "max_rank": 5, "init_rank": 3}

    def __init__(self, regularization=10.0, *, max_rank=100, rank_margin=5, init_rank=10,
                 algorithm="subspace", acceleration="nesterov", center="biases",
                 bias_regularization=10.0, convergence="factors", max_iter=100, tol=1e-5,
                 warm_start=False, random_state=None, device="cpu", n_jobs=None, verbose=0,
                 callbacks=None):
        self.regularization = regularization
        self.max_rank = max_rank
        self.rank_margin = rank_margin
        self.init_rank = init_rank
        self.algorithm = algorithm
        self.acceleration = acceleration
        self.center = center
        self.bias_regularization = bias_regularization
        self.convergence = convergence
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.random_state = random_state
        self.device = device
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.callbacks = callbacks

    def _init_state(self, train):
        xp, problem, (mu, b, c), seed = self._setup(train)
        if self.algorithm == "dense":
            problem.build_dense()
        state = SoftImputeState(mu, b, c, seed=seed, problem=problem)
        n_users, n_items = train.shape
        warm = self._warm_factors(train, xp)
        if warm is None:
            warm = (xp.zeros((n_users, 0)), xp.zeros(0), xp.zeros((n_items, 0)))
        state.set_factors(*warm)
        width = min(max(warm[1].shape[0] + self.rank_margin, self.init_rank), n_users, n_items)
        state.subspace = self._fill_subspace(xp, warm[2], width, seed, 0)
        if warm[1].shape[0] == 0 and self.algorithm == "subspace":
            # cold start: power steps on M = P_Omega(X) turn the random start into a
            # rough top subspace, so the first steps already find directions
            S = with_values(problem.pattern, problem.observed)
            for _ in range(3):
                state.subspace = orthonormal(xp, S.T @ orthonormal(xp, S @ state.subspace))
        return state

    @staticmethod
    def _fill_subspace(xp, basis, width, seed, step):
        """``basis`` (orthonormal columns) completed by random directions to ``width``."""
        missing = width - basis.shape[1]
        if missing <= 0:
            return basis[:, :width]
        extra = to_device(np.random.default_rng([seed, step]).standard_normal(
            (basis.shape[0], missing)), xp)
        if basis.shape[1]:  # project out the basis so the completion stays orthonormal
            extra -= basis @ (basis.T @ extra)
        return xp.concatenate([basis, orthonormal(xp, extra)], axis=1)

    # ------------------------------------------------------------------ one iteration
    def _iterate(self, state):
        xp, problem, lam = state.problem.xp, state.problem, float(self.regularization)
        current = (state.left, state.singular_values, state.right, state.residuals)
        objective_now = nuclear_objective(state.residuals, state.singular_values, lam)
        # a capped step takes no momentum (see the class docstring), so the plain-step
        # rule below only applies to steps that could have been accelerated
        accelerating = self.acceleration is not None and not state.rank_capped
        momentum, t_next = self._momentum(state)
        step, restarted = None, False
        if momentum > 0:
            step = self._prox_step(state, self._extrapolate(state, momentum), augment=True)
            # adaptive restart (O'Donoghue & Candes 2015) made monotone: an extrapolated
            # step that raises the objective is discarded for the plain step from Z_k,
            # which never rises, and the momentum starts again
            if step["objective"] > objective_now:
                step, restarted, t_next = None, True, 1.0
        if step is None:
            step = self._prox_step(state, current, augment=False)
        state.previous, state.momentum_t = current, t_next
        U, s, V = step["factors"]
        state.set_factors(U, s, V, step["residuals"])
        state.n_steps += 1
        n_users, n_items = problem.shape
        # a subspace whose every direction survived may be too small: double it. New
        # (random) directions need a power step on each side before they can survive,
        # so the width is held for two steps after growing.
        rank, n_above, base_width = step["rank"], step["n_above"], state.subspace.shape[1]
        state.rank_capped = n_above > self.max_rank
        width = rank + self.rank_margin
        if n_above >= base_width:
            width, state.grown_at = max(width, 2 * rank), state.n_steps
        elif state.n_steps - state.grown_at <= 2:
            width = max(width, base_width)
        width = min(width, self.max_rank + self.rank_margin, n_users, n_items)
        # the next step restricts the other side: it needs the basis holding U (or V)
        basis = step["left"] if state.n_steps % 2 else step["right"]
        state.subspace = self._fill_subspace(xp, basis, width, state.seed, state.n_steps)
        metrics = {
            "objective": step["objective"],
            "train_rmse": float(xp.sqrt(xp.mean(step["residuals"] ** 2))),
            "rank": rank,
            "working_rank": width,
            "relative_change": relative_change(xp, *current[:3], U, s, V),
            "rank_capped": n_above > self.max_rank,
        }
        if self.acceleration is not None:
            metrics["momentum"] = momentum
            metrics["restarted"] = restarted
        # a plain step (a restart, or the one after it) moves Z far less than the
        # accelerated ones around it, so with acceleration only accelerated steps are
        # tested: the stricter reading of the tolerance
        plain_step = accelerating and (restarted or momentum == 0)
        metrics["check_tolerance"] = state.n_steps >= self._min_steps and not plain_step
        return metrics

    def _momentum(self, state):
        """FISTA's extrapolation weight ``(t_k - 1) / t_k+1`` and ``t_k+1`` (0 unaccelerated).

        No momentum after a rank-capped step, and it starts again (t = 1) once the cap
        no longer binds."""
        if self.acceleration is None or state.previous is None or state.rank_capped:
            return 0.0, 1.0
        t = state.momentum_t
        t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        return (t - 1.0) / t_next, t_next

    @staticmethod
    def _extrapolate(state, momentum):
        """``Y = Z_k + momentum (Z_k - Z_k-1)`` as signed factors, and ``P_Omega(X - Y)``.

        ``Y = [U_k, U_k-1] diag((1 + m) s_k, -m s_k-1) [V_k, V_k-1]^T`` has rank at most
        ``r_k + r_k-1`` and its residuals are the same combination of the stored ones: no
        pass over the ratings.
        """
        xp = state.problem.xp
        U1, s1, V1, R1 = state.left, state.singular_values, state.right, state.residuals
        U0, s0, V0, R0 = state.previous
        return (xp.concatenate([U1, U0], axis=1),
                xp.concatenate([(1.0 + momentum) * s1, -momentum * s0]),
                xp.concatenate([V1, V0], axis=1),
                (1.0 + momentum) * R1 - momentum * R0)

    def _prox_step(self, state, point, augment):
        """Soft-thresholded SVD of ``P_Omega(X - Y) + Y`` for the point ``Y``.

        ``point`` is ``(U, s, V, P_Omega(X - Y))``. On the subspace path the working
        subspace holds the current ``Z``'s side; with ``augment`` it also takes the
        previous iterate's, so that it contains ``Y`` and the step is the exact
        minimiser of the majorizer at ``Y`` over the subspace.
        """
        lam = float(self.regularization)
        if self.algorithm == "dense":
            left, sigma, right = self._dense_svd(state, point)
        else:
            left, sigma, right = self._subspace_svd(state, point, augment)
        n_above = int((sigma > lam).sum())
        rank = min(n_above, self.max_rank)
        U, s, V = left[:, :rank], sigma[:rank] - lam, right[:, :rank]
        residuals = state.problem.residuals(U, s, V)
        return {"factors": (U, s, V), "residuals": residuals, "left": left, "right": right,
                "rank": rank, "n_above": n_above,
                "objective": nuclear_objective(residuals, s, lam)}

    def _subspace_svd(self, state, point, augment):
        """SVD of ``M = S + Y`` restricted to a warm subspace that contains ``Y``.

        Even steps restrict the row space to ``span(W)`` with ``W ⊇ V``: ``M W`` is
        ``left diag(sigma) rot^T`` and ``right = W rot``. Odd steps restrict the column
        space to ``span(Q)`` with ``Q ⊇ U`` through ``M^T Q``. The two alternate, which
        is block power iteration with one sparse product per step.
        """
        xp, problem = state.problem.xp, state.problem
        U, s, V, residuals = point
        S = with_values(problem.pattern, residuals)
        row_side = state.n_steps % 2 == 0
        basis = state.subspace
        if augment:  # the previous iterate's side too
            basis = augment_basis(xp, basis, state.previous[2 if row_side else 0])
        if row_side:
            left, sigma, rot_t = thin_svd(splr_matmat(S, U, s, V, basis))
            return left, sigma, basis @ rot_t.T
        right, sigma, rot_t = thin_svd(splr_rmatmat(S, U, s, V, basis))
        return basis @ rot_t.T, sigma, right

    def _dense_svd(self, state, point):
        """Full SVD of the dense ``P_Omega(X) + P_Omega_perp(Y)`` (small problems only)."""
        xp = state.problem.xp
        X, mask = state.problem.dense
        U, s, V, _ = point
        left, sigma, right_t = xp.linalg.svd(xp.where(mask, X, (U * s) @ V.T),
                                             full_matrices=False)
        return left, sigma, right_t.T


# ============================================================================ ALS
# ============================================================================ path
def soft_impute_path(train, val, *, estimator=None, lambdas=None, n_lambdas=10,
                     lambda_min_ratio=0.02):
    """Fit a decreasing grid of ``lambda`` with warm starts; pick ``lambda`` on ``val``.

    A :func:`mflib.experiment.sweep` over ``regularization`` with ``warm_start=True``.

    Parameters
    ----------
    train : RatingMatrix
    val : RatingMatrix or (X_val, y_val)
        Validation ratings; the selected ``lambda`` has the lowest validation RMSE.
    estimator : SoftImpute or SoftImputeALS, optional
        Template whose other parameters are used (cloned; ``warm_start`` is set).
        Default ``SoftImpute()``.
    lambdas : sequence of float, optional
        The grid (fitted in decreasing order). Default: ``n_lambdas`` values spaced
        geometrically from :func:`lambda_max` down to ``lambda_min_ratio * lambda_max``.
    n_lambdas : int, default 10
    lambda_min_ratio : float in (0, 1), default 0.02

    Returns
    -------
    path : DataFrame
        One row per ``lambda`` (column ``regularization``): the columns of
        :func:`mflib.experiment.sweep`, ``rank`` and ``selected``.
    best : fitted estimator
        A copy of the model at the selected ``lambda`` (``warm_start=False``).
    """
    from ..experiment import sweep  # noqa: PLC0415  (the experiment API imports solvers)

    train = as_rating_matrix(train)
    val = val if isinstance(val, RatingMatrix) else as_rating_matrix(*val, name="val")
    template = estimator if estimator is not None else SoftImpute()
    if lambdas is None:
        check_positive_int(n_lambdas, "n_lambdas")
        check_fraction(lambda_min_ratio, "lambda_min_ratio", allow_zero=False)
        top = lambda_max(train, template.center, template.bias_regularization)
        lambdas = top * np.geomspace(1.0, lambda_min_ratio, n_lambdas)
    lambdas = np.sort(np.asarray(lambdas, dtype=float))[::-1]
    if lambdas.size == 0 or not np.all(lambdas >= 0):
        raise ValueError(f"lambdas must be a non-empty list of values >= 0, got {lambdas!r}")
    path, models = sweep(template, {"regularization": [float(v) for v in lambdas]},
                         train=train, validation=val, warm_start=True,
                         record={"rank": lambda m: m.rank_}, return_models=True)
    chosen = int(np.argmin(path["val_rmse"].to_numpy()))
    path["selected"] = np.arange(len(path)) == chosen
    best = models[chosen].set_params(warm_start=False)
    return path, best


__all__ = [
    "SoftImpute",
    "SoftImputeState",
    "dense_objective",
    "lambda_max",
    "nuclear_objective",
    "soft_impute_path",
    "sparse_plus_low_rank",
]
