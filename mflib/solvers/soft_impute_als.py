"""softImpute-ALS (Hastie, Mazumder, Lee & Zadeh 2015): the nuclear-norm problem of
:mod:`mflib.solvers.soft_impute` solved in a fixed-rank ALS form."""

from __future__ import annotations

from ..kernels.lowrank import (
    nuclear_objective,
    random_orthonormal,
    relative_change,
    splr_matmat,
    thin_svd,
    with_values,
)
from ..validation import POSITIVE_INT
from .soft_impute import NuclearNormCompletion, SoftImpute, SoftImputeState


class SoftImputeALS(NuclearNormCompletion):
    """softImpute-ALS (Hastie, Mazumder, Lee & Zadeh 2015): rank-``n_factors`` ALS form.

    Minimises ``1/2 |P_Omega(X - A B^T)|^2 + regularization/2 (|A|^2 + |B|^2)`` with
    ``A = U D``, ``B = V D`` (``U``, ``V`` orthonormal). Each half-step solves the ridge
    problem against the completed matrix ``S + A B^T`` (sparse plus low rank) in closed
    form and re-balances the factors by a small SVD, so the objective never rises. When
    ``n_factors`` is at least the rank of the SoftImpute solution, the minimum equals
    that of (1) and the solutions coincide. After the last iteration the SVD of
    ``M V`` is soft-thresholded, which removes directions that shrank to zero.

    Parameters
    ----------
    regularization : float, default 10.0
    n_factors : int, default 20
        Rank bound of ``A`` and ``B``.
    center, bias_regularization, convergence, max_iter, tol, warm_start, random_state,
    device, n_jobs, verbose, callbacks :
        As in :class:`SoftImpute`.

    Attributes
    ----------
    As :class:`SoftImpute`. The history records ``objective`` (the ALS objective,
    equal to (1) at the balanced factors), ``rank`` (factors with ``d > 0``),
    ``relative_change`` and the RMSEs.
    """

    _parameter_constraints = {"n_factors": [POSITIVE_INT]}
    _contract_params = {"max_iter": 3, "regularization": 5.0, "n_factors": 3}

    def __init__(self, regularization=10.0, *, n_factors=20, center="biases",
                 bias_regularization=10.0, convergence="factors", max_iter=100, tol=1e-5,
                 warm_start=False, random_state=None, device="cpu", n_jobs=None, verbose=0,
                 callbacks=None):
        self.regularization = regularization
        self.n_factors = n_factors
        self.center = center
        self.bias_regularization = bias_regularization
        self.convergence = convergence
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.random_state = random_state
        self.device = device
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.callbacks = callbacks

    def _init_state(self, train):
        xp, problem, (mu, b, c), seed = self._setup(train)
        n_users, n_items = train.shape
        r = min(self.n_factors, n_users, n_items)
        state = SoftImputeState(mu, b, c, seed=seed, problem=problem)
        warm = self._warm_factors(train, xp)
        if warm is None:
            # Z = 0 with U random orthonormal and D = I, the paper's start (B = 0)
            U = random_orthonormal(xp, n_users, r, [seed, 0])
            state.scales = xp.ones(r)
            state.set_factors(U, xp.zeros(r), xp.zeros((n_items, r)))
        else:
            U, s, V = warm
            k = s.shape[0]
            U = SoftImpute._fill_subspace(xp, U[:, :r], r, seed, 0)
            V = SoftImpute._fill_subspace(xp, V[:, :r], r, seed, 1)
            s = xp.concatenate([s[:r], xp.zeros(max(r - k, 0))])
            # directions with s = 0 restart from a small D, since a zero D stays zero
            state.scales = xp.where(s > 0, xp.sqrt(s), 1e-3)
            state.set_factors(U, state.scales**2, V)
        return state

    def _half_step(self, state, transpose: bool):
        """Update ``B`` (``transpose=False``) or ``A``, then re-balance by an SVD."""
        xp, problem, lam = state.problem.xp, state.problem, float(self.regularization)
        U, V, d = state.left, state.right, state.scales
        S = with_values(problem.pattern, state.residuals)  # residuals of U d^2 V^T
        denominator = d * d + lam
        # (D^2 + lam)^-1 D, with the pseudo-inverse's 0 where lam = 0 meets d = 0 (a
        # direction the model does not use; e.g. constant ratings, whose residuals vanish)
        ridge = xp.where(denominator > 0, d / xp.where(denominator > 0, denominator, 1.0), 0.0)
        if not transpose:  # B~ = (D^2 + lam)^-1 D U^T X*, as columns: n_items x r
            new = (S.T @ U) * ridge + V * (d * d * ridge)
            vecs, sig, rot_t = thin_svd(new * d)
            U, V = U @ rot_t.T, vecs
        else:
            new = (S @ V) * ridge + U * (d * d * ridge)
            vecs, sig, rot_t = thin_svd(new * d)
            U, V = vecs, V @ rot_t.T
        d = xp.sqrt(sig)
        state.scales = d
        state.set_factors(U, d * d, V)

    def _iterate(self, state):
        xp = state.problem.xp
        U0, s0, V0 = state.left, state.singular_values, state.right
        self._half_step(state, transpose=False)
        self._half_step(state, transpose=True)
        state.n_steps += 1
        s = state.singular_values
        metrics = {
            "objective": nuclear_objective(state.residuals, s, float(self.regularization)),
            "train_rmse": float(xp.sqrt(xp.mean(state.residuals ** 2))),
            "rank": int((s > 0).sum()),
            "relative_change": relative_change(xp, U0, s0, V0, state.left, s, state.right),
            "check_tolerance": state.n_steps >= self._min_steps,
        }
        return metrics

    # the final soft-thresholded SVD (Hastie et al. 2015, Algorithm 3.1, step 4) comes after
    # the last recorded iteration
    _history_describes_final_model = False

    def _finalize(self, state):
        self._soft_threshold_row_space(state)
        super()._finalize(state)

    def _soft_threshold_row_space(self, state):
        """The SVD of ``M V`` soft-thresholded: the exact minimiser of (1) over row space V."""
        problem, lam = state.problem, float(self.regularization)
        U, s, V = state.left, state.singular_values, state.right
        S = with_values(problem.pattern, state.residuals)
        left, sigma, rot_t = thin_svd(splr_matmat(S, U, s, V, V))
        keep = int((sigma > lam).sum())
        state.set_factors(left[:, :keep], sigma[:keep] - lam, (V @ rot_t.T)[:, :keep])
