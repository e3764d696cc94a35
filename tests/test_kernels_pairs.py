"""pair_dots against NumPy, on both sides of the parallel threshold."""

from __future__ import annotations

import numpy as np
import pytest

from mflib.execution import SERIAL_BELOW
from mflib.kernels import pairs


@pytest.mark.parametrize("n", [0, 7, SERIAL_BELOW["pair_dots"] + 3])
def test_pair_dots_matches_numpy(n):
    rng = np.random.default_rng(n)
    P, Q = rng.normal(size=(50, 6)), rng.normal(size=(40, 6))
    u, i = rng.integers(0, 50, n), rng.integers(0, 40, n)
    np.testing.assert_allclose(pairs.pair_dots(P, Q, u, i), np.einsum("nk,nk->n", P[u], Q[i]),
                               rtol=1e-12, atol=1e-12)
