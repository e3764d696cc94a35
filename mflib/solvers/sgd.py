"""Stochastic solvers of biased matrix factorisation: SGD (Funk-SVD) and SVRG.

Model ``r_hat_ui = mu + b_u + c_i + p_u . q_i`` with ``mu`` the training mean (fixed).
Both solvers minimise the same objective, the mean per-rating loss

    f = 1/N sum_(u,i) [ 1/2 (r_ui - r_hat_ui)^2 + lam/2 (b_u^2 + c_i^2 + |p_u|^2 + |q_i|^2) ],

whose penalty touches a row once per rating of that row (as in Funk's SVD and
Surprise's ``SVD``). The history records ``objective`` (= f) and ``train_rmse`` at the
end of each epoch, both from one pass over the ratings that only reads (SVRG gets them
from the residuals of its snapshot's full gradient), ``grad_norm`` (the norm of the full
gradient of f: always for SVRG, which needs the gradient anyway; for SGD only with
``record_grad_norm=True``, as it costs a pass that also writes per-row sums),
``step_size``, ``epoch_seconds`` (the epoch alone: shuffling and the kernel, without that
bookkeeping) and, from the fit template, ``val_rmse``. The hot loops live in
:mod:`mflib.kernels.sgd`; CPU only.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import numba
import numpy as np

from .. import execution
from ..base import FactorizationEstimator, FactorState
from ..data.layout import TrainingLayout, training_layout
from ..fitting import StopFit
from ..kernels import sgd as kernels
from ..kernels import sgd_xp
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
from .state import initial_factors

SCHEDULES = ("constant", "inverse", "exponential")
PARALLEL_MODES = ("auto", None, False, "blocked", "hogwild")
#: default ``decay`` of each schedule (the prototype decayed by 0.9 per epoch)
DEFAULT_DECAY = {"constant": 0.0, "inverse": 1.0, "exponential": 0.9}
#: an objective this many times above its starting value counts as divergence
EXPLOSION_FACTOR = 1e3


def step_size(learning_rate: float, schedule: str, decay: float, epoch: int) -> float:
    """Learning rate of ``epoch`` (0-based): ``constant`` eta0, ``inverse``
    eta0 / (1 + decay * epoch), ``exponential`` eta0 * decay**epoch."""
    if schedule == "constant":
        return learning_rate
    if schedule == "inverse":
        return learning_rate / (1.0 + decay * epoch)
    return learning_rate * decay**epoch


@dataclasses.dataclass
class _Workspace:
    """What a fit reads or scribbles on besides the model: the shared training layout
    (ratings in rating order), per-rating residuals and solver buffers. Shared, not
    copied, between a state and its copies."""

    layout: TrainingLayout
    residuals: np.ndarray  # float64, one per rating
    extra: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def build(cls, train):
        layout = training_layout(train)
        return cls(layout, np.empty(layout.nnz))

    # the names the kernels' callers use
    @property
    def users(self):
        return self.layout.users

    @property
    def items(self):
        return self.layout.items

    @property
    def ratings(self):
        return self.layout.ratings

    @functools.cached_property
    def user_counts(self):
        return self.layout.user_counts.astype(np.float64)

    @functools.cached_property
    def item_counts(self):
        return self.layout.item_counts.astype(np.float64)


@dataclasses.dataclass
class StochasticState(FactorState):
    """Model parameters plus the generator, the epoch counter and the shared workspace."""

    rng: object = None
    epoch: int = 0
    initial_objective: float = math.nan
    workspace: object = None

    def copy(self):
        return dataclasses.replace(
            self,
            user_bias=self.user_bias.copy(),
            item_bias=self.item_bias.copy(),
            user_factors=self.user_factors.copy(),
            item_factors=self.item_factors.copy(),
        )


def compute_residuals(state: StochasticState) -> np.ndarray:
    """``r_j - r_hat_j`` for every training rating, written into the workspace (float64)."""
    ws = state.workspace
    kernels.residuals(ws.users, ws.items, ws.ratings, state.global_mean, state.user_bias,
                      state.item_bias, state.user_factors, state.item_factors, ws.residuals)
    return ws.residuals


def objective(state: StochasticState, regularization: float, resid: np.ndarray) -> float:
    """The mean per-rating loss f (module docstring) given the current residuals."""
    ws = state.workspace
    return kernels.mean_loss(resid, state.user_bias, state.item_bias, state.user_factors,
                             state.item_factors, ws.user_counts, ws.item_counts,
                             regularization)


def loss(state: StochasticState, regularization: float, sse: float | None = None):
    """``(f, sse)``: the mean per-rating loss and the sum of squared residuals at
    ``state``. Without ``sse``, one read-only pass over the ratings (CSR order) computes
    it; nothing per rating is written."""
    ws = state.workspace
    if sse is None:
        lay = ws.layout
        sse = kernels.training_sse(lay.user_indptr, lay.user_items, lay.ratings_csr,
                                   state.global_mean, state.user_bias, state.item_bias,
                                   state.user_factors, state.item_factors)
    value = kernels.loss_from_sse(sse, len(ws.ratings), state.user_bias, state.item_bias,
                                  state.user_factors, state.item_factors, ws.user_counts,
                                  ws.item_counts, regularization)
    return value, sse


def _residual_pass(state: StochasticState) -> tuple:
    """Residuals into the workspace and the data parts ``(E 1, E^T 1, E Q, E^T P)`` of the
    full gradient, in one pass over the ratings."""
    ws = state.workspace
    P, Q = state.user_factors, state.item_factors
    parts = (np.zeros(P.shape[0]), np.zeros(Q.shape[0]), np.zeros(P.shape), np.zeros(Q.shape))
    kernels.residual_products(ws.users, ws.items, ws.ratings, state.global_mean,
                              state.user_bias, state.item_bias, P, Q, ws.residuals, *parts)
    return parts


def _assemble_gradient(state: StochasticState, regularization: float, parts) -> tuple:
    ws = state.workspace
    n = len(ws.ratings)
    lam = regularization
    e_sum_user, e_sum_item, EQ, EtP = parts
    g_bu = (lam * ws.user_counts * state.user_bias - e_sum_user) / n
    g_bi = (lam * ws.item_counts * state.item_bias - e_sum_item) / n
    g_P = (lam * ws.user_counts[:, None] * state.user_factors - EQ) / n
    g_Q = (lam * ws.item_counts[:, None] * state.item_factors - EtP) / n
    return g_bu, g_bi, g_P, g_Q


def full_gradient(state: StochasticState, regularization: float) -> tuple:
    """Gradient of f at ``state``; with the residuals ``e`` (left in the workspace),
    ``g_b = (lam n_u b_u - E 1) / N``, ``g_P = (lam n_u P - E Q) / N`` and symmetrically
    for items, E being the sparse matrix of residuals.

    Returns
    -------
    (g_user_bias (n_users,), g_item_bias (n_items,), g_P (n_users, k), g_Q (n_items, k)),
    all float64.
    """
    return _assemble_gradient(state, regularization, _residual_pass(state))


def _norm(parts) -> float:
    return float(math.sqrt(sum(float(np.square(g).sum()) for g in parts)))


class _StochasticMF(FactorizationEstimator):
    """Shared parameter checks, initialisation and per-epoch bookkeeping."""

    _parameter_constraints = {
        "n_factors": [POSITIVE_INT],
        "learning_rate": [POSITIVE],
        "regularization": [NONNEGATIVE],
        "init_std": [NONNEGATIVE],
        "schedule": [Options(*SCHEDULES)],
        "decay": [NONE, NONNEGATIVE],
        "dtype": [DTYPE],
    }
    #: SVRG needs the full gradient at every snapshot; SGD computes it only when asked
    _needs_gradient = False

    def _check_common(self):
        decay = DEFAULT_DECAY[self.schedule] if self.decay is None else self.decay
        if self.schedule == "exponential" and not 0 < decay <= 1:
            raise ValueError(
                f"decay must be in (0, 1] for the exponential schedule, got {decay!r}"
            )
        self._decay = float(decay)
        return np.dtype(self.dtype)

    def _init_common(self, train, dtype, blocks=None) -> StochasticState:
        rng = check_random_state(self.random_state)
        P, Q = initial_factors(rng, train.n_users, train.n_items, self.n_factors, self.init_std,
                               dtype)
        state = StochasticState(
            global_mean=float(train.ratings.mean()),
            user_bias=np.zeros(train.n_users, dtype=dtype),
            item_bias=np.zeros(train.n_items, dtype=dtype),
            user_factors=P,
            item_factors=Q,
            rng=rng,
            workspace=_Workspace.build(train),
        )
        if blocks is not None:
            self._group_by_block(state, blocks)
        if self._needs_gradient:
            # the snapshot gradient of epoch e is the end-of-epoch gradient of epoch e-1
            state.workspace.extra["gradient"] = full_gradient(state, self.regularization)
            state.initial_objective = objective(state, self.regularization,
                                                state.workspace.residuals)
        else:
            state.initial_objective = loss(state, self.regularization)[0]
        return state

    @staticmethod
    def _group_by_block(state, n_groups: int) -> None:
        """Users and items split at random into ``n_groups`` balanced groups each; the
        ratings stored grouped by block (user group x item group, offsets
        ``block_start``), for the blocked epoch and its loss pass."""
        ws, rng = state.workspace, state.rng
        user_group = rng.permutation(len(state.user_bias)) % n_groups
        item_group = rng.permutation(len(state.item_bias)) % n_groups
        users32, items32 = ws.layout.index32
        block_start, users, items, ratings = kernels.group_ratings_by_block(
            users32, items32, ws.ratings, user_group, item_group, n_groups)
        ws.extra.update(block_start=block_start, block_users=users, block_items=items,
                        block_ratings=ratings, order=np.empty(len(ratings), dtype=np.int64))

    def _current_step_size(self, state) -> float:
        return step_size(float(self.learning_rate), self.schedule, self._decay, state.epoch)

    def _check_divergence(self, state, value: float) -> None:
        """Stop (keeping the previous epoch's model) when f is non-finite or exploding."""
        limit = EXPLOSION_FACTOR * max(state.initial_objective, 1e-12)
        if not math.isfinite(value) or value > limit:
            what = "non-finite" if not math.isfinite(value) else (
                f"above {EXPLOSION_FACTOR:g} x its initial value {state.initial_objective:.4g}")
            raise StopFit(
                f"diverged: objective {value!r} ({what}) after epoch {state.epoch + 1} with "
                f"step size {self._current_step_size(state):.3g}; try a smaller learning_rate "
                f"(now {self.learning_rate!r}) or a decaying schedule"
            )

    def _epoch_metrics(self, state) -> tuple[dict, tuple | None]:
        """Objective and training RMSE at the end of an epoch, and the full gradient and
        its norm when the solver needs it or the user asked for it (then the residuals
        left in the workspace are those of the new parameters); advances the epoch."""
        gradient = self._needs_gradient or getattr(self, "record_grad_norm", False)
        parts = _residual_pass(state) if gradient else None
        sse = kernels.sum_squares(state.workspace.residuals) if gradient else None
        value, sse = loss(state, self.regularization, sse)
        self._check_divergence(state, value)  # before NumPy touches non-finite values
        metrics = {"objective": value,
                   "train_rmse": math.sqrt(sse / len(state.workspace.ratings)),
                   "step_size": self._current_step_size(state)}
        grads = None
        if gradient:
            grads = _assemble_gradient(state, self.regularization, parts)
            metrics["grad_norm"] = _norm(grads)
        state.epoch += 1
        return metrics, grads


class SGD(_StochasticMF):
    """Biased matrix factorisation (Funk-SVD) trained by SGD, one rating at a time.

    For each rating in a freshly shuffled order, with ``e = r - r_hat``::

        b_u += eta (e - lam b_u),  c_i += eta (e - lam c_i),
        p_u += eta (e q_i - lam p_u),  q_i += eta (e p_u - lam q_i)

    (the same updates as Surprise's ``SVD``), a step along the negative gradient of that
    rating's loss (see :mod:`mflib.solvers.sgd`). ``mu`` is the training mean, biases
    start at 0 and factors at N(0, init_std^2).

    Parameters
    ----------
    n_factors : int, default 100
        Rank k.
    learning_rate : float, default 0.005
        Initial step size eta0.
    regularization : float, default 0.1
        lam, applied to the rows of each visited rating (so a row's penalty grows with
        its rating count, which lets one value serve data sets of any size). Surprise's
        ``SVD`` (and mflib before issue 13) uses 0.02 with 20 epochs; on 10% validation
        parts of ml-100k u1.base and of the Netflix course training set that setting
        overfits the sparser Netflix set (validation RMSE 0.951 against the bias
        baseline's 0.943; 0.937 against 0.944 on ml-100k), while 0.1 with 60 epochs was
        among the best of the penalties (0.02-0.12), ranks (20-100) and epochs (20-80)
        tried on both (0.919 and 0.935).
    max_iter : int, default 60
        Number of epochs (passes over the ratings). With ``regularization=0.1`` the
        validation RMSE still falls at 40 epochs on both sets above; 60 gain a further
        0.006 and 0.003.
    schedule : {"constant", "inverse", "exponential"}, default "constant"
        Step size of epoch e (0-based): eta0, eta0 / (1 + decay e), or eta0 decay^e.
    decay : float, optional
        Decay of the schedule; None gives 1.0 for "inverse" and 0.9 for "exponential".
    init_std : float, default 0.1
        Standard deviation of the initial factors.
    shuffle : bool, default True
        Visit ratings in a new random order each epoch (from ``random_state``); False
        keeps the order of the training data.
    parallel : {"auto", None, "blocked", "hogwild"}, default "auto"
        "auto": "blocked" (with ``shuffle``; else None), which runs on one thread below
        ``mflib.execution.SERIAL_BELOW["sgd_blocked"]`` ratings and on the threads above
        it: its result does not depend on either, and its order keeps each block's rows
        in cache, so even on one thread it measured faster than None's plain shuffle
        (ml-100k, k=100: 8.8 -> 6.0 ms an epoch with ``n_blocks=16``... see
        ``benchmarks/bench_sgd.py``). Never "hogwild", which measured slower than
        "blocked" and is not reproducible. The mode chosen is ``parallel_mode_``.
        None: one thread, ratings in a fresh uniformly random order (Surprise's ``SVD``).
        "blocked": stratified SGD (DSGD / FPSGD): users and items are split at random
        into ``n_blocks`` groups each, ratings into ``n_blocks^2`` blocks; each epoch
        runs ``n_blocks`` strata in random order, a stratum's blocks (sharing no user or
        item) in parallel, and each block's ratings in a fresh random order.
        Deterministic for a fixed ``random_state`` whatever the number of threads.
        "hogwild": threads take chunks of the shuffled ratings and update shared rows
        without locks; NOT deterministic (thread interleaving changes the result).
    n_blocks : int, default 8
        Groups of users (and of items) for ``parallel="blocked"``; fixed, not taken from
        the thread count, so results do not depend on the machine.
    dtype : {"float64", "float32"}, default "float64"
        Precision of the parameters (accumulations are float64).
    record_grad_norm : bool, default False
        Also record ``grad_norm``, the norm of the full gradient of f after each epoch
        (one more pass over the ratings per epoch).
    tol : float, default 0.0
        Stop when the relative change of the objective falls below ``tol`` (0: never).
    n_jobs : int or None, default None
        numba threads of the parallel modes (None: all).
    device : {"cpu", "gpu", "auto"}, default "cpu"
        "gpu": epochs run on the GPU (CuPy) in minibatches of ``batch_size`` ratings:
        each batch's per-rating steps are taken from the batch's starting parameters and
        summed into the rows they touch (:mod:`mflib.kernels.sgd_xp`; deterministic, the
        minibatch form of Hogwild). ``parallel_mode_`` is then "gpu".
    batch_size : int, default 16384
        Ratings per minibatch on the GPU (the CPU steps one rating at a time).
    random_state : int, Generator or None
    verbose : int, default 0
        Show a progress bar.
    callbacks : list of callables, optional
        ``cb(iteration, metrics, model) -> bool | None``.

    Attributes
    ----------
    global_mean_ : float
    user_bias_ : ndarray (n_users,)
    item_bias_ : ndarray (n_items,)
    user_factors_ : ndarray (n_users, n_factors)
    item_factors_ : ndarray (n_items, n_factors)
    history_ : History
        ``objective``, ``train_rmse``, ``step_size``, ``epoch_seconds``, ``grad_norm``
        (with ``record_grad_norm``), ``val_rmse`` (with ``eval_set``), ``time``,
        ``wall_time`` per epoch.
    parallel_mode_ : {"serial", "blocked", "hogwild"}
        The mode the fit ran in (what ``parallel="auto"`` chose).
    n_iter_ : int
    stop_reason_ : str
        "max_iter", "converged", or "diverged: ..." (the model of the last finite
        epoch is kept; lower ``learning_rate``).
    """

    _parameter_constraints = {
        "shuffle": [BOOLEAN],
        "parallel": [Options(*PARALLEL_MODES)],
        "n_blocks": [POSITIVE_INT],
        "record_grad_norm": [BOOLEAN],
        "batch_size": [POSITIVE_INT],
    }
    _contract_params = {"n_factors": 3, "max_iter": 3}
    _devices = ("cpu", "gpu")

    def __init__(self, n_factors=100, learning_rate=0.005, regularization=0.1, max_iter=60,
                 schedule="constant", decay=None, init_std=0.1, shuffle=True, parallel="auto",
                 n_blocks=8, dtype="float64", record_grad_norm=False, tol=0.0, n_jobs=None,
                 device="cpu", batch_size=16384, random_state=None, verbose=0,
                 callbacks=None):
        self.n_factors = n_factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.max_iter = max_iter
        self.schedule = schedule
        self.decay = decay
        self.init_std = init_std
        self.shuffle = shuffle
        self.parallel = parallel
        self.n_blocks = n_blocks
        self.dtype = dtype
        self.record_grad_norm = record_grad_norm
        self.tol = tol
        self.n_jobs = n_jobs
        self.device = device
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _resolve_parallel(self) -> str:
        """The epoch kernel: ``parallel`` itself, or "blocked" for "auto" (which runs on
        one thread below the size in the table of :mod:`mflib.execution`)."""
        if self.parallel != "auto":
            return self.parallel or "serial"
        return "blocked" if self.shuffle else "serial"

    def _init_state(self, train):
        dtype = self._check_common()
        if self.parallel == "blocked" and not self.shuffle:
            raise ValueError("parallel='blocked' shuffles within blocks; use shuffle=True")
        if execution.current().device == "gpu":
            return self._init_gpu(train, dtype)
        self.parallel_mode_ = self._resolve_parallel()
        blocked = self.parallel_mode_ == "blocked"
        state = self._init_common(train, dtype, blocks=self.n_blocks if blocked else None)
        ws = state.workspace
        if not blocked:
            users32, items32 = ws.layout.index32
            ws.extra.update(users=np.empty_like(users32), items=np.empty_like(items32),
                            ratings=np.empty_like(ws.ratings))
        return state

    def _blocked_order(self, state) -> tuple[np.ndarray, np.ndarray]:
        """Each block's positions in a fresh random order (``order``), and the strata:
        ``schedule[s, g]`` is the block of user group g in stratum s."""
        ws, g = state.workspace, self.n_blocks
        kernels.shuffle_within_blocks(ws.extra["order"], ws.extra["block_start"],
                                      state.rng.random(len(ws.ratings)))
        item_groups = state.rng.permutation(g)
        shifts = state.rng.permutation(g)
        groups = np.arange(g)
        schedule = groups[None, :] * g + item_groups[(groups[None, :] + shifts[:, None]) % g]
        return ws.extra["order"], schedule

    def _init_gpu(self, train, dtype):
        """The device copies of the ratings and of the model (``parallel_mode_`` "gpu")."""
        self.parallel_mode_ = "gpu"
        state = self._init_common(train, dtype)
        xp, ws = execution.current().xp, state.workspace
        ws.extra["gpu"] = {"xp": xp, "users": xp.asarray(ws.users), "items": xp.asarray(ws.items),
                           "ratings": xp.asarray(ws.ratings.astype(dtype)),
                           "user_counts": xp.asarray(ws.user_counts.astype(dtype)),
                           "item_counts": xp.asarray(ws.item_counts.astype(dtype))}
        for name in ("user_bias", "item_bias", "user_factors", "item_factors"):
            setattr(state, name, xp.asarray(getattr(state, name)))
        return state

    def _gpu_step(self, state):
        """Minibatch epochs on the device (:mod:`mflib.kernels.sgd_xp`): each batch's
        steps taken from its starting point and summed into the rows they touch."""
        g = state.workspace.extra["gpu"]
        xp = g["xp"]
        t0 = time.perf_counter()
        n = int(g["ratings"].shape[0])
        order = xp.asarray(state.rng.permutation(n) if self.shuffle else np.arange(n))
        model = (state.global_mean, state.user_bias, state.item_bias, state.user_factors,
                 state.item_factors)
        sgd_xp.minibatch_epoch(xp, g["users"], g["items"], g["ratings"], order,
                               self.batch_size, *model, self._current_step_size(state),
                               float(self.regularization))
        seconds = time.perf_counter() - t0
        sse = sgd_xp.sum_squared_residuals(xp, g["users"], g["items"], g["ratings"], *model,
                                           execution.GPU_CHUNK)
        value = sgd_xp.mean_loss(sse, n, state.user_bias, state.item_bias, state.user_factors,
                                 state.item_factors, g["user_counts"], g["item_counts"],
                                 float(self.regularization), xp)
        self._check_divergence(state, value)
        metrics = {"objective": value, "train_rmse": math.sqrt(sse / n),
                   "step_size": self._current_step_size(state), "epoch_seconds": seconds}
        state.epoch += 1
        return metrics

    def _step(self, state, train):
        if self.parallel_mode_ == "gpu":
            return self._gpu_step(state)
        ws = state.workspace
        mode = self.parallel_mode_
        t0 = time.perf_counter()
        model = (state.global_mean, state.user_bias, state.item_bias, state.user_factors,
                 state.item_factors, self._current_step_size(state), float(self.regularization))
        if mode == "blocked":
            order, schedule = self._blocked_order(state)
            ex = ws.extra
            kernels.sgd_epoch_blocked(ex["block_users"], ex["block_items"], ex["block_ratings"],
                                      order, ex["block_start"], schedule, *model)
        else:
            self._plain_epoch(state, mode, model)
        seconds = time.perf_counter() - t0
        metrics, _ = self._epoch_metrics(state)
        metrics["epoch_seconds"] = seconds
        return metrics

    def _plain_epoch(self, state, mode, model) -> None:
        """One thread or Hogwild over the ratings in a fresh shuffled (or the data's)
        order."""
        ws = state.workspace
        users32, items32 = ws.layout.index32
        if self.shuffle:  # gather into visiting order, so the kernel streams sequentially
            order = state.rng.permutation(len(ws.ratings))
            users = np.take(users32, order, out=ws.extra["users"])
            items = np.take(items32, order, out=ws.extra["items"])
            ratings = np.take(ws.ratings, order, out=ws.extra["ratings"])
        else:
            users, items, ratings = users32, items32, ws.ratings
        args = (users, items, ratings, *model)
        if mode == "hogwild":
            kernels.sgd_epoch_hogwild(*args, 4 * numba.get_num_threads())
        else:
            kernels.sgd_epoch(*args)


class SVRG(_StochasticMF):
    """Biased matrix factorisation by stochastic variance-reduced gradient (SVRG).

    Each epoch takes a snapshot ``theta~`` and the full gradient ``g = grad f(theta~)``
    (vectorised), then makes ``inner_steps`` minibatch steps (batches drawn without
    replacement from a shuffled order)::

        v = 1/B sum_(j in batch) (grad l_j(theta) - grad l_j(theta~)) + g
        theta <- theta - eta * B * v

    ``v`` is an unbiased estimate of ``grad f(theta)`` whose variance vanishes as
    ``theta`` approaches ``theta~``. The factor B makes ``learning_rate`` a per-rating
    rate on the scale of :class:`SGD`'s. Only the rows a batch touches are computed; the
    constant ``g`` part of the other rows is applied lazily, so a step costs O(B k).

    Parameters
    ----------
    n_factors : int, default 100
    learning_rate : float, default 0.015
        eta0 (see ``schedule``).
    regularization : float, default 0.12
        As :class:`SGD`'s. The defaults (rate, penalty, epochs and the constant schedule)
        were chosen on 10% validation parts of ml-100k u1.base and of the Netflix course
        training set: the former rate 0.005 decayed by 0.9 per epoch, with 0.02 and 20
        epochs, ends above the bias baseline on both (validation RMSE 0.948 and 0.953
        against 0.944 and 0.943), and 0.1-0.12 is the penalty that does not overfit the
        sparser Netflix set (0.917 and 0.933).
    batch_size : int, default 100
        Ratings per minibatch B.
    inner_steps : int, optional
        Minibatch steps per epoch; None makes one pass, ceil(N / B) steps.
    max_iter : int, default 40
        Number of epochs (snapshots).
    schedule : {"constant", "inverse", "exponential"}, default "constant"
    decay : float, optional
        None gives 0.9 for "exponential" (the prototype's rule) and 1.0 for "inverse".
    init_std : float, default 0.1
    clip_norm : float, optional
        If given, a touched row's minibatch correction (bias and factors together) is
        rescaled to at most this norm; each clipped row update is counted in the
        history as ``n_clipped``. None (default) never clips.
    dtype : {"float64", "float32"}, default "float64"
    tol : float, default 0.0
    n_jobs : int or None, default None
        numba threads of the bookkeeping kernels (None: all).
    random_state : int, Generator or None
    verbose : int, default 0
    callbacks : list of callables, optional

    Attributes
    ----------
    As :class:`SGD`; the history also has ``n_clipped`` when ``clip_norm`` is set.
    """

    _parameter_constraints = {
        "batch_size": [POSITIVE_INT],
        "inner_steps": [NONE, POSITIVE_INT],
        "clip_norm": [NONE, POSITIVE],
    }
    _contract_params = {"n_factors": 3, "max_iter": 3, "batch_size": 10}
    _needs_gradient = True

    def __init__(self, n_factors=100, learning_rate=0.015, regularization=0.12,
                 batch_size=100, inner_steps=None, max_iter=40, schedule="constant",
                 decay=None, init_std=0.1, clip_norm=None, dtype="float64", tol=0.0,
                 n_jobs=None, random_state=None, verbose=0, callbacks=None):
        self.n_factors = n_factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.batch_size = batch_size
        self.inner_steps = inner_steps
        self.max_iter = max_iter
        self.schedule = schedule
        self.decay = decay
        self.init_std = init_std
        self.clip_norm = clip_norm
        self.dtype = dtype
        self.tol = tol
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _init_state(self, train):
        dtype = self._check_common()
        state = self._init_common(train, dtype)
        ws = state.workspace
        k = self.n_factors
        ws.extra.update(
            acc_user_bias=np.zeros(train.n_users), acc_item_bias=np.zeros(train.n_items),
            acc_P=np.zeros((train.n_users, k)), acc_Q=np.zeros((train.n_items, k)),
            user_seen=np.zeros(train.n_users, dtype=np.int64),
            item_seen=np.zeros(train.n_items, dtype=np.int64),
            touched_users=np.empty(self.batch_size, dtype=np.int64),
            touched_items=np.empty(self.batch_size, dtype=np.int64),
        )
        return state

    def _n_steps(self, nnz: int) -> int:
        if self.inner_steps is None:
            return -(-nnz // self.batch_size)
        return int(self.inner_steps)

    def _order(self, state, nnz: int, n_steps: int) -> np.ndarray:
        """Concatenated fresh permutations covering ``n_steps`` full batches (a batch
        that straddles two permutations takes the first ratings of the next one)."""
        need = n_steps * self.batch_size
        parts = [state.rng.permutation(nnz) for _ in range(-(-need // nnz))]
        return np.concatenate(parts)[:need] if len(parts) > 1 else parts[0][:need]

    def _step(self, state, train):
        ws, ex = state.workspace, state.workspace.extra
        nnz = len(ws.ratings)
        n_steps = self._n_steps(nnz)
        t0 = time.perf_counter()
        order = self._order(state, nnz, n_steps)
        # snapshot: the current parameters; the workspace holds their residuals and
        # full gradient (left there by the previous epoch or by _init_state)
        snap = state.copy()
        g_bu, g_bi, g_P, g_Q = ex["gradient"]
        n_clipped = kernels.svrg_epoch(
            ws.users, ws.items, ws.ratings, order, self.batch_size, n_steps,
            state.global_mean, state.user_bias, state.item_bias, state.user_factors,
            state.item_factors, snap.user_bias, snap.item_bias, snap.user_factors,
            snap.item_factors, ws.residuals, g_bu, g_bi, g_P, g_Q,
            self._current_step_size(state), float(self.regularization),
            float(self.clip_norm or 0.0), ex["acc_user_bias"], ex["acc_item_bias"],
            ex["acc_P"], ex["acc_Q"], ex["user_seen"], ex["item_seen"],
            ex["touched_users"], ex["touched_items"])
        seconds = time.perf_counter() - t0
        metrics, ex["gradient"] = self._epoch_metrics(state)
        metrics["epoch_seconds"] = seconds
        if self.clip_norm is not None:
            metrics["n_clipped"] = int(n_clipped)
        return metrics
