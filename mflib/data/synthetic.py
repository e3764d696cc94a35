"""Synthetic ratings with a known low-rank truth, for tests and offline use."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels import pair_dots
from ..validation import check_positive_int, check_random_state
from .ratings import RatingMatrix


@dataclass
class LowRankTruth:
    """The planted model: ``r = global_mean + user_bias[u] + item_bias[i] + P[u] . Q[i]``."""

    global_mean: float
    user_bias: np.ndarray
    item_bias: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    noise: float

    def predict(self, users, items) -> np.ndarray:
        dots = pair_dots(self.user_factors, self.item_factors, users, items)
        return self.global_mean + self.user_bias[users] + self.item_bias[items] + dots

    def dense(self) -> np.ndarray:
        """The full noiseless matrix (small problems only)."""
        return (self.global_mean + self.user_bias[:, None] + self.item_bias[None, :]
                + self.user_factors @ self.item_factors.T)


def _distinct(values: np.ndarray) -> np.ndarray:
    # sort-based: numpy 2's hash-based np.unique is several times slower at 10M int64s
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]]


def make_low_rank(
    n_users=200,
    n_items=150,
    rank=5,
    density=0.3,
    *,
    noise=0.1,
    global_mean=3.5,
    bias_scale=0.3,
    factor_scale=1.0,
    random_state=None,
    name="synthetic",
) -> tuple[RatingMatrix, LowRankTruth]:
    """Sample ``density * n_users * n_items`` distinct cells of a planted low-rank matrix.

    Factors are N(0, factor_scale^2 / rank), so ``p_u . q_i`` has variance
    ``factor_scale^4 / rank``; biases are N(0, bias_scale^2); ratings get N(0, noise^2) noise.
    Set ``bias_scale=0`` and ``global_mean=0`` for a pure low-rank matrix. Raw ids
    are the integers ``0..n-1``; users or items that draw no rating are absent from
    the returned matrix's id maps but present in the truth. Scales to ~10M ratings.
    """
    check_positive_int(n_users, "n_users")
    check_positive_int(n_items, "n_items")
    check_positive_int(rank, "rank")
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density!r}")
    rng = check_random_state(random_state)
    scale = factor_scale / np.sqrt(rank)
    truth = LowRankTruth(
        float(global_mean),
        rng.normal(0, bias_scale, n_users) if bias_scale else np.zeros(n_users),
        rng.normal(0, bias_scale, n_items) if bias_scale else np.zeros(n_items),
        rng.normal(0, scale, (n_users, rank)),
        rng.normal(0, scale, (n_items, rank)),
        float(noise),
    )
    total = n_users * n_items
    nnz = max(1, int(round(density * total)))
    if nnz > total // 4:  # dense enough: choose cells exactly
        cells = np.sort(rng.choice(total, nnz, replace=False))
    else:  # draw with replacement, keep distinct cells, top up until nnz are found
        cells = _distinct(rng.integers(0, total, int(nnz * 1.1) + 16))
        while len(cells) < nnz:
            cells = _distinct(np.concatenate([cells, rng.integers(0, total, nnz)]))
        cells = np.sort(cells[rng.permutation(len(cells))[:nnz]])
    users, items = np.divmod(cells, n_items)
    ratings = truth.predict(users, items) + rng.normal(0, noise, nnz)
    rm = RatingMatrix.from_arrays(users, items, ratings, name=name)
    return rm, truth
