"""SGD epoch of SVD++ (Koren 2008) with ratings grouped by user, compiled by numba.

Model ``r_hat_ui = mu + b_u + c_i + q_i . (p_u + z_u)`` with the implicit-feedback term
``z_u = |N(u)|^-1/2 sum_(j in N(u)) y_j`` (``N(u)``: the items ``u`` rated in training).
Koren's per-rating SGD step, with ``e = r_ui - r_hat_ui`` and all right-hand sides at
their values before the step::

    b_u += eta (e - lam_b b_u),             c_i += eta (e - lam_b c_i)
    p_u += eta (e q_i - lam p_u),           q_i += eta (e (p_u + z_u) - lam q_i)
    y_j += eta (e |N(u)|^-1/2 q_i - lam_y y_j)   for every j in N(u)

is the negative gradient (times eta) of the rating's loss
``1/2 e^2 + lam_b/2 (b_u^2 + c_i^2) + lam/2 (|p_u|^2 + |q_i|^2) + lam_y/2 sum_(j in N(u)) |y_j|^2``.
Done literally the last line costs ``O(|N(u)| k)`` per rating. Here a user's ratings are
visited one after the other, and the same updates are applied *exactly* in ``O(k)`` per
rating: during user ``u``'s block every ``y_j`` of ``N(u)`` receives the same update, so
with ``a = 1 - eta lam_y``, after ``t`` of the user's ratings

    y_j(t) = a^t y_j(0) + |N(u)|^-1/2 h(t)   (the same h for every j in N(u)),
    z_u(t) = |N(u)|^-1/2 sum_j y_j(t) = a z_u(t-1) + eta e_t q_(i_t)

(``h`` obeys ``h(t) = a h(t-1) + eta e_t q_(i_t)``, so ``h(t) = z_u(t) - a^t z_u(0)``). The
kernel carries ``z_u`` through the block by the second line (one k-vector update per
rating) and writes ``y_j <- a^n y_j + |N(u)|^-1/2 (z_u(n) - a^n z_u(0))`` once per item of
``N(u)`` at the end of the block (``n = |N(u)|``). The result equals Koren's literal
algorithm run over the ratings in the same order (users in a random order, each user's
ratings in a random order, fresh every epoch), up to rounding; ``tests/test_svdpp.py``
checks it against a NumPy transcription of the literal algorithm. What differs from
Surprise's ``SVDpp`` is only the visiting order (Surprise shuffles all ratings together
and pays ``O(|N(u)| k)`` per rating).

The epoch is serial: every rating moves shared item rows (``q_i``, ``c_i``, ``y_j``).
"""

from __future__ import annotations

import numba
import numpy as np

from .sgd import FASTMATH


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def svdpp_epoch(user_order, indptr, items, ratings, visit, mu, user_bias, item_bias, P, Q, Y,
                lr, reg, reg_bias, reg_implicit):
    """One SGD pass, in place, users in ``user_order`` and each user's ratings in the order
    ``visit[indptr[u]:indptr[u+1]]`` (CSR positions of that user's entries).

    ``items``, ``ratings``: CSR arrays of the training ratings (users x items)."""
    k = P.shape[1]
    z = np.empty(k)
    z0 = np.empty(k)
    shrink_y = 1.0 - lr * reg_implicit
    for t in range(user_order.shape[0]):
        u = user_order[t]
        start = indptr[u]
        n = indptr[u + 1] - start
        if n == 0:
            continue
        norm = 1.0 / np.sqrt(n)
        for f in range(k):
            z0[f] = 0.0
        for m in range(start, start + n):
            y_j = Y[items[m]]
            for f in range(k):
                z0[f] += y_j[f]
        for f in range(k):
            z0[f] *= norm
            z[f] = z0[f]
        p_u = P[u]
        for m in range(start, start + n):
            pos = visit[m]
            i = items[pos]
            q_i = Q[i]
            dot = 0.0
            for f in range(k):
                dot += q_i[f] * (p_u[f] + z[f])
            e = ratings[pos] - (mu + user_bias[u] + item_bias[i] + dot)
            user_bias[u] += lr * (e - reg_bias * user_bias[u])
            item_bias[i] += lr * (e - reg_bias * item_bias[i])
            for f in range(k):
                qf = q_i[f]
                pf = p_u[f]
                zf = z[f]
                q_i[f] = qf + lr * (e * (pf + zf) - reg * qf)
                p_u[f] = pf + lr * (e * qf - reg * pf)
                z[f] = shrink_y * zf + lr * e * qf
        decay = shrink_y**n
        for f in range(k):
            z[f] = norm * (z[f] - decay * z0[f])  # |N(u)|^-1/2 h(n), the common shift
        for m in range(start, start + n):
            y_j = Y[items[m]]
            for f in range(k):
                y_j[f] = decay * y_j[f] + z[f]


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def implicit_sums(indptr, items, Y, out):
    """``out[u] = |N(u)|^-1/2 sum_(j in N(u)) Y[j]`` for every user (0 without ratings)."""
    k = Y.shape[1]
    for u in numba.prange(indptr.shape[0] - 1):
        start = indptr[u]
        n = indptr[u + 1] - start
        for f in range(k):
            out[u, f] = 0.0
        if n == 0:
            continue
        for m in range(start, start + n):
            y_j = Y[items[m]]
            for f in range(k):
                out[u, f] += y_j[f]
        norm = 1.0 / np.sqrt(n)
        for f in range(k):
            out[u, f] *= norm


__all__ = ["implicit_sums", "svdpp_epoch"]
