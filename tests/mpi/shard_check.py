"""Run under mpiexec: the shards of all ranks are exactly the single-process matrix."""

import sys

import numpy as np

from mflib.data import load_dataset, load_predefined_split
from mflib.distributed.comm import Exchange, world
from mflib.distributed.shard import read_shard, read_split_shard

ex = Exchange(world())
name, split = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
if split:  # train and test of a predefined split, concatenated in file order
    parts = read_split_shard(name, split, exchange=ex)
    whole_split = load_predefined_split(name, split)
    n_train = whole_split.train.nnz
    whole = whole_split.train.take(np.arange(0))  # the maps
    rows = np.arange(n_train + whole_split.test.nnz)[ex.rank::ex.size]
    for part, ref, sel in ((parts.train, whole_split.train, rows[rows < n_train]),
                           (parts.test, whole_split.test, rows[rows >= n_train] - n_train)):
        np.testing.assert_array_equal(part.user_ids, ref.user_ids)
        np.testing.assert_array_equal(part.items, ref.items[sel])
        np.testing.assert_array_equal(part.ratings, ref.ratings[sel])
    print(f"rank {ex.rank}: split {split} ok")
    sys.exit(0)
shard = read_shard(name, exchange=ex)
whole = load_dataset(name)
np.testing.assert_array_equal(shard.user_ids, whole.user_ids)
np.testing.assert_array_equal(shard.item_ids, whole.item_ids)
rows = np.arange(whole.nnz)[ex.rank::ex.size]
np.testing.assert_array_equal(shard.users, whole.users[rows])
np.testing.assert_array_equal(shard.items, whole.items[rows])
np.testing.assert_array_equal(shard.ratings, whole.ratings[rows])
print(f"rank {ex.rank}: {shard.nnz} of {whole.nnz} ratings, ok")
