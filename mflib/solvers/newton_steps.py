"""The pieces of a Newton-type step: truncated conjugate gradients with a
negative-curvature exit, the forcing terms of inexact Newton, and three ways of making a
dense Hessian positive definite (eigenvalue shift, Cholesky with a multiple of the
identity, Gill-Murray-Wright modified Cholesky). Used by :mod:`mflib.solvers.second_order`;
independent of the objective."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# ====================================================================== conjugate gradients
@dataclass
class CGResult:
    """A (truncated) conjugate-gradient solve of ``A z = -g``."""

    direction: np.ndarray
    iterations: int
    negative_curvature: bool
    relative_residual: float


def truncated_cg(apply, gradient, forcing: float, max_iter: int, precondition=None,
                 ) -> CGResult:
    """Preconditioned CG on ``A z = -g`` from ``z = 0``, stopped when
    ``|A z + g| <= forcing |g|``, after ``max_iter`` products, or at the first direction
    of non-positive curvature ``p^T A p <= 0``.

    At negative curvature the iterate so far is returned (a descent direction, since
    every CG iterate of a positive-definite section decreases the quadratic model); if
    it comes at the first direction, the preconditioned steepest-descent direction
    ``-M^-1 g`` is returned (Nocedal & Wright, Algorithm 7.1, with a preconditioner).
    """
    g_norm = float(np.linalg.norm(gradient))
    z = np.zeros_like(gradient)
    r = gradient.copy()  # residual A z + g
    y = precondition(r) if precondition is not None else r.copy()
    p = -y
    ry = float(r @ y)
    target = forcing * g_norm
    for j in range(max_iter):
        Ap = apply(p)
        curvature = float(p @ Ap)
        if not curvature > 0:
            if j == 0:
                return CGResult(p, 1, True, 1.0)
            return CGResult(z, j + 1, True, float(np.linalg.norm(r)) / g_norm)
        alpha = ry / curvature
        z += alpha * p
        r += alpha * Ap
        r_norm = float(np.linalg.norm(r))
        if r_norm <= target:
            return CGResult(z, j + 1, False, r_norm / g_norm)
        y = precondition(r) if precondition is not None else r.copy()
        ry_new = float(r @ y)
        p = -y + (ry_new / ry) * p
        ry = ry_new
    return CGResult(z, max_iter, False, float(np.linalg.norm(r)) / g_norm)


# ====================================================================== Hessian modification
def eigenvalue_shift_direction(H, g, floor: float) -> tuple[np.ndarray, float, float]:
    """``d = -(H + tau I)^-1 g`` with the smallest eigenvalue of ``H + tau I`` equal to
    ``max(delta, |lambda_min(H)|)`` whenever ``lambda_min < delta``, and ``tau = 0``
    otherwise: ``tau = max(0, max(delta, -lambda_min) - lambda_min)``,
    ``delta = floor * max |lambda(H)|``. Returns ``(d, tau, lambda_min)``.

    Shifting only to ``delta`` (the textbook minimum) leaves an eigenvalue near 0 along
    the most negative direction, and ``d`` is then huge along it: from a random start on
    this objective (a saddle, where the residual cross-terms dominate ``H``) the line
    search needs steps of 1e-5 and Newton stalls. Mirroring the most negative eigenvalue
    bounds the step along it by ``|g| / |lambda_min|``; near a minimiser with a
    positive-definite Hessian ``tau = 0`` and the step is Newton's.
    """
    w, V = np.linalg.eigh(H)
    delta = floor * max(float(np.abs(w).max()), 1e-300)
    lam_min = float(w[0])
    tau = max(0.0, max(delta, -lam_min) - lam_min)
    d = -(V @ ((V.T @ g) / (w + tau)))
    return d, tau, lam_min


def cholesky_shift_direction(H, g, floor: float) -> tuple[np.ndarray, float, int]:
    """``d = -(H + tau I)^-1 g`` with ``tau`` found by Cholesky attempts, no
    eigendecomposition (Nocedal & Wright, Algorithm 3.3, "Cholesky with added multiple
    of the identity"): ``tau = 0`` if ``H`` factorises with no pivot below ``floor``
    times the largest, else ``tau`` starts at ``max(delta, -min H_ii + delta)``
    (``delta = floor * max |H_ii|``) and grows tenfold until ``H + tau I`` factorises.

    The last failure ``tau_f < -lambda_min <= tau`` brackets the smallest eigenvalue;
    two geometric bisections narrow it to ``tau / tau_f ~ 1.8`` and the shift used is
    ``2 tau - tau_f``, so that the smallest eigenvalue of the shifted matrix lies in
    ``[tau - tau_f, 2 (tau - tau_f))``, between about 0.4 and 1.6 times
    ``|lambda_min|`` (as :func:`eigenvalue_shift_direction` mirrors it), instead of
    anywhere near 0. Starting at ``delta`` (not N&W's ``1e-3``) keeps the shift negligible near a
    minimiser whose Hessian is only semi-definite (the rotations ``P O, Q O`` of the
    rank-k model leave f unchanged). Returns ``(d, tau, number of factorisations)``.
    """
    from scipy.linalg import LinAlgError, cho_solve, cholesky  # noqa: PLC0415

    diag = np.diag(H)
    delta = floor * max(float(np.abs(diag).max()), 1e-300)
    eye = np.eye(len(g))
    tau = 0.0 if diag.min() > 0 else delta - float(diag.min())
    failed, attempts = None, 0
    while True:
        attempts += 1
        try:
            factor = cholesky(H + tau * eye, lower=True)
        except LinAlgError:
            failed, tau = tau, max(10.0 * tau, delta)
            continue
        pivots = np.diag(factor) ** 2
        if tau == 0.0 and pivots.min() < floor * pivots.max():
            failed, tau = 0.0, delta  # positive definite, but too close to singular
            continue
        break
    if failed is not None:
        # two geometric bisections narrow the bracket from 10x to 10^(1/4) ~ 1.8x
        for _ in range(2 if failed > 0 else 0):
            middle = np.sqrt(failed * tau)
            attempts += 1
            try:
                cholesky(H + middle * eye, lower=True)
                tau = middle
            except LinAlgError:
                failed = middle
        tau = 2.0 * tau - failed
        factor = cholesky(H + tau * eye, lower=True)
        attempts += 1
    return -cho_solve((factor, True), g), float(tau), attempts


def modified_cholesky(A, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Gill-Murray-Wright modified Cholesky: ``L D L^T = A + F`` with ``F`` diagonal and
    non-negative, ``L`` unit lower triangular, every ``D_jj >= delta`` and the entries
    of ``L D^1/2`` bounded by ``beta`` (Nocedal & Wright, Algorithm 3.4; no pivoting).

    ``delta = floor * max(gamma, xi)`` and ``beta^2 = max(gamma, xi / sqrt(n^2 - 1), eps)``,
    with ``gamma`` the largest diagonal and ``xi`` the largest off-diagonal magnitude.
    Columns are processed one at a time with vectorised updates (BLAS-2), ``O(n^3 / 3)``
    flops. A positive-definite ``A`` whose factor already meets the bound is not
    modified.

    Returns ``(L, D)`` with ``D`` the diagonal as a vector.
    """
    A = np.asarray(A, dtype=np.float64)
    n = A.shape[0]
    gamma = float(np.abs(np.diag(A)).max()) if n else 0.0
    xi = float(np.abs(A - np.diag(np.diag(A))).max()) if n > 1 else 0.0
    delta = floor * max(gamma, xi, 1e-300)
    beta2 = max(gamma, xi / np.sqrt(max(n * n - 1, 1)), np.finfo(float).eps)
    L = np.eye(n)
    D = np.zeros(n)
    for j in range(n):
        # c[j:] = A[j:, j] - sum_{s<j} D_s L[j:, s] L[j, s]  (column j of the reduced matrix)
        c = A[j:, j] - L[j:, :j] @ (D[:j] * L[j, :j])
        theta = float(np.abs(c[1:]).max()) if j < n - 1 else 0.0
        D[j] = max(abs(c[0]), theta * theta / beta2, delta)
        L[j + 1:, j] = c[1:] / D[j]
    return L, D


def modified_cholesky_direction(H, g, floor: float) -> tuple[np.ndarray, float]:
    """``d = -(L D L^T)^-1 g`` from :func:`modified_cholesky`; returns ``(d, max F)``,
    the largest diagonal modification."""
    from scipy.linalg import solve_triangular  # noqa: PLC0415

    L, D = modified_cholesky(H, floor)
    y = solve_triangular(L, -g, lower=True, unit_diagonal=True)
    d = solve_triangular(L.T, y / D, lower=False, unit_diagonal=True)
    # F = L D L^T - H is diagonal: its largest entry says how much was added
    added = float(np.max(np.einsum("ij,j,ij->i", L, D, L) - np.diag(H)))
    return d, max(added, 0.0)


# ====================================================================== forcing terms
FORCING = ("eisenstat_walker", "quadratic", "superlinear")


def forcing_term(rule: str, g_norm: float, previous_g_norm: float | None,
                 previous_eta: float | None, first_g_norm: float, tol: float,
                 eta_max: float = 0.5) -> float:
    """The relative CG tolerance ``eta`` of an inexact Newton step.

    ``"eisenstat_walker"``: choice 2 of Eisenstat & Walker (1996) with ``gamma = 0.9``,
    ``alpha = 2``: ``eta = 0.9 (|g_k| / |g_k-1|)^2``, safeguarded by
    ``0.9 eta_k-1^2`` when that exceeds 0.1 (so eta does not collapse after one lucky
    step); ``"quadratic"``: ``min(0.5, |g_k| / |g_0|)``; ``"superlinear"``:
    ``min(0.5, sqrt(|g_k| / |g_0|))``. Then capped at ``eta_max`` and kept above
    ``0.5 tol / |g_k|``, which would over-solve past the stopping tolerance.
    """
    if rule == "eisenstat_walker":
        if previous_g_norm is None or previous_eta is None:
            eta = eta_max
        else:
            eta = 0.9 * (g_norm / previous_g_norm) ** 2
            guard = 0.9 * previous_eta ** 2
            if guard > 0.1:
                eta = max(eta, guard)
    elif rule == "quadratic":
        eta = g_norm / first_g_norm
    else:
        eta = np.sqrt(g_norm / first_g_norm)
    eta = min(eta, eta_max)
    if tol > 0 and g_norm > 0:
        eta = max(eta, 0.5 * tol / g_norm)
    return float(min(eta, eta_max))


__all__ = [
    "FORCING",
    "CGResult",
    "cholesky_shift_direction",
    "eigenvalue_shift_direction",
    "forcing_term",
    "modified_cholesky",
    "modified_cholesky_direction",
    "truncated_cg",
]
