"""The one training layout: both compressed orders of a rating matrix and the
permutations between them, against a direct construction."""

from __future__ import annotations

import numpy as np
import pytest

from mflib.data import RatingMatrix, make_low_rank
from mflib.data.layout import training_layout


@pytest.fixture(scope="module")
def shuffled():
    """Ratings in a random row order with some users and items without ratings."""
    rng = np.random.default_rng(0)
    rm, _ = make_low_rank(30, 25, 2, 0.3, random_state=1)
    order = rng.permutation(rm.nnz)
    return RatingMatrix.from_arrays(rm.user_ids[rm.users][order] * 2,
                                    rm.item_ids[rm.items][order] * 3, rm.ratings[order])


def test_orders_match_a_direct_sort(shuffled):
    rm = shuffled
    lay = training_layout(rm)
    csr_order = np.lexsort((rm.items, rm.users))
    csc_order = np.lexsort((rm.users, rm.items))
    np.testing.assert_array_equal(lay.user_order, csr_order)
    np.testing.assert_array_equal(lay.item_order, csc_order)
    np.testing.assert_array_equal(lay.user_items, rm.items[csr_order])
    np.testing.assert_array_equal(lay.item_users, rm.users[csc_order])
    np.testing.assert_array_equal(lay.user_of_rating, rm.users[csr_order])
    np.testing.assert_array_equal(lay.item_of_rating, rm.items[csc_order])
    np.testing.assert_array_equal(lay.ratings_csr, rm.ratings[csr_order])
    np.testing.assert_array_equal(lay.ratings_csc, rm.ratings[csc_order])
    np.testing.assert_array_equal(lay.csr_to_csc(lay.ratings_csr), lay.ratings_csc)
    np.testing.assert_array_equal(np.diff(lay.user_indptr), rm.user_counts())
    np.testing.assert_array_equal(np.diff(lay.item_indptr), rm.item_counts())
    for arr in (lay.user_indptr, lay.user_items, lay.item_users, lay.csc_from_csr):
        assert arr.dtype == np.int64


def test_csr_matrices_equal_the_rating_matrix_and_share_one_structure(shuffled):
    lay = training_layout(shuffled)
    m = lay.csr_matrix()
    assert (m != shuffled.to_csr()).nnz == 0
    np.testing.assert_array_equal(m.indices, lay.user_items)
    assert np.shares_memory(m.indices, lay.csr_matrix(lay.ratings_csr * 2).indices)


def test_built_once_and_cached(shuffled):
    assert training_layout(shuffled) is training_layout(shuffled)
    u32, i32 = training_layout(shuffled).index32
    assert u32.dtype == np.int32
    np.testing.assert_array_equal(u32, shuffled.users)
