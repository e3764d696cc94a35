"""Split helpers in one vocabulary: the temporal truncation rule on a hand-made table,
k folds through make_split, sizes named alike for every kind."""

from __future__ import annotations

import numpy as np
import pytest

from mflib.data import RatingMatrix, kfold, make_split


@pytest.fixture
def hand_made():
    """User 1 has 10 ratings at times 0..9 (stored newest first), user 2 has 7, user 3
    has 3."""
    users = [1] * 10 + [2] * 7 + [3] * 3
    times = list(range(9, -1, -1)) + list(range(7)) + [5, 1, 3]
    items = list(range(10)) + list(range(7)) + list(range(3))
    return RatingMatrix.from_arrays(users, items, np.arange(20) % 5 + 1.0, times)


def _times(part, raw_user):
    u = part.user_index([raw_user])[0]
    return sorted(part.timestamps[part.users == u].tolist())


def test_temporal_floor_rule_reproduces_the_original_truncation(hand_made):
    s = make_split(hand_made, "temporal", test_size=0.15, val_size=0.15)
    # n=10: int(0.7 n)=7 train, int(0.85 n)=8 -> 1 validation, 2 test
    assert _times(s.train, 1) == list(range(7))
    assert _times(s.validation, 1) == [7]
    assert _times(s.test, 1) == [8, 9]
    # n=7: int(4.9)=4 train, int(5.95)=5 -> 1 validation, 2 test
    assert _times(s.train, 2) == [0, 1, 2, 3] and _times(s.validation, 2) == [4]
    # n=3: int(2.1)=2 train, int(2.55)=2 -> no validation, 1 test
    assert _times(s.train, 3) == [1, 3] and _times(s.test, 3) == [5]
    assert (s.train.nnz, s.validation.nnz, s.test.nnz) == (13, 2, 5)


def test_temporal_nearest_rule_rounds_the_boundaries(hand_made):
    s = make_split(hand_made, "temporal", test_size=0.15, val_size=0.15, rule="nearest")
    # n=7: ratings train while (pos + 0.5) / 7 < 0.7, i.e. positions 0..4
    assert _times(s.train, 2) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="rule"):
        make_split(hand_made, "temporal", rule="ceil")


def test_kfold_through_make_split_equals_kfold(hand_made):
    folds = kfold(hand_made, 4, random_state=3)
    for k, fold in enumerate(folds):
        one = make_split(hand_made, "kfold", n_splits=4, fold=k, random_state=3)
        np.testing.assert_array_equal(one.test.ratings, fold.test.ratings)
    tested = np.concatenate([f.test.items * 100 + f.test.users for f in folds])
    assert len(np.unique(tested)) == hand_made.nnz
    with pytest.raises(ValueError, match="fold must be"):
        make_split(hand_made, "kfold", n_splits=4, fold=4)


def test_kfold_carves_validation_from_the_training_folds(hand_made):
    s = make_split(hand_made, "kfold", n_splits=4, fold=1, val_size=0.25, random_state=0)
    assert s.validation.nnz == round(0.25 * (hand_made.nnz - s.test.nnz))
    assert s.train.nnz + s.validation.nnz + s.test.nnz == hand_made.nnz


@pytest.mark.parametrize("method", ["random", "user", "temporal", "cold_start"])
def test_every_kind_takes_test_size_and_val_size(hand_made, method):
    extra = {} if method == "temporal" else {"random_state": 0}
    s = make_split(hand_made, method, test_size=0.3, val_size=0.2, **extra)
    assert s.test.nnz > 0 and s.train.nnz > 0
