"""DANE (Shamir, Srebro & Zhang 2014) on the Grassmann manifold: users partitioned across
workers, a global gradient, corrected local subproblems, averaging on the manifold."""

from __future__ import annotations

import numpy as np

from ... import execution
from ...distributed.partition import balanced_bounds
from ...validation import NONE, NONNEGATIVE, POSITIVE_INT
from .base import COMMON_DOC, GrassmannEstimator, gradient_descent
from .completion import Evaluation, VariableProjectionProblem
from .objectives import DaneLocalObjective


def partition_users(user_counts, n_workers) -> list[np.ndarray]:
    """Split users into ``n_workers`` contiguous blocks with about equal rating counts
    (the cuts of :func:`mflib.distributed.partition.balanced_bounds`, as MPI ranks are),
    each holding at least one user with ratings: a worker without ratings would have no
    local problem."""
    counts = np.asarray(user_counts)
    active = np.flatnonzero(counts > 0)
    if n_workers > len(active):
        raise ValueError(f"n_workers={n_workers} exceeds the {len(active)} user(s) with "
                         f"training ratings, and each worker needs one; choose n_workers <= "
                         f"{len(active)}")
    cuts = balanced_bounds(counts[active], n_workers)[1:-1]
    # a few heavy users can put two cuts together: move them apart (strictly increasing,
    # block j starting at active position >= j), which leaves distinct cuts unchanged
    j = np.arange(1, n_workers)
    cuts = np.maximum.accumulate(np.clip(cuts - j, 0, len(active) - n_workers)) + j
    return list(np.split(np.arange(len(counts)), active[cuts]))


def dane_worker_gradient(part: VariableProjectionProblem, U):
    """A worker's share: ``(f_j(U), grad f_j(U), evaluation)``; f and its gradient
    are the sums of these over workers (an all-reduce under MPI)."""
    ev = part.evaluate(U)
    return ev.value, part.riemannian_gradient(U, ev), ev


def dane_worker_solve(part, U, local_gradient, global_gradient, proximity, n_workers,
                      local_steps, line_search, retraction=None, previous_step=None):
    """A worker's DANE subproblem: ``local_steps`` Armijo RGD steps on
    :class:`DaneLocalObjective` from ``U``; returns ``(V_j, step, n_evaluations)``."""
    correction = n_workers * local_gradient - global_gradient
    objective = DaneLocalObjective(part, U, correction, proximity, n_workers)
    return gradient_descent(objective, part.manifold, U, local_steps, line_search, retraction,
                            previous_step)


def _allreduce_sum(arrays):
    """Sum over workers (in-process here; ``comm.allreduce`` under MPI)."""
    return sum(arrays[1:], arrays[0])


class DANE(GrassmannEstimator):
    __doc__ = """DANE (Shamir, Srebro & Zhang 2014) on the Grassmann manifold, users
    partitioned across ``n_workers`` workers (simulated in one process; the worker
    functions :func:`dane_worker_gradient` and :func:`dane_worker_solve` only exchange
    sums of arrays, so they run unchanged under MPI).

    Round: global gradient ``g = sum_j grad f_j(U)``; each worker runs ``local_steps``
    Armijo RGD steps on its corrected local problem (see :class:`DaneLocalObjective`);
    the new point is the tangent-space average ``Exp_U(mean_j Log_U(V_j))`` (one
    Karcher-mean step).

    Under MPI (``mflib.config_context(comm=...)`` with P ranks) each rank is one worker
    holding its users' ratings: the gradient and the tangent average are all-reduced, and
    the fit equals the in-process simulation with ``n_workers=P`` to summation order.

    Parameters
    ----------""" + COMMON_DOC + """    n_workers : int or None, default None
        Workers simulated in one process (None: 4); under MPI the ranks are the workers
        (None, or the number of ranks).
    proximity : float, default 0.01
        Weight ``rho`` of the proximity term ``rho/2 (k - |U^T V|^2)`` of the local
        problems. f is an average over ratings, so its curvature is small: on ml-100k at
        rank 10, ``proximity=0.1`` keeps the workers almost still and 0 lets them drift
        apart.
    local_steps : int, default 5
    line_search : ArmijoLineSearch, optional
    """

    _parameter_constraints = {"n_workers": [NONE, POSITIVE_INT], "proximity": [NONNEGATIVE],
                              "local_steps": [POSITIVE_INT]}
    #: workers simulated in one process when ``n_workers`` is None
    DEFAULT_WORKERS = 4

    def __init__(self, n_factors=3, regularization=0.3, bias_regularization=10.0,
                 center="biases", init="random", retraction="qr", n_workers=None,
                 proximity=0.01,
                 local_steps=5, line_search=None, max_iter=30, tol=1e-7, n_jobs=None,
                 device="cpu", random_state=None, verbose=0, callbacks=None):
        self.n_factors = n_factors
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.center = center
        self.init = init
        self.retraction = retraction
        self.n_workers = n_workers
        self.proximity = proximity
        self.local_steps = local_steps
        self.line_search = line_search
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _setup(self, state):
        problem = self._problem
        self._exchange = execution.exchange()
        if self._exchange is not None:
            size = self._exchange.size
            if self.n_workers not in (None, size):
                raise ValueError(f"DANE: n_workers={self.n_workers} but the fit runs on {size} "
                                 f"MPI ranks, one worker each; pass n_workers=None or {size}")
            self._workers = [(np.arange(problem.block.start, problem.block.stop),
                              problem.worker_problem())]
            state.extra["steps"] = np.full(1, np.nan)
            return
        n_workers = self.DEFAULT_WORKERS if self.n_workers is None else self.n_workers
        blocks = partition_users(problem.user_counts, n_workers)
        self._workers = [(users, problem.restrict(users)) for users in blocks]
        state.extra["steps"] = np.full(n_workers, np.nan)

    def _step(self, state, train):
        if self._exchange is not None:
            return self._distributed_step(state)
        U, manifold, ls = state.item_factors, self._problem.manifold, self._line_search()
        shares = [dane_worker_gradient(part, U) for _, part in self._workers]
        global_gradient = _allreduce_sum([g for _, g, _ in shares])
        logs, evals = [], 0
        for j, ((_, part), (_, g_j, _)) in enumerate(zip(self._workers, shares, strict=True)):
            prev = state.extra["steps"][j]
            V, step, n = dane_worker_solve(part, U, g_j, global_gradient, self.proximity,
                                           len(self._workers), self.local_steps, ls,
                                           self.retraction, None if np.isnan(prev) else prev)
            state.extra["steps"][j] = np.nan if step is None else step
            logs.append(manifold.log(U, V))
            evals += n * part.n_active_users
        U_new = manifold.exp(U, _allreduce_sum(logs) / len(self._workers))
        # the objective and user factors at U_new, assembled from the workers' shares
        shares = [dane_worker_gradient(part, U_new) for _, part in self._workers]
        W = np.zeros_like(state.user_factors)
        residuals = []
        for (users, _), (_, _, ev) in zip(self._workers, shares, strict=True):
            W[users] = ev.user_factors
            residuals.append(ev.residuals)
        ev = Evaluation(sum(v for v, _, _ in shares), W, np.concatenate(residuals))
        state.user_gradients += evals + 2 * self._problem.n_active_users
        metrics = self._accept(state, U_new, ev, _allreduce_sum([g for _, g, _ in shares]))
        return {**metrics, "consensus": float(np.sqrt(np.mean([np.sum(lg ** 2)
                                                               for lg in logs])))}

    def _distributed_step(self, state):
        """One round with this rank as the only worker it simulates: the gradient and the
        tangent average are summed over ranks; f and W at the new point come from the
        distributed problem."""
        ex, problem = self._exchange, self._problem
        (_, part), = self._workers
        U, manifold = state.item_factors, problem.manifold
        _, g_j, _ = dane_worker_gradient(part, U)
        global_gradient = ex.allreduce_sum(g_j)
        prev = state.extra["steps"][0]
        V, step, n = dane_worker_solve(part, U, g_j, global_gradient, self.proximity, ex.size,
                                       self.local_steps, self._line_search(), self.retraction,
                                       None if np.isnan(prev) else prev)
        state.extra["steps"][0] = np.nan if step is None else step
        log = manifold.log(U, V)
        U_new = manifold.exp(U, ex.allreduce_sum(log) / ex.size)
        ev = problem.evaluate(U_new)
        state.user_gradients += int(ex.allreduce_sum(n * part.n_active_users)) \
            + 2 * problem.n_active_users
        metrics = self._accept(state, U_new, ev, problem.riemannian_gradient(U_new, ev))
        consensus = float(np.sqrt(ex.allreduce_sum(float(np.sum(log ** 2))) / ex.size))
        return {**metrics, "consensus": consensus}

    def _finalize(self, state):
        super()._finalize(state)
        del self._workers
        self.__dict__.pop("_exchange", None)
