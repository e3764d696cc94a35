"""The variable-projection objective with its heavy work on a GPU (``device="gpu"``).

``f(U)``, the user factors ``W(U)`` and the Euclidean gradient ``-(1/N) E^T W`` are the
costs that grow with the ratings: here the users' ridge solves run through
:func:`mflib.kernels.ridge_xp.ridge_rows_xp` (bucketed batched solves), the residuals
by chunked gathers and the gradient by a scatter-add over the ratings, all on ``xp``'s
device. ``U`` (items x k) and the manifold steps stay on the host: they are small.
Minibatch gradients of the stochastic methods use the host path of the base class (a
batch is far too small to be worth a transfer). Written against the array module, so
the logic runs with NumPy where no GPU exists (:func:`mflib.backend.emulated_gpu`).
"""

from __future__ import annotations

import numpy as np

from ...backend import scatter_add, to_numpy
from ...execution import GPU_CHUNK
from ...kernels.ridge_xp import BucketPlan, ridge_rows_xp
from .completion import Evaluation, VariableProjectionProblem


class DeviceProblem(VariableProjectionProblem):
    """:class:`VariableProjectionProblem` whose full evaluations run on ``xp``'s device."""

    def __init__(self, matrix, regularization: float, manifold, xp):
        super().__init__(matrix, regularization, manifold)
        self.xp = xp
        self._plan = BucketPlan(matrix.indptr.astype(np.int64), manifold.k)
        self._indices = matrix.indices.astype(np.int64)
        self._rows_d = xp.asarray(self._rows)
        self._cols_d = xp.asarray(self._indices)
        self._data_d = xp.asarray(matrix.data)

    def _user_factors_d(self, U_d):
        W_d, _ = ridge_rows_xp(self.xp, self._plan, self._indices, self._data_d, U_d,
                               self.ridge)
        return W_d

    def solve_user_factors(self, U, matrix=None) -> np.ndarray:
        if matrix is not None:  # a minibatch: the host path
            return super().solve_user_factors(U, matrix)
        return to_numpy(self._user_factors_d(self.xp.asarray(U)))

    def _residuals_d(self, W_d, U_d):
        xp = self.xp
        out = xp.empty_like(self._data_d)
        for s in range(0, out.shape[0], GPU_CHUNK):
            rows, cols = self._rows_d[s:s + GPU_CHUNK], self._cols_d[s:s + GPU_CHUNK]
            out[s:s + GPU_CHUNK] = self._data_d[s:s + GPU_CHUNK] - xp.sum(
                W_d[rows] * U_d[cols], axis=1)
        return out

    def evaluate(self, U) -> Evaluation:
        xp = self.xp
        U_d = xp.asarray(U)
        W_d = self._user_factors_d(U_d)
        res_d = self._residuals_d(W_d, U_d)
        value = 0.5 * float(xp.dot(res_d, res_d) + self.ridge * xp.sum(W_d * W_d)) / self.nnz
        ev = Evaluation(value, to_numpy(W_d), to_numpy(res_d))
        self._last = (ev, W_d, res_d)  # the device copies, for the gradient at this point
        return ev

    def euclidean_gradient(self, U, evaluation: Evaluation | None = None) -> np.ndarray:
        ev = self.evaluate(U) if evaluation is None else evaluation
        xp = self.xp
        last = getattr(self, "_last", None)
        if last is not None and last[0] is ev:
            W_d, res_d = last[1], last[2]
        else:
            W_d, res_d = xp.asarray(ev.user_factors), xp.asarray(ev.residuals)
        G = xp.zeros((self.n_items, W_d.shape[1]), dtype=W_d.dtype)
        for s in range(0, res_d.shape[0], GPU_CHUNK):
            rows, cols = self._rows_d[s:s + GPU_CHUNK], self._cols_d[s:s + GPU_CHUNK]
            scatter_add(G, cols, res_d[s:s + GPU_CHUNK, None] * W_d[rows])
        return -to_numpy(G) / self.nnz
