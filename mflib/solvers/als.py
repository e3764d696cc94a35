"""Explicit-feedback alternating least squares, with or without biases.

Model ``r_hat = mu + b_u + c_i + p_u . q_i`` (biases and ``mu`` only with ``use_bias=True``;
``mu`` is then the training mean and stays fixed). With the items fixed, every user's
``(b_u, p_u)`` is an independent ridge problem, and symmetrically for items, so each
half-step is solved exactly and row by row in parallel (:func:`mflib.kernels.ridge.ridge_rows`).
The biases are solved *jointly* with the factors: ``(b_u, p_u)`` is the ridge solution for
the augmented features ``[1, q_i]`` and the targets ``r_ui - mu - c_i``.

Regularisation conventions (``regularization_scale``), with ``lambda = regularization``
and ``S = sum_Omega (r_ui - r_hat_ui)^2`` (written with one ``lambda``; the bias terms
carry ``bias_regularization`` instead when it is set):

``"sum"``
    ``S + lambda (sum_u |p_u|^2 + b_u^2  +  sum_i |q_i|^2 + c_i^2)``; each row's normal
    equations carry ``lambda``.
``"weighted"``
    ``S + lambda (sum_u n_u (|p_u|^2 + b_u^2) + sum_i n_i (|q_i|^2 + c_i^2))`` with ``n_u``,
    ``n_i`` the rating counts ("ALS-WR", Zhou et al. 2008); row ``u`` carries ``lambda n_u``.
``"course"``
    ``S / |Omega| + lambda (|P|^2 + |Q|^2 [+ |b|^2 + |c|^2])``; multiplying by ``|Omega|``
    shows every row's normal equations carry ``lambda |Omega|``.

The recorded ``objective`` is the one of the chosen convention. Exact (Cholesky) solves
never raise it; the optional conjugate-gradient solver takes ``cg_steps`` steps per row
warm-started from the previous factors, which also never raises it (CG minimises each
row's quadratic over a space that contains its starting point).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .. import execution
from ..backend import to_numpy
from ..base import FactorizationEstimator, FactorState
from ..data.layout import training_layout
from ..distributed.training import global_mean
from ..fitting import StopFit
from ..kernels.ridge import SOLVERS, ridge_rows
from ..kernels.ridge_xp import BucketPlan, ridge_rows_xp
from ..validation import (
    BOOLEAN,
    DTYPE,
    NONE,
    NONNEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    Options,
    check_random_state,
)
from .state import LayoutState, initial_factors, residuals

REGULARIZATION_SCALES = ("sum", "weighted", "course")


@dataclass
class ALSState(LayoutState):
    """Factors and biases, the shared training layout, and the ratings in its two orders
    at the working precision (state copies share them)."""

    ratings_csr: np.ndarray | None = None
    ratings_csc: np.ndarray | None = None

    def copy(self):
        out = FactorState.copy(dataclasses.replace(self, ratings_csr=None, ratings_csc=None))
        out.ratings_csr, out.ratings_csc = self.ratings_csr, self.ratings_csc
        return out


def row_multipliers(scale: str, counts: np.ndarray, nnz: int) -> np.ndarray:
    """What each row's penalty is multiplied by in its normal equations under ``scale``:
    1 (``"sum"``), the row's count (``"weighted"``) or ``|Omega|`` (``"course"``)."""
    if scale == "sum":
        return np.ones(len(counts))
    if scale == "weighted":
        return counts.astype(np.float64)
    return np.full(len(counts), float(nnz))


def augmented(bias: np.ndarray | None, factors: np.ndarray) -> np.ndarray:
    """``[bias, factors]`` as one C-contiguous (n, k+1) array; ``factors`` when no bias."""
    if bias is None:
        return np.ascontiguousarray(factors)
    out = np.empty((factors.shape[0], factors.shape[1] + 1), dtype=factors.dtype)
    out[:, 0] = bias
    out[:, 1:] = factors
    return out


class ALS(FactorizationEstimator):
    """Alternating least squares for explicit ratings (see the module docstring).

    Parameters
    ----------
    n_factors : int, default 10
        Rank ``k``.
    regularization : float, default 15.0
        ``lambda`` on the factors. In the default ``"sum"`` convention ``lambda`` is the
        ratio of the noise variance to the prior variance of a factor, a property of the
        rating scale rather than of the data size (each row's data term grows with its
        count on its own). 15 was chosen on 10% validation parts of ml-100k u1.base and
        of the Netflix course training set (ranks 10-50, lambda 5-30 and weighted-lambda
        0.03-0.5, 25 epochs): validation RMSE 0.918 and 0.935 against the bias
        baseline's 0.944 and 0.943, within 0.003 and 0.005 of the best setting tried on
        each, where the former default 0.1 overfits badly (1.28 and 1.39).
    bias_regularization : float or None, default None
        ``lambda`` on the biases in place of ``regularization`` (None: the same value),
        under the same convention.
    regularization_scale : {"sum", "weighted", "course"}, default "sum"
        The convention; formulas in the module docstring.
    use_bias : bool, default True
        Fit ``mu + b_u + c_i`` alongside the factors (solved jointly, exactly).
    max_iter : int, default 15
        Epochs (one user half-step and one item half-step each).
    tol : float, default 1e-6
        Stop when the objective's relative change is below ``tol`` (0 disables).
    solver : {"cholesky", "cg"}, default "cholesky"
        Exact per-row solves, or ``cg_steps`` warm-started conjugate-gradient steps
        (cheaper at large ranks).
    cg_steps : int, default 3
    init_std : float, default 0.1
        Factors start as N(0, init_std^2) entries; biases at 0.
    dtype : {"float64", "float32"}, default "float64"
        Working precision of factors and solves.
    n_jobs : int or None, default None
        numba threads for the row solves (None or -1: all). Rows are independent, so
        every value gives the same factors.
    device : {"cpu", "gpu", "auto"}, default "cpu"
        "gpu": the rows are solved on the GPU (CuPy), bucketed by length and solved by
        batched products and batched exact solves (:mod:`mflib.kernels.ridge_xp`;
        ``solver`` does not apply there); the fitted attributes are NumPy arrays.
    random_state : int, Generator or None
    verbose : int, default 0
        Show a progress bar.
    callbacks : list of callables, optional

    Attributes
    ----------
    user_factors_ : ndarray of shape (n_users, n_factors)
    item_factors_ : ndarray of shape (n_items, n_factors)
    user_bias_, item_bias_ : ndarray of shape (n_users,), (n_items,), or None
    global_mean_ : float
    history_ : History
        ``objective`` per epoch, plus ``train_rmse`` / ``val_rmse``.
    """

    _parameter_constraints = {
        "n_factors": [POSITIVE_INT],
        "regularization": [NONNEGATIVE],
        "bias_regularization": [NONE, NONNEGATIVE],
        "regularization_scale": [Options(*REGULARIZATION_SCALES)],
        "use_bias": [BOOLEAN],
        "solver": [Options(*SOLVERS)],
        "cg_steps": [POSITIVE_INT],
        "init_std": [POSITIVE],
        "dtype": [DTYPE],
    }
    _contract_params = {"n_factors": 3, "max_iter": 3}
    _mpi = "shards"
    _devices = ("cpu", "gpu")

    def __init__(self, n_factors=10, regularization=15.0, bias_regularization=None,
                 regularization_scale="sum",
                 use_bias=True, max_iter=15, tol=1e-6, solver="cholesky", cg_steps=3,
                 init_std=0.1, dtype="float64", n_jobs=None, device="cpu", random_state=None,
                 verbose=0, callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.regularization_scale = regularization_scale
        self.use_bias = use_bias
        self.max_iter = max_iter
        self.tol = tol
        self.solver = solver
        self.cg_steps = cg_steps
        self.init_std = init_std
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    # ------------------------------------------------------------------ template
    def _init_state(self, train):
        dtype = np.dtype(self.dtype)
        rng = check_random_state(self.random_state)
        k = self.n_factors
        exchange = execution.exchange()
        if exchange is None:
            layout = training_layout(train)
        else:  # this rank's users and items (mflib.distributed): same rows, same solves
            from ..distributed.layout import DistributedLayout  # noqa: PLC0415
            from ..distributed.training import is_shard  # noqa: PLC0415

            build = DistributedLayout.from_shard if is_shard(train) else \
                DistributedLayout.from_full
            # a row's Cholesky costs about k/3 of its ratings' Gram products (k^3/3 flops)
            layout = build(train, exchange, row_cost=(k + self.use_bias) / 3)
        self._exchange = exchange
        P, Q = initial_factors(rng, train.n_users, train.n_items, k, self.init_std, dtype)
        state = ALSState(
            global_mean=global_mean(train, exchange) if self.use_bias else 0.0,
            user_bias=np.zeros(train.n_users, dtype) if self.use_bias else None,
            item_bias=np.zeros(train.n_items, dtype) if self.use_bias else None,
            user_factors=P,
            item_factors=Q,
            layout=layout,
            ratings_csr=layout.ratings_csr.astype(dtype, copy=False),
            ratings_csc=layout.ratings_csc.astype(dtype, copy=False),
        )
        scale = self.regularization_scale
        self._user_reg = row_multipliers(scale, layout.user_counts, layout.nnz)
        self._item_reg = row_multipliers(scale, layout.item_counts, layout.nnz)
        # per-coordinate penalties: [bias, factors...]
        lam, lam_b = self._lambdas()
        self._coordinate_reg = np.array(([lam_b] if self.use_bias else []) + [lam] * k)
        self._gpu = None
        if execution.current().device == "gpu":
            if exchange is not None:
                raise ValueError("ALS: device='gpu' under MPI is not supported; use one GPU "
                                 "process, or the CPU across ranks")
            self._gpu = _GPUSides(layout, execution.current().xp, dtype, k + self.use_bias)
            state = self._gpu.to_device(state)
        return state

    def _finalize(self, state) -> None:
        super()._finalize(state)
        self.__dict__.pop("_exchange", None)  # the communicator stays with the fit
        self.__dict__.pop("_gpu", None)

    def _lambdas(self) -> tuple[float, float]:
        lam = float(self.regularization)
        lam_b = lam if self.bias_regularization is None else float(self.bias_regularization)
        return lam, lam_b

    def _solve_side(self, indptr, others, ratings, other_bias, other_factors, own_bias,
                    own_factors, reg, mu, row_sse=None):
        """One half-step: every row's (bias, factors) given the other side's; ``row_sse``
        receives each row's squared residuals at the new solution."""
        targets = ratings - ratings.dtype.type(mu)
        if other_bias is not None:
            targets = targets - other_bias[others]
        features = augmented(
            None if other_bias is None else np.ones_like(other_bias), other_factors
        )
        solution = augmented(own_bias, own_factors)  # the CG warm start
        try:
            ridge_rows(indptr, others, targets, features, reg, out=solution,
                       solver=self.solver, cg_steps=self.cg_steps, dtype=ratings.dtype,
                       reg_scale=self._coordinate_reg, row_sse=row_sse)
        except np.linalg.LinAlgError as exc:
            raise StopFit(f"stopped: singular or non-finite row systems: {exc}") from exc
        if own_bias is None:
            return None, solution
        return np.ascontiguousarray(solution[:, 0]), np.ascontiguousarray(solution[:, 1:])

    def _step(self, state, train):
        if self._exchange is not None:
            return self._distributed_step(state)
        if self._gpu is not None:
            return self._gpu_step(state)
        s = state.layout
        state.user_bias, state.user_factors = self._solve_side(
            s.user_indptr, s.user_items, state.ratings_csr, state.item_bias,
            state.item_factors, state.user_bias, state.user_factors, self._user_reg,
            state.global_mean)
        # the item half-step comes last, so its rows' squared residuals sum to the
        # loss of the new state: no separate pass over the ratings for the objective
        # or the training RMSE
        item_sse = np.empty(s.n_items)
        state.item_bias, state.item_factors = self._solve_side(
            s.item_indptr, s.item_users, state.ratings_csc, state.user_bias,
            state.user_factors, state.item_bias, state.item_factors, self._item_reg,
            state.global_mean, row_sse=item_sse)
        sse = float(item_sse.sum())
        return {"objective": self.objective(state, sse=sse),
                "train_rmse": float(np.sqrt(sse / s.nnz))}

    def _gpu_step(self, state):
        """The same two half-steps with every row solved on the device."""
        g, xp, mu = self._gpu, self._gpu.xp, state.global_mean

        def half(plan, others, others_d, ratings_d, other_bias, other_factors, reg):
            targets = ratings_d - ratings_d.dtype.type(mu)
            if other_bias is not None:
                targets = targets - other_bias[others_d]
                other_factors = xp.concatenate(
                    [xp.ones((other_factors.shape[0], 1), other_factors.dtype), other_factors],
                    axis=1)
            solution, row_sse = ridge_rows_xp(xp, plan, others, targets, other_factors, reg,
                                              reg_scale=self._coordinate_reg)
            if other_bias is None:
                return None, solution, row_sse
            return (xp.ascontiguousarray(solution[:, 0]),
                    xp.ascontiguousarray(solution[:, 1:]), row_sse)

        s = state.layout
        state.user_bias, state.user_factors, _ = half(
            g.user_plan, s.user_items, g.user_items, g.ratings_csr, state.item_bias,
            state.item_factors, self._user_reg)
        state.item_bias, state.item_factors, item_sse = half(
            g.item_plan, s.item_users, g.item_users, g.ratings_csc, state.user_bias,
            state.user_factors, self._item_reg)
        sse = float(item_sse.sum())
        return {"objective": self.objective(state, sse=sse),
                "train_rmse": float(np.sqrt(sse / s.nnz))}

    def _distributed_step(self, state):
        """The same half-steps on this rank's rows (``state.layout`` is a
        :class:`~mflib.distributed.DistributedLayout`); after each, the new rows reach
        every rank by one ``Allgatherv`` of ``[bias, factors]``. Each row is solved by
        the same instructions from the same inputs as in one process, so the factors are
        bit-identical; the loss is summed over ranks."""
        d, ex = state.layout, self._exchange
        sent = ex.bytes_sent

        def half(indptr, others, ratings, other_bias, other_factors, own_bias, own_factors,
                 reg, block, bounds, row_sse=None):
            bias, factors = self._solve_side(
                indptr, others, ratings, other_bias, other_factors,
                None if own_bias is None else own_bias[block], own_factors[block],
                reg[block], state.global_mean, row_sse=row_sse)
            rows = ex.allgather_rows(augmented(bias, factors), bounds)
            if own_bias is None:
                return None, rows
            return np.ascontiguousarray(rows[:, 0]), np.ascontiguousarray(rows[:, 1:])

        state.user_bias, state.user_factors = half(
            d.user_indptr, d.user_items, state.ratings_csr, state.item_bias, state.item_factors,
            state.user_bias, state.user_factors, self._user_reg, d.user_block, d.user_bounds)
        item_sse = np.empty(d.item_block.stop - d.item_block.start)
        state.item_bias, state.item_factors = half(
            d.item_indptr, d.item_users, state.ratings_csc, state.user_bias, state.user_factors,
            state.item_bias, state.item_factors, self._item_reg, d.item_block, d.item_bounds,
            row_sse=item_sse)
        sse = float(ex.allreduce_sum(float(item_sse.sum())))
        return {"objective": self.objective(state, sse=sse),
                "train_rmse": float(np.sqrt(sse / d.nnz)),
                "bytes_sent": ex.bytes_sent - sent}

    def objective(self, state, sse=None) -> float:
        """The objective of ``regularization_scale`` at ``state`` (see module docstring).

        ``sse``, the sum of squared residuals over the training ratings, is computed
        from ``state`` unless given.
        """
        s = state.layout
        if sse is None:
            sse = float(np.sum(residuals(state, s) ** 2))
        lam, lam_b = self._lambdas()

        def penalty(bias, factors, counts):
            sq = lam * np.sum(to_numpy(factors).astype(np.float64) ** 2, axis=1)
            if bias is not None:
                sq += lam_b * to_numpy(bias).astype(np.float64) ** 2
            return float(sq @ counts) if self.regularization_scale == "weighted" else sq.sum()

        pen = (penalty(state.user_bias, state.user_factors, s.user_counts)
               + penalty(state.item_bias, state.item_factors, s.item_counts))
        if self.regularization_scale == "course":
            return sse / s.nnz + pen
        return sse + pen


class _GPUSides:
    """The device copies a GPU fit reads every half-step: ratings and the other side's
    index of each CSR entry, and the bucket plans of both sides (built once)."""

    def __init__(self, layout, xp, dtype, width):
        self.xp = xp
        self.user_plan = BucketPlan(layout.user_indptr, width)
        self.item_plan = BucketPlan(layout.item_indptr, width)
        self.user_items = xp.asarray(layout.user_items)
        self.item_users = xp.asarray(layout.item_users)
        self.ratings_csr = xp.asarray(layout.ratings_csr.astype(dtype))
        self.ratings_csc = xp.asarray(layout.ratings_csc.astype(dtype))

    def to_device(self, state):
        for name in ("user_bias", "item_bias", "user_factors", "item_factors"):
            value = getattr(state, name)
            if value is not None:
                setattr(state, name, self.xp.asarray(value))
        return state


__all__ = ["ALS", "ALSState", "augmented", "row_multipliers"]
