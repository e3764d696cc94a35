"""The variable-projection objective of the Grassmann family across MPI ranks.

f is a sum over users, so each rank holds a contiguous block of users (balanced by
rating count) with their ratings and computes its block's share; the value and the
gradient are summed over ranks (``Allreduce``) and every rank takes the same step from
the same ``U``. The line search therefore sees the global objective, stochastic methods
draw the same minibatch everywhere (the generator and the global counts are the same on
every rank) and sum the sampled users' contributions, and a result differs from one
process's only by the order of the sums (to about 1e-12 relative).
"""

from __future__ import annotations

import numpy as np

from ..kernels import pair_dots
from ..solvers.riemannian.completion import Evaluation, VariableProjectionProblem
from .comm import Exchange
from .partition import balanced_bounds


class DistributedProblem(VariableProjectionProblem):
    """:class:`VariableProjectionProblem` on this rank's block of users.

    ``matrix`` is the whole centred CSR matrix (every rank builds it); the rank keeps its
    rows as ``self.matrix`` and the global sizes (``n_users``, ``nnz``, ``user_counts``,
    ``active_users``) for sampling and scaling. Evaluations carry the full user factors
    (gathered) and this rank's residuals.
    """

    def __init__(self, matrix, regularization: float, manifold, exchange: Exchange):
        counts = np.diff(matrix.indptr)
        bounds = balanced_bounds(counts, exchange.size)
        self.exchange, self.bounds = exchange, bounds
        self.block = slice(int(bounds[exchange.rank]), int(bounds[exchange.rank + 1]))
        self.global_matrix = matrix
        local = matrix[self.block]
        local.sort_indices()
        if not local.nnz:
            raise ValueError(f"rank {exchange.rank} of {exchange.size} got no ratings: run on "
                             f"fewer ranks than the {np.count_nonzero(counts)} users with "
                             "ratings")
        super().__init__(local, regularization, manifold)
        self.n_users = matrix.shape[0]
        self.nnz = int(matrix.nnz)
        self.user_counts = counts
        self.active_users = np.flatnonzero(counts > 0)

    def _local(self, evaluation: Evaluation | None) -> Evaluation | None:
        if evaluation is None:
            return None
        return Evaluation(evaluation.value, evaluation.user_factors[self.block],
                          evaluation.residuals)

    def solve_user_factors(self, U, matrix=None) -> np.ndarray:
        """Every user's factors (gathered from the ranks), or the rows of ``matrix``."""
        if matrix is not None:
            return super().solve_user_factors(U, matrix)
        return self.exchange.allgather_rows(super().solve_user_factors(U), self.bounds)

    def evaluate(self, U) -> Evaluation:
        local = super().solve_user_factors(U)
        residuals = self.matrix.data - pair_dots(local, U, self._rows, self._indices)
        share = 0.5 * (residuals @ residuals + self.ridge * np.sum(local * local)) / self.nnz
        W = self.exchange.allgather_rows(local, self.bounds)
        return Evaluation(float(self.exchange.allreduce_sum(share)), W, residuals)

    def euclidean_gradient(self, U, evaluation: Evaluation | None = None) -> np.ndarray:
        ev = self.evaluate(U) if evaluation is None else evaluation
        return self.exchange.allreduce_sum(super().euclidean_gradient(U, self._local(ev)))

    def batch_riemannian_gradient(self, U, users, weights,
                                  evaluation: Evaluation | None = None) -> np.ndarray:
        mine = (users >= self.block.start) & (users < self.block.stop)
        part = super().batch_riemannian_gradient(U, users[mine] - self.block.start,
                                                 weights[mine], self._local(evaluation))
        return self.exchange.allreduce_sum(part)

    def worker_problem(self) -> VariableProjectionProblem:
        """This rank's users as a plain (non-summing) problem scaled by the global N: a
        DANE worker's share, ``f_j``."""
        part = VariableProjectionProblem(self.matrix, self.lam, self.manifold)
        part.nnz = self.nnz
        return part
