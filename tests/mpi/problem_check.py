"""Run under mpiexec: the distributed variable-projection objective, its gradients and a
minibatch gradient equal the single-process ones (to summation order)."""

import numpy as np

from mflib.data import make_low_rank
from mflib.distributed.comm import Exchange, world
from mflib.distributed.variable_projection import DistributedProblem
from mflib.solvers.riemannian import Grassmann, VariableProjectionProblem

ex = Exchange(world())
rm, _ = make_low_rank(50, 40, 3, 0.4, noise=0.1, bias_scale=0, global_mean=0, random_state=2)
M = rm.to_csr()
manifold = Grassmann(rm.n_items, 3)
one = VariableProjectionProblem(M, 0.1, manifold)
many = DistributedProblem(M, 0.1, manifold, ex)
U = manifold.random_point(np.random.default_rng(0))
a, b = one.evaluate(U), many.evaluate(U)
np.testing.assert_allclose(b.value, a.value, rtol=1e-12)
np.testing.assert_allclose(b.user_factors, a.user_factors, rtol=1e-12, atol=1e-14)
np.testing.assert_allclose(many.riemannian_gradient(U, b), one.riemannian_gradient(U, a),
                           rtol=1e-10, atol=1e-14)
rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
users_a, w_a = one.sample_users(rng_a, 8, "count")
users_b, w_b = many.sample_users(rng_b, 8, "count")
np.testing.assert_array_equal(users_a, users_b)
for ev_a, ev_b in ((None, None), (a, b)):
    np.testing.assert_allclose(many.batch_riemannian_gradient(U, users_b, w_b, ev_b),
                               one.batch_riemannian_gradient(U, users_a, w_a, ev_a),
                               rtol=1e-10, atol=1e-14)
print(f"rank {ex.rank}: problem ok")
