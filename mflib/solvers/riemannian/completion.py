"""Matrix completion by variable projection on the Grassmann manifold.

For ``U`` with orthonormal columns (items x k) the user factors are eliminated in
closed form, one ridge problem per user on the centred ratings ``r~`` (users x items,
observed set Omega, ``N = |Omega|``):

    w_u(U) = (U_Iu^T U_Iu + lam I)^-1 U_Iu^T r~_u
    f(U)   = 1/(2N) sum_u ( |r~_u - U_Iu w_u|^2 + lam |w_u|^2 )      (a sum over users)

(``lam`` is the estimators' ``regularization``; before mflib 0.2 the penalty was
``lam^2``, so an old ``regularization=a`` is the new ``a**2``.)

``f(U O) = f(U)`` for orthogonal ``O``, so f lives on Gr(n_items, k). Because ``w_u``
minimises the bracket, the envelope theorem gives the Euclidean gradient without
differentiating ``w_u``:  ``G = -(1/N) E^T W`` where ``E`` is the sparse residual
matrix (users x items, same pattern as the ratings) -- one sparse-times-dense product.
The Riemannian gradient is ``(I - U U^T) G``.

The user solves use :func:`mflib.kernels.ridge.ridge_rows` (batched Cholesky, numba).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ...execution import kernel_threads
from ...kernels import pair_dots
from ...kernels.ridge import ridge_rows
from ...validation import check_choice, check_positive, check_positive_int

SAMPLINGS = ("uniform", "count", "poisson")


def _threads(n_ratings: int):
    """One thread for small jobs (the cut-off lives in :mod:`mflib.execution`)."""
    return kernel_threads("variable_projection", n_ratings)


@dataclass
class Evaluation:
    """f at one point with what its gradient needs: ``value``, the eliminated user
    factors ``user_factors`` (n_users, k) and the residuals (CSR data order, (nnz,))."""

    value: float
    user_factors: np.ndarray
    residuals: np.ndarray


class VariableProjectionProblem:
    """f(U), its gradients and per-user-minibatch stochastic gradients.

    Parameters
    ----------
    matrix : scipy.sparse.csr_matrix, shape (n_users, n_items)
        Centred ratings (explicit entries are the observed set; zeros count as ratings).
    regularization : float
        ``lam``, the user ridge penalty (must be > 0 so that every user's system is
        positive definite, whatever its number of ratings).
    manifold : Grassmann
        Gr(n_items, k).
    """

    def __init__(self, matrix: sp.csr_matrix, regularization: float, manifold):
        if not sp.isspmatrix_csr(matrix):
            raise TypeError(f"matrix must be a scipy CSR matrix, got {type(matrix).__name__}")
        if matrix.shape[1] != manifold.n:
            raise ValueError(
                f"matrix has {matrix.shape[1]} items but the manifold is Gr({manifold.n}, "
                f"{manifold.k}); they must agree")
        if matrix.nnz == 0:
            raise ValueError("the rating matrix is empty")
        self.matrix = matrix
        self.lam = check_positive(regularization, "regularization")
        self.ridge = self.lam
        self.manifold = manifold
        self.n_users, self.n_items = matrix.shape
        self.nnz = int(matrix.nnz)
        self.user_counts = np.diff(matrix.indptr)
        self.active_users = np.flatnonzero(self.user_counts > 0)
        # row index of every stored entry (CSR order), for per-rating dot products
        self._rows = np.repeat(np.arange(self.n_users, dtype=np.int64), self.user_counts)
        self._indices = matrix.indices.astype(np.int64)

    @property
    def n_active_users(self) -> int:
        """Users with at least one rating: the cost of one full gradient in user-gradients."""
        return int(self.active_users.size)

    # ------------------------------------------------------------------ full problem
    def solve_user_factors(self, U, matrix=None) -> np.ndarray:
        """``w_u`` for every row of ``matrix`` (default: all users): shape (rows, k)."""
        m = self.matrix if matrix is None else matrix
        with _threads(m.nnz):
            return ridge_rows(m.indptr, m.indices, m.data, U, self.ridge)

    def evaluate(self, U) -> Evaluation:
        """f(U) with the user factors and residuals (one pass over the ratings)."""
        W = self.solve_user_factors(U)
        with _threads(self.matrix.nnz):
            residuals = self.matrix.data - pair_dots(W, U, self._rows, self._indices)
        value = 0.5 * (residuals @ residuals + self.ridge * np.sum(W * W)) / self.nnz
        return Evaluation(float(value), W, residuals)

    def cost(self, U) -> tuple[float, Evaluation]:
        """``(f(U), evaluation)``: the signature line searches expect."""
        ev = self.evaluate(U)
        return ev.value, ev

    def euclidean_gradient(self, U, evaluation: Evaluation | None = None) -> np.ndarray:
        """``-(1/N) E^T W`` (envelope theorem), shape (n_items, k)."""
        ev = self.evaluate(U) if evaluation is None else evaluation
        m = self.matrix
        residual_matrix = sp.csr_matrix((ev.residuals, m.indices, m.indptr), shape=m.shape)
        return -(residual_matrix.T @ ev.user_factors) / self.nnz

    def riemannian_gradient(self, U, evaluation: Evaluation | None = None) -> np.ndarray:
        """``(I - U U^T) G``, shape (n_items, k)."""
        return self.manifold.projection(U, self.euclidean_gradient(U, evaluation))

    # ------------------------------------------------------------------ finite sum
    def inclusion_probabilities(self, batch_size: int) -> np.ndarray:
        """``pi_u = min(1, c n_u)`` for the active users, with ``c`` such that
        ``sum pi_u = batch_size`` (``"poisson"`` sampling), shape (n_active_users,).

        Users heavy enough to reach 1 are capped and the rest share what is left of the
        batch in proportion to their counts (solved over the users sorted by count).
        """
        batch_size = min(check_positive_int(batch_size, "batch_size"), self.n_active_users)
        counts = self.user_counts[self.active_users].astype(np.float64)
        ordered = np.sort(counts)[::-1]
        # with the j heaviest users capped: c_j = (b - j) / (sum of the other counts);
        # the right j is the first one whose next user is not pushed over 1 by c_j
        rest = np.cumsum(ordered[::-1])[::-1]  # rest[j] = sum of ordered[j:]
        capped = np.arange(ordered.size)
        scale = (batch_size - capped) / rest
        valid = np.flatnonzero(scale * ordered <= 1.0 + 1e-12)
        c = scale[valid[0]] if valid.size else 1.0 / ordered[-1]
        return np.minimum(1.0, c * counts)

    def sample_users(self, rng, batch_size: int, sampling: str = "uniform"):
        """A minibatch of distinct users and weights making ``sum_b weight_b grad f_(u_b)``
        an unbiased estimate of ``grad f``.

        ``"uniform"``: ``batch_size`` distinct active users, weight ``n_active / batch``.
        ``"count"``: ``batch_size`` draws with replacement with probability
        ``p_u = n_u / N``, each worth ``1 / (batch * p_u)``; a user drawn several times is
        listed once with the summed weight (its gradient is computed once).
        ``"poisson"``: every user is included independently with probability
        ``pi_u = min(1, c n_u)`` (:meth:`inclusion_probabilities`, expected batch size
        ``batch_size``), weight ``1 / pi_u`` (the Horvitz-Thompson estimator). Heavy users
        with ``pi_u = 1`` are always in the batch with weight 1, so they add no variance,
        and no user is drawn twice; the batch size varies from draw to draw.

        Returns
        -------
        users : ndarray of int64, shape (n_batch,), sorted, distinct
        weights : ndarray of float64, shape (n_batch,)
        """
        check_choice(sampling, "sampling", SAMPLINGS)
        batch_size = min(check_positive_int(batch_size, "batch_size"), self.n_active_users)
        if sampling == "uniform":
            users = np.sort(rng.choice(self.active_users, batch_size, replace=False))
            weights = np.full(batch_size, self.n_active_users / batch_size)
        elif sampling == "count":
            p = self.user_counts[self.active_users] / self.nnz
            pick = rng.choice(self.active_users.size, batch_size, replace=True, p=p)
            # duplicates merged: one solve per distinct user, multiplicity in the weight
            pick, multiplicity = np.unique(pick, return_counts=True)
            users = self.active_users[pick]
            weights = multiplicity / (batch_size * p[pick])
        else:
            pi = self._poisson_probabilities(batch_size)
            keep = rng.random(pi.size) < pi
            users, weights = self.active_users[keep], 1.0 / pi[keep]
        return users.astype(np.int64), weights

    def _poisson_probabilities(self, batch_size: int) -> np.ndarray:
        cache = self.__dict__.setdefault("_inclusion_cache", {})
        if batch_size not in cache:
            cache[batch_size] = self.inclusion_probabilities(batch_size)
        return cache[batch_size]

    def batch_riemannian_gradient(self, U, users, weights,
                                  evaluation: Evaluation | None = None) -> np.ndarray:
        """``proj_U( sum_b weights_b * grad_E f_(users_b)(U) )``, shape (n_items, k).

        Costs one ridge solve per listed user (duplicates included), unless
        ``evaluation`` (the full :meth:`evaluate` at this same ``U``) is given: then
        every user's factors and residuals are read from it and nothing is solved (SVRG's
        gradients at its snapshot, whose cost the snapshot's full gradient already paid).
        """
        if len(users) == 0:  # an empty Poisson batch: the estimate is exactly zero
            return self.manifold.zero_vector(U)
        sub = self.matrix[users]
        counts = np.diff(sub.indptr)
        if evaluation is not None:
            W = evaluation.user_factors[users]
            # position of every sub-matrix entry in the full CSR data array
            offsets = self.matrix.indptr[users] - sub.indptr[:-1]
            residuals = evaluation.residuals[np.arange(sub.nnz) + np.repeat(offsets, counts)]
            return self._weighted_gradient(U, sub, W, residuals, weights)
        W = self.solve_user_factors(U, sub)
        rows = np.repeat(np.arange(len(users), dtype=np.int64), counts)
        # minibatches are small: a NumPy gather is cheaper than a parallel-kernel launch
        residuals = sub.data - np.einsum("ij,ij->i", W[rows], U[sub.indices])
        return self._weighted_gradient(U, sub, W, residuals, weights)

    def _weighted_gradient(self, U, sub, W, residuals, weights) -> np.ndarray:
        """``proj_U(-(1/N) E_B^T diag(weights) W_B)`` for a minibatch's residuals."""
        residual_matrix = sp.csr_matrix((residuals, sub.indices, sub.indptr), shape=sub.shape)
        G = -(residual_matrix.T @ (W * weights[:, None])) / self.nnz
        return self.manifold.projection(U, G)

    def user_objectives(self, U) -> np.ndarray:
        """Per-user terms f_u(U) (sum to f(U)), shape (n_users,): a reference for tests."""
        ev = self.evaluate(U)
        sq = np.bincount(self._rows, weights=ev.residuals ** 2, minlength=self.n_users)
        return 0.5 * (sq + self.ridge * np.sum(ev.user_factors ** 2, axis=1)) / self.nnz

    def restrict(self, users) -> VariableProjectionProblem:
        """The same problem on a subset of users (a DANE worker's share): its f is the
        sum of the listed users' terms, still divided by the *global* N."""
        part = VariableProjectionProblem(self.matrix[np.sort(users)], self.lam, self.manifold)
        part.nnz = self.nnz
        return part
