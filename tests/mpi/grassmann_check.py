"""Run under mpiexec: the Grassmann family and DANE with one worker per rank equal the
single-process fits (RGD, RAGD, R-SVRG to summation order; DANE to the in-process
simulation with as many workers as ranks)."""

import numpy as np

import mflib
from mflib.data import make_low_rank
from mflib.distributed.comm import world

comm = world()
size = comm.Get_size()
rm, _ = make_low_rank(80, 60, 3, 0.35, noise=0.1, random_state=3)
common = dict(n_factors=3, regularization=0.05, random_state=0, n_jobs=1, tol=0.0)
cases = [(mflib.RGD, dict(max_iter=8), 1e-10), (mflib.RAGD, dict(max_iter=6), 1e-10),
         (mflib.RSVRG, dict(max_iter=3, batch_size=8), 1e-9),
         (mflib.DANE, dict(max_iter=4, local_steps=2), 1e-10),
         (mflib.EuclideanGD, dict(max_iter=10), 1e-9)]
for cls, params, rtol in cases:
    alone_params = dict(params, n_workers=size) if cls is mflib.DANE else params
    alone = cls(**common, **alone_params).fit(rm)
    with mflib.config_context(comm=comm):
        together = cls(**common, **params).fit(rm)
    np.testing.assert_allclose(together.history_["objective"], alone.history_["objective"],
                               rtol=rtol, err_msg=cls.__name__)
    np.testing.assert_allclose(together.predict(rm), alone.predict(rm), rtol=rtol, atol=1e-10,
                               err_msg=cls.__name__)
    assert together.user_factors_.shape == alone.user_factors_.shape
print(f"rank {comm.Get_rank()}: grassmann ok")
