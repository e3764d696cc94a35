"""Second-order methods checked against mathematics: f against a dense NumPy reference,
the gradient and Hessian-vector products against finite differences, the dense Hessian
against the matrix of Hessian-vector products, the numba passes against SciPy sparse
products, descent directions from every Hessian modification, local quadratic
convergence on a planted problem (and linear convergence of Gauss-Newton beside it),
the reconstruction of the original study's errors, and runs on the real datasets."""

from __future__ import annotations

import numpy as np
import pytest

from mflib import make_low_rank
from mflib.data.layout import training_layout
from mflib.execution import ExecutionPolicy, use_policy
from mflib.fitting import ConvergenceWarning
from mflib.solvers.als import ALS
from mflib.solvers.factorization_problem import FactorizationProblem
from mflib.solvers.newton_steps import (
    cholesky_shift_direction,
    eigenvalue_shift_direction,
    forcing_term,
    modified_cholesky,
    modified_cholesky_direction,
    truncated_cg,
)
from mflib.solvers.riemannian import ArmijoLineSearch
from mflib.solvers.second_order import (
    LevenbergMarquardt,
    NewtonCG,
    NewtonMF,
    factorization_problem,
)
from mflib.solvers.second_order_study import (
    HandBuiltRank1Newton,
    MonitoredALS,
    densest_block,
    derivative_costs,
    diagnose_hand_built,
    first_reached,
)

SETTINGS = [  # (center, use_bias)
    ("none", False), ("mean", True), ("biases", False), ("biases", True)]


@pytest.fixture(scope="module")
def small():
    """A 14 x 11 matrix with biases, half observed: dense references stay cheap."""
    rm, _ = make_low_rank(14, 11, 2, 0.5, noise=0.3, random_state=3)
    return rm


def _problem(rm, center="mean", use_bias=True, k=2, lam=0.3, lam_b=0.7):
    return factorization_problem(rm, k, lam, lam_b, center, use_bias)


def _point(problem, seed=0, scale=0.5):
    return np.random.default_rng(seed).normal(0.0, scale, problem.n_variables)


def _dense_value(problem, rm, x):
    """f from dense masked matrices (an obvious reference, independent of the kernels)."""
    P, Q, b, c = problem.split(x)
    R = np.zeros(rm.shape)
    mask = np.zeros(rm.shape, dtype=bool)
    R[rm.users, rm.items] = rm.ratings
    mask[rm.users, rm.items] = True
    lay = problem.layout
    offset = np.full(rm.shape, problem.global_mean)
    if problem.user_offset is not None:
        offset += problem.user_offset[:, None] + problem.item_offset[None, :]
    pred = offset + P @ Q.T
    if b is not None:
        pred += b[:, None] + c[None, :]
    sse = np.sum(((R - pred) * mask) ** 2)
    pen = problem.lam * (np.sum(P * P) + np.sum(Q * Q))
    if b is not None:
        pen += problem.lam_b * (b @ b + c @ c)
    assert lay.nnz == mask.sum()
    return 0.5 * (sse + pen) / lay.nnz


def _finite_difference(fn, x, h=1e-6):
    out = []
    for j in range(len(x)):
        step = np.zeros_like(x)
        step[j] = h
        out.append((fn(x + step) - fn(x - step)) / (2 * h))
    return np.array(out)


# ---------------------------------------------------------------------- derivatives
@pytest.mark.parametrize("center,use_bias", SETTINGS)
def test_value_matches_a_dense_reference(small, center, use_bias):
    problem = _problem(small, center, use_bias)
    x = _point(problem)
    assert problem.cost(x)[0] == pytest.approx(_dense_value(problem, small, x), rel=1e-12)


@pytest.mark.parametrize("center,use_bias", SETTINGS)
def test_gradient_matches_finite_differences(small, center, use_bias):
    problem = _problem(small, center, use_bias)
    x = _point(problem, seed=1)
    fd = _finite_difference(lambda z: problem.cost(z)[0], x)
    g = problem.gradient(x)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8 * np.abs(g).max())


@pytest.mark.parametrize("center,use_bias", SETTINGS)
def test_hessian_vector_products_match_finite_differences(small, center, use_bias):
    problem = _problem(small, center, use_bias)
    x = _point(problem, seed=2)
    curvature = problem.curvature(x)
    rng = np.random.default_rng(5)
    for _ in range(3):
        v = rng.normal(size=problem.n_variables)
        h = 1e-6
        fd = (problem.gradient(x + h * v) - problem.gradient(x - h * v)) / (2 * h)
        hv = curvature.hessian_vector(v)
        np.testing.assert_allclose(hv, fd, rtol=1e-6, atol=1e-8 * np.abs(hv).max())


@pytest.mark.parametrize("center,use_bias", SETTINGS)
def test_dense_hessian_equals_the_matrix_of_hessian_vector_products(small, center, use_bias):
    problem = _problem(small, center, use_bias)
    x = _point(problem, seed=3)
    curvature = problem.curvature(x)
    H = problem.hessian(x)
    columns = np.column_stack([curvature.hessian_vector(e)
                               for e in np.eye(problem.n_variables)])
    np.testing.assert_allclose(H, columns, rtol=1e-12, atol=1e-14 * np.abs(H).max())
    np.testing.assert_array_equal(H, H.T)
    # and the dense Hessian is the Jacobian of the gradient
    fd = np.column_stack([(problem.gradient(x + 1e-6 * e) - problem.gradient(x - 1e-6 * e))
                          / 2e-6 for e in np.eye(problem.n_variables)])
    np.testing.assert_allclose(H, fd, rtol=1e-6, atol=1e-8 * np.abs(H).max())


@pytest.mark.parametrize("center,use_bias", SETTINGS)
def test_gauss_newton_products_are_those_of_the_jacobian(small, center, use_bias):
    problem = _problem(small, center, use_bias)
    x = _point(problem, seed=4)
    J = problem.jacobian(x).toarray()
    G = (J.T @ J + np.diag(problem.penalty)) / problem.nnz
    # J itself by finite differences of the predictions (r_hat = targets - residuals)
    fd = _finite_difference(lambda z: -problem.residuals(z), x).T
    np.testing.assert_allclose(J, fd, atol=1e-7)
    curvature = problem.curvature(x)
    columns = np.column_stack([curvature.gauss_newton_vector(e)
                               for e in np.eye(problem.n_variables)])
    np.testing.assert_allclose(columns, G, atol=1e-15)
    # the residual term is what separates them: H - G = -S / N, zero at zero residuals
    assert np.abs(problem.hessian(x) - G).max() > 1e-3


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_numba_passes_agree_with_scipy_references(n_jobs):
    rm, _ = make_low_rank(300, 200, 4, 0.3, random_state=0)  # 18k ratings: parallel passes
    problem = _problem(rm, "mean", True, k=4)
    x = _point(problem, seed=6, scale=0.3)
    v = np.random.default_rng(7).normal(size=problem.n_variables)
    with use_policy(ExecutionPolicy(n_jobs)):
        e = problem.residuals(x)
        curvature = problem.curvature(x, e)
        np.testing.assert_allclose(problem.gradient(x, e), problem.gradient_reference(x, e),
                                   rtol=1e-12, atol=1e-16)
        np.testing.assert_allclose(curvature.hessian_vector(v), curvature.reference_product(v),
                                   rtol=1e-11, atol=1e-15)
        np.testing.assert_allclose(curvature.gauss_newton_vector(v),
                                   curvature.reference_product(v, False), rtol=1e-11,
                                   atol=1e-15)


def test_results_do_not_depend_on_the_thread_count():
    rm, _ = make_low_rank(300, 200, 4, 0.3, random_state=0)
    fits = [NewtonCG(n_factors=4, regularization=1.0, max_iter=5, random_state=0,
                     n_jobs=n).fit(rm) for n in (1, 2)]
    np.testing.assert_array_equal(fits[0].user_factors_, fits[1].user_factors_)
    np.testing.assert_array_equal(fits[0].history_["objective"], fits[1].history_["objective"])


@pytest.mark.parametrize("use_bias", [False, True])
def test_block_preconditioner_inverts_the_hessian_diagonal_blocks(small, use_bias):
    problem = _problem(small, "mean", use_bias)
    x = _point(problem, seed=8)
    H = problem.hessian(x)
    curvature = problem.curvature(x)
    users, items = curvature.block_diagonal()
    k, o = problem.k, problem.offsets

    def index(block, row):  # [bias, factors] positions of a user (0) or item (1) row
        start = o[block] + row * k
        bias = [o[2 + block] + row] if use_bias else []
        return bias + list(range(start, start + k))

    for u in range(problem.n_users):
        np.testing.assert_allclose(users[u], H[np.ix_(index(0, u), index(0, u))], atol=1e-15)
    for i in range(problem.n_items):
        np.testing.assert_allclose(items[i], H[np.ix_(index(1, i), index(1, i))], atol=1e-15)
    # M^-1 M v = v with M the block diagonal of H
    M = np.zeros_like(H)
    for block, n in ((0, problem.n_users), (1, problem.n_items)):
        for r in range(n):
            idx = index(block, r)
            M[np.ix_(idx, idx)] = H[np.ix_(idx, idx)]
    v = np.random.default_rng(9).normal(size=problem.n_variables)
    np.testing.assert_allclose(curvature.preconditioner()(M @ v), v, rtol=1e-9, atol=1e-12)


def test_singular_preconditioner_is_refused_with_the_remedy(small):
    problem = _problem(small, "none", False, k=8, lam=0.0)  # users with < 8 ratings
    curvature = problem.curvature(_point(problem))
    with pytest.raises(ValueError, match="regularization > 0"):
        curvature.preconditioner()


# ---------------------------------------------------------------------- directions
def _indefinite_point(problem):
    """A point near the saddle at 0, where H is indefinite and plain Newton ascends."""
    for seed in range(50):
        x = _point(problem, seed=seed, scale=0.05)
        H, g = problem.hessian(x), problem.gradient(x)
        if np.linalg.eigvalsh(H)[0] < 0 and g @ np.linalg.solve(H, g) < 0:
            return x, H, g
    raise AssertionError("no point found where plain Newton is an ascent direction")


def test_the_eigenvalue_shift_yields_a_descent_direction(small):
    problem = _problem(small, "mean", False)
    x, H, g = _indefinite_point(problem)
    newton = -np.linalg.solve(H, g)
    assert g @ newton > 0  # the unmodified Newton step goes uphill here
    d, tau, lam_min = eigenvalue_shift_direction(H, g, 1e-8)
    assert lam_min < 0 and g @ d < 0
    shifted = np.linalg.eigvalsh(H + tau * np.eye(len(g)))
    assert shifted[0] == pytest.approx(abs(lam_min), rel=1e-8)  # mirrored, not ~0
    np.testing.assert_allclose((H + tau * np.eye(len(g))) @ d, -g, atol=1e-12)
    # the Armijo search accepts a step along it (f really decreases)
    from mflib.solvers.euclidean_gd import _Euclidean
    value, _ = problem.cost(x)
    res = ArmijoLineSearch().search(problem.cost, _Euclidean, x, d, value, g @ d, 1.0)
    assert res.value < value


def test_a_positive_definite_hessian_is_not_shifted(small):
    # near the (isolated) minimiser of a rank-1 problem the Hessian is positive definite
    model = NewtonMF(n_factors=1, regularization=5.0, max_iter=50, random_state=0).fit(small)
    problem = _problem(small, "mean", True, k=1, lam=5.0, lam_b=5.0)
    x = problem.pack(model.user_factors_, model.item_factors_,
                     model.user_bias_, model.item_bias_) + 0.01 * _point(problem, scale=1.0)
    H, g = problem.hessian(x), problem.gradient(x)
    assert np.linalg.eigvalsh(H)[0] > 1e-4
    newton = -np.linalg.solve(H, g)
    d, tau, _ = eigenvalue_shift_direction(H, g, 1e-8)
    assert tau == 0.0
    np.testing.assert_allclose(d, newton, rtol=1e-9)
    d, tau, _ = cholesky_shift_direction(H, g, 1e-8)
    assert tau == 0.0
    np.testing.assert_allclose(d, newton, rtol=1e-9)
    d, added = modified_cholesky_direction(H, g, 1e-8)
    assert added == 0.0
    np.testing.assert_allclose(d, newton, rtol=1e-8)


def test_cholesky_shift_brackets_the_smallest_eigenvalue(small):
    problem = _problem(small, "mean", False)
    x, H, g = _indefinite_point(problem)
    d, tau, attempts = cholesky_shift_direction(H, g, 1e-8)
    lam_min = np.linalg.eigvalsh(H)[0]
    shifted = lam_min + tau
    assert g @ d < 0 and attempts >= 2
    assert 0.3 * abs(lam_min) < shifted < 2.0 * abs(lam_min)
    np.testing.assert_allclose((H + tau * np.eye(len(g))) @ d, -g, atol=1e-12)


def test_modified_cholesky_adds_a_nonnegative_diagonal_and_is_positive_definite(small):
    problem = _problem(small, "mean", False)
    x, H, g = _indefinite_point(problem)
    L, D = modified_cholesky(H, 1e-8)
    F = L @ np.diag(D) @ L.T - H
    np.testing.assert_allclose(F - np.diag(np.diag(F)), 0.0, atol=1e-12)
    assert np.diag(F).min() >= -1e-12 and np.diag(F).max() > 0
    assert np.linalg.eigvalsh(H + F)[0] > 0
    np.testing.assert_allclose(np.diag(L), 1.0)
    d, added = modified_cholesky_direction(H, g, 1e-8)
    assert g @ d < 0 and added == pytest.approx(np.diag(F).max())


def test_truncated_cg_solves_and_stops_at_negative_curvature():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(30, 30))
    spd = A @ A.T + np.eye(30)
    g = rng.normal(size=30)
    res = truncated_cg(lambda v: spd @ v, g, 1e-10, 200)
    np.testing.assert_allclose(spd @ res.direction, -g, atol=1e-8)
    assert not res.negative_curvature and res.relative_residual <= 1e-10
    pre = truncated_cg(lambda v: spd @ v, g, 1e-10, 200, lambda r: r / np.diag(spd))
    np.testing.assert_allclose(pre.direction, res.direction, atol=1e-8)
    indefinite = A + A.T
    res = truncated_cg(lambda v: indefinite @ v, g, 1e-10, 200)
    assert res.negative_curvature and g @ res.direction < 0


def test_forcing_terms():
    assert forcing_term("eisenstat_walker", 1.0, None, None, 1.0, 0.0) == 0.5
    eta = forcing_term("eisenstat_walker", 1e-3, 1e-1, 0.01, 1.0, 0.0)
    assert eta == pytest.approx(0.9 * 1e-4)  # (|g_k| / |g_k-1|)^2 scaled by 0.9
    assert forcing_term("quadratic", 1e-3, None, None, 1.0, 0.0) == pytest.approx(1e-3)
    assert forcing_term("superlinear", 1e-4, None, None, 1.0, 0.0) == pytest.approx(1e-2)
    # never asks CG for more than the stopping tolerance needs
    assert forcing_term("quadratic", 1e-6, None, None, 1.0, 1e-7) == pytest.approx(0.05)


# ---------------------------------------------------------------------- estimators
@pytest.fixture(scope="module")
def planted_rank1():
    """A 40 x 30 rank-1 matrix (no biases), 60% observed, small noise: the original
    study's model, with an isolated minimiser once regularised."""
    rm, truth = make_low_rank(40, 30, 1, 0.6, noise=0.01, bias_scale=0, global_mean=0,
                              random_state=1)
    return rm, truth


def _convergence_evidence(history, floor=1e-15):
    """From the last three gradient norms above round-off: the constants
    ``C_t = g_t+1 / g_t^2`` (bounded under quadratic convergence, growing like 1/g under
    linear convergence) and the estimated order ``log(g_t+1/g_t) / log(g_t/g_t-1)``."""
    g = history["grad_norm"]
    tail = g[g > floor][-3:]
    constants = tail[1:] / tail[:-1] ** 2
    order = np.log(tail[2] / tail[1]) / np.log(tail[1] / tail[0])
    return tail, constants, order


@pytest.mark.parametrize("model", [
    NewtonMF(n_factors=1, regularization=0.05, center="none", use_bias=False, tol=1e-15,
             max_iter=40, random_state=0),
    NewtonCG(n_factors=1, regularization=0.05, center="none", use_bias=False, tol=1e-15,
             forcing="quadratic", max_iter=60, random_state=0),
], ids=["NewtonMF", "NewtonCG"])
def test_local_quadratic_convergence_on_a_planted_problem(planted_rank1, model):
    rm, _ = planted_rank1
    model.fit(rm)
    assert model.stop_reason_ == "converged"
    tail, constants, order = _convergence_evidence(model.history_)
    # near the optimum the gradient norm squares: g_t+1 <= C g_t^2 with a fixed C
    assert tail[-1] < 1e-9 and constants.max() < 1e4 and order > 1.5, (tail, order)
    assert np.all(model.history_["step_size"][-3:] == 1.0)  # full Newton steps


def test_half_newton_steps_converge_only_linearly(planted_rank1):
    # the original's missing factor 2 halves every step: the same measure then shows
    # order 1 and constants growing like 1/g, so the test above can fail
    rm, _ = planted_rank1
    half = HandBuiltRank1Newton(errors=("gradient_factor",), regularization=0.05, tol=1e-9,
                                max_iter=80, random_state=0).fit(rm)
    assert half.stop_reason_ == "converged"
    tail, constants, order = _convergence_evidence(half.history_)
    assert order < 1.3 and constants.max() > 1e4, (tail, order)
    assert tail[2] / tail[1] == pytest.approx(0.5, rel=0.1)


@pytest.mark.parametrize("cls,params", [
    (NewtonMF, {}), (NewtonMF, {"hessian_modification": "cholesky_shift"}),
    (NewtonMF, {"hessian_modification": "modified_cholesky"}), (NewtonCG, {}),
    (NewtonCG, {"preconditioner": "none"}), (LevenbergMarquardt, {}),
])
def test_objective_never_rises_and_history_is_complete(small_low_rank, cls, params):
    rm, _ = small_low_rank
    model = cls(n_factors=3, regularization=0.5, max_iter=12, random_state=0,
                **params).fit(rm)
    h = model.history_
    assert np.all(np.diff(h["objective"]) <= 1e-15)
    for key in ("objective", "grad_norm", "step_size", "train_rmse"):
        assert key in h
    if cls is not NewtonMF:
        assert "cg_iterations" in h and np.all(h["cg_iterations"] >= 1)
    problem = factorization_problem(rm, 3, 0.5)
    x = problem.pack(model.user_factors_, model.item_factors_,
                     model.user_bias_, model.item_bias_)
    assert problem.cost(x)[0] == pytest.approx(h["objective"][-1], rel=1e-12)
    assert np.linalg.norm(problem.gradient(x)) == pytest.approx(h["grad_norm"][-1], rel=1e-9)


def test_newton_recovers_a_planted_matrix():
    rm, truth = make_low_rank(50, 40, 2, 0.6, noise=0.0, random_state=4)
    model = NewtonCG(n_factors=2, regularization=1e-4, bias_regularization=1e-4,
                     max_iter=100, random_state=0).fit(rm)
    assert model.stop_reason_ == "converged"
    users, items = np.meshgrid(np.arange(50), np.arange(40), indexing="ij")
    pred = model.predict(np.column_stack([users.ravel(), items.ravel()]))
    known = np.isin(users.ravel(), rm.user_ids) & np.isin(items.ravel(), rm.item_ids)
    err = pred[known] - truth.dense().ravel()[known]
    assert np.sqrt(np.mean(err ** 2)) < 0.02


def test_dense_newton_refuses_large_problems_naming_the_size(small_low_rank):
    rm, _ = small_low_rank
    d = (rm.n_users + rm.n_items) * 4
    with pytest.raises(ValueError, match=rf"= {d} variables.*max_dense_variables=100"):
        NewtonMF(n_factors=3, max_dense_variables=100).fit(rm)


def test_centring_by_biases_keeps_the_baseline_in_the_model(small_low_rank):
    rm, _ = small_low_rank
    fixed = NewtonCG(n_factors=2, center="biases", use_bias=False, bias_regularization=2.0,
                     max_iter=5, random_state=0).fit(rm)
    from mflib.solvers.baselines import center
    base = center(rm, "biases", 2.0)
    np.testing.assert_allclose(fixed.user_bias_, base.user_bias)
    np.testing.assert_allclose(fixed.item_bias_, base.item_bias)
    # the recorded training RMSE is that of predict (offset included)
    rmse = np.sqrt(np.mean((fixed.predict(rm) - rm.ratings) ** 2))
    assert fixed.history_["train_rmse"][-1] == pytest.approx(rmse, rel=1e-10)


# ---------------------------------------------------------------------- the original study
def test_hand_built_derivatives_carry_the_described_errors(planted_rank1):
    rm, _ = planted_rank1
    # the gradient it believes is half the true one
    problem = factorization_problem(rm, 1, 0.0, None, "none", False)
    x0 = problem.pack(*_initial_rank1(rm))
    g = problem.gradient(x0)
    first = HandBuiltRank1Newton(errors=("gradient_factor",), max_iter=1,
                                 random_state=0).fit(rm)
    assert first.history_["used_grad_norm"][0] == pytest.approx(0.5 * np.linalg.norm(g))


def test_diagnosis_of_the_hand_built_method(planted_rank1):
    rm, _ = planted_rank1
    d = diagnose_hand_built(rm, random_state=0)
    assert d["|hand gradient| / |gradient|"] == pytest.approx(0.5)
    assert 0 < d["|hand Hessian - Hessian| / |Hessian|"] < 1
    scale = abs(d["smallest eigenvalue of the hand Hessian"])
    assert abs(d["smallest eigenvalue after the original shift"]) < 1e-12 * max(scale, 1)
    assert d["original direction: length"] > 1e6 * d["fixed direction: length"]
    assert d["fixed direction: slope g.d"] < 0


def _initial_rank1(rm):
    from mflib.solvers.state import initial_factors
    from mflib.validation import check_random_state
    return initial_factors(check_random_state(0), rm.n_users, rm.n_items, 1, 0.1)


def test_the_original_shift_never_converges_and_the_fix_does(planted_rank1):
    rm, _ = planted_rank1
    with pytest.warns(ConvergenceWarning, match="learned nothing"):
        original = HandBuiltRank1Newton(max_iter=30, random_state=0).fit(rm)
    assert original.stop_reason_.startswith("line search failed") and original.n_iter_ == 0
    fixed = NewtonMF(n_factors=1, regularization=0.0, center="none", use_bias=False,
                     max_iter=30, tol=1e-10, random_state=0).fit(rm)
    assert fixed.stop_reason_ == "converged" and fixed.n_iter_ < 30
    # with only the shift corrected, the wrong factors still cost many iterations
    factors_only = HandBuiltRank1Newton(errors=("gradient_factor", "cross_term"),
                                        max_iter=30, tol=1e-10, random_state=0).fit(rm)
    assert factors_only.n_iter_ > fixed.n_iter_


# ---------------------------------------------------------------------- ALS and helpers
def test_monitored_als_reports_the_factorization_gradient(small_low_rank):
    rm, _ = small_low_rank
    model = MonitoredALS(n_factors=3, regularization=0.5, max_iter=8, tol=0.0,
                         random_state=0).fit(rm)
    plain = ALS(n_factors=3, regularization=0.5, max_iter=8, tol=0.0, random_state=0).fit(rm)
    np.testing.assert_array_equal(model.user_factors_, plain.user_factors_)
    problem = factorization_problem(rm, 3, 0.5)
    x = problem.pack(model.user_factors_, model.item_factors_, model.user_bias_,
                     model.item_bias_)
    assert model.history_["objective"][-1] == pytest.approx(
        plain.history_["objective"][-1] / (2 * rm.nnz), rel=1e-10)
    g = problem.gradient(x)
    assert model.history_["grad_norm"][-1] == pytest.approx(np.linalg.norm(g), rel=1e-10)
    # ALS ends each epoch on an exact item half-step: the item block of the gradient is 0
    o = problem.offsets
    assert np.abs(g[o[1]:o[2]]).max() < 1e-12 * np.abs(g).max() + 1e-15
    with pytest.raises(ValueError, match="regularization_scale='sum'"):
        MonitoredALS(regularization_scale="course").fit(rm)


def test_derivative_costs_table(small_low_rank):
    rm, _ = small_low_rank
    table = derivative_costs(rm, 3, 0.5, repeats=1, n_jobs=1)
    assert {"Hessian-vector product", "ALS epoch", "dense Hessian"} <= set(table.index)
    assert (table["seconds"] > 0).all()
    parts = table.loc[["residuals and value", "gradient (from residuals)"],
                      "relative to a gradient"]
    assert parts.sum() == pytest.approx(1.0)


def test_densest_block_and_first_reached(small_low_rank):
    rm, _ = small_low_rank
    block = densest_block(rm, 10, 8)
    assert block.n_users <= 10 and block.n_items <= 8
    top = set(rm.user_ids[np.argsort(-rm.user_counts(), kind="stable")[:10]])
    assert set(block.user_ids) <= top
    models = {"newton": NewtonCG(n_factors=2, max_iter=30, random_state=0).fit(rm)}
    table = first_reached(models, thresholds=(1e-3, 1e-30))
    g = models["newton"].history_["grad_norm"]
    assert table.loc["newton", "iteration to 0.001"] == np.flatnonzero(g <= 1e-3)[0] + 1
    assert np.isnan(table.loc["newton", "iteration to 1e-30"])


# ---------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_newton_cg_and_lm_run_on_all_of_ml100k_at_rank_10(ml100k):
    for cls in (NewtonCG, LevenbergMarquardt):
        model = cls(n_factors=10, regularization=10.0, max_iter=4, random_state=0).fit(ml100k)
        h = model.history_
        assert model.n_iter_ == 4 and np.all(np.diff(h["objective"]) < 0)
        assert np.all(h["cg_iterations"] >= 1)


@pytest.mark.realdata
def test_newton_cg_runs_on_the_netflix_subset(netflix_split):
    model = NewtonCG(n_factors=10, regularization=10.0, center="biases", use_bias=False,
                     bias_regularization=5.0, max_iter=4, random_state=0)
    model.fit(netflix_split.train)
    assert np.all(np.diff(model.history_["objective"]) < 0)
    assert np.isfinite(model.predict(netflix_split.test)).all()


def test_problem_rejects_a_wrong_vector_length(small):
    problem = _problem(small)
    with pytest.raises(ValueError, match="variables"):
        problem.pack(np.zeros((small.n_users, 2)), np.zeros((small.n_items, 3)),
                     np.zeros(small.n_users), np.zeros(small.n_items))
    assert isinstance(problem, FactorizationProblem)
    assert problem.layout is training_layout(small)
