"""Run under mpiexec: rank 1 fails in the middle of a distributed fit; every rank must
end (MPI_Abort) with the failing rank's message, not wait forever in a collective."""

import mflib
from mflib.data import make_low_rank
from mflib.distributed.comm import world

comm = world()


def fail_on_rank_1(iteration, metrics, model):
    if comm.Get_rank() == 1 and iteration == 2:
        raise RuntimeError("disk full on rank 1 (a planted failure)")


rm, _ = make_low_rank(60, 50, 2, 0.3, random_state=0)
with mflib.config_context(comm=comm):
    mflib.ALS(n_factors=2, max_iter=50, tol=0.0, n_jobs=1,
              callbacks=[fail_on_rank_1]).fit(rm)
print(f"rank {comm.Get_rank()}: finished, which it must not")
