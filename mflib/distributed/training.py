"""What a fit needs to know about its training data when each rank holds only a shard
(:func:`mflib.distributed.shard.read_shard`): global counts, mean, scale and fallback,
from sums over the ranks."""

from __future__ import annotations

import numpy as np

from .comm import Exchange, mpi


def is_shard(train) -> bool:
    """True for a matrix that holds one rank's shard of the ratings."""
    return bool((getattr(train, "provenance", None) or {}).get("shard"))


def global_mean(train, exchange: Exchange | None) -> float:
    """The mean rating over every rank's ratings (this matrix's own mean when whole)."""
    if exchange is None or not is_shard(train):
        return float(train.ratings.mean())
    total = exchange.allreduce_sum(np.array([train.ratings.sum(), train.nnz], dtype=float))
    return float(total[0] / total[1])


def remember_shard(model, train, exchange: Exchange) -> None:
    """Set the training-data attributes of ``model`` from every rank's shard: counts, the
    rating scale and the fallback are those of the whole training matrix."""
    from ..base import FALLBACK_DAMPING, Fallback  # noqa: PLC0415  (base imports this lazily)

    MPI = mpi()
    model.user_counts_ = exchange.allreduce_sum(train.user_counts()).astype(np.int64)
    model.item_counts_ = exchange.allreduce_sum(train.item_counts()).astype(np.int64)
    low = exchange.comm.allreduce(float(train.ratings.min()), op=MPI.MIN)
    high = exchange.comm.allreduce(float(train.ratings.max()), op=MPI.MAX)
    model.rating_scale_ = (low, high)
    mu = global_mean(train, exchange)
    c = exchange.allreduce_sum(np.bincount(train.items, weights=train.ratings - mu,
                                           minlength=train.n_items))
    c /= model.item_counts_ + FALLBACK_DAMPING
    b = exchange.allreduce_sum(np.bincount(train.users, weights=train.ratings - mu - c[
        train.items], minlength=train.n_users))
    b /= model.user_counts_ + FALLBACK_DAMPING
    model.fallback_ = Fallback(mu, b, c, FALLBACK_DAMPING)
    model._seen = None  # the seen items are spread over the ranks
