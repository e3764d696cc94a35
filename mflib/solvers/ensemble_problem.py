"""The CF-ensemble objective on one probability matrix: its value, gradient and exact
block minimisers (the mathematics is in :mod:`mflib.solvers.ensemble`), and the batched
damped Newton method that solves the blocks without a closed form."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from ..kernels.ridge import ridge_rows
from .weighted import AdamMoments


# ---------------------------------------------------------------------- Newton
def newton_minimize(evaluate, x, *, max_iter=50, decrement_tol=1e-24):
    """Damped Newton on ``B`` independent, strictly convex problems of dimension ``d``.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(x, True) -> (f, g, H)`` with shapes (B,), (B, d), (B, d, d), and
        ``evaluate(x, False) -> f``, for ``x`` of shape (B, d).
    x : ndarray of shape (B, d)
        Starting points; not modified.
    max_iter : int
        Newton steps at most.
    decrement_tol : float
        A problem is solved when its Newton decrement ``g^T H^-1 g`` (twice the decrease
        the quadratic model predicts) falls below ``decrement_tol * max(1, |f|)``, or when
        full Newton steps in the quadratic phase stop lowering it (the rounding floor).

    Returns
    -------
    ndarray of shape (B, d)

    Notes
    -----
    Far from the solution a step is shortened by Armijo backtracking. Once the decrement
    is below ``QUADRATIC_PHASE * max(1, |f|)`` the full step is taken without a test: the
    quadratic model is accurate there, and the decrease it predicts would be lost in the
    rounding of ``f``, which would make the Armijo test a coin toss.
    """
    x = np.array(x, dtype=np.float64)
    f, g, H = evaluate(x, True)
    done = np.zeros(len(x), dtype=bool)
    previous = np.full(len(x), np.inf)
    for _ in range(max_iter):
        step = np.linalg.solve(H, g[..., None])[..., 0]
        decrement = np.einsum("bd,bd->b", g, step)
        scale = np.maximum(1.0, np.abs(f))
        quadratic = decrement < QUADRATIC_PHASE * scale
        done |= (decrement <= decrement_tol * scale) | (quadratic & (decrement >= previous))
        if done.all():
            break
        previous = np.where(quadratic, decrement, np.inf)
        t = np.where(done, 0.0, 1.0)
        search = ~done & ~quadratic
        for _ in range(_MAX_HALVINGS if search.any() else 0):
            f_new = evaluate(x - t[:, None] * step, False)
            search &= ~(f_new <= f - 1e-4 * t * decrement)
            if not search.any():
                break
            t = np.where(search, 0.5 * t, t)
        # a problem no step of 2^-_MAX_HALVINGS can lower is at its rounding floor
        done |= search
        t[search] = 0.0
        x = x - t[:, None] * step
        f, g, H = evaluate(x, True)
    return x


#: Newton decrement (relative to max(1, |f|)) below which full steps are taken
QUADRATIC_PHASE = 1e-8
_MAX_HALVINGS = 40


# ---------------------------------------------------------------------- the problem
@dataclass
class EnsembleState:
    """``P`` (m x k), ``Q`` (n x k), ``w`` (m,), ``b`` (shape (1,)), the gradient of ``J``
    there (as :meth:`EnsembleProblem.gradient` returns it) and Adam's moments."""

    classifier_factors: np.ndarray
    instance_factors: np.ndarray
    weights: np.ndarray
    intercept: np.ndarray
    gradient: list | None = None
    adam: AdamMoments | None = None

    def copy(self) -> EnsembleState:
        return EnsembleState(*(p.copy() for p in self.parameters),
                             None if self.gradient is None else [g.copy() for g in self.gradient],
                             None if self.adam is None else self.adam.copy())

    @property
    def parameters(self) -> list[np.ndarray]:
        return [self.classifier_factors, self.instance_factors, self.weights, self.intercept]


def _dense_structure(n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``indptr`` and ``indices`` of a fully observed n_rows x n_cols matrix."""
    return (np.arange(0, n_rows * n_cols + 1, n_cols, dtype=np.int64),
            np.tile(np.arange(n_cols, dtype=np.int64), n_rows))


def fold_in(R, C, P, reg_over_rho, *, out=None) -> np.ndarray:
    """Instance factors minimising ``sum_u c_ui (r_ui - p_u . q_i)^2 + (lambda/rho)|q_i|^2``
    for each column ``i`` of ``R`` (m x n) given ``P``: the exact unlabelled-instance
    block of :class:`EnsembleProblem`, and how new instances are predicted."""
    m, n = R.shape
    indptr, indices = _dense_structure(n, m)
    return ridge_rows(indptr, indices, np.ascontiguousarray(R.T).ravel(), P, reg_over_rho,
                      weights=np.ascontiguousarray(C.T).ravel(), out=out)


@dataclass
class EnsembleProblem:
    """The objective ``J`` of :mod:`mflib.solvers.ensemble` on one probability matrix.

    ``R``, ``C``: (m, n); ``labels``: (n,) of 0/1 (any value where not ``labelled``);
    ``labelled``: (n,) bool.
    """

    R: np.ndarray
    C: np.ndarray
    labels: np.ndarray
    labelled: np.ndarray
    rho: float
    lam: float
    alpha: float

    def __post_init__(self):
        self.L = np.flatnonzero(self.labelled)
        self.U = np.flatnonzero(~self.labelled)
        self.t = self.labels[self.L].astype(np.float64)

    # ------------------------------------------------------------------ values
    def scores(self, state: EnsembleState, rows=None) -> np.ndarray:
        """``s_i = (P^T w) . q_i + b`` for instances ``rows`` (all when None)."""
        Q = state.instance_factors if rows is None else state.instance_factors[rows]
        return Q @ (state.classifier_factors.T @ state.weights) + state.intercept[0]

    def terms(self, state: EnsembleState) -> dict:
        """``objective``, ``reconstruction`` (``sum c (r - r_hat)^2``) and ``bce`` (summed
        over the labelled instances) at ``state``."""
        P, Q = state.classifier_factors, state.instance_factors
        E = self.R - P @ Q.T
        reconstruction = float(np.sum(self.C * E * E))
        bce = float(np.sum(_bce(self.scores(state, self.L), self.t)))
        penalty = self.lam * (np.sum(P * P) + np.sum(Q * Q)) + self.alpha * (
            state.weights @ state.weights)
        return {"objective": self.rho * reconstruction + penalty + (1 - self.rho) * bce,
                "reconstruction": reconstruction, "bce": bce}

    def objective(self, state: EnsembleState) -> float:
        return self.terms(state)["objective"]

    def gradient(self, state: EnsembleState) -> list[np.ndarray]:
        """``[dJ/dP, dJ/dQ, dJ/dw, dJ/db]`` at ``state`` (formulas in the module docstring)."""
        P, Q, w = state.classifier_factors, state.instance_factors, state.weights
        rho, lam = self.rho, self.lam
        CE = self.C * (self.R - P @ Q.T)
        g = np.zeros(Q.shape[0])
        g[self.L] = (1 - rho) * (expit(self.scores(state, self.L)) - self.t)
        v = P.T @ w
        return [
            -2 * rho * CE @ Q + 2 * lam * P + np.outer(w, Q.T @ g),
            -2 * rho * CE.T @ P + 2 * lam * Q + np.outer(g, v),
            P @ (Q.T @ g) + 2 * self.alpha * w,
            np.array([g.sum()]),
        ]

    # ------------------------------------------------------------------ exact blocks
    def solve_aggregator(self, state: EnsembleState) -> None:
        """``(w, b)``: minimise ``alpha |w|^2 + (1 - rho) sum_L BCE`` (logistic regression
        on the columns of ``R_hat``) by Newton."""
        F = self._aggregator_features(state)
        t, c, alpha = self.t, 1 - self.rho, self.alpha
        penalty = np.r_[np.ones(F.shape[0] - 1), 0.0]

        def evaluate(theta, derivatives):
            s = theta @ F
            f = c * np.sum(_bce(s, t), axis=1) + alpha * (theta * theta) @ penalty
            if not derivatives:
                return f
            p = expit(s)
            grad = c * (p - t) @ F.T + 2 * alpha * theta * penalty
            hess = c * np.einsum("bi,ai,ci->bac", p * (1 - p), F, F) + np.diag(
                2 * alpha * penalty)
            return f, grad, hess

        theta = newton_minimize(evaluate, np.r_[state.weights, state.intercept][None])[0]
        state.weights[:] = theta[:-1]
        state.intercept[:] = theta[-1:]

    def aggregator_gradient_step(self, state: EnsembleState) -> None:
        """``(w, b)``: one gradient step of size ``1 / L``, with ``L = (1 - rho) / 4
        |F|_2^2 + 2 alpha`` (``F`` the labelled columns of ``R_hat`` with a row of ones)
        bounding the curvature of that block, so the step never raises ``J``."""
        F = self._aggregator_features(state)
        s = np.r_[state.weights, state.intercept] @ F
        g = (1 - self.rho) * (expit(s) - self.t)
        grad = F @ g + 2 * self.alpha * np.r_[state.weights, 0.0]
        lipschitz = (1 - self.rho) / 4 * np.linalg.norm(F, 2) ** 2 + 2 * self.alpha
        state.weights -= grad[:-1] / lipschitz
        state.intercept -= grad[-1:] / lipschitz

    def solve_classifier_factors(self, state: EnsembleState) -> None:
        """``P``: Newton on all ``m k`` entries (ridge rows coupled by the logistic term)."""
        R, C, Q, w, b = self.R, self.C, state.instance_factors, state.weights, state.intercept
        m, k = state.classifier_factors.shape
        rho, lam, c, t = self.rho, self.lam, 1 - self.rho, self.t
        QL = Q[self.L]
        grams = 2 * rho * np.einsum("ui,ia,ic->uac", C, Q, Q) + 2 * lam * np.eye(k)
        rows = np.arange(m)

        def evaluate(flat, derivatives):
            P = flat.reshape(-1, m, k)
            E = R - P @ Q.T
            s = QL @ np.einsum("bua,u->ba", P, w).T + b[0]  # (|L|, B)
            f = (rho * np.sum(C * E * E, axis=(1, 2)) + lam * np.sum(P * P, axis=(1, 2))
                 + c * np.sum(_bce(s.T, t), axis=1))
            if not derivatives:
                return f
            p = expit(s[:, 0])
            grad = -2 * rho * (C * E[0]) @ Q + 2 * lam * P[0] + np.outer(w, c * QL.T @ (p - t))
            hess = np.kron(np.outer(w, w), c * (QL.T * (p * (1 - p))) @ QL)
            blocks = hess.reshape(m, k, m, k)
            blocks[rows, :, rows, :] += grams
            return f, grad.reshape(1, -1), hess[None]

        P = newton_minimize(evaluate, state.classifier_factors.reshape(1, -1))
        state.classifier_factors[:] = P.reshape(m, k)

    def solve_instance_factors(self, state: EnsembleState) -> None:
        """``Q``: unlabelled rows by their closed-form weighted ridge solve, labelled rows
        by batched Newton (ridge plus the logistic term of their score)."""
        P, Q = state.classifier_factors, state.instance_factors
        if len(self.U):
            Q[self.U] = fold_in(self.R[:, self.U], self.C[:, self.U], P, self.lam / self.rho)
        if not len(self.L):
            return
        R, C = self.R[:, self.L], self.C[:, self.L]
        rho, lam, c, t, b = self.rho, self.lam, 1 - self.rho, self.t, state.intercept[0]
        k = P.shape[1]
        v = P.T @ state.weights
        grams = 2 * rho * np.einsum("ui,ua,uc->iac", C, P, P) + 2 * lam * np.eye(k)
        vv = np.outer(v, v)

        def evaluate(QL, derivatives):
            E = R - P @ QL.T
            s = QL @ v + b
            f = (rho * np.sum(C * E * E, axis=0) + lam * np.sum(QL * QL, axis=1)
                 + c * _bce(s, t))
            if not derivatives:
                return f
            p = expit(s)
            grad = -2 * rho * (C * E).T @ P + 2 * lam * QL + np.outer(c * (p - t), v)
            hess = grams + (c * p * (1 - p))[:, None, None] * vv
            return f, grad, hess

        Q[self.L] = newton_minimize(evaluate, Q[self.L])

    def ridge_factors(self, state: EnsembleState) -> None:
        """Every row of ``P``, then of ``Q``, by its weighted ridge solve of the
        reconstruction term alone (the ``"als-ridge"`` factor steps)."""
        m, n = self.R.shape
        indptr, indices = _dense_structure(m, n)
        ridge_rows(indptr, indices, self.R.ravel(), state.instance_factors,
                   self.lam / self.rho, weights=self.C.ravel(), out=state.classifier_factors)
        fold_in(self.R, self.C, state.classifier_factors, self.lam / self.rho,
                out=state.instance_factors)

    # ------------------------------------------------------------------ helpers
    def _aggregator_features(self, state: EnsembleState) -> np.ndarray:
        """The labelled columns of ``R_hat`` with a row of ones: (m + 1, |L|)."""
        R_hat = state.classifier_factors @ state.instance_factors[self.L].T
        return np.vstack([R_hat, np.ones(len(self.L))])


def _bce(s, t):
    """``BCE(t, sigmoid(s)) = log(1 + e^s) - t s``, without overflow."""
    return np.logaddexp(0.0, s) - t * s


def confidence(R) -> np.ndarray:
    """``c = |r - 0.5|``: how far each probability is from a coin flip."""
    return np.abs(np.asarray(R) - 0.5)


__all__ = [
    "EnsembleProblem",
    "EnsembleState",
    "confidence",
    "fold_in",
    "newton_minimize",
]
