"""Bayesian probabilistic matrix factorisation by Gibbs sampling (Salakhutdinov & Mnih 2008).

Model, with ``mu`` the training mean (fixed; also without biases) and biases as an extra
coordinate:

    r_ui ~ N(mu + b_u + c_i + p_u . q_i, 1 / alpha)
    x_u = [b_u, p_u] ~ N(m_U, Lambda_U^-1),      y_i = [c_i, q_i] ~ N(m_V, Lambda_V^-1)
    (m_U, Lambda_U) ~ NormalWishart(m0 = 0, beta0 = 2, W0 = I, nu0 = d),  same for V

with ``d = n_factors + 1`` (``d = n_factors`` and no biases when ``use_bias=False``).
Treating the bias as a coordinate of the row vector gives it its own prior mean and
precision (and its correlation with the factors), all sampled: the biases are drawn
jointly with the factors, from one Gaussian per row. The observation precision
``alpha`` is fixed (``precision=<float>``) or sampled (``precision="sample"``) from its
conditional under a Gamma(shape 1, rate 1) prior,
``alpha | rest ~ Gamma(1 + N / 2, rate 1 + SSE / 2)`` (weak beside N ratings), starting
from ``1 / var(r)`` in the first sweep.

One Gibbs sweep (one ``_step``):

1. ``(m_U, Lambda_U) | U`` from the Normal-Wishart conditional (:func:`normal_wishart_posterior`,
   :func:`sample_normal_wishart`; d x d matrices, vectorised NumPy);
2. every user's ``x_u | V, m_U, Lambda_U, alpha``: Gaussian with precision
   ``Lambda_U + alpha sum_i y~_i y~_i^T`` (``y~_i = [1, q_i]``), drawn with one Cholesky per
   row (mean by the solve, noise by a triangular solve) in the numba kernel
   :func:`mflib.kernels.gibbs.sample_rows`, rows in parallel;
3. the same for ``(m_V, Lambda_V)`` and every item given the new users;
4. ``alpha`` when sampled.

Rows without a training rating are integrated out: they do not enter the hyperparameter
conditionals, and their vectors stay 0 (their pairs are predicted by the fallback).

Randomness. Every draw comes from one ``numpy.random.Generator`` seeded by
``random_state``, in a fixed order (hyperparameters, then the standard normals of all rows
of one side at once, then the kernel): the samples are reproducible and identical
whatever ``n_jobs`` is.

Prediction. After ``burn_in`` sweeps every ``thinning``-th sample is kept, and the model
predicts the average over the kept samples ``s = 1..S`` of their predictions:

    r_hat_ui = mu + mean_s b_u^s + mean_s c_i^s + mean_s p_u^s . q_i^s.

The last term is not the product of the mean factors, but it is one inner product of
the kept samples' factors placed side by side and scaled by ``1 / sqrt(S)``:
``[p^1 .. p^S] / sqrt(S) . [q^1 .. q^S] / sqrt(S) = mean_s p^s . q^s``. The fitted model
stores exactly that (``user_factors_`` of shape ``(n_users, S * n_factors)``), so
``predict``, ``score_items`` and ``recommend`` return the posterior-mean prediction with
the ordinary ``mu + b_u + c_i + p_u . q_i`` machinery; :meth:`BayesianMF.factor_samples`
recovers the samples. Memory: ``S (n_users + n_items) n_factors`` floats; ``thinning``
keeps it in check. If no sample was kept (``max_iter <= burn_in``, or a callback stopped
the fit during burn-in), the model is the last sample and a ``ConvergenceWarning`` says so.

History (one record per sweep): ``train_rmse`` and ``val_rmse`` of the model as it stands
(the running average over the samples kept so far; the current sample during burn-in),
``sample_train_rmse`` (the current sample alone), ``n_samples`` (kept so far),
``burn_in`` (True for burn-in sweeps) and ``precision`` (alpha used in the sweep).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import warnings

import numpy as np
import scipy.linalg

from .. import execution
from ..backend import to_numpy
from ..base import FactorizationEstimator
from ..data.layout import training_layout
from ..fitting import ConvergenceWarning, StopFit
from ..kernels import pair_dots
from ..kernels.gibbs import sample_rows
from ..kernels.ridge_xp import BucketPlan, sample_rows_xp
from ..validation import (
    BOOLEAN,
    NONNEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    Options,
    check_random_state,
)
from .als import augmented
from .state import LayoutState, initial_factors

#: the Normal-Wishart hyperprior of both sides: m0 = 0, beta0, W0 = I, nu0 = d
PRIOR_BETA = 2.0
#: Gamma(shape, rate) prior of the observation precision when it is sampled
PRECISION_PRIOR = (1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class NormalWishart:
    """Parameters of a Normal-Wishart distribution over ``(m, Lambda)``:
    ``Lambda ~ Wishart(scale, dof)`` (mean ``dof * scale``), ``m | Lambda ~ N(mean,
    (beta Lambda)^-1)``."""

    mean: np.ndarray
    beta: float
    scale: np.ndarray
    dof: float

    @classmethod
    def default_prior(cls, d: int) -> NormalWishart:
        return cls(np.zeros(d), PRIOR_BETA, np.eye(d), float(d))


def normal_wishart_posterior(X: np.ndarray, prior: NormalWishart) -> NormalWishart:
    """The conditional of ``(m, Lambda)`` given the rows of ``X`` (n, d), i.i.d.
    ``N(m, Lambda^-1)`` under ``prior``:

    ``beta_n = beta0 + n``, ``nu_n = nu0 + n``, ``m_n = (beta0 m0 + n xbar) / beta_n``,
    ``W_n^-1 = W0^-1 + S + beta0 n / beta_n (xbar - m0)(xbar - m0)^T`` with ``S`` the
    scatter matrix of ``X`` about its mean ``xbar``.
    """
    n = X.shape[0]
    xbar = X.mean(axis=0) if n else np.zeros(X.shape[1])
    # X^T X - n xbar xbar^T: no centred copy of X (the rows are O(1) values, so the
    # cancellation costs nothing measurable in float64)
    scatter = X.T @ X - n * np.outer(xbar, xbar)
    beta = prior.beta + n
    diff = xbar - prior.mean
    scale_inv = (np.linalg.inv(prior.scale) + scatter
                 + (prior.beta * n / beta) * np.outer(diff, diff))
    scale = np.linalg.inv(scale_inv)
    return NormalWishart((prior.beta * prior.mean + n * xbar) / beta, beta,
                         0.5 * (scale + scale.T), prior.dof + n)


def sample_wishart(scale: np.ndarray, dof: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """One draw ``Lambda ~ Wishart(scale, dof)`` by the Bartlett decomposition.

    Returns ``(Lambda, C)`` with ``C`` lower triangular and ``Lambda = C C^T``:
    ``C = chol(scale) B``, ``B`` lower triangular with ``B_ii = sqrt(chi2(dof - i))`` and
    standard normal entries below the diagonal.
    """
    d = scale.shape[0]
    if dof <= d - 1:
        raise ValueError(f"Wishart degrees of freedom must exceed d - 1 = {d - 1}, got {dof}")
    B = np.zeros((d, d))
    B[np.diag_indices(d)] = np.sqrt(rng.chisquare(dof - np.arange(d)))
    B[np.tril_indices(d, -1)] = rng.standard_normal(d * (d - 1) // 2)
    C = np.linalg.cholesky(scale) @ B
    return C @ C.T, C


def sample_normal_wishart(params: NormalWishart, rng) -> tuple[np.ndarray, np.ndarray]:
    """One draw ``(m, Lambda)`` from ``params``: ``m = mean + C^-T z / sqrt(beta)`` where
    ``Lambda = C C^T``, so ``Cov(m) = (beta Lambda)^-1``."""
    precision, C = sample_wishart(params.scale, params.dof, rng)
    z = rng.standard_normal(len(params.mean))
    m = params.mean + scipy.linalg.solve_triangular(C.T, z, lower=False) / math.sqrt(params.beta)
    return m, precision


def _initial_precision(ratings: np.ndarray) -> float:
    """Where a sampled precision starts: 1 / (variance of the ratings), or 1 for constant
    ratings (the first draw then follows the residuals)."""
    variance = float(ratings.var())
    return 1.0 / variance if variance > 0 else 1.0


def _pairs_key(users: np.ndarray, items: np.ndarray) -> tuple:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.ascontiguousarray(users, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(items, dtype=np.int64).tobytes())
    return len(users), digest.hexdigest()


@dataclasses.dataclass
class GibbsState(LayoutState):
    """The current sample (the ``FactorState`` fields), the kept samples and their running
    averages, the generator and the sweep counter.

    Steps never modify an array in place (each sweep makes new ones), so copies share
    every array and only their containers are new.
    """

    rng: object = None
    #: the Normal-Wishart hyperprior (both sides) and the rows that have ratings
    prior: NormalWishart | None = None
    user_rows: np.ndarray | None = None
    item_rows: np.ndarray | None = None
    sweep: int = 0
    precision: float = 1.0
    #: kept samples: (user_bias, item_bias, user_factors, item_factors) each (biases None
    #: without ``use_bias``)
    samples: tuple = ()
    user_bias_sum: np.ndarray | None = None
    item_bias_sum: np.ndarray | None = None
    #: running mean over kept samples of the training residuals (CSC order), and its sum
    #: of squares
    residual_mean: np.ndarray | None = None
    model_sse: float = math.nan
    #: pairs already evaluated during the fit: key -> (samples included, sum of their dots)
    evaluated: dict = dataclasses.field(default_factory=dict)

    def copy(self):
        return dataclasses.replace(self, evaluated=dict(self.evaluated))

    @property
    def n_samples(self) -> int:
        return len(self.samples)

    def predict(self, users, items):
        """The average prediction over the kept samples (the current sample if none).

        Pairs seen before in this fit (the validation pairs, every sweep) add only the
        samples kept since: the running average costs one sample per sweep."""
        S = self.n_samples
        if S == 0:
            return super().predict(users, items)
        key = _pairs_key(users, items)
        done, dots = self.evaluated.get(key, (0, np.zeros(len(users))))
        for _, _, P, Q in self.samples[done:]:
            dots = dots + pair_dots(P, Q, users, items)
        self.evaluated[key] = (S, dots)
        out = float(self.global_mean) + dots / S
        if self.user_bias_sum is not None:
            out += (self.user_bias_sum[users] + self.item_bias_sum[items]) / S
        return out


class BayesianMF(FactorizationEstimator):
    """Bayesian probabilistic matrix factorisation with biases, by Gibbs sampling.

    The model, the sweep and the averaged prediction are described in
    :mod:`mflib.solvers.bayes`: ``r ~ N(mu + b_u + c_i + p_u . q_i, 1/alpha)`` with
    Gaussian-Wishart hyperpriors on ``[b_u, p_u]`` and ``[c_i, q_i]``; the prediction is
    the average of the predictions of the samples kept after burn-in.

    Parameters
    ----------
    n_factors : int, default 10
        Rank ``k``.
    precision : float or "sample", default "sample"
        Observation precision ``alpha`` (inverse noise variance), or "sample" to draw it
        each sweep under a weak Gamma(1, 1) prior.
    use_bias : bool, default True
        Biases as an extra coordinate of each row vector (sampled jointly); False fits the
        paper's ``mu + p_u . q_i``.
    max_iter : int, default 200
        Gibbs sweeps in all, burn-in included.
    burn_in : int, default 20
        Sweeps before the first kept sample; keep it below ``max_iter`` (otherwise the
        model is the last sample, with a warning).
    thinning : int, default 1
        Keep every ``thinning``-th sweep after burn-in.
    init_std : float, default 0.1
        Factors start as N(0, init_std^2) entries, biases at 0. The first hyperparameter
        draws see these small factors and pull the rows towards 0, so the chain takes some
        sweeps to leave that region (about 5 on ml-100k, 10-15 on a planted rank-10
        matrix at rank 32); ``burn_in`` should cover them.
    n_jobs : int or None, default None
        numba threads for the row draws (None or -1: all); the samples do not depend on it.
    device : {"cpu", "gpu", "auto"}, default "cpu"
        "gpu": every row's draw (its Cholesky factor, mean and noise) and the running
        residual mean are computed on the GPU (CuPy), rows bucketed by length and batched
        (:func:`mflib.kernels.ridge_xp.sample_rows_xp`); the hyperparameter draws and the
        kept samples stay on the host. The normals come from the same seeded generator.
    random_state : int, Generator or None
    verbose : int, default 0
        Show a progress bar.
    callbacks : list of callables, optional

    Attributes
    ----------
    user_factors_ : ndarray (n_users, n_samples_ * n_factors)
        The kept samples' user factors side by side, scaled by ``1 / sqrt(n_samples_)``.
    item_factors_ : ndarray (n_items, n_samples_ * n_factors)
    user_bias_, item_bias_ : ndarray or None
        Posterior means of the biases (over the kept samples).
    user_bias_samples_, item_bias_samples_ : ndarray (n_samples_, n_users), (n_samples_, n_items)
        The kept samples' biases (None without ``use_bias``).
    global_mean_ : float
    n_samples_ : int
        Kept samples averaged by the model.
    precision_ : float
        ``alpha`` after the last sweep (with "sample", its draw given the last sample).
    history_ : History
        Per sweep: ``train_rmse``, ``val_rmse`` (the averaged model), ``sample_train_rmse``,
        ``n_samples``, ``burn_in``, ``precision``.
    """

    _parameter_constraints = {
        "n_factors": [POSITIVE_INT],
        "precision": [POSITIVE, Options("sample")],
        "use_bias": [BOOLEAN],
        "burn_in": [NONNEGATIVE_INT],
        "thinning": [POSITIVE_INT],
        "init_std": [POSITIVE],
    }
    _contract_params = {"n_factors": 2, "max_iter": 6, "burn_in": 2}
    _monitor = "train_rmse"
    _devices = ("cpu", "gpu")

    def __init__(self, n_factors=10, precision="sample", use_bias=True, max_iter=200,
                 burn_in=20, thinning=1, init_std=0.1, n_jobs=None, device="cpu",
                 random_state=None, verbose=0, callbacks=None):
        self.n_factors = n_factors
        self.precision = precision
        self.use_bias = use_bias
        self.max_iter = max_iter
        self.burn_in = burn_in
        self.thinning = thinning
        self.init_std = init_std
        self.n_jobs = n_jobs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    # ------------------------------------------------------------------ template
    def _init_state(self, train):
        rng = check_random_state(self.random_state)
        layout = training_layout(train)
        P, Q = initial_factors(rng, train.n_users, train.n_items, self.n_factors,
                               self.init_std)
        bias = self.use_bias
        fixed = self.precision != "sample"
        self._gpu = None
        if execution.current().device == "gpu":
            xp, d = execution.current().xp, self.n_factors + bias
            self._gpu = {"xp": xp, "user": BucketPlan(layout.user_indptr, d),
                         "item": BucketPlan(layout.item_indptr, d),
                         "csr": xp.asarray(layout.ratings_csr),
                         "csc": xp.asarray(layout.ratings_csc)}
        return GibbsState(
            global_mean=float(train.ratings.mean()),
            user_bias=np.zeros(train.n_users) if bias else None,
            item_bias=np.zeros(train.n_items) if bias else None,
            user_factors=P,
            item_factors=Q,
            layout=layout,
            rng=rng,
            precision=float(self.precision) if fixed else _initial_precision(train.ratings),
            prior=NormalWishart.default_prior(self.n_factors + bias),
            user_rows=np.flatnonzero(layout.user_counts > 0),
            item_rows=np.flatnonzero(layout.item_counts > 0),
        )

    def _sample_side(self, state, side, rows, indptr, others, ratings, other_bias,
                     other_factors, own_bias, own_factors, residual_mean=None, weight=0.0):
        """Hyperparameters of one side given its current rows, then every row of it."""
        rng = state.rng
        current = augmented(own_bias, own_factors)
        hyper = normal_wishart_posterior(current if len(rows) == len(current) else current[rows],
                                         state.prior)
        mean, precision = sample_normal_wishart(hyper, rng)
        normals = rng.standard_normal(current.shape)
        features = augmented(None if other_bias is None else np.ones_like(other_bias),
                             other_factors)
        try:
            if self._gpu is None:
                draw, sse, res_mean, mean_sse = sample_rows(
                    indptr, others, ratings, features, state.precision, precision,
                    precision @ mean, normals, offset=state.global_mean,
                    column_offset=other_bias, residual_mean=residual_mean, weight=weight)
            else:  # the row draws on the device; the hyperparameters stay here
                g = self._gpu
                xp = g["xp"]
                draw, sse, res_mean, mean_sse = sample_rows_xp(
                    xp, g[side], others, g["csr" if side == "user" else "csc"],
                    xp.asarray(features), state.precision, precision, precision @ mean,
                    normals, offset=state.global_mean,
                    column_offset=None if other_bias is None else xp.asarray(other_bias),
                    residual_mean=None if residual_mean is None else xp.asarray(residual_mean),
                    weight=weight)
                draw = to_numpy(draw)
                if np.isnan(draw).any():
                    raise np.linalg.LinAlgError("a row posterior precision is not positive "
                                                "definite; check for NaN")
        except np.linalg.LinAlgError as exc:
            raise StopFit(f"stopped: {exc}") from exc
        if own_bias is None:
            return None, draw, sse, res_mean, mean_sse
        return (np.ascontiguousarray(draw[:, 0]), np.ascontiguousarray(draw[:, 1:]), sse,
                res_mean, mean_sse)

    def _step(self, state, train):
        s = state.layout
        state.sweep += 1
        after = state.sweep - self.burn_in
        keep = after > 0 and after % self.thinning == 0
        state.user_bias, state.user_factors, _, _, _ = self._sample_side(
            state, "user", state.user_rows, s.user_indptr, s.user_items, s.ratings_csr,
            state.item_bias, state.item_factors, state.user_bias, state.user_factors)
        previous_mean = None
        if keep:  # the first kept sample starts the running mean of the residuals at 0
            xp = np if self._gpu is None else self._gpu["xp"]
            previous_mean = (xp.zeros(s.nnz) if state.residual_mean is None
                             else state.residual_mean)
        state.item_bias, state.item_factors, sse, res_mean, mean_sse = self._sample_side(
            state, "item", state.item_rows, s.item_indptr, s.item_users, s.ratings_csc,
            state.user_bias, state.user_factors, state.item_bias, state.item_factors,
            residual_mean=previous_mean, weight=1.0 / (state.n_samples + 1))
        sample_sse = float(sse.sum())
        alpha_used = state.precision
        if keep:
            state.samples = state.samples + ((state.user_bias, state.item_bias,
                                              state.user_factors, state.item_factors),)
            state.residual_mean = res_mean
            if self.use_bias:
                state.user_bias_sum = (state.user_bias if state.user_bias_sum is None
                                       else state.user_bias_sum + state.user_bias)
                state.item_bias_sum = (state.item_bias if state.item_bias_sum is None
                                       else state.item_bias_sum + state.item_bias)
            state.model_sse = float(mean_sse.sum())
        model_sse = state.model_sse if state.n_samples else sample_sse
        if self.precision == "sample":
            shape, rate = PRECISION_PRIOR
            state.precision = float(state.rng.gamma(shape + s.nnz / 2,
                                                    1.0 / (rate + sample_sse / 2)))
        return {
            "train_rmse": math.sqrt(model_sse / s.nnz),
            "sample_train_rmse": math.sqrt(sample_sse / s.nnz),
            "n_samples": state.n_samples,
            "burn_in": after <= 0,
            "precision": alpha_used,
        }

    def _finalize(self, state):
        self.__dict__.pop("_gpu", None)
        self.global_mean_ = float(state.global_mean)
        self.n_samples_ = S = state.n_samples
        self.precision_ = float(state.precision)
        if S == 0:
            warnings.warn(
                f"BayesianMF kept no sample: the fit ended after {state.sweep} sweep(s), "
                f"within burn_in={self.burn_in}; the model is the last sample, not a "
                "posterior average. Use max_iter > burn_in (or a smaller burn_in).",
                ConvergenceWarning, stacklevel=4)
            super()._finalize(state)
            bias = state.user_bias is not None
            self.user_bias_samples_ = state.user_bias[None] if bias else None
            self.item_bias_samples_ = state.item_bias[None] if bias else None
            return
        scale = 1.0 / math.sqrt(S)
        self.user_factors_ = np.concatenate([x[2] for x in state.samples], axis=1) * scale
        self.item_factors_ = np.concatenate([x[3] for x in state.samples], axis=1) * scale
        if self.use_bias:
            self.user_bias_samples_ = np.stack([x[0] for x in state.samples])
            self.item_bias_samples_ = np.stack([x[1] for x in state.samples])
            self.user_bias_ = state.user_bias_sum / S
            self.item_bias_ = state.item_bias_sum / S
        else:
            self.user_bias_ = self.item_bias_ = None
            self.user_bias_samples_ = self.item_bias_samples_ = None

    def factor_samples(self) -> tuple[np.ndarray, np.ndarray]:
        """The kept samples' factors: ``(P, Q)`` of shapes ``(S, n_users, n_factors)`` and
        ``(S, n_items, n_factors)`` (``S = n_samples_``; one sample, the last, if none
        was kept)."""
        self._check_fitted()
        S, k = max(self.n_samples_, 1), self.n_factors

        def split(F):
            return F.reshape(F.shape[0], S, k).transpose(1, 0, 2) * math.sqrt(S)

        return split(self.user_factors_), split(self.item_factors_)


__all__ = [
    "BayesianMF",
    "GibbsState",
    "NormalWishart",
    "normal_wishart_posterior",
    "sample_normal_wishart",
    "sample_wishart",
]
