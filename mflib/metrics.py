"""Evaluation metrics: pure functions on arrays, plus model-level ranking evaluation.

Ranking protocol
----------------
``protocol="full"`` (the default and the honest one) ranks the *whole catalogue*
for each test user, excluding the items that user rated in training, and counts a
hit when a top-k item is relevant in the test set (rating >= ``threshold``).
``protocol="test_items"`` ranks only the items the user rated in the test set. It
is far easier, inflates every metric and is reported only under that label.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .validation import DataError, check_choice, check_positive_int


def _paired(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 1:
        raise DataError(f"y_true and y_pred must be 1-D of equal length, got {t.shape}, {p.shape}")
    if t.size == 0:
        raise DataError("cannot score an empty set of ratings")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise DataError("y_true or y_pred contains NaN or infinite values")
    return t, p


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    t, p = _paired(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true, y_pred) -> float:
    """Mean absolute error."""
    t, p = _paired(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


# ---------------------------------------------------------------------- top-k metrics
def _relevance_matrix(relevant, n_cols: int) -> sp.csr_matrix:
    rows = [np.asarray(r, dtype=np.int64).ravel() for r in relevant]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    idx = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    m = sp.csr_matrix((np.ones(len(idx), dtype=bool), idx, indptr), shape=(len(rows), n_cols))
    m.sum_duplicates()
    return m


def _hits(recommended, relevant) -> tuple[np.ndarray, np.ndarray]:
    """(hits (n, k) bool, number relevant per row (n,))."""
    rec = np.asarray(recommended, dtype=np.int64)
    if rec.ndim != 2:
        raise DataError(f"recommended must be a 2-D (users, k) array, got shape {rec.shape}")
    if len(relevant) != rec.shape[0]:
        raise DataError(f"{rec.shape[0]} rows of recommendations but {len(relevant)} relevant sets")
    n_cols = int(max(rec.max(initial=-1), max((np.max(r, initial=-1) for r in relevant),
                                                default=-1))) + 1
    rel = _relevance_matrix(relevant, max(n_cols, 1))
    if rec.size == 0:
        return np.zeros(rec.shape, dtype=bool), np.diff(rel.indptr)
    rows = np.repeat(np.arange(rec.shape[0]), rec.shape[1])
    valid = rec.ravel() >= 0  # -1 pads rows with fewer than k candidates
    hit = np.zeros(rec.size, dtype=bool)
    hit[valid] = np.asarray(rel[rows[valid], rec.ravel()[valid]]).ravel()
    return hit.reshape(rec.shape), np.diff(rel.indptr)


def precision_at_k(recommended, relevant) -> float:
    """Mean over users of |top-k ∩ relevant| / k (k = recommended.shape[1])."""
    hits, _ = _hits(recommended, relevant)
    return float(hits.mean(axis=1).mean())


def recall_at_k(recommended, relevant) -> float:
    """Mean over users with a relevant item of |top-k ∩ relevant| / |relevant|."""
    hits, n_rel = _hits(recommended, relevant)
    ok = n_rel > 0
    return float((hits.sum(axis=1)[ok] / n_rel[ok]).mean())


def ndcg_at_k(recommended, relevant) -> float:
    """Mean binary NDCG@k: DCG = sum hit_j / log2(j + 2), ideal DCG from min(|rel|, k) hits."""
    hits, n_rel = _hits(recommended, relevant)
    k = hits.shape[1]
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ disc
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_rel, k)]
    ok = n_rel > 0
    return float((dcg[ok] / ideal[ok]).mean())


def map_at_k(recommended, relevant) -> float:
    """Mean average precision: AP@k = sum_j P@j * hit_j / min(|rel|, k)."""
    hits, n_rel = _hits(recommended, relevant)
    k = hits.shape[1]
    prec = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    ok = n_rel > 0
    ap = (prec * hits).sum(axis=1)[ok] / np.minimum(n_rel[ok], k)
    return float(ap.mean())


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, best first; -inf entries are never chosen
    (rows with fewer candidates are padded with -1). Equal scores are taken in column
    order (lowest index first), so the result does not depend on how NumPy's selection
    orders ties (its SIMD variants differ between machines: a model that scores many
    items alike, such as the global mean, would rank differently on each)."""
    scores = np.asarray(scores, dtype=float)
    n, m = scores.shape
    k_eff = min(k, m)
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN; a ranking needs a score for every item")
    out = np.full((n, k), -1, dtype=np.int64)
    if k_eff <= 0 or n == 0:
        return out
    neg = -scores
    kth = np.partition(neg, k_eff - 1, axis=1)[:, k_eff - 1:k_eff]  # values: no tie order
    better = neg < kth
    tied = neg == kth
    need = k_eff - better.sum(axis=1, keepdims=True)
    chosen = better | (tied & (np.cumsum(tied, axis=1) <= need))
    part = np.nonzero(chosen)[1].reshape(n, k_eff)  # k_eff per row, columns ascending
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)
    best[~np.isfinite(np.take_along_axis(vals, order, axis=1))] = -1
    out[:, :k_eff] = best
    return out


PROTOCOLS = ("full", "test_items")


def ranking_metrics(model, test, *, k: int = 10, threshold: float | None = 4.0,
                    protocol: str = "full", batch_size: int = 2048) -> pd.Series:
    """Precision/Recall/NDCG/MAP@k of a fitted estimator on ``test`` ratings.

    Parameters
    ----------
    model : fitted FactorizationEstimator
    test : RatingMatrix
        Held-out ratings (any id maps: they are mapped to the model's).
    k : int
    threshold : float or None
        A test rating is relevant when >= threshold (None: every test item is relevant).
    protocol : {"full", "test_items"}
        See the module docstring. Only users with at least one relevant test item count.
    """
    check_positive_int(k, "k")
    check_choice(protocol, "protocol", PROTOCOLS)
    users, items = model.map_pairs(test)
    relevant = np.ones(len(users), bool) if threshold is None else test.ratings >= threshold
    if protocol == "full":
        keep = relevant & (items >= 0)  # an item unknown to the model cannot be recommended
        # unknown users stay: they are ranked by the fallback, as a real system would
        u_raw = test.users[keep]
        uniq, inv = np.unique(u_raw, return_inverse=True)
        rel_sets = np.split(items[keep][np.argsort(inv, kind="stable")],
                            np.cumsum(np.bincount(inv))[:-1])
        model_users = users[keep][np.unique(inv, return_index=True)[1]]
        recs = []
        for s in range(0, len(uniq), batch_size):
            ub = model_users[s : s + batch_size]
            scores = model.score_items(ub)
            known = ub >= 0
            seen = model.seen_items(ub[known])
            r, c = seen.nonzero()
            scores[np.flatnonzero(known)[r], c] = -np.inf
            recs.append(top_k(scores, k))
        recommended = np.vstack(recs) if recs else np.zeros((0, k), dtype=np.int64)
    else:
        pred = model.predict(test)
        order = np.lexsort((-pred, test.users))
        u_sorted = test.users[order]
        starts = np.r_[0, np.flatnonzero(np.diff(u_sorted)) + 1]
        counts = np.diff(np.r_[starts, len(order)])
        pos = np.arange(len(order)) - np.repeat(starts, counts)
        has_rel = np.bincount(test.users, weights=relevant, minlength=test.n_users) > 0
        users_kept = np.unique(test.users[relevant])
        row_of = np.full(test.n_users, -1)
        row_of[users_kept] = np.arange(len(users_kept))
        recommended = np.full((len(users_kept), k), -1, dtype=np.int64)
        sel = (pos < k) & has_rel[u_sorted]
        # rank among the user's test rows: row index within the test set identifies items
        recommended[row_of[u_sorted[sel]], pos[sel]] = order[sel]
        rel_sets = [np.array([], dtype=np.int64)] * len(users_kept)
        rel_rows = np.flatnonzero(relevant)
        grp = row_of[test.users[rel_rows]]
        rel_sets = np.split(rel_rows[np.argsort(grp, kind="stable")],
                            np.cumsum(np.bincount(grp, minlength=len(users_kept)))[:-1])
    label = "" if protocol == "full" else " (test items only)"
    return pd.Series(
        {
            f"precision@{k}{label}": precision_at_k(recommended, rel_sets),
            f"recall@{k}{label}": recall_at_k(recommended, rel_sets),
            f"ndcg@{k}{label}": ndcg_at_k(recommended, rel_sets),
            f"map@{k}{label}": map_at_k(recommended, rel_sets),
            "users": len(rel_sets),
        },
        name=f"{type(model).__name__} ({protocol})",
    )


def rating_metrics(model, test) -> pd.Series:
    """RMSE and MAE of a fitted estimator on ``test``, with the fallback share."""
    pred, known = model.predict(test, return_known=True)
    return pd.Series(
        {"rmse": rmse(test.ratings, pred), "mae": mae(test.ratings, pred),
         "fallback_fraction": float(1 - known.mean())},
        name=type(model).__name__,
    )
