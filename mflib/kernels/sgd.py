"""Epoch kernels of the stochastic solvers (biased SGD and SVRG), compiled by numba.

Model ``r_hat = mu + b_u + c_i + p_u . q_i`` with ``mu`` fixed. Both solvers minimise the
mean of the per-rating losses

    l_ui = 1/2 (r_ui - r_hat_ui)^2 + lam/2 (b_u^2 + c_i^2 + |p_u|^2 + |q_i|^2),

so a row is regularised each time one of its ratings is visited (the Funk-SVD
convention; in total the penalty of a row is weighted by its number of ratings).
Its gradient for one rating, with ``e = r_ui - r_hat_ui``, is

    d/db_u = -e + lam b_u,   d/dp_u = -e q_i + lam p_u   (and symmetrically for c_i, q_i).

The kernels visit ratings in a given order (the SGD kernels in array order, SVRG through
an index array) so a NumPy reference can replay exactly the same visits (see
``tests/test_sgd.py`` / ``tests/test_svrg.py``).
"""

from __future__ import annotations

import numba
import numpy as np

from ..execution import run_parallel

# Reassociation lets LLVM vectorise the length-k dot products; NaN/inf semantics are kept
# (no "nnan"/"ninf") so a diverging fit still shows up as non-finite.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _sgd_update(u, i, rating, mu, user_bias, item_bias, P, Q, lr, lam):
    """The SGD step of one rating: both rows move from their values before the step."""
    p_u = P[u]
    q_i = Q[i]
    dot = 0.0
    for f in range(p_u.shape[0]):
        dot += p_u[f] * q_i[f]
    err = rating - (mu + user_bias[u] + item_bias[i] + dot)
    user_bias[u] += lr * (err - lam * user_bias[u])
    item_bias[i] += lr * (err - lam * item_bias[i])
    # p <- p + lr (err q - lam p), written as shrink * p + gain * q. The two coefficients
    # are cast to the factors' precision: float64 coefficients would make every
    # multiply-add of a float32 row a float64 one with two conversions, which kept LLVM
    # from vectorising the loop (float32 epochs ran 1.3-3.5x slower than float64 ones)
    gain = P.dtype.type(lr * err)
    shrink = P.dtype.type(1.0 - lr * lam)
    for f in range(p_u.shape[0]):
        puf = p_u[f]
        qif = q_i[f]
        p_u[f] = shrink * puf + gain * qif
        q_i[f] = shrink * qif + gain * puf


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def sgd_epoch(users, items, ratings, mu, user_bias, item_bias, P, Q, learning_rate,
              regularization):
    """One pass of plain SGD over the ratings in the order of the arrays, in place.

    The caller gathers the ratings into visiting order first: streaming them
    sequentially is faster than an index array of random positions.
    """
    for n in range(ratings.shape[0]):
        _sgd_update(users[n], items[n], ratings[n], mu, user_bias, item_bias, P, Q,
                    learning_rate, regularization)


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def sgd_epoch_hogwild(users, items, ratings, mu, user_bias, item_bias, P, Q, learning_rate,
                      regularization, n_chunks):
    """Hogwild SGD: ``n_chunks`` contiguous chunks of the ratings run on parallel threads
    that update the shared rows without locks. Races between threads make the result
    NON-deterministic."""
    n_total = ratings.shape[0]
    chunk = (n_total + n_chunks - 1) // n_chunks
    for c in numba.prange(n_chunks):
        for n in range(c * chunk, min(n_total, (c + 1) * chunk)):
            _sgd_update(users[n], items[n], ratings[n], mu, user_bias, item_bias, P, Q,
                        learning_rate, regularization)


@numba.njit(cache=True, nogil=True)
def group_ratings_by_block(users, items, ratings, user_group, item_group, n_groups):
    """The ratings stored grouped by block ``user_group[u] * n_groups + item_group[i]``
    (a stable counting sort, two passes): ``(block_start, users, items, ratings)``."""
    n_blocks = n_groups * n_groups
    block_start = np.zeros(n_blocks + 1, dtype=np.int64)
    for n in range(ratings.shape[0]):
        block_start[user_group[users[n]] * n_groups + item_group[items[n]] + 1] += 1
    for b in range(n_blocks):
        block_start[b + 1] += block_start[b]
    fill = block_start[:-1].copy()
    out_users = np.empty_like(users)
    out_items = np.empty_like(items)
    out_ratings = np.empty_like(ratings)
    for n in range(ratings.shape[0]):
        b = user_group[users[n]] * n_groups + item_group[items[n]]
        m = fill[b]
        out_users[m] = users[n]
        out_items[m] = items[n]
        out_ratings[m] = ratings[n]
        fill[b] = m + 1
    return block_start, out_users, out_items, out_ratings


@numba.njit(cache=True, nogil=True)
def shuffle_within_blocks(order, block_start, uniforms):
    """``order[s:e]`` of every block (offsets ``block_start``) becomes a uniformly random
    permutation of ``s .. e-1``: Fisher-Yates driven by ``uniforms`` (one float in [0, 1)
    per position, drawn by the caller's generator, so the shuffle is reproducible)."""
    for b in range(block_start.shape[0] - 1):
        s = block_start[b]
        e = block_start[b + 1]
        for j in range(s, e):
            order[j] = j
        for j in range(e - 1, s, -1):
            k = s + int(uniforms[j] * (j - s + 1))
            k = min(k, j)  # uniforms[j] * (j - s + 1) may round up to j - s + 1
            tmp = order[j]
            order[j] = order[k]
            order[k] = tmp


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _sgd_block(users, items, ratings, order, block_start, b, mu, user_bias, item_bias, P, Q,
               learning_rate, regularization):
    for m in range(block_start[b], block_start[b + 1]):
        n = order[m]
        _sgd_update(users[n], items[n], ratings[n], mu, user_bias, item_bias, P, Q,
                    learning_rate, regularization)


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def _sgd_epoch_blocked_parallel(users, items, ratings, order, block_start, schedule, mu,
                                user_bias, item_bias, P, Q, learning_rate, regularization):
    for s in range(schedule.shape[0]):
        for g in numba.prange(schedule.shape[1]):
            _sgd_block(users, items, ratings, order, block_start, schedule[s, g], mu,
                       user_bias, item_bias, P, Q, learning_rate, regularization)


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _sgd_epoch_blocked_serial(users, items, ratings, order, block_start, schedule, mu,
                              user_bias, item_bias, P, Q, learning_rate, regularization):
    for s in range(schedule.shape[0]):
        for g in range(schedule.shape[1]):
            _sgd_block(users, items, ratings, order, block_start, schedule[s, g], mu,
                       user_bias, item_bias, P, Q, learning_rate, regularization)


def sgd_epoch_blocked(users, items, ratings, order, block_start, schedule, mu, user_bias,
                      item_bias, P, Q, learning_rate, regularization):
    """Stratified SGD (DSGD / FPSGD): the ratings are stored grouped by block (user group x
    item group, offsets ``block_start``), and block ``b`` visits ``users[order[m]]``...
    for ``m`` in its range (``order`` keeps each block's positions inside it, in the
    epoch's random order). ``schedule[s]`` lists the blocks of stratum s, which share no
    user and no item, so they run on parallel threads without races and the result does
    not depend on the threads; strata run one after the other. One thread below
    ``SERIAL_BELOW["sgd_blocked"]`` ratings: the blocks' small working sets keep the rows
    in cache, which makes this order faster than a plain shuffle even then."""
    kernel = (_sgd_epoch_blocked_parallel if run_parallel("sgd_blocked", ratings.shape[0])
              else _sgd_epoch_blocked_serial)
    kernel(users, items, ratings, order, block_start, schedule, mu, user_bias, item_bias, P, Q,
           learning_rate, regularization)


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _residual_at(users, items, ratings, mu, user_bias, item_bias, P, Q, out, j):
    u = users[j]
    i = items[j]
    p_u = P[u]
    q_i = Q[i]
    dot = 0.0
    for f in range(p_u.shape[0]):
        dot += p_u[f] * q_i[f]
    out[j] = ratings[j] - (mu + user_bias[u] + item_bias[i] + dot)


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _residuals_serial(users, items, ratings, mu, user_bias, item_bias, P, Q, out):
    for j in range(ratings.shape[0]):
        _residual_at(users, items, ratings, mu, user_bias, item_bias, P, Q, out, j)


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def _residuals_parallel(users, items, ratings, mu, user_bias, item_bias, P, Q, out):
    for j in numba.prange(ratings.shape[0]):
        _residual_at(users, items, ratings, mu, user_bias, item_bias, P, Q, out, j)


def residuals(users, items, ratings, mu, user_bias, item_bias, P, Q, out):
    """``out[j] = r_j - r_hat_j`` (float64) for every rating (threads for large inputs)."""
    big = run_parallel("residuals", ratings.shape[0])
    kernel = _residuals_parallel if big else _residuals_serial
    kernel(users, items, ratings, mu, user_bias, item_bias, P, Q, out)


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _row_sse(indptr, items, ratings, mu, user_bias, item_bias, P, Q, u):
    """Sum of the squared residuals of user ``u``'s ratings (CSR row ``u``), float64;
    ``p_u`` is read once for the whole row."""
    p_u = P[u]
    base = mu + user_bias[u]
    total = 0.0
    for j in range(indptr[u], indptr[u + 1]):
        i = items[j]
        q_i = Q[i]
        # in the factors' precision: a float64 sum of float32 products runs at half the
        # vector width, and this pass is bookkeeping (each e^2 is summed in float64)
        dot = P.dtype.type(0.0)
        for f in range(p_u.shape[0]):
            dot += p_u[f] * q_i[f]
        e = ratings[j] - (base + item_bias[i] + dot)
        total += e * e
    return total


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _rows_sse_serial(indptr, items, ratings, mu, user_bias, item_bias, P, Q, out):
    for u in range(indptr.shape[0] - 1):
        out[u] = _row_sse(indptr, items, ratings, mu, user_bias, item_bias, P, Q, u)


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def _rows_sse_parallel(indptr, items, ratings, mu, user_bias, item_bias, P, Q, out):
    for u in numba.prange(indptr.shape[0] - 1):
        out[u] = _row_sse(indptr, items, ratings, mu, user_bias, item_bias, P, Q, u)


def training_sse(indptr, items, ratings, mu, user_bias, item_bias, P, Q) -> float:
    """``sum_j (r_j - r_hat_j)^2`` over the ratings of a CSR layout (users x items, ratings
    in CSR order), in one pass that writes nothing per rating: the bookkeeping of an SGD
    epoch. Each user's sum is formed by one thread and the sums are added in user order,
    so the result does not depend on the number of threads (threads for large inputs)."""
    n_users = indptr.shape[0] - 1
    per_user = np.empty(n_users)
    if run_parallel("residuals", ratings.shape[0]):
        with numba.parallel_chunksize(_USERS_PER_CHUNK):
            _rows_sse_parallel(indptr, items, ratings, mu, user_bias, item_bias, P, Q, per_user)
    else:
        _rows_sse_serial(indptr, items, ratings, mu, user_bias, item_bias, P, Q, per_user)
    return float(per_user.sum())


# users handed to a thread at a time by the parallel loss pass: row lengths vary by three
# orders of magnitude on rating data, so static halves would leave a thread idle
_USERS_PER_CHUNK = 64


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _weighted_square_norms(bias, F, counts):
    """``sum_r counts[r] * (bias[r]^2 + |F[r]|^2)`` in float64."""
    total = 0.0
    for r in range(F.shape[0]):
        f_r = F[r]
        s = float(bias[r]) * float(bias[r])
        for f in range(f_r.shape[0]):
            s += float(f_r[f]) * float(f_r[f])
        total += counts[r] * s
    return total


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def residual_products(users, items, ratings, mu, user_bias, item_bias, P, Q, resid,
                      sum_user, sum_item, EQ, EtP):
    """One pass over the ratings: ``resid[j] = r_j - r_hat_j`` and, accumulated into
    zeroed float64 outputs, the data part of the full gradient ``sum_user = E 1``,
    ``sum_item = E^T 1``, ``EQ = E Q`` and ``EtP = E^T P`` (E: the sparse residuals)."""
    for j in range(ratings.shape[0]):
        u = users[j]
        i = items[j]
        p_u, q_i, eq_u, ep_i = P[u], Q[i], EQ[u], EtP[i]
        dot = 0.0
        for f in range(p_u.shape[0]):
            dot += p_u[f] * q_i[f]
        e = ratings[j] - (mu + user_bias[u] + item_bias[i] + dot)
        resid[j] = e
        sum_user[u] += e
        sum_item[i] += e
        for f in range(p_u.shape[0]):
            eq_u[f] += e * q_i[f]
            ep_i[f] += e * p_u[f]


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _sum_squares(x):
    total = 0.0
    for j in range(x.shape[0]):
        total += x[j] * x[j]
    return total


def sum_squares(x) -> float:
    """``sum x^2`` in float64 (not np.dot: waking BLAS threads costs ms on a busy machine)."""
    return _sum_squares(x)


def loss_from_sse(sse, n, user_bias, item_bias, P, Q, user_counts, item_counts,
                  regularization):
    """The objective ``(1/N) sum_j l_j`` from the sum of squared residuals of all N
    ratings and the parameters (the penalty: one pass over the rows, not the ratings)."""
    penalty = (_weighted_square_norms(user_bias, P, user_counts)
               + _weighted_square_norms(item_bias, Q, item_counts))
    return 0.5 * (sse + regularization * penalty) / n


def mean_loss(resid, user_bias, item_bias, P, Q, user_counts, item_counts, regularization):
    """The objective ``(1/N) sum_j l_j`` from the residuals of all N ratings (float64)."""
    return loss_from_sse(_sum_squares(resid), resid.shape[0], user_bias, item_bias, P, Q,
                         user_counts, item_counts, regularization)


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _apply_touched(touched, n_touched, acc_bias, acc_F, bias, F, full_bias, full_F, eta, drift,
                   clip_norm):
    """Step the touched rows (user or item side) by their accumulated minibatch gradient,
    clipped to ``clip_norm`` when asked, and clear the accumulators; returns rows clipped."""
    n_clipped = 0
    k = F.shape[1]
    for m in range(n_touched):
        r = touched[m]
        scale = 1.0
        if clip_norm > 0.0:
            norm2 = acc_bias[r] * acc_bias[r]
            for f in range(k):
                norm2 += acc_F[r, f] * acc_F[r, f]
            if norm2 > clip_norm * clip_norm:
                scale = clip_norm / np.sqrt(norm2)
                n_clipped += 1
        bias[r] -= eta * scale * acc_bias[r] + drift * full_bias[r]
        acc_bias[r] = 0.0
        for f in range(k):
            F[r, f] -= eta * scale * acc_F[r, f] + drift * full_F[r, f]
            acc_F[r, f] = 0.0
    return n_clipped


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _catch_up_and_list(r, t, drift, bias, F, full_bias, full_F, seen, touched, n_touched):
    """Apply row ``r``'s skipped full-gradient steps (lazy update) and list it once for
    step ``t``; returns the new number of listed rows (the same for users and items)."""
    if seen[r] < t:
        lag = (t - seen[r]) * drift
        bias[r] -= lag * full_bias[r]
        for f in range(F.shape[1]):
            F[r, f] -= lag * full_F[r, f]
        seen[r] = t
    if seen[r] == t:
        seen[r] = t + 1  # marks r as listed for this step
        touched[n_touched] = r
        n_touched += 1
    return n_touched


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def svrg_epoch(users, items, ratings, order, batch_size, n_steps, mu,
               user_bias, item_bias, P, Q,
               snap_user_bias, snap_item_bias, snap_P, snap_Q, snap_resid,
               full_user_bias, full_item_bias, full_P, full_Q,
               learning_rate, regularization, clip_norm,
               acc_user_bias, acc_item_bias, acc_P, acc_Q,
               user_seen, item_seen, touched_users, touched_items):
    """``n_steps`` SVRG minibatch steps, in place, updating only the rows each batch touches.

    Step ``t`` uses the ratings ``order[t*B:(t+1)*B]`` (``B = batch_size``) and moves

        theta <- theta - eta * B * v,   v = 1/B sum_B (grad l_j(theta) - grad l_j(snap)) + g,

    where ``g = full_*`` is the full gradient of the mean loss at the snapshot ``snap_*``
    and ``snap_resid[j]`` the snapshot residual of rating j. For a row the batch does not
    touch, ``v`` is the constant ``g_row``, so those steps are applied lazily: each row
    remembers how many steps it has absorbed (``user_seen``/``item_seen``) and catches
    up, ``row -= (t - seen) * eta * B * g_row``, when next touched or at the end, which
    makes a step cost O(B k) instead of O((users + items) k).

    ``clip_norm > 0`` rescales a touched row's minibatch correction
    ``sum_B (grad l_j(theta) - grad l_j(snap))`` over (bias, factors) to that norm when it
    is longer. ``order`` must hold at least ``n_steps * batch_size`` rating indices (every
    batch is full). The ``acc_*`` buffers must be zero and the ``*_seen`` arrays zero on
    entry; the buffers are left zero. Returns the number of clipped row updates.
    """
    if order.shape[0] < n_steps * batch_size:
        raise ValueError("svrg_epoch: order must hold n_steps * batch_size rating indices")
    k = P.shape[1]
    lam = regularization
    eta = learning_rate
    drift = eta * batch_size  # step length applied to the full-gradient term g
    n_clipped = 0
    for t in range(n_steps):
        start = t * batch_size
        stop = start + batch_size
        n_users_touched = 0
        n_items_touched = 0
        # 1. bring touched rows up to date and list them (each once)
        for n in range(start, stop):
            j = order[n]
            n_users_touched = _catch_up_and_list(users[j], t, drift, user_bias, P,
                                                 full_user_bias, full_P, user_seen,
                                                 touched_users, n_users_touched)
            n_items_touched = _catch_up_and_list(items[j], t, drift, item_bias, Q,
                                                 full_item_bias, full_Q, item_seen,
                                                 touched_items, n_items_touched)
        # 2. minibatch correction sum_B (grad l_j(theta) - grad l_j(snap)), theta unchanged
        for n in range(start, stop):
            j = order[n]
            u = users[j]
            i = items[j]
            p_u, q_i, s_p_u, s_q_i = P[u], Q[i], snap_P[u], snap_Q[i]
            a_p_u, a_q_i = acc_P[u], acc_Q[i]
            dot = 0.0
            for f in range(k):
                dot += p_u[f] * q_i[f]
            err = ratings[j] - (mu + user_bias[u] + item_bias[i] + dot)
            s_err = snap_resid[j]
            # (-e q + lam p) - (-e~ q~ + lam p~), and likewise for the biases and q_i
            acc_user_bias[u] += s_err - err + lam * (user_bias[u] - snap_user_bias[u])
            acc_item_bias[i] += s_err - err + lam * (item_bias[i] - snap_item_bias[i])
            for f in range(k):
                a_p_u[f] += s_err * s_q_i[f] - err * q_i[f] + lam * (p_u[f] - s_p_u[f])
                a_q_i[f] += s_err * s_p_u[f] - err * p_u[f] + lam * (q_i[f] - s_q_i[f])
        # 3. apply the step to the touched rows and clear their buffers
        n_clipped += _apply_touched(touched_users, n_users_touched, acc_user_bias, acc_P,
                                    user_bias, P, full_user_bias, full_P, eta, drift, clip_norm)
        n_clipped += _apply_touched(touched_items, n_items_touched, acc_item_bias, acc_Q,
                                    item_bias, Q, full_item_bias, full_Q, eta, drift, clip_norm)
    # 4. every row catches up to step n_steps; reset the counters for the next epoch
    for u in range(P.shape[0]):
        lag = (n_steps - user_seen[u]) * drift
        user_bias[u] -= lag * full_user_bias[u]
        for f in range(k):
            P[u, f] -= lag * full_P[u, f]
        user_seen[u] = 0
    for i in range(Q.shape[0]):
        lag = (n_steps - item_seen[i]) * drift
        item_bias[i] -= lag * full_item_bias[i]
        for f in range(k):
            Q[i, f] -= lag * full_Q[i, f]
        item_seen[i] = 0
    return n_clipped
