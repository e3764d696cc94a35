"""SVD++ (Koren 2008): biased matrix factorisation with an implicit-feedback term.

Model, with ``mu`` the training mean (fixed) and ``N(u)`` the items user ``u`` rated in
training (only training: the items of validation or test pairs never enter it):

    r_hat_ui = mu + b_u + c_i + q_i . (p_u + |N(u)|^-1/2 sum_(j in N(u)) y_j)

trained by SGD on the mean per-rating loss

    f = 1/N sum_(u,i) [ 1/2 e_ui^2 + lam_b/2 (b_u^2 + c_i^2) + lam/2 (|p_u|^2 + |q_i|^2)
                        + lam_y/2 sum_(j in N(u)) |y_j|^2 ],    e_ui = r_ui - r_hat_ui,

whose per-rating gradient gives Koren's updates (every ``y_j`` of ``N(u)`` moves at every
rating of ``u``). The epoch visits the users in a random order and each user's ratings in
a random order, and applies the ``y`` updates of a user's block exactly in ``O(k)`` per
rating (:mod:`mflib.kernels.svdpp` derives how). The fitted model stores the effective
user vectors ``user_factors_ = p_u + z_u`` (so prediction is the ordinary
``mu + b_u + c_i + p_u' . q_i``) and the parts separately (``explicit_user_factors_``,
``implicit_item_factors_``).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from .. import execution
from ..data.layout import TrainingLayout, training_layout
from ..kernels import svdpp as kernels
from ..validation import NONE, NONNEGATIVE, check_random_state
from .sgd import _StochasticMF
from .state import LayoutState, initial_factors


@dataclasses.dataclass
class SVDppState(LayoutState):
    """Biases, ``Q``, the effective user vectors ``user_factors = P + Z`` (what
    :meth:`predict` reads), the explicit ``P`` and implicit ``Y`` factors, the generator
    and the epoch counter."""

    explicit: np.ndarray | None = None
    implicit: np.ndarray | None = None
    rng: object = None
    epoch: int = 0
    initial_objective: float = math.nan


def implicit_term(layout: TrainingLayout, Y: np.ndarray) -> np.ndarray:
    """``Z[u] = |N(u)|^-1/2 sum_(j in N(u)) Y[j]`` for every user, shape (n_users, k)."""
    out = np.empty((layout.n_users, Y.shape[1]))
    with execution.kernel_threads("residuals", layout.nnz):
        kernels.implicit_sums(layout.user_indptr, layout.user_items, Y, out)
    return out


def svdpp_objective(state: SVDppState, lam: float, lam_b: float, lam_y: float,
                    residuals: np.ndarray) -> float:
    """The mean per-rating loss ``f`` (module docstring) given every rating's residual.

    The penalties are row norms weighted by how many per-rating losses hold them:
    ``n_u`` for ``b_u, p_u``, ``n_i`` for ``c_i, q_i`` and ``sum_(u rated j) n_u`` for ``y_j``.
    """
    s = state.layout
    n_u = s.user_counts.astype(np.float64)
    n_i = s.item_counts.astype(np.float64)
    n_y = np.bincount(s.user_items, weights=n_u[s.user_of_rating], minlength=s.n_items)
    penalty = (lam_b * (n_u @ state.user_bias**2 + n_i @ state.item_bias**2)
               + lam * (n_u @ np.sum(state.explicit**2, axis=1)
                        + n_i @ np.sum(state.item_factors**2, axis=1))
               + lam_y * (n_y @ np.sum(state.implicit**2, axis=1)))
    return 0.5 * (float(residuals @ residuals) + penalty) / s.nnz


class SVDpp(_StochasticMF):
    """SVD++: biased MF plus the implicit feedback of the rated item set, trained by SGD.

    See :mod:`mflib.solvers.svdpp` for the model and the objective, and
    :mod:`mflib.kernels.svdpp` for the exact user-grouped update of the ``y_j``.

    Parameters
    ----------
    n_factors : int, default 20
        Rank ``k`` (of ``P``, ``Q`` and ``Y``).
    learning_rate : float, default 0.007
        Initial step size ``eta0`` of every parameter (Koren's and Surprise's default).
    regularization : float, default 0.02
        ``lam`` on ``p_u`` and ``q_i``.
    bias_regularization : float or None, default None
        ``lam_b`` on the biases (None: ``regularization``).
    implicit_regularization : float or None, default None
        ``lam_y`` on the ``y_j`` (None: ``regularization``).
    max_iter : int, default 20
        Epochs.
    schedule : {"constant", "inverse", "exponential"}, default "constant"
        Step size of epoch e (0-based): eta0, eta0 / (1 + decay e) or eta0 decay^e.
    decay : float, optional
        None gives 1.0 for "inverse" and 0.9 for "exponential" (Koren's rule).
    init_std : float, default 0.1
        ``P``, ``Q`` and ``Y`` start as N(0, init_std^2) entries; biases at 0.
    tol : float, default 0.0
        Stop when the objective's relative change falls below ``tol`` (0: never).
    n_jobs : int or None, default None
        numba threads of the bookkeeping kernels (implicit sums, residuals); the epoch
        itself is serial (every rating moves shared item rows).
    random_state : int, Generator or None
    verbose : int, default 0
    callbacks : list of callables, optional

    Attributes
    ----------
    user_factors_ : ndarray (n_users, n_factors)
        Effective user vectors ``p_u + |N(u)|^-1/2 sum_(j in N(u)) y_j``.
    explicit_user_factors_ : ndarray (n_users, n_factors)
        ``p_u``.
    implicit_item_factors_ : ndarray (n_items, n_factors)
        ``y_j``.
    item_factors_ : ndarray (n_items, n_factors)
    user_bias_, item_bias_ : ndarray
    global_mean_ : float
    history_ : History
        ``objective``, ``step_size``, ``epoch_seconds``, ``train_rmse`` (``val_rmse``).
    n_iter_ : int
    stop_reason_ : str
        "max_iter", "converged", or "diverged: ..." when the objective becomes non-finite
        or exceeds 1000 times its initial value (the previous epoch's model is kept).
    """

    # n_factors, learning_rate, regularization, schedule, decay and init_std are declared
    # by _StochasticMF, whose step-size schedule and divergence test SVD++ shares
    _parameter_constraints = {
        "bias_regularization": [NONE, NONNEGATIVE],
        "implicit_regularization": [NONE, NONNEGATIVE],
    }
    _contract_params = {"n_factors": 3, "max_iter": 3}
    #: working precision, fixed (read by the shared checks; the kernel runs in float64)
    dtype = "float64"

    def __init__(self, n_factors=20, learning_rate=0.007, regularization=0.02,
                 bias_regularization=None, implicit_regularization=None, max_iter=20,
                 schedule="constant", decay=None, init_std=0.1, tol=0.0, n_jobs=None,
                 random_state=None, verbose=0, callbacks=None):
        self.n_factors = n_factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.implicit_regularization = implicit_regularization
        self.max_iter = max_iter
        self.schedule = schedule
        self.decay = decay
        self.init_std = init_std
        self.tol = tol
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _penalties(self) -> tuple[float, float, float]:
        lam = float(self.regularization)
        lam_b = lam if self.bias_regularization is None else float(self.bias_regularization)
        lam_y = (lam if self.implicit_regularization is None
                 else float(self.implicit_regularization))
        return lam, lam_b, lam_y

    def _init_state(self, train):
        self._check_common()  # the schedule's decay
        rng = check_random_state(self.random_state)
        layout = training_layout(train)
        k = self.n_factors
        P, Q = initial_factors(rng, train.n_users, train.n_items, k, self.init_std)
        Y = rng.normal(0.0, self.init_std, (train.n_items, k))
        state = SVDppState(
            global_mean=float(train.ratings.mean()),
            user_bias=np.zeros(train.n_users),
            item_bias=np.zeros(train.n_items),
            item_factors=Q,
            layout=layout,
            explicit=P,
            implicit=Y,
            rng=rng,
        )
        _, state.initial_objective = self._refresh(state)
        return state

    def _refresh(self, state) -> tuple[np.ndarray, float]:
        """Effective user vectors, then every rating's residual (CSR order) and the
        objective. Overflow is left to show as inf/NaN: :meth:`_step` reports it."""
        s = state.layout
        with np.errstate(over="ignore", invalid="ignore"):
            state.user_factors = state.explicit + implicit_term(s, state.implicit)
            residuals = s.ratings_csr - state.predict(s.user_of_rating, s.user_items)
            value = svdpp_objective(state, *self._penalties(), residuals)
        return residuals, value

    def _step(self, state, train):
        s = state.layout
        eta = self._current_step_size(state)
        lam, lam_b, lam_y = self._penalties()
        t0 = time.perf_counter()
        user_order = state.rng.permutation(s.n_users)
        # each user's entries in a random order: sort the CSR positions by user plus a
        # uniform key in [0, 1) (the blocks stay where the CSR puts them)
        visit = np.argsort(s.user_of_rating + state.rng.random(s.nnz), kind="stable")
        kernels.svdpp_epoch(user_order, s.user_indptr, s.user_items, s.ratings_csr, visit,
                            state.global_mean, state.user_bias, state.item_bias,
                            state.explicit, state.item_factors, state.implicit, eta, lam,
                            lam_b, lam_y)
        seconds = time.perf_counter() - t0
        residuals, value = self._refresh(state)
        self._check_divergence(state, value)  # StopFit: the previous epoch's model is kept
        state.epoch += 1
        return {
            "objective": value,
            "train_rmse": math.sqrt(float(residuals @ residuals) / s.nnz),
            "step_size": eta,
            "epoch_seconds": seconds,
        }

    def _finalize(self, state):
        super()._finalize(state)
        self.explicit_user_factors_ = state.explicit.copy()
        self.implicit_item_factors_ = state.implicit.copy()


__all__ = ["SVDpp", "SVDppState", "implicit_term", "svdpp_objective"]
