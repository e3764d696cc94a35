"""Minibatch SGD epochs written against the array module (NumPy or CuPy): the GPU path.

On a GPU one rating at a time is hopeless; instead a *minibatch* of ratings is handled at
once: every rating's step of :mod:`mflib.kernels.sgd` (same loss, same per-rating
regularisation) is computed from the parameters at the start of the batch, and the steps
of all ratings that touch one row are summed into it (scatter-add) — as Hogwild's
threads would apply them, but deterministically. With ``batch_size=1`` it is exactly
the sequential epoch. The loop is over batches (tens to hundreds per epoch), never over
ratings; the logic runs and is tested with NumPy as ``xp``.
"""

from __future__ import annotations

from ..backend import scatter_add


def minibatch_epoch(xp, users, items, ratings, order, batch_size, mu, user_bias, item_bias,
                    P, Q, learning_rate, regularization) -> None:
    """One pass over the ratings in the given ``order`` (an xp int array), in place.

    Parameters
    ----------
    users, items, ratings : xp arrays (nnz,)
    order : xp int array (nnz,)
        Visiting order; batch ``t`` is ``order[t B:(t + 1) B]``.
    batch_size : int
    mu : float
    user_bias, item_bias, P, Q : xp arrays, updated in place
    """
    lr, lam = learning_rate, regularization
    n = int(order.shape[0])
    for start in range(0, n, batch_size):
        batch = order[start:start + batch_size]
        u, i = users[batch], items[batch]
        p, q = P[u], Q[i]
        err = ratings[batch] - (mu + user_bias[u] + item_bias[i] + xp.sum(p * q, axis=1))
        gain = (lr * err)[:, None]
        shrink = lr * lam
        scatter_add(user_bias, u, lr * err - shrink * user_bias[u])
        scatter_add(item_bias, i, lr * err - shrink * item_bias[i])
        scatter_add(P, u, gain * q - shrink * p)
        scatter_add(Q, i, gain * p - shrink * q)


def sum_squared_residuals(xp, users, items, ratings, mu, user_bias, item_bias, P, Q,
                          chunk: int) -> float:
    """``sum_j (r_j - r_hat_j)^2`` over the ratings, ``chunk`` ratings at a time (so the
    (chunk, k) temporaries stay bounded on the device)."""
    total = 0.0
    for start in range(0, int(ratings.shape[0]), chunk):
        u, i = users[start:start + chunk], items[start:start + chunk]
        err = ratings[start:start + chunk] - (mu + user_bias[u] + item_bias[i]
                                              + xp.sum(P[u] * Q[i], axis=1))
        total += float(xp.dot(err, err))
    return total


def mean_loss(sse: float, n: int, user_bias, item_bias, P, Q, user_counts, item_counts,
              regularization: float, xp) -> float:
    """The mean per-rating loss f of :mod:`mflib.solvers.sgd` given the SSE: each row's
    penalty counted once per rating of that row."""
    users = xp.dot(user_counts, user_bias * user_bias + xp.sum(P * P, axis=1))
    items = xp.dot(item_counts, item_bias * item_bias + xp.sum(Q * Q, axis=1))
    return (0.5 * sse + 0.5 * regularization * float(users + items)) / n
