"""The one training layout: both compressed orders of a rating matrix, built once.

Every solver and kernel reads its training ratings through a :class:`TrainingLayout`
(obtained with :func:`training_layout`, cached on the :class:`RatingMatrix`), so the
CSR / CSC / row-of-rating arrays exist once per training matrix whatever is fitted
on it.

Three orders of the ``nnz`` ratings appear:

* **rating order**: the order of the ``RatingMatrix`` arrays (file order);
* **CSR order**: by user, then item (``user_indptr``, ``user_items``);
* **CSC order**: by item, then user (``item_indptr``, ``item_users``).

``user_order[n]`` is the rating index of the ``n``-th CSR entry, ``item_order`` the
same for CSC, and ``csc_from_csr[n]`` the CSR position of the ``n``-th CSC entry, so
per-rating arrays move between orders by one gather (:meth:`TrainingLayout.to_csr`,
:meth:`TrainingLayout.to_csc`, :meth:`TrainingLayout.csr_to_csc`).
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp

from .ratings import RatingMatrix

_CACHE_KEY = "training_layout"


class TrainingLayout:
    """Index arrays of one training matrix (all int64), shared by every solver.

    Attributes
    ----------
    n_users, n_items, nnz : int
    users, items : ndarray (nnz,)
        Inner user / item of each rating, in rating order.
    ratings : ndarray of float64 (nnz,)
        The ratings, in rating order (the matrix's own array, not a copy).
    user_counts, item_counts : ndarray (n_users,), (n_items,)
    user_indptr, user_items : CSR structure (users x items), rows sorted by item
    item_indptr, item_users : CSC structure (the items x users CSR), rows sorted by user
    user_order, item_order : ndarray (nnz,)
        Rating index of each CSR / CSC entry.
    user_of_rating : ndarray (nnz,)
        User of each CSR entry ("row of rating").
    item_of_rating : ndarray (nnz,)
        Item of each CSC entry.
    csc_from_csr : ndarray (nnz,)
        CSR position of each CSC entry.
    """

    def __init__(self, train: RatingMatrix):
        self.n_users, self.n_items = train.shape
        self.nnz = train.nnz
        self.ratings = train.ratings
        self.users = train.users.astype(np.int64)
        self.items = train.items.astype(np.int64)
        self.user_counts = np.bincount(self.users, minlength=self.n_users).astype(np.int64)
        self.item_counts = np.bincount(self.items, minlength=self.n_items).astype(np.int64)
        # scipy's COO -> CSR conversion is a counting sort by row that keeps the order
        # within rows; sorting each row's items then gives (user, item) order. Carrying
        # the rating index as the value yields the permutation (exact: nnz < 2**53).
        csr = sp.csr_matrix((np.arange(self.nnz, dtype=np.float64), (self.users, self.items)),
                            shape=(self.n_users, self.n_items))
        csr.sort_indices()
        self.user_indptr = csr.indptr.astype(np.int64)
        self.user_items = csr.indices.astype(np.int64)
        self.user_order = csr.data.astype(np.int64)
        csr.data = np.arange(self.nnz, dtype=np.float64)  # now: the CSR position
        csc = csr.tocsc()
        csc.sort_indices()
        self.item_indptr = csc.indptr.astype(np.int64)
        self.item_users = csc.indices.astype(np.int64)
        self.csc_from_csr = csc.data.astype(np.int64)
        self.item_order = self.user_order[self.csc_from_csr]
        self.user_of_rating = np.repeat(np.arange(self.n_users, dtype=np.int64),
                                        self.user_counts)
        self.item_of_rating = np.repeat(np.arange(self.n_items, dtype=np.int64),
                                        self.item_counts)

    # ------------------------------------------------------------------ orders
    @property
    def shape(self) -> tuple[int, int]:
        return self.n_users, self.n_items

    def to_csr(self, values: np.ndarray) -> np.ndarray:
        """A per-rating array (rating order) gathered into CSR order."""
        return np.asarray(values)[self.user_order]

    def to_csc(self, values: np.ndarray) -> np.ndarray:
        """A per-rating array (rating order) gathered into CSC order."""
        return np.asarray(values)[self.item_order]

    def csr_to_csc(self, values: np.ndarray) -> np.ndarray:
        """A per-rating array in CSR order gathered into CSC order."""
        return np.asarray(values)[self.csc_from_csr]

    @functools.cached_property
    def ratings_csr(self) -> np.ndarray:
        """The ratings in CSR order (float64)."""
        return self.to_csr(self.ratings)

    @functools.cached_property
    def ratings_csc(self) -> np.ndarray:
        """The ratings in CSC order (float64)."""
        return self.to_csc(self.ratings)

    @functools.cached_property
    def index32(self) -> tuple[np.ndarray, np.ndarray]:
        """``(users, items)`` in rating order as int32: half the bytes for kernels that
        stream every rating each epoch (SGD). Built on first use."""
        if max(self.n_users, self.n_items) >= 2**31:
            raise OverflowError("more than 2**31 users or items: int32 indices do not fit")
        return self.users.astype(np.int32), self.items.astype(np.int32)

    @functools.cached_property
    def _scipy_structure(self) -> tuple[np.ndarray, np.ndarray]:
        # SciPy stores int32 indices whenever they fit (and would copy int64 ones to
        # int32 on every construction): keep one such copy for all matrices built here
        small = max(self.n_users, self.n_items, self.nnz) < 2**31
        dtype = np.int32 if small else np.int64
        return self.user_items.astype(dtype), self.user_indptr.astype(dtype)

    def csr_matrix(self, values_csr: np.ndarray | None = None) -> sp.csr_matrix:
        """users x items ``scipy.sparse.csr_matrix`` with ``values_csr`` (CSR order; the
        ratings by default). Every matrix built here shares one copy of the structure."""
        data = self.ratings_csr if values_csr is None else values_csr
        indices, indptr = self._scipy_structure
        return sp.csr_matrix((data, indices, indptr), shape=self.shape, copy=False)

    def __repr__(self) -> str:
        return f"TrainingLayout(users={self.n_users}, items={self.n_items}, nnz={self.nnz})"


def training_layout(train: RatingMatrix) -> TrainingLayout:
    """The :class:`TrainingLayout` of ``train``, built on first use and cached on it."""
    cache = train._cache
    if _CACHE_KEY not in cache:
        cache[_CACHE_KEY] = TrainingLayout(train)
    return cache[_CACHE_KEY]
