"""Run under mpiexec: the shard-built layout equals the full one on every rank."""

import numpy as np

from mflib.data import RatingMatrix, make_low_rank
from mflib.distributed.comm import Exchange, world
from mflib.distributed.layout import DistributedLayout

comm = world()
ex = Exchange(comm)
rm, _ = make_low_rank(80, 60, 3, 0.3, random_state=0)
full = DistributedLayout.from_full(rm, ex)
rows = np.arange(rm.nnz)[ex.rank::ex.size]  # a round-robin shard with the global id maps
shard = RatingMatrix(rm.users[rows], rm.items[rows], rm.ratings[rows], rm.user_ids, rm.item_ids)
from_shard = DistributedLayout.from_shard(shard, ex)
for name in ("user_indptr", "user_items", "ratings_csr", "item_indptr", "item_users",
             "ratings_csc", "user_bounds", "item_bounds", "user_counts", "item_counts"):
    np.testing.assert_array_equal(getattr(full, name), getattr(from_shard, name), err_msg=name)
Q = np.arange(rm.n_items * 2, dtype=float).reshape(-1, 2)
gathered = full.share(Q[full.item_block], "item")
np.testing.assert_array_equal(gathered, Q)
partial = np.full_like(Q, -1.0)
partial = full.share(Q[full.item_block], "item", full=partial, mode="needed")
touched = np.unique(full.user_items)
np.testing.assert_array_equal(partial[touched], Q[touched])
print(f"rank {ex.rank}: ok ({full.local_nnz} local ratings, {ex.bytes_sent} bytes sent)")
