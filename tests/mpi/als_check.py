"""Run under mpiexec: distributed ALS gives bit-identical factors to one process (biases,
Cholesky and CG, the three regularisation conventions), every rank holds the full model,
and a sharded fit (each rank reads only its shard) equals the whole-data fit."""

import sys

import numpy as np

import mflib
from mflib.data import make_low_rank
from mflib.distributed.comm import world

comm = world()
rm, _ = make_low_rank(90, 70, 3, 0.3, noise=0.1, random_state=0)
cases = [dict(), dict(solver="cg", cg_steps=2), dict(regularization_scale="weighted"),
         dict(regularization_scale="course", use_bias=False), dict(dtype="float32")]
for params in cases:
    kw = dict(n_factors=4, max_iter=4, tol=0.0, random_state=1, n_jobs=1, **params)
    alone = mflib.ALS(**kw).fit(rm)
    with mflib.config_context(comm=comm):
        together = mflib.ALS(**kw).fit(rm)
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        a, b = getattr(alone, name), getattr(together, name)
        assert (a is None and b is None) or np.array_equal(a, b), (params, name)
    np.testing.assert_allclose(together.history_["objective"], alone.history_["objective"],
                               rtol=1e-12)
    assert together.history_["bytes_sent"][0] > 0
if len(sys.argv) > 1:  # the sharded path on a registry dataset
    from mflib.data import load_predefined_split
    from mflib.distributed.comm import Exchange
    from mflib.distributed.shard import read_split_shard

    whole = load_predefined_split(sys.argv[1], sys.argv[2])
    shard = read_split_shard(sys.argv[1], sys.argv[2], exchange=Exchange(comm))
    kw = dict(n_factors=5, max_iter=3, random_state=0, n_jobs=1)
    alone = mflib.ALS(**kw).fit(whole.train)
    with mflib.config_context(comm=comm):
        together = mflib.ALS(**kw).fit(shard.train)
    np.testing.assert_allclose(together.user_factors_, alone.user_factors_, rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_array_equal(together.user_counts_, alone.user_counts_)
    np.testing.assert_allclose(together.predict(whole.test), alone.predict(whole.test),
                               rtol=1e-9)
print(f"rank {comm.Get_rank()}: als ok")
