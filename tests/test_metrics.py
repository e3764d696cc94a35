"""Metrics against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mflib import BiasBaseline, Popularity
from mflib.data import RatingMatrix
from mflib.metrics import (
    mae,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    rmse,
    top_k,
)
from mflib.validation import DataError


def test_rmse_and_mae_by_hand():
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(np.sqrt(4 / 3))
    assert mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    with pytest.raises(DataError):
        rmse([1, 2], [1.0, np.nan])
    with pytest.raises(DataError, match="empty"):
        rmse([], [])


# user 0: top-3 = [1, 2, 3], relevant {2, 5}: hit at rank 2 only
# user 1: top-3 = [4, 5, 6], relevant {4, 6}: hits at ranks 1 and 3
REC = np.array([[1, 2, 3], [4, 5, 6]])
REL = [[2, 5], [4, 6]]


def test_precision_and_recall_by_hand():
    assert precision_at_k(REC, REL) == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert recall_at_k(REC, REL) == pytest.approx((1 / 2 + 2 / 2) / 2)


def test_ndcg_by_hand():
    u0 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    u1 = (1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert ndcg_at_k(REC, REL) == pytest.approx((u0 + u1) / 2)


def test_map_by_hand():
    u0 = (1 / 2) / 2
    u1 = (1 + 2 / 3) / 2
    assert map_at_k(REC, REL) == pytest.approx((u0 + u1) / 2)


def test_perfect_ranking_scores_one():
    rec = np.array([[7, 8]])
    for metric in (precision_at_k, recall_at_k, ndcg_at_k, map_at_k):
        assert metric(rec, [[8, 7]]) == pytest.approx(1.0)


def test_top_k_orders_and_skips_excluded():
    scores = np.array([[0.1, 0.9, -np.inf, 0.5], [-np.inf, -np.inf, 1.0, -np.inf]])
    np.testing.assert_array_equal(top_k(scores, 3), [[1, 3, 0], [2, -1, -1]])


@pytest.mark.parametrize("k", [1, 3, 7, 12])
def test_top_k_breaks_ties_by_column_like_a_full_sort(k):
    # integer scores: many ties; the reference sorts each row by (-score, column)
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 4, size=(50, 9)).astype(float)
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    ref = np.lexsort((np.broadcast_to(np.arange(9), scores.shape), -scores), axis=1)[:, :k]
    ref = np.where(np.isfinite(np.take_along_axis(scores, ref, axis=1)), ref, -1)
    ref = np.hstack([ref, np.full((50, max(0, k - 9)), -1)])
    np.testing.assert_array_equal(top_k(scores, k), ref)


def test_top_k_refuses_nan_scores():
    with pytest.raises(ValueError, match="NaN"):
        top_k(np.array([[0.1, np.nan]]), 1)


@pytest.fixture
def toy():
    # 3 users x 4 items; user 0 rated items a, b in train; test has c (5 stars) and d (2)
    train = RatingMatrix.from_arrays([0, 0, 1, 1, 1, 2, 2], ["a", "b", "a", "c", "d", "c", "b"],
                                     [4, 3, 5, 5, 1, 4, 2])
    test = RatingMatrix.from_arrays([0, 0, 2], ["c", "d", "a"], [5, 2, 4])
    return train, test


def test_full_protocol_excludes_training_items_and_ranks_the_catalogue(toy):
    train, test = toy
    model = Popularity().fit(train)  # counts: a 2, b 2, c 2, d 1
    m = ranking_metrics(model, test, k=1, threshold=4)
    # user 0 may only get c or d (a, b seen): c has count 2 > d -> hit; user 2 gets a -> hit
    assert m["precision@1"] == pytest.approx(1.0) and m["users"] == 2


def test_test_items_protocol_is_labelled(toy):
    train, test = toy
    model = BiasBaseline(regularization=0.0).fit(train)
    m = ranking_metrics(model, test, k=2, threshold=4, protocol="test_items")
    assert all("(test items only)" in key for key in m.index if "@" in key)
    # each user's relevant test item is among its (at most two) test items
    assert m["recall@2 (test items only)"] == pytest.approx(1.0)


def test_unknown_protocol_is_refused(toy):
    train, test = toy
    with pytest.raises(ValueError, match="unknown protocol"):
        ranking_metrics(Popularity().fit(train), test, protocol="sampled")
