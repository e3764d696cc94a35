"""The training layout of one MPI rank: its block of users (their ratings by user) and
its block of items (their ratings by item), with the global sizes and counts.

Blocks are contiguous and balanced by rating counts (:mod:`.partition`), plus, when a
solver says so, a fixed cost per row with ratings (``row_cost``, in ratings): a ridge
row costs about ``n_r k^2`` for its Gram matrix and ``k^3 / 3`` for its Cholesky factor,
so ALS counts each row as ``k / 3`` extra ratings, and blocks with many short rows are
not left with more work. A rank's CSR
rows are exactly the rows of the single-process :class:`~mflib.data.layout.TrainingLayout`
for its users (same order, same values), so a row solved here is solved with the same
instructions as in one process: distributed ALS gives bit-identical factors.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..data.layout import training_layout
from .comm import Exchange
from .partition import balanced_bounds

EXCHANGES = ("allgather", "needed")


class DistributedLayout:
    """Rank-local CSR (owned users) and CSC (owned items) of a training matrix.

    Attributes
    ----------
    n_users, n_items, nnz : int
        Global sizes.
    user_counts, item_counts : ndarray (global)
    user_bounds, item_bounds : ndarray (size + 1,)
        Rank ``r`` owns users ``user_bounds[r]:user_bounds[r+1]`` (and items likewise).
    user_indptr, user_items, ratings_csr : the owned users' rows (global item indices)
    item_indptr, item_users, ratings_csc : the owned items' rows (global user indices)
    """

    def __init__(self, exchange: Exchange, n_users, n_items, user_counts, item_counts,
                 csr, csc, user_bounds, item_bounds):
        self.exchange = exchange
        self.rank, self.size = exchange.rank, exchange.size
        self.n_users, self.n_items = int(n_users), int(n_items)
        self.user_counts = np.asarray(user_counts, dtype=np.int64)
        self.item_counts = np.asarray(item_counts, dtype=np.int64)
        self.nnz = int(self.user_counts.sum())
        self.user_bounds, self.item_bounds = user_bounds, item_bounds
        self.user_indptr, self.user_items, self.ratings_csr = csr
        self.item_indptr, self.item_users, self.ratings_csc = csc
        self._needed = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_full(cls, train, exchange: Exchange, row_cost: float = 0.0) -> DistributedLayout:
        """Every rank holds the whole training matrix: take this rank's rows of its
        layout (views, no copies)."""
        full = training_layout(train)
        ub = balanced_bounds(full.user_counts + row_cost * (full.user_counts > 0), exchange.size)
        ib = balanced_bounds(full.item_counts + row_cost * (full.item_counts > 0), exchange.size)

        def rows(indptr, indices, values, bounds):
            r0, r1 = bounds[exchange.rank], bounds[exchange.rank + 1]
            lo, hi = indptr[r0], indptr[r1]
            return indptr[r0:r1 + 1] - lo, indices[lo:hi], values[lo:hi]

        return cls(exchange, full.n_users, full.n_items, full.user_counts, full.item_counts,
                   rows(full.user_indptr, full.user_items, full.ratings_csr, ub),
                   rows(full.item_indptr, full.item_users, full.ratings_csc, ib), ub, ib)

    @classmethod
    def from_shard(cls, shard, exchange: Exchange, row_cost: float = 0.0) -> DistributedLayout:
        """Each rank holds a shard of the ratings (any subset, with the global id maps):
        counts are summed over ranks and every rating is sent to the rank that owns its
        user and to the rank that owns its item (two ``Alltoallv``)."""
        n_users, n_items = shard.n_users, shard.n_items
        user_counts = exchange.allreduce_sum(shard.user_counts()).astype(np.int64)
        item_counts = exchange.allreduce_sum(shard.item_counts()).astype(np.int64)
        ub = balanced_bounds(user_counts + row_cost * (user_counts > 0), exchange.size)
        ib = balanced_bounds(item_counts + row_cost * (item_counts > 0), exchange.size)
        triples = np.column_stack([shard.users.astype(np.float64),
                                   shard.items.astype(np.float64), shard.ratings])

        def owned(row_col, bounds, n_rows, n_cols):
            owner = np.searchsorted(bounds, triples[:, row_col], side="right") - 1
            order = np.argsort(owner, kind="stable")
            got = exchange.alltoallv(triples[order], np.bincount(owner, minlength=exchange.size))
            r0, r1 = bounds[exchange.rank], bounds[exchange.rank + 1]
            rows = got[:, row_col].astype(np.int64) - r0
            cols = got[:, 1 - row_col].astype(np.int64)
            m = sp.csr_matrix((got[:, 2], (rows, cols)), shape=(r1 - r0, n_cols))
            m.sort_indices()
            return m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data

        return cls(exchange, n_users, n_items, user_counts, item_counts,
                   owned(0, ub, n_users, n_items), owned(1, ib, n_items, n_users), ub, ib)

    # ------------------------------------------------------------------ blocks
    @property
    def user_block(self) -> slice:
        return slice(int(self.user_bounds[self.rank]), int(self.user_bounds[self.rank + 1]))

    @property
    def item_block(self) -> slice:
        return slice(int(self.item_bounds[self.rank]), int(self.item_bounds[self.rank + 1]))

    @property
    def local_nnz(self) -> int:
        return int(self.user_indptr[-1])

    def share(self, local: np.ndarray, side: str, full: np.ndarray | None = None,
              mode: str = "allgather") -> np.ndarray:
        """Make the owned rows of ``side`` ("user" or "item") known where they are needed.

        ``mode="allgather"``: every rank gets every row (``Allgatherv``), returned as a new
        full array. ``mode="needed"``: only the rows that another rank's ratings touch are
        sent to it (``Alltoallv``) and written into ``full`` (this rank's copy of the whole
        array; rows no rating of this rank touches are left as they were).
        """
        bounds = self.user_bounds if side == "user" else self.item_bounds
        if mode == "allgather":
            return self.exchange.allgather_rows(local, bounds)
        if mode != "needed":
            raise ValueError(f"mode must be one of {EXCHANGES}, got {mode!r}")
        send_rows, send_counts, recv_rows = self._needed_plan(side)
        block = self.user_block if side == "user" else self.item_block
        got = self.exchange.alltoallv(local[send_rows - block.start], send_counts)
        full[block] = local
        full[recv_rows] = got
        return full

    def _needed_plan(self, side: str):
        """Which owned rows go to which rank, and which rows arrive (cached)."""
        if side not in self._needed:
            # the rows of `side` this rank's ratings touch: items of its users' ratings
            # (needed to solve its users) or users of its items' ratings
            touched = np.unique(self.user_items if side == "item" else self.item_users)
            bounds = self.item_bounds if side == "item" else self.user_bounds
            owner = np.searchsorted(bounds, touched, side="right") - 1
            remote = touched[owner != self.rank]
            wanted = self.exchange.allgather_objects(remote)  # row ids each rank needs
            block = self.item_block if side == "item" else self.user_block
            send = [w[(w >= block.start) & (w < block.stop)] for w in wanted]
            send[self.rank] = send[self.rank][:0]
            send_rows = np.concatenate(send).astype(np.int64)
            send_counts = np.array([len(s) for s in send], dtype=np.int64)
            recv = [remote[(remote >= bounds[r]) & (remote < bounds[r + 1])]
                    for r in range(self.size)]
            self._needed[side] = (send_rows, send_counts, np.concatenate(recv).astype(np.int64))
        return self._needed[side]
