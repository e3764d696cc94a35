"""The variable-projection problem and the Riemannian optimisers, checked against
mathematics: a dense NumPy reference of f, finite differences, invariance, unbiased
stochastic gradients, monotone RGD, recovery of a planted low-rank matrix."""

from __future__ import annotations

import numpy as np
import pytest

from mflib import make_low_rank
from mflib.solvers.euclidean_gd import EuclideanGD
from mflib.solvers.riemannian import (
    DANE,
    RAGD,
    RGD,
    RSARAH,
    RSPIDER,
    RSVRG,
    ArmijoLineSearch,
    Catalyst,
    Grassmann,
    HeavyBall,
    ProximalObjective,
    VariableProjectionProblem,
    dane_worker_gradient,
    partition_users,
    snapshot_bb_step,
    solve_proximal,
    time_retractions,
    variance_reduced_epoch,
)
from mflib.solvers.riemannian.objectives import DaneLocalObjective

LAM = 1e-4  # the ridge penalty lam |w_u|^2 (the estimators' default before issue 13)


@pytest.fixture(scope="module")
def planted():
    """A 60 x 50 pure rank-3 matrix, 40% observed, noise 0.05 (no biases)."""
    return make_low_rank(60, 50, 3, 0.4, noise=0.05, bias_scale=0, global_mean=0,
                         random_state=0)


@pytest.fixture(scope="module")
def problem(planted):
    rm, _ = planted
    return VariableProjectionProblem(rm.to_csr(), LAM, Grassmann(rm.n_items, 3))


def _reference_value(problem, U):
    """f(U) with one numpy least-squares problem per user (a slow, obvious reference)."""
    m = problem.matrix
    total = 0.0
    k = U.shape[1]
    for u in range(m.shape[0]):
        idx = m.indices[m.indptr[u]:m.indptr[u + 1]]
        r = m.data[m.indptr[u]:m.indptr[u + 1]]
        A = np.vstack([U[idx], np.sqrt(LAM) * np.eye(k)])
        w = np.linalg.lstsq(A, np.concatenate([r, np.zeros(k)]), rcond=None)[0]
        total += np.sum((r - U[idx] @ w) ** 2) + LAM * w @ w
    return 0.5 * total / m.nnz


def _all_pairs(rm):
    return np.column_stack([np.repeat(rm.user_ids, rm.n_items),
                            np.tile(rm.item_ids, rm.n_users)])


def test_value_matches_dense_reference(problem):
    U = problem.manifold.random_point(np.random.default_rng(0))
    assert problem.evaluate(U).value == pytest.approx(_reference_value(problem, U), rel=1e-10)
    assert problem.user_objectives(U).sum() == pytest.approx(problem.evaluate(U).value,
                                                             rel=1e-12)


def test_invariant_under_rotation(problem):
    rng = np.random.default_rng(1)
    U = problem.manifold.random_point(rng)
    O = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    assert problem.evaluate(U @ O).value == pytest.approx(problem.evaluate(U).value, rel=1e-10)
    # the Riemannian gradient rotates with the representative
    np.testing.assert_allclose(problem.riemannian_gradient(U @ O),
                               problem.riemannian_gradient(U) @ O, atol=1e-12)


def test_riemannian_gradient_matches_finite_differences(problem):
    rng = np.random.default_rng(2)
    manifold = problem.manifold
    U = manifold.random_point(rng)
    g = problem.riemannian_gradient(U)
    assert np.linalg.norm(U.T @ g) < 1e-12
    for _ in range(3):
        xi = manifold.random_tangent(U, rng)
        h = 1e-5
        fd = (problem.evaluate(manifold.exp(U, h * xi)).value
              - problem.evaluate(manifold.exp(U, -h * xi)).value) / (2 * h)
        assert np.vdot(g, xi) == pytest.approx(fd, rel=1e-6, abs=1e-12)


def test_euclidean_gradient_matches_finite_differences(problem):
    # envelope theorem: the gradient of the *unconstrained* f at any U (not only
    # orthonormal ones) is -(1/N) E^T W
    rng = np.random.default_rng(3)
    U = rng.standard_normal((problem.n_items, 3))
    G = problem.euclidean_gradient(U)
    D = rng.standard_normal(U.shape)
    h = 1e-6
    fd = (problem.evaluate(U + h * D).value - problem.evaluate(U - h * D).value) / (2 * h)
    assert np.vdot(G, D) == pytest.approx(fd, rel=1e-6)


@pytest.mark.parametrize("sampling", ["uniform", "count"])
def test_stochastic_gradient_is_unbiased(problem, sampling):
    rng = np.random.default_rng(4)
    U = problem.manifold.random_point(rng)
    g = problem.riemannian_gradient(U)
    # exact expectation over the sampling distribution, batch of one user
    if sampling == "uniform":
        expected = sum(problem.batch_riemannian_gradient(U, np.array([u]), np.ones(1))
                       for u in problem.active_users)
    else:
        p = problem.user_counts / problem.nnz
        expected = sum(p[u] * problem.batch_riemannian_gradient(U, np.array([u]),
                                                                np.array([1 / p[u]]))
                       for u in problem.active_users)
    np.testing.assert_allclose(expected, g, atol=1e-12)
    users, weights = problem.sample_users(rng, 10, sampling)
    assert len(users) == 10 if sampling == "uniform" else len(users) <= 10
    assert np.all(np.diff(users) > 0)
    mean = np.mean([problem.batch_riemannian_gradient(U, *problem.sample_users(rng, 10,
                                                                             sampling))
                    for _ in range(400)], axis=0)
    assert np.linalg.norm(mean - g) < 0.15 * np.linalg.norm(g)


@pytest.mark.parametrize("sampling", ["uniform", "count"])
def test_snapshot_gradients_from_evaluation_equal_fresh_solves(problem, sampling):
    # SVRG reads g_B(S) from the snapshot's full evaluation instead of re-solving
    rng = np.random.default_rng(11)
    U = problem.manifold.random_point(rng)
    ev = problem.evaluate(U)
    users, weights = problem.sample_users(rng, 12, sampling)
    np.testing.assert_allclose(problem.batch_riemannian_gradient(U, users, weights, ev),
                               problem.batch_riemannian_gradient(U, users, weights),
                               rtol=1e-10, atol=1e-14)


def test_svrg_estimator_at_snapshot_is_full_gradient_and_counted(problem):
    rng = np.random.default_rng(12)
    manifold = problem.manifold
    S = manifold.random_point(rng)
    ev = problem.evaluate(S)
    g = problem.riemannian_gradient(S, ev)
    # at U = S: v = g_B(S) - (g_B(S) - g(S)) = g(S) for any batch, cached or solved
    users, weights = problem.sample_users(rng, 8, "count")
    v = problem.batch_riemannian_gradient(S, users, weights) - (
        problem.batch_riemannian_gradient(S, users, weights, ev) - g)
    np.testing.assert_allclose(v, g, atol=1e-14)
    # so the first inner step is an exact gradient step that draws no batch
    lr = 1e-3
    U, used = variance_reduced_epoch("svrg", problem, S, lr, 1, 8, "uniform", rng,
                                     snapshot_gradient=g, snapshot_evaluation=ev)
    np.testing.assert_allclose(U, manifold.retraction(S, -lr * g), atol=1e-12)
    assert used == 0
    # later steps: one solve per user with the cached snapshot, two without, plus the
    # snapshot's full gradient when the epoch has to compute it; the same iterates
    runs = [variance_reduced_epoch("svrg", problem, S, lr, 3, 8, "uniform",
                                   np.random.default_rng(3), **kw)
            for kw in ({"snapshot_gradient": g, "snapshot_evaluation": ev},
                       {"snapshot_gradient": g}, {})]
    assert [n for _, n in runs] == [16, 32, problem.n_active_users + 16]
    np.testing.assert_allclose(runs[1][0], runs[0][0], atol=1e-12)
    np.testing.assert_allclose(runs[2][0], runs[0][0], atol=1e-12)


def test_heavy_ball_averages_transported_estimates(problem):
    rng = np.random.default_rng(14)
    manifold = problem.manifold
    U = manifold.random_point(rng)
    a, b = manifold.random_tangent(U, rng), manifold.random_tangent(U, rng)
    ball = HeavyBall(0.6)
    np.testing.assert_allclose(ball.direction(manifold, U, a), 0.4 * a)
    V = manifold.retraction(U, 0.1 * b)
    c = manifold.random_tangent(V, rng)
    expected = 0.6 * manifold.projection(V, 0.4 * a) + 0.4 * c
    np.testing.assert_allclose(ball.direction(manifold, V, c), expected, atol=1e-15)
    assert np.allclose(V.T @ ball.velocity, 0, atol=1e-12)  # tangent at the new point
    # a constant estimate: the velocity tends to it, so the learning rate keeps its meaning
    ball = HeavyBall(0.6)
    for _ in range(60):
        out = ball.direction(manifold, U, a)
    np.testing.assert_allclose(out, a, atol=1e-12)
    copied = ball.copy()
    copied.velocity[0, 0] += 1.0
    assert ball.velocity[0, 0] != copied.velocity[0, 0]


def test_poisson_sampling_probabilities_and_unbiasedness(problem):
    pi = problem.inclusion_probabilities(10)
    counts = problem.user_counts[problem.active_users]
    assert pi.sum() == pytest.approx(10.0)
    assert np.all((pi > 0) & (pi <= 1))
    free = pi < 1
    # proportional to the counts below the cap; capped users are the heaviest
    assert np.allclose(pi[free] / counts[free], pi[free][0] / counts[free][0])
    assert np.all(counts[~free] >= counts[free].max())
    # a batch of almost everyone caps the heaviest users at 1
    assert problem.inclusion_probabilities(problem.n_active_users - 1).max() == 1.0
    rng = np.random.default_rng(15)
    U = problem.manifold.random_point(rng)
    g = problem.riemannian_gradient(U)
    # exact expectation of the Horvitz-Thompson estimator
    expected = sum(pi[j] * problem.batch_riemannian_gradient(U, np.array([u]),
                                                              np.array([1 / pi[j]]))
                   for j, u in enumerate(problem.active_users))
    np.testing.assert_allclose(expected, g, atol=1e-12)
    sizes = [len(problem.sample_users(rng, 10, "poisson")[0]) for _ in range(300)]
    assert abs(np.mean(sizes) - 10) < 1.0
    empty = problem.batch_riemannian_gradient(U, np.array([], dtype=np.int64), np.array([]))
    assert empty.shape == U.shape and not empty.any()


def test_count_sampling_merges_duplicates(problem):
    rng = np.random.default_rng(16)
    users, weights = problem.sample_users(rng, 50, "count")  # 50 draws among 60 users
    assert np.all(np.diff(users) > 0) and len(users) < 50
    p = problem.user_counts[users] / problem.nnz
    multiplicity = weights * 50 * p
    np.testing.assert_allclose(multiplicity, np.round(multiplicity), atol=1e-9)
    assert multiplicity.sum() == pytest.approx(50) and multiplicity.max() > 1


def test_snapshot_bb_step_equals_its_formula(problem):
    rng = np.random.default_rng(13)
    manifold = problem.manifold
    previous = manifold.random_point(rng)
    current = manifold.retraction(previous, 0.2 * manifold.random_tangent(previous, rng))
    g_prev = problem.riemannian_gradient(previous)
    g_cur = problem.riemannian_gradient(current)
    s = -manifold.log(current, previous)
    left, _, right = np.linalg.svd(previous.T @ current)
    y = g_cur - manifold.projection(current, g_prev @ (left @ right))
    # f is not convex here: at a random pair <s, y> may be negative, y is flipped to
    # get a positive quotient with the same formula
    sign = np.sign(np.vdot(s, y))
    g_cur = g_cur if sign > 0 else g_cur - 2 * y
    expected = np.vdot(s, s) / np.vdot(s, sign * y)
    assert expected > 0
    assert snapshot_bb_step(manifold, current, g_cur, previous, g_prev) == pytest.approx(
        expected, rel=1e-12)
    # it does not depend on the basis chosen for either subspace
    O = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    assert snapshot_bb_step(manifold, current, g_cur, previous @ O, g_prev @ O) == \
        pytest.approx(expected, rel=1e-8)
    # a gradient change of curvature c along the step gives 1/c; negative curvature None
    base = manifold.projection(current, g_prev @ (left @ right))
    assert snapshot_bb_step(manifold, current, base + 4.0 * s, previous, g_prev) == \
        pytest.approx(0.25, rel=1e-10)
    assert snapshot_bb_step(manifold, current, base - 4.0 * s, previous, g_prev) is None


def test_problem_rejects_bad_input(planted):
    rm, _ = planted
    with pytest.raises(ValueError, match="regularization must be a real number > 0"):
        VariableProjectionProblem(rm.to_csr(), 0.0, Grassmann(rm.n_items, 3))
    with pytest.raises(ValueError, match="items but the manifold"):
        VariableProjectionProblem(rm.to_csr(), LAM, Grassmann(rm.n_items + 1, 3))


def test_rgd_is_monotone_and_accepts_armijo(planted):
    rm, _ = planted
    m = RGD(n_factors=3, center="none", regularization=LAM, max_iter=40, random_state=0,
            verbose=0).fit(rm)
    obj = m.history_["objective"]
    assert np.all(np.diff(obj) < 0)
    assert m.history_["grad_norm"][-1] < 1e-2 * m.history_["grad_norm"][0]
    # W is the exact solution for the final U
    prob = VariableProjectionProblem(rm.to_csr(), LAM, Grassmann(rm.n_items, 3))
    np.testing.assert_allclose(m.user_factors_, prob.solve_user_factors(m.item_factors_),
                               atol=1e-12)


def test_rgd_bb_and_retractions_converge_to_same_value(planted):
    rm, _ = planted
    values = []
    for retraction, initial in (("qr", "bb"), ("polar", "bb"), ("cayley", "bb"),
                                ("qr", "previous")):
        m = RGD(n_factors=3, center="none", max_iter=200, tol=1e-10, random_state=0,
                retraction=retraction, line_search=ArmijoLineSearch(initial=initial),
                verbose=0).fit(rm)
        values.append(m.history_["objective"][-1])
    np.testing.assert_allclose(values, values[0], rtol=1e-5)


def test_failed_line_search_is_a_stop_reason(planted):
    rm, _ = planted
    m = RGD(n_factors=3, center="none", max_iter=5, random_state=0, verbose=0,
            line_search=ArmijoLineSearch(sufficient_decrease=0.999999, max_evaluations=2,
                                         initial_step_size=1e3)).fit(rm)
    assert m.stop_reason_.startswith("line search failed")
    assert np.isfinite(m.predict(rm)).all()


def _recovery_rmse(model, planted):
    rm, truth = planted
    pred = model.predict(_all_pairs(rm))
    dense = truth.dense()[np.ix_(rm.user_ids, rm.item_ids)].ravel()
    return float(np.sqrt(np.mean((pred - dense) ** 2)))


RECOVERY = [
    (RGD, {"max_iter": 100}),
    (RAGD, {"max_iter": 100}),
    (RSVRG, {"max_iter": 30, "batch_size": 8}),
    (RSARAH, {"max_iter": 30, "batch_size": 8}),
    (RSPIDER, {"max_iter": 30, "batch_size": 8}),
    (RSVRG, {"max_iter": 30, "batch_size": 8, "learning_rate": "bb"}),
    (RSVRG, {"max_iter": 30, "batch_size": 8, "momentum": 0.0, "sampling": "poisson"}),
]


@pytest.mark.parametrize("cls,params", RECOVERY, ids=[c.__name__ for c, _ in RECOVERY])
def test_recovers_planted_low_rank(planted, cls, params):
    # noise is 0.05: the whole matrix (60% of it unseen) is recovered to below that
    model = cls(n_factors=3, center="none", regularization=LAM, random_state=0, verbose=0,
                **params).fit(planted[0])
    assert _recovery_rmse(model, planted) < 0.05, model.stop_reason_


def test_same_seed_same_result(planted):
    a = RSVRG(n_factors=3, max_iter=3, batch_size=8, random_state=5, verbose=0).fit(planted[0])
    b = RSVRG(n_factors=3, max_iter=3, batch_size=8, random_state=5, verbose=0).fit(planted[0])
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    c = RSVRG(n_factors=3, max_iter=3, batch_size=8, random_state=6, verbose=0).fit(planted[0])
    assert not np.allclose(a.item_factors_, c.item_factors_)


# ------------------------------------------------------------------ Catalyst, DANE, Euclidean
@pytest.mark.parametrize("method", ["svrg", "sarah", "spider"])
def test_catalyst_inner_solver_decreases_proximal_objective(problem, method):
    rng = np.random.default_rng(7)
    manifold = problem.manifold
    centre = manifold.random_point(rng)
    start = manifold.retraction(centre, 0.3 * manifold.random_tangent(centre, rng))
    kappa = 0.05
    radius = 0.05 if method == "spider" else None
    point, proximal, used = solve_proximal(method, problem, centre, kappa, start, 2.0, 3, 7, 8,
                                           "uniform", rng, max_step_length=radius)
    assert used > 0
    F_start, F_end = proximal.cost(start)[0], proximal.cost(point)[0]
    assert F_end < F_start
    # the minimiser of F is not the minimiser of f: the proximal term pulls towards the
    # centre, so the solution is closer to the centre than an unregularised solve
    free, _, _ = solve_proximal(method, problem, centre, 1e-12, start, 2.0, 3, 7, 8,
                                "uniform", np.random.default_rng(7), max_step_length=radius)
    assert manifold.dist(point, centre) < manifold.dist(free, centre)


def test_proximal_gradient_matches_finite_differences(problem):
    rng = np.random.default_rng(8)
    manifold = problem.manifold
    centre = manifold.random_point(rng)
    U = manifold.retraction(centre, 0.5 * manifold.random_tangent(centre, rng))
    prox = ProximalObjective(problem, centre, 0.3)
    g = prox.gradient(U, problem.evaluate(U))
    xi = manifold.random_tangent(U, rng)
    h = 1e-5
    fd = (prox.cost(manifold.exp(U, h * xi))[0] - prox.cost(manifold.exp(U, -h * xi))[0]) / (2 * h)
    assert np.vdot(g, xi) == pytest.approx(fd, rel=1e-6)


def test_dane_local_objective_gradient_and_correction(problem):
    rng = np.random.default_rng(9)
    manifold = problem.manifold
    U = manifold.random_point(rng)
    blocks = partition_users(problem.user_counts, 3)
    assert sum(len(b) for b in blocks) == problem.n_users
    parts = [problem.restrict(b) for b in blocks]
    shares = [dane_worker_gradient(p, U) for p in parts]
    g = sum(s[1] for s in shares)
    np.testing.assert_allclose(g, problem.riemannian_gradient(U), atol=1e-12)
    assert sum(s[0] for s in shares) == pytest.approx(problem.evaluate(U).value, rel=1e-12)
    obj = DaneLocalObjective(parts[0], U, 3 * shares[0][1] - g, 0.7, 3)
    # DANE's correction: the local problem has the global gradient at the centre
    np.testing.assert_allclose(obj.gradient(U, parts[0].evaluate(U)), g, atol=1e-12)
    V = manifold.retraction(U, 0.4 * manifold.random_tangent(U, rng))
    gv = obj.gradient(V, parts[0].evaluate(V))
    xi = manifold.random_tangent(V, rng)
    h = 1e-5
    fd = (obj.cost(manifold.exp(V, h * xi))[0] - obj.cost(manifold.exp(V, -h * xi))[0]) / (2 * h)
    assert np.vdot(gv, xi) == pytest.approx(fd, rel=1e-6)


def test_dane_with_one_worker_equals_its_local_solver(planted):
    rm, _ = planted
    dane = DANE(n_factors=3, center="none", n_workers=1, proximity=0.0, local_steps=4, max_iter=1,
                random_state=3, verbose=0).fit(rm)
    rgd = RGD(n_factors=3, center="none", max_iter=4, random_state=3, verbose=0).fit(rm)
    assert Grassmann(rm.n_items, 3).same_subspace(dane.item_factors_, rgd.item_factors_,
                                                  atol=1e-9)
    np.testing.assert_allclose(dane.predict(rm), rgd.predict(rm), atol=1e-8)


def test_euclidean_gradient_of_full_objective(planted):
    rm, _ = planted
    model = EuclideanGD(n_factors=3, max_iter=1, random_state=0, verbose=0)
    state = model._init_state(rm)
    rng = np.random.default_rng(10)
    x = np.concatenate([state.item_factors.ravel(), state.user_factors.ravel(),
                        state.user_bias, state.item_bias])
    d = rng.standard_normal(x.size)
    h = 1e-6
    fd = (model._value(x + h * d)[0] - model._value(x - h * d)[0]) / (2 * h)
    assert np.vdot(model._value_and_gradient(x)[1], d) == pytest.approx(fd, rel=1e-6)


MORE = [
    (Catalyst, {"max_iter": 10, "batch_size": 8}),
    # SPIDER's normalised steps are shorter than SARAH's far from the minimum (its
    # objective is within 1% of the minimum at iteration 12 here, SARAH's at 9)
    (Catalyst, {"max_iter": 14, "batch_size": 8, "inner_solver": "spider"}),
    (DANE, {"max_iter": 15, "n_workers": 3}),
    (EuclideanGD, {"max_iter": 300}),
]


@pytest.mark.parametrize("cls,params", MORE, ids=["catalyst", "catalyst-spider", "dane",
                                                  "euclidean"])
def test_more_optimisers_recover_planted_low_rank(planted, cls, params):
    model = cls(n_factors=3, center="none", regularization=LAM, random_state=0, verbose=0,
                **params).fit(planted[0])
    assert _recovery_rmse(model, planted) < 0.05, model.stop_reason_
    if cls is not EuclideanGD:  # same f as RGD: reach its minimum (to 1%)
        best = RGD(n_factors=3, center="none", regularization=LAM, max_iter=300, tol=1e-12,
                   random_state=0, verbose=0).fit(planted[0]).history_["objective"][-1]
        assert model.history_["objective"][-1] < 1.01 * best


@pytest.mark.parametrize("cls,params,match", [
    (RGD, {"retraction": "householder"}, "'householder'"),
    (RSVRG, {"sampling": "stratified"}, "'stratified'"),
    (RSVRG, {"learning_rate": -1.0},
     "RSVRG: learning_rate must be a real number > 0 or one of 'auto', 'bb'; got -1.0"),
    (RSVRG, {"learning_rate": "bb", "bb_scale": 0.0}, "bb_scale must be None or a real number > 0"),
    (RSVRG, {"momentum": 1.0}, r"momentum must be a real number in \[0, 1\); got 1.0"),
    (Catalyst, {"inner_solver": "adam"}, "'adam'"),
    (DANE, {"n_workers": 0}, "n_workers must be None or an integer >= 1; got 0"),
    (RAGD, {"strong_convexity": 0.0}, "strong_convexity must be a real number > 0; got 0.0"),
    (RGD, {"n_factors": 80}, "n_factors=80 exceeds the number of items"),
])
def test_bad_parameters_are_named(planted, cls, params, match):
    with pytest.raises(ValueError, match=match):
        cls(verbose=0, **params).fit(planted[0])


# ------------------------------------------------------------------ SPIDER vs SARAH
def _recorded_moves(problem, method, radius, monkeypatch):
    """Lengths of the tangent moves of one epoch from a fixed point and minibatches."""
    manifold = problem.manifold
    moves = []
    retract = type(manifold).retraction

    def recording(self, point, vector, method=None):
        moves.append(float(np.linalg.norm(vector)))
        return retract(self, point, vector, method)

    monkeypatch.setattr(type(manifold), "retraction", recording)
    start = manifold.random_point(np.random.default_rng(11))
    variance_reduced_epoch(method, problem, start, 2.0, 12, 8, "uniform",
                           np.random.default_rng(12), max_step_length=radius)
    monkeypatch.undo()
    return np.array(moves)


def test_spider_moves_a_fixed_length_while_sarah_steps_are_longer(problem, monkeypatch):
    sarah = _recorded_moves(problem, "sarah", None, monkeypatch)
    radius = 0.5 * float(np.median(sarah))
    spider = _recorded_moves(problem, "spider", radius, monkeypatch)
    assert spider.max() <= radius * (1 + 1e-12)
    # the first step (the full gradient, the same for both) is cut to the radius
    assert sarah[0] > radius and spider[0] == pytest.approx(radius, rel=1e-12)
    assert np.sum(np.isclose(spider, radius, rtol=1e-12)) >= 2
    with pytest.raises(ValueError, match="max_step_length >= 0"):
        _recorded_moves(problem, "spider", None, monkeypatch)


def test_spider_and_sarah_fits_differ(planted):
    """Regression: SPIDER's radius was the length of its epoch's first step, which the
    shrinking estimates never exceeded, so RSPIDER (and Catalyst with it) was RSARAH."""
    rm, _ = planted
    kw = dict(n_factors=3, center="none", max_iter=3, batch_size=8, random_state=0, verbose=0)
    sarah = RSARAH(**kw).fit(rm).history_["objective"]
    spider = RSPIDER(**kw).fit(rm).history_["objective"]
    assert not np.allclose(sarah, spider, rtol=1e-6)
    sarah = Catalyst(inner_solver="sarah", **kw).fit(rm).history_["objective"]
    spider = Catalyst(inner_solver="spider", **kw).fit(rm).history_["objective"]
    assert not np.allclose(sarah, spider, rtol=1e-6)


def test_spider_default_step_length_binds_in_the_first_epoch(planted, monkeypatch):
    rm, _ = planted
    model = RSPIDER(n_factors=3, center="none", max_iter=1, batch_size=8, random_state=0,
                    verbose=0)
    moves = []
    retract = Grassmann.retraction

    def recording(self, point, vector, method=None):
        moves.append(float(np.linalg.norm(vector)))
        return retract(self, point, vector, method)

    radius = []
    first = RSPIDER._first_step_size

    def remember(self, state):
        first(self, state)
        radius.append(state.extra["max_step_length"])
        moves.clear()  # the "auto" learning-rate search retracts too

    monkeypatch.setattr(Grassmann, "retraction", recording)
    monkeypatch.setattr(RSPIDER, "_first_step_size", remember)
    model.fit(rm)
    moves, radius = np.array(moves), radius[-1]  # (the first fit may be a warm-up's)
    assert moves.max() <= radius * (1 + 1e-12)
    assert np.isclose(moves, radius, rtol=1e-12).sum() >= 1


# ------------------------------------------------------------------ QR retraction
def test_qr_retraction_is_the_q_factor_with_positive_r_diagonal():
    manifold = Grassmann(300, 7)
    rng = np.random.default_rng(3)
    U = manifold.random_point(rng)
    for scale in (1e-6, 0.5, 3.0):
        xi = scale * manifold.random_tangent(U, rng)
        Q = manifold.retraction(U, xi, "qr")
        R = Q.T @ (U + xi)
        np.testing.assert_allclose(Q.T @ Q, np.eye(7), atol=1e-13)
        np.testing.assert_allclose(np.tril(R, -1), 0.0, atol=1e-12 * max(1.0, scale))
        assert (np.diag(R) > 0).all()
        np.testing.assert_allclose(Q @ R, U + xi, atol=1e-12 * max(1.0, scale))
        q, r = np.linalg.qr(U + xi)  # Householder, signs fixed: the same matrix
        np.testing.assert_allclose(Q, q * np.sign(np.diag(r)), atol=1e-12)


def test_qr_retraction_survives_a_huge_step():
    """Beyond what Cholesky QR keeps accurate, Householder QR gives the same map."""
    manifold = Grassmann(40, 3)
    rng = np.random.default_rng(1)
    U = manifold.random_point(rng)
    xi = manifold.random_tangent(U, rng)
    for scale in (50.0, 1e3, 1e9):
        Q = manifold.retraction(U, scale * xi, "qr")
        np.testing.assert_allclose(Q.T @ Q, np.eye(3), atol=1e-12)
        R = Q.T @ (U + scale * xi)
        assert (np.diag(R) > 0).all()
        np.testing.assert_allclose(np.tril(R, -1), 0.0, atol=1e-12 * scale)


def test_time_retractions_runs_with_one_blas_thread(monkeypatch):
    from threadpoolctl import threadpool_info

    manifold = Grassmann(50, 3)
    seen = []
    retract = Grassmann.retraction

    def recording(self, point, vector, method=None):
        seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
        return retract(self, point, vector, method)

    monkeypatch.setattr(Grassmann, "retraction", recording)
    table = time_retractions(manifold, np.random.default_rng(0), n_calls=2)
    assert seen and set(seen) == {1}
    assert list(table["map"]) == ["qr", "polar", "cayley", "exp"]


@pytest.mark.parametrize("cls", [RGD, RSVRG, Catalyst, DANE])
def test_recorded_train_rmse_equals_a_direct_computation(planted, cls):
    """Each iteration's train_rmse (from the residuals f was evaluated with) is the RMSE
    of the model as it stood: a fit stopped there gives that model (same seed)."""
    rm, _ = planted
    kw = dict(n_factors=3, random_state=0, verbose=0, tol=0.0)
    if cls is not RGD and cls is not DANE:
        kw["batch_size"] = 8
    history = cls(max_iter=3, **kw).fit(rm).history_
    for n in (1, 3):
        model = cls(max_iter=n, **kw).fit(rm)
        direct = np.sqrt(np.mean((model.predict(rm) - rm.ratings) ** 2))
        assert history["train_rmse"][n - 1] == pytest.approx(direct, rel=1e-9)
