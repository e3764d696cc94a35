"""Objectives on the Grassmann manifold: f itself, Catalyst's proximal subproblem and a
DANE worker's corrected local problem. Each has ``cost(U) -> (value, evaluation)`` and
``gradient(U, evaluation)``, the interface of the line search and the steps."""

from __future__ import annotations

import numpy as np

from .completion import VariableProjectionProblem


class FullObjective:
    """f itself: ``cost(U) -> (value, evaluation)``, ``gradient(U, evaluation)``."""

    def __init__(self, problem: VariableProjectionProblem):
        self.problem = problem

    def cost(self, U):
        return self.problem.cost(U)

    def gradient(self, U, evaluation):
        return self.problem.riemannian_gradient(U, evaluation)


class ProximalObjective:
    """``F(U) = f(U) + kappa/2 * dist(U, centre)^2`` (Catalyst's subproblem).

    ``grad F = grad f - kappa * log_U(centre)`` (the gradient of half the squared
    geodesic distance is minus the logarithm).
    """

    def __init__(self, problem, centre, kappa):
        self.problem, self.centre, self.kappa = problem, centre, float(kappa)

    def proximal_term(self, U) -> float:
        return 0.5 * self.kappa * self.problem.manifold.dist(U, self.centre) ** 2

    def proximal_gradient(self, U):
        return -self.kappa * self.problem.manifold.log(U, self.centre)

    def cost(self, U):
        value, ev = self.problem.cost(U)
        return value + self.proximal_term(U), ev

    def gradient(self, U, evaluation):
        return self.problem.riemannian_gradient(U, evaluation) + self.proximal_gradient(U)


class DaneLocalObjective:
    """A DANE worker's corrected local problem around the current point ``U0``:

    ``F_j(V) = m f_j(V) - <a, V V^T U0> + rho/2 * (k - |U0^T V|_F^2)``,
    ``a = m grad f_j(U0) - grad f(U0)``

    with ``m`` workers and ``f = sum_j f_j``. Both extra terms are functions of the
    subspace of V (invariant under ``V -> V O``); at ``V = U0`` the linear term has
    Riemannian gradient ``a``, so ``grad F_j(U0) = grad f(U0)`` (DANE's gradient
    correction), and the last term is the smooth chordal proximity ``sum sin^2`` with
    weight ``rho`` (DANE's ``proximity``).
    """

    def __init__(self, part: VariableProjectionProblem, centre, correction, proximity,
                 n_workers):
        self.part, self.centre = part, centre
        self.correction, self.proximity = correction, float(proximity)
        self.m = float(n_workers)

    def cost(self, V):
        value, ev = self.part.cost(V)
        linear = np.vdot(self.correction, V @ (V.T @ self.centre))
        proximity = self.part.manifold.chordal_dist2(self.centre, V)
        return self.m * value - linear + 0.5 * self.proximity * proximity, ev

    def gradient(self, V, evaluation):
        manifold = self.part.manifold
        a, c = self.correction, self.centre
        euclid = (c @ (a.T @ V) + a @ (c.T @ V)) + self.proximity * (c @ (c.T @ V))
        return self.m * self.part.riemannian_gradient(V, evaluation) - manifold.projection(
            V, euclid)
