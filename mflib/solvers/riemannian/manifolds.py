"""The Grassmann manifold Gr(n, k) of k-dimensional subspaces of R^n.

A point is represented by an (n, k) matrix ``U`` with orthonormal columns; ``U`` and
``U @ O`` (``O`` orthogonal) are the same point. Tangent vectors at ``U`` are the
*horizontal* (n, k) matrices ``xi`` with ``U.T @ xi = 0``; the metric is the Frobenius
inner product. The geometry knows nothing about any cost function.

References: Edelman, Arias & Smith (1998), "The geometry of algorithms with
orthogonality constraints"; Absil, Mahony & Sepulchre (2008), "Optimization Algorithms
on Matrix Manifolds"; Bendokat, Zimmermann & Absil (2024), "A Grassmann manifold
handbook".
"""

from __future__ import annotations

import numpy as np

from ...validation import check_choice, check_positive_int

RETRACTIONS = ("qr", "polar", "cayley")
#: largest ratio of R's diagonal entries for which the QR retraction uses Cholesky QR
_CHOLESKY_QR_COND = 100.0


class Grassmann:
    """Gr(n, k): orthonormal (n, k) matrices modulo right multiplication by O(k).

    Parameters
    ----------
    n : int
        Ambient dimension (number of items in matrix completion).
    k : int
        Subspace dimension (the rank), ``1 <= k <= n``.
    retraction : {"qr", "polar", "cayley"}, default "qr"
        The map used by :meth:`retraction` when no method is passed.
    """

    def __init__(self, n: int, k: int, retraction: str = "qr"):
        self.n = check_positive_int(n, "n")
        self.k = check_positive_int(k, "k")
        if k > n:
            raise ValueError(f"the rank k={k} cannot exceed the ambient dimension n={n}")
        self.default_retraction = check_choice(retraction, "retraction", RETRACTIONS)

    def __repr__(self) -> str:
        return f"Grassmann(n={self.n}, k={self.k}, retraction={self.default_retraction!r})"

    @property
    def dim(self) -> int:
        """Manifold dimension k (n - k)."""
        return self.k * (self.n - self.k)

    # ------------------------------------------------------------------ metric
    def inner(self, point, a, b) -> float:
        """Riemannian (Frobenius) inner product of tangent vectors ``a`` and ``b``."""
        return float(np.vdot(a, b))

    def norm(self, point, a) -> float:
        return float(np.linalg.norm(a))

    # ------------------------------------------------------------------ tangent space
    def projection(self, point, vector):
        """Orthogonal projection of an ambient (n, k) matrix onto the tangent space:
        ``(I - U U^T) Z`` (turns a Euclidean gradient into the Riemannian one)."""
        return vector - point @ (point.T @ vector)

    def transport(self, point_from, point_to, vector):
        """Vector transport by projection: moves ``vector`` (tangent at ``point_from``)
        to the tangent space at ``point_to``."""
        return self.projection(point_to, vector)

    def zero_vector(self, point):
        return np.zeros_like(point)

    # ------------------------------------------------------------------ points
    def random_point(self, rng) -> np.ndarray:
        """A uniformly distributed subspace (QR of a Gaussian matrix), from ``rng``."""
        q, r = np.linalg.qr(rng.standard_normal((self.n, self.k)))
        return q * np.sign(np.where(np.diag(r) == 0, 1.0, np.diag(r)))

    def random_tangent(self, point, rng) -> np.ndarray:
        """A random unit-norm tangent vector at ``point``."""
        v = self.projection(point, rng.standard_normal((self.n, self.k)))
        return v / np.linalg.norm(v)

    # ------------------------------------------------------------------ retractions
    def retraction(self, point, vector, method: str | None = None):
        """Move from ``point`` along tangent ``vector``; first-order agreement with
        :meth:`exp`. ``method`` is "qr", "polar" or "cayley" (default: the manifold's).
        """
        method = check_choice(method or self.default_retraction, "retraction", RETRACTIONS)
        if method == "qr":
            return self._retract_qr(point, vector)
        if method == "polar":
            return self._retract_polar(point, vector)
        return self._retract_cayley(point, vector)

    @staticmethod
    def _retract_qr(point, vector):
        # The Q factor of U + xi with a positive diagonal of R (the continuous choice).
        # For a tangent xi, (U + xi)^T (U + xi) = I + xi^T xi has every eigenvalue >= 1,
        # so Cholesky QR is as accurate as Householder here: R^T R = Y^T Y from a k x k
        # Cholesky, Q = Y R^-1; no LAPACK call on the n x k matrix (numpy's qr makes two,
        # geqrf and orgqr, whose threaded BLAS inside them is what made a call cost 51 ms
        # beside numba's threads, see time_retractions)
        y = point + vector
        try:
            lower = np.linalg.cholesky(y.T @ y)
        except np.linalg.LinAlgError:
            lower = None
        diagonal = None if lower is None else np.abs(np.diag(lower))
        # Cholesky QR loses orthonormality like cond(Y)^2 eps; from cond(R) ~ 100 on
        # (a step with |xi| >~ 100) Householder QR takes over
        if diagonal is not None and diagonal.max() <= _CHOLESKY_QR_COND * diagonal.min():
            return y @ np.linalg.inv(lower).T
        q, r = np.linalg.qr(y)
        return q * np.sign(np.where(np.diag(r) == 0, 1.0, np.diag(r)))

    @staticmethod
    def _retract_polar(point, vector):
        # (U + xi) (I + xi^T xi)^(-1/2): the closest orthonormal matrix to U + xi;
        # computed from the k x k Gram matrix of U + xi (no n x n work)
        y = point + vector
        evals, evecs = np.linalg.eigh(y.T @ y)
        if evals[0] > 1e-8 * evals[-1]:
            return y @ ((evecs / np.sqrt(evals)) @ evecs.T)
        # a huge step (|xi| >> 1) drowns the identity in the Gram matrix, whose smallest
        # eigenvalues then round to 0: the SVD of U + xi gives the same factor stably
        left, _, right_t = np.linalg.svd(y, full_matrices=False)
        return left @ right_t

    @staticmethod
    def _retract_cayley(point, vector):
        # Cayley transform Y = (I - A/2)^(-1) (I + A/2) U of the skew n x n matrix
        # A = xi U^T - U xi^T = L R^T with L = [xi, U], R = [U, -xi] (rank <= 2k).
        # Woodbury: (I - L R^T / 2)^(-1) = I + L (I_2k - R^T L / 2)^(-1) R^T / 2,
        # so everything costs O(n k^2); Y is orthonormal because A is skew.
        left = np.hstack([vector, point])
        right = np.hstack([point, -vector])
        z = point + 0.5 * (left @ (right.T @ point))
        small = np.eye(left.shape[1]) - 0.5 * (right.T @ left)
        return z + 0.5 * left @ np.linalg.solve(small, right.T @ z)

    # ------------------------------------------------------------------ exact maps
    def exp(self, point, vector):
        """Exponential map: ``U V cos(S) V^T + Q sin(S) V^T`` for the thin SVD
        ``xi = Q S V^T`` (the geodesic from ``U`` with initial velocity ``xi``)."""
        q, s, vt = np.linalg.svd(vector, full_matrices=False)
        return (point @ vt.T) * np.cos(s) @ vt + (q * np.sin(s)) @ vt

    def log(self, point, other):
        """Logarithm map: the tangent ``xi`` at ``point`` with ``exp(point, xi)`` spanning
        the same subspace as ``other`` (principal angles below pi/2).

        Uses ``M = (I - U U^T) Y (U^T Y)^(-1) = Q S V^T`` and ``xi = Q arctan(S) V^T``.
        """
        uty = point.T @ other
        try:
            m = np.linalg.solve(uty.T, (other - point @ uty).T).T
        except np.linalg.LinAlgError as exc:
            raise ValueError(
                "log is undefined: the two subspaces have a principal angle of pi/2 "
                "(U^T Y is singular); they are beyond the injectivity radius"
            ) from exc
        q, s, vt = np.linalg.svd(m, full_matrices=False)
        return (q * np.arctan(s)) @ vt

    def principal_angles(self, point, other) -> np.ndarray:
        """Principal angles (ascending) between the two subspaces, accurate for small
        angles too (arcsin for the small ones, arccos for the large ones)."""
        cos = np.linalg.svd(point.T @ other, compute_uv=False)
        sin = np.linalg.svd(other - point @ (point.T @ other), compute_uv=False)[::-1]
        cos = np.clip(cos, 0.0, 1.0)
        sin = np.clip(sin, 0.0, 1.0)
        return np.sort(np.where(cos > np.sqrt(0.5), np.arcsin(sin), np.arccos(cos)))

    def dist(self, point, other) -> float:
        """Geodesic distance: the 2-norm of the principal angles."""
        return float(np.linalg.norm(self.principal_angles(point, other)))

    def chordal_dist2(self, point, other) -> float:
        """Squared projection (chordal) distance ``k - |U^T Y|_F^2 = sum sin^2(theta)``:
        smooth everywhere, equal to ``dist^2`` to second order."""
        return float(self.k - np.sum((point.T @ other) ** 2))

    def same_subspace(self, a, b, atol: float = 1e-8) -> bool:
        """True when ``a`` and ``b`` span the same subspace (up to ``atol``)."""
        return bool(np.linalg.norm(a @ (a.T @ b) - b) <= atol * max(1.0, np.linalg.norm(b)))


def time_retractions(manifold: Grassmann, rng, n_calls: int = 20, step: float = 0.5):
    """Seconds per call of each retraction and of ``exp`` on random unit tangent
    vectors scaled by ``step``, with the orthonormality error and the distance to
    ``exp`` (the first-order agreement) of the last call.

    The calls run with one BLAS thread, as inside every fit
    (:func:`mflib.execution.single_threaded_blas`): after a fit, numba's OpenMP workers
    still spin for a while, and a LAPACK call that starts BLAS threads beside them ran
    hundreds of times slower (numpy's QR of a 1682 x 10 matrix: 52 ms instead of 0.17 ms,
    while the small products of the polar retraction stayed single-threaded and fast).

    Returns
    -------
    pandas.DataFrame, one row per map.
    """
    import pandas as pd  # noqa: PLC0415

    from ...execution import single_threaded_blas  # noqa: PLC0415

    with single_threaded_blas():
        return pd.DataFrame(_time_maps(manifold, rng, n_calls, step))


def _time_maps(manifold, rng, n_calls, step) -> list[dict]:
    import time  # noqa: PLC0415

    U = manifold.random_point(rng)
    xis = [step * manifold.random_tangent(U, rng) for _ in range(check_positive_int(n_calls,
                                                                                    "n_calls"))]
    rows = []
    for name in (*RETRACTIONS, "exp"):
        move = manifold.exp if name == "exp" else (
            lambda p, v, _m=name: manifold.retraction(p, v, _m))
        move(U, xis[0])  # warm-up (first LAPACK call)
        t0 = time.perf_counter()
        for xi in xis:
            Y = move(U, xi)
        seconds = (time.perf_counter() - t0) / n_calls
        rows.append({"map": name, "ms_per_call": 1e3 * seconds,
                     "orthonormality_error": float(np.linalg.norm(Y.T @ Y - np.eye(manifold.k))),
                     "dist_to_exp": manifold.dist(Y, manifold.exp(U, xis[-1]))})
    return rows
