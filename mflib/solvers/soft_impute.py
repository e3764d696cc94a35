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

import contextlib
import copy
import dataclasses
import functools
import time

import numpy as np
import pandas as pd
import scipy.sparse.linalg as spla
from threadpoolctl import ThreadpoolController

from ..backend import get_namespace, to_device, to_numpy
from ..base import FactorizationEstimator, FactorState
from ..data.ratings import RatingMatrix, as_rating_matrix
from ..kernels.lowrank import (
    array_module,
    observed_pattern,
    residuals_on_pairs,
    sparse_plus_low_rank,
    splr_matmat,
    splr_rmatmat,
    thin_svd,
    with_values,
)
from ..validation import (
    check_choice,
    check_fraction,
    check_nonnegative,
    check_positive_int,
    check_random_state,
)
from .baselines import BiasBaseline

CENTERS = (None, "mean", "biases")
ACCELERATIONS = (None, "nesterov")
#: largest users x items product the dense reference path will materialise
DENSE_CELL_LIMIT = 25_000_000


# ---------------------------------------------------------------------------- helpers
def center_ratings(train: RatingMatrix, center, bias_regularization=10.0):
    """Offsets removed before completion and the centred ratings.

    Parameters
    ----------
    train : RatingMatrix
    center : {None, "mean", "biases"}
        None fits the raw ratings (as the original prototype did), "mean" removes the
        global mean, "biases" removes the regularised bias baseline ``mu + b_u + c_i``.
    bias_regularization : float
        Ridge penalty of the bias baseline (``center="biases"`` only).

    Returns
    -------
    (global_mean, user_bias or None, item_bias or None, centred ratings of shape (nnz,))
    """
    check_choice(center, "center", CENTERS)
    if center is None:
        return 0.0, None, None, train.ratings.copy()
    mu = float(train.ratings.mean())
    if center == "mean":
        return mu, None, None, train.ratings - mu
    base = BiasBaseline(regularization=bias_regularization, verbose=0).fit(train)
    b, c = base.user_bias_, base.item_bias_
    return mu, b, c, train.ratings - mu - b[train.users] - c[train.items]


def lambda_max(train: RatingMatrix, center="biases", bias_regularization=10.0,
               random_state=0) -> float:
    """Largest singular value of ``P_Omega(X)`` for the centred ratings ``X``.

    Every ``regularization >= lambda_max`` gives ``Z = 0``: the top of the lambda path.
    """
    *_, target = center_ratings(train, center, bias_regularization)
    X = train.with_ratings(target).to_csr()
    if min(X.shape) == 1:  # a single row or column: its norm
        return float(np.sqrt(X.multiply(X).sum()))
    v0 = check_random_state(random_state).standard_normal(min(X.shape))
    return float(spla.svds(X, k=1, v0=v0, return_singular_vectors=False)[0])


def nuclear_objective(residuals, singular_values, regularization) -> float:
    """``1/2 |P_Omega(X - Z)|^2 + lambda |Z|_*`` from the residuals on Omega and ``s``."""
    xp = array_module(residuals)
    return float(0.5 * xp.dot(residuals, residuals) + regularization * singular_values.sum())


@functools.lru_cache(maxsize=1)
def _blas_controller():
    return ThreadpoolController()


def _single_threaded_blas(xp):
    """One BLAS thread for the small dense QR/SVDs of an iteration.

    The iteration also runs numba ``prange`` kernels; their OpenMP threads keep
    spinning after a parallel region and starve OpenBLAS's own threads, which made a
    1682 x 205 SVD 20-50x slower (0.7 s instead of 0.03 s) on a 2-core machine.
    """
    if xp is not np:
        return contextlib.nullcontext()
    return _blas_controller().limit(limits=1, user_api="blas")


def _orthonormal(xp, A):
    return xp.linalg.qr(A, mode="reduced")[0]


def _random_orthonormal(xp, n, k, seed):
    G = np.random.default_rng(seed).standard_normal((n, k))
    return _orthonormal(xp, to_device(G, xp)) if k else xp.zeros((n, 0))


def _relative_change(xp, U0, s0, V0, U1, s1, V1) -> float:
    """``|Z1 - Z0|_F^2 / max(|Z0|_F^2, |Z1|_F^2)`` from the factors, never forming Z."""
    cross = float(xp.sum((s1[:, None] * (U1.T @ U0)) * ((V1.T @ V0) * s0[None, :])))
    old, new = float(s0 @ s0), float(s1 @ s1)
    change = max(new + old - 2.0 * cross, 0.0)
    # relative to the larger of the two, so the first step from Z = 0 reads 1, not inf
    return change / max(old, new) if max(old, new) > 0 else 0.0


class _Problem:
    """Data of one fit, shared (not copied) between state snapshots.

    ``observed``/``users``/``items`` are ordered like ``pattern``'s stored values.
    """

    def __init__(self, train, target, xp):
        self.xp = xp
        pattern, order = observed_pattern(train.users, train.items, train.shape, xp)
        self.pattern = pattern
        index = np.int32 if max(train.shape) < 2**31 else np.int64
        self.users = to_device(train.users[order].astype(index), xp)
        self.items = to_device(train.items[order].astype(index), xp)
        self.observed = to_device(np.ascontiguousarray(target[order]), xp)
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
    last_objective: float = np.nan
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


class _NuclearNormCompletion(FactorizationEstimator):
    """What SoftImpute and SoftImputeALS share: centring, devices, warm starts, output."""

    def _check_common(self):
        check_nonnegative(self.regularization, "regularization")
        check_choice(self.center, "center", CENTERS)
        check_nonnegative(self.bias_regularization, "bias_regularization")

    def _setup(self, train):
        self._check_common()
        xp = get_namespace(self.device)  # raises DeviceError for 'gpu' without one
        mu, b, c, target = center_ratings(train, self.center, self.bias_regularization)
        rng = check_random_state(self.random_state)
        return xp, _Problem(train, target, xp), (mu, b, c), int(rng.integers(2**62))

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

    # _step reports convergence itself (after a few steps, see _converged); a key that is
    # never recorded disables run_loop's own test
    _monitor = "_unused"
    #: steps before the tolerance test applies: a fresh subspace may not yet show the
    #: directions above lambda, and an unchanged Z = 0 is not convergence
    _min_steps = 4

    def _step(self, state, train):
        with _single_threaded_blas(state.problem.xp):
            return self._iterate(state)

    def _converged(self, state, metrics) -> bool:
        previous, state.last_objective = state.last_objective, metrics["objective"]
        if state.n_steps < self._min_steps or not self.tol > 0:
            return False
        if self.convergence == "factors":
            return metrics["relative_change"] < self.tol
        new = metrics["objective"]
        return abs(previous - new) / max(abs(previous), abs(new), 1e-300) < self.tol


class SoftImpute(_NuclearNormCompletion):
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
    center : {"biases", "mean", None}, default "biases"
        Offset removed before completion (see :func:`center_ratings`); None fits the
        raw ratings.
    bias_regularization : float, default 10.0
        Ridge penalty of the bias baseline when ``center="biases"``.
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
    verbose : int, default 1
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

    _contract_params = {"max_iter": 3, "regularization": 5.0, "max_rank": 5, "init_rank": 3}

    def __init__(self, regularization=10.0, *, max_rank=100, rank_margin=5, init_rank=10,
                 algorithm="subspace", acceleration="nesterov", center="biases",
                 bias_regularization=10.0, convergence="factors", max_iter=100, tol=1e-5,
                 warm_start=False, random_state=None, device="cpu", verbose=1,
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
        self.verbose = verbose
        self.callbacks = callbacks

    def _init_state(self, train):
        check_positive_int(self.max_rank, "max_rank")
        check_positive_int(self.rank_margin, "rank_margin")
        check_positive_int(self.init_rank, "init_rank")
        check_choice(self.algorithm, "algorithm", ("subspace", "dense"))
        check_choice(self.acceleration, "acceleration", ACCELERATIONS)
        check_choice(self.convergence, "convergence", ("objective", "factors"))
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
            with _single_threaded_blas(xp):
                for _ in range(3):
                    state.subspace = _orthonormal(xp, S.T @ _orthonormal(xp, S @ state.subspace))
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
        return xp.concatenate([basis, _orthonormal(xp, extra)], axis=1)

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
            "relative_change": _relative_change(xp, *current[:3], U, s, V),
            "rank_capped": n_above > self.max_rank,
        }
        if self.acceleration is not None:
            metrics["momentum"] = momentum
            metrics["restarted"] = restarted
        # a plain step (a restart, or the one after it) moves Z far less than the
        # accelerated ones around it, so with acceleration only accelerated steps are
        # tested: the stricter reading of the tolerance
        plain_step = accelerating and (restarted or momentum == 0)
        if self._converged(state, metrics) and not plain_step:
            metrics["converged"] = True
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
            basis = _augment_basis(xp, basis, state.previous[2 if row_side else 0])
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


def _augment_basis(xp, basis, extra):
    """Orthonormal columns spanning ``basis`` (orthonormal, kept first) and ``extra``."""
    n, width = basis.shape
    if extra.shape[1] == 0:
        return basis
    if width + extra.shape[1] >= n:  # small problems: the whole space
        return _orthonormal(xp, xp.concatenate([basis, extra,
                                                 xp.eye(n, dtype=basis.dtype)], axis=1))
    # projected out twice, normalised, and once more: orthogonal to basis to rounding
    # even where extra lies almost inside span(basis) (as it does near convergence)
    extra = extra - basis @ (basis.T @ extra)
    extra = _orthonormal(xp, extra - basis @ (basis.T @ extra))
    extra = _orthonormal(xp, extra - basis @ (basis.T @ extra))
    return xp.concatenate([basis, extra], axis=1)


def dense_objective(X, mask, Z, regularization) -> float:
    """Reference objective ``1/2 |mask * (X - Z)|_F^2 + lambda |Z|_*`` on dense arrays."""
    R = np.where(mask, X - Z, 0.0)
    return float(0.5 * np.sum(R * R) + regularization * np.linalg.svd(Z, compute_uv=False).sum())


# ============================================================================ ALS
class SoftImputeALS(_NuclearNormCompletion):
    """softImpute-ALS (Hastie, Mazumder, Lee & Zadeh 2015): rank-``n_factors`` ALS form.

    Minimises ``1/2 |P_Omega(X - A B^T)|^2 + regularization/2 (|A|^2 + |B|^2)`` with
    ``A = U D``, ``B = V D`` (``U``, ``V`` orthonormal). Each half-step solves the ridge
    problem against the completed matrix ``S + A B^T`` (sparse plus low rank) in closed
    form and re-balances the factors by a small SVD, so the objective never rises. When
    ``n_factors`` is at least the rank of the SoftImpute solution, the minimum equals
    that of (1) and the solutions coincide. After the last iteration the SVD of
    ``M V`` is soft-thresholded, which removes directions that shrank to zero.

    Parameters
    ----------
    regularization : float, default 10.0
    n_factors : int, default 20
        Rank bound of ``A`` and ``B``.
    center, bias_regularization, convergence, max_iter, tol, warm_start, random_state,
    device, verbose, callbacks :
        As in :class:`SoftImpute`.

    Attributes
    ----------
    As :class:`SoftImpute`. The history records ``objective`` (the ALS objective,
    equal to (1) at the balanced factors), ``rank`` (factors with ``d > 0``),
    ``relative_change`` and the RMSEs.
    """

    _contract_params = {"max_iter": 3, "regularization": 5.0, "n_factors": 3}

    def __init__(self, regularization=10.0, *, n_factors=20, center="biases",
                 bias_regularization=10.0, convergence="factors", max_iter=100, tol=1e-5,
                 warm_start=False, random_state=None, device="cpu", verbose=1,
                 callbacks=None):
        self.regularization = regularization
        self.n_factors = n_factors
        self.center = center
        self.bias_regularization = bias_regularization
        self.convergence = convergence
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.callbacks = callbacks

    def _init_state(self, train):
        check_positive_int(self.n_factors, "n_factors")
        check_choice(self.convergence, "convergence", ("objective", "factors"))
        xp, problem, (mu, b, c), seed = self._setup(train)
        n_users, n_items = train.shape
        r = min(self.n_factors, n_users, n_items)
        state = SoftImputeState(mu, b, c, seed=seed, problem=problem)
        warm = self._warm_factors(train, xp)
        if warm is None:
            # Z = 0 with U random orthonormal and D = I, the paper's start (B = 0)
            U = _random_orthonormal(xp, n_users, r, [seed, 0])
            state.scales = xp.ones(r)
            state.set_factors(U, xp.zeros(r), xp.zeros((n_items, r)))
        else:
            U, s, V = warm
            k = s.shape[0]
            U = SoftImpute._fill_subspace(xp, U[:, :r], r, seed, 0)
            V = SoftImpute._fill_subspace(xp, V[:, :r], r, seed, 1)
            s = xp.concatenate([s[:r], xp.zeros(max(r - k, 0))])
            # directions with s = 0 restart from a small D, since a zero D stays zero
            state.scales = xp.where(s > 0, xp.sqrt(s), 1e-3)
            state.set_factors(U, state.scales**2, V)
        return state

    def _half_step(self, state, transpose: bool):
        """Update ``B`` (``transpose=False``) or ``A``, then re-balance by an SVD."""
        xp, problem, lam = state.problem.xp, state.problem, float(self.regularization)
        U, V, d = state.left, state.right, state.scales
        S = with_values(problem.pattern, state.residuals)  # residuals of U d^2 V^T
        ridge = d / (d * d + lam)
        if not transpose:  # B~ = (D^2 + lam)^-1 D U^T X*, as columns: n_items x r
            new = (S.T @ U) * ridge + V * (d**3 / (d * d + lam))
            vecs, sig, rot_t = thin_svd(new * d)
            U, V = U @ rot_t.T, vecs
        else:
            new = (S @ V) * ridge + U * (d**3 / (d * d + lam))
            vecs, sig, rot_t = thin_svd(new * d)
            U, V = vecs, V @ rot_t.T
        d = xp.sqrt(sig)
        state.scales = d
        state.set_factors(U, d * d, V)

    def _iterate(self, state):
        xp = state.problem.xp
        U0, s0, V0 = state.left, state.singular_values, state.right
        self._half_step(state, transpose=False)
        self._half_step(state, transpose=True)
        state.n_steps += 1
        s = state.singular_values
        metrics = {
            "objective": nuclear_objective(state.residuals, s, float(self.regularization)),
            "train_rmse": float(xp.sqrt(xp.mean(state.residuals ** 2))),
            "rank": int((s > 0).sum()),
            "relative_change": _relative_change(xp, U0, s0, V0, state.left, s, state.right),
        }
        if self._converged(state, metrics):
            metrics["converged"] = True
        return metrics

    # the final soft-thresholded SVD (Hastie et al. 2015, Algorithm 3.1, step 4) comes after
    # the last recorded iteration
    _history_describes_final_model = False

    def _finalize(self, state):
        with _single_threaded_blas(state.problem.xp):
            self._soft_threshold_row_space(state)
        super()._finalize(state)

    def _soft_threshold_row_space(self, state):
        """The SVD of ``M V`` soft-thresholded: the exact minimiser of (1) over row space V."""
        problem, lam = state.problem, float(self.regularization)
        U, s, V = state.left, state.singular_values, state.right
        S = with_values(problem.pattern, state.residuals)
        left, sigma, rot_t = thin_svd(splr_matmat(S, U, s, V, V))
        keep = int((sigma > lam).sum())
        state.set_factors(left[:, :keep], sigma[:keep] - lam, (V @ rot_t.T)[:, :keep])


# ============================================================================ path
def soft_impute_path(train, val, *, estimator=None, lambdas=None, n_lambdas=10,
                     lambda_min_ratio=0.02, verbose=0):
    """Fit a decreasing grid of ``lambda`` with warm starts; pick ``lambda`` on ``val``.

    Parameters
    ----------
    train : RatingMatrix
    val : RatingMatrix or (X_val, y_val)
        Validation ratings; the selected ``lambda`` has the lowest validation RMSE.
    estimator : SoftImpute or SoftImputeALS, optional
        Template whose other parameters are used (cloned; ``warm_start`` is set).
        Default ``SoftImpute(verbose=0)``.
    lambdas : sequence of float, optional
        The grid (fitted in decreasing order). Default: ``n_lambdas`` values spaced
        geometrically from :func:`lambda_max` down to ``lambda_min_ratio * lambda_max``.
    n_lambdas : int, default 10
    lambda_min_ratio : float in (0, 1), default 0.02
    verbose : int, default 0
        Progress bar of each fit.

    Returns
    -------
    path : DataFrame
        One row per ``lambda``: ``lambda``, ``rank``, ``objective``, ``train_rmse``,
        ``val_rmse``, ``n_iter``, ``time`` (solver seconds), ``stop_reason``, ``selected``.
    best : fitted estimator
        A copy of the model at the selected ``lambda``.
    """
    from sklearn.base import clone  # noqa: PLC0415

    train = as_rating_matrix(train)
    model = clone(estimator if estimator is not None else SoftImpute(verbose=0))
    if lambdas is None:
        check_positive_int(n_lambdas, "n_lambdas")
        check_fraction(lambda_min_ratio, "lambda_min_ratio", allow_zero=False)
        top = lambda_max(train, model.center, model.bias_regularization)
        lambdas = top * np.geomspace(1.0, lambda_min_ratio, n_lambdas)
    lambdas = np.sort(np.asarray(lambdas, dtype=float))[::-1]
    if lambdas.size == 0 or not np.all(lambdas >= 0):
        raise ValueError(f"lambdas must be a non-empty list of values >= 0, got {lambdas!r}")
    model.set_params(warm_start=True, verbose=verbose)
    rows, best, best_rmse = [], None, np.inf
    for lam in lambdas:
        t0 = time.perf_counter()
        model.set_params(regularization=float(lam)).fit(train, eval_set=val)
        h = model.history_
        rows.append({
            "lambda": float(lam),
            "rank": model.rank_,
            "objective": model.objective_,
            "train_rmse": float(h["train_rmse"][-1]) if len(h) else np.nan,
            "val_rmse": -model.score(*_as_pairs(val)),
            "n_iter": model.n_iter_,
            "time": float(h["time"][-1]) if len(h) else 0.0,
            "wall_time": time.perf_counter() - t0,
            "stop_reason": model.stop_reason_,
        })
        if rows[-1]["val_rmse"] < best_rmse:
            best, best_rmse = copy.deepcopy(model), rows[-1]["val_rmse"]
    path = pd.DataFrame(rows)
    path["selected"] = path["val_rmse"] == best_rmse
    best.set_params(warm_start=False)
    return path, best


def _as_pairs(val):
    return (val, None) if isinstance(val, RatingMatrix) else tuple(val)


__all__ = [
    "SoftImpute",
    "SoftImputeALS",
    "SoftImputeState",
    "center_ratings",
    "dense_objective",
    "lambda_max",
    "nuclear_objective",
    "soft_impute_path",
    "sparse_plus_low_rank",
]
