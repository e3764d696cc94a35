"""Geometry of the Grassmann manifold and the Armijo line search, checked against
their defining properties (no cost function involved except in the line search)."""

from __future__ import annotations

import numpy as np
import pytest

from mflib.solvers.riemannian import ArmijoLineSearch, Grassmann, LineSearchFailed

N, K = 12, 3


@pytest.fixture
def manifold():
    return Grassmann(N, K)


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def _orthonormality_error(U):
    return np.linalg.norm(U.T @ U - np.eye(U.shape[1]))


def test_random_point_is_orthonormal_and_seeded(manifold):
    a = manifold.random_point(np.random.default_rng(1))
    b = manifold.random_point(np.random.default_rng(1))
    assert a.shape == (N, K)
    assert _orthonormality_error(a) < 1e-12
    np.testing.assert_array_equal(a, b)


def test_projection_is_idempotent_and_horizontal(manifold, rng):
    U = manifold.random_point(rng)
    Z = rng.standard_normal((N, K))
    xi = manifold.projection(U, Z)
    assert np.linalg.norm(U.T @ xi) < 1e-12
    np.testing.assert_allclose(manifold.projection(U, xi), xi, atol=1e-13)
    # the removed part is vertical-plus-normal: orthogonal to every tangent vector
    eta = manifold.random_tangent(U, rng)
    assert abs(np.vdot(Z - xi, eta)) < 1e-12


@pytest.mark.parametrize("method", ["qr", "polar", "cayley"])
def test_retractions_orthonormal_and_first_order(manifold, rng, method):
    U = manifold.random_point(rng)
    xi = manifold.random_tangent(U, rng)
    Y = manifold.retraction(U, 0.7 * xi, method)
    assert _orthonormality_error(Y) < 1e-12
    assert not manifold.same_subspace(U, Y)
    assert manifold.same_subspace(U, manifold.retraction(U, 0 * xi, method), atol=1e-12)
    # R(t xi) and Exp(t xi) agree to first order: their distance is O(t^2)
    errs = [manifold.dist(manifold.retraction(U, t * xi, method), manifold.exp(U, t * xi))
            for t in (1e-2, 1e-3)]
    assert errs[1] < 0.02 * errs[0] + 1e-12  # at least quadratic decay (100x for 10x)
    # and their velocity at t=0 is xi: (R(t xi) - U)/t projected to span tangent -> xi
    t = 1e-6
    Y = manifold.retraction(U, t * xi, method)
    Y = Y @ np.linalg.svd(Y.T @ U)[0] @ np.linalg.svd(Y.T @ U)[2]  # align with U
    np.testing.assert_allclose(manifold.projection(U, (Y - U) / t), xi, atol=1e-5)


def test_cayley_is_not_qr(manifold, rng):
    U = manifold.random_point(rng)
    xi = 0.8 * manifold.random_tangent(U, rng)
    c = manifold.retraction(U, xi, "cayley")
    q = manifold.retraction(U, xi, "qr")
    assert manifold.dist(c, q) > 1e-3
    # Cayley with A = xi U^T - U xi^T, computed densely as a reference
    A = xi @ U.T - U @ xi.T
    dense = np.linalg.solve(np.eye(N) - A / 2, (np.eye(N) + A / 2) @ U)
    np.testing.assert_allclose(c, dense, atol=1e-12)


def test_exp_is_geodesic_with_unit_speed(manifold, rng):
    U = manifold.random_point(rng)
    xi = manifold.random_tangent(U, rng)
    for t in (0.1, 0.5, 1.2):
        Y = manifold.exp(U, t * xi)
        assert _orthonormality_error(Y) < 1e-12
        assert manifold.dist(U, Y) == pytest.approx(t, rel=1e-9)


@pytest.mark.parametrize("scale", [1e-4, 0.3, 1.2])
def test_log_inverts_exp(manifold, rng, scale):
    U = manifold.random_point(rng)
    xi = scale * manifold.random_tangent(U, rng)
    Y = manifold.exp(U, xi)
    np.testing.assert_allclose(manifold.log(U, Y), xi, atol=1e-10 * max(scale, 1))
    # log depends on the subspace only
    O = np.linalg.qr(rng.standard_normal((K, K)))[0]
    np.testing.assert_allclose(manifold.log(U @ O, Y @ O), xi @ O, atol=1e-10)


def test_dist_properties(manifold, rng):
    U, Y = manifold.random_point(rng), manifold.random_point(rng)
    O = np.linalg.qr(rng.standard_normal((K, K)))[0]
    assert manifold.dist(U, U @ O) < 1e-7
    assert manifold.dist(U, Y) == pytest.approx(manifold.dist(Y, U), rel=1e-10)
    assert manifold.dist(U, Y) == pytest.approx(np.linalg.norm(manifold.log(U, Y)), rel=1e-8)
    assert manifold.chordal_dist2(U, Y) == pytest.approx(
        np.sum(np.sin(manifold.principal_angles(U, Y)) ** 2), rel=1e-10)


def test_transport_lands_in_tangent_space(manifold, rng):
    U = manifold.random_point(rng)
    Y = manifold.retraction(U, manifold.random_tangent(U, rng))
    v = manifold.random_tangent(U, rng)
    w = manifold.transport(U, Y, v)
    assert np.linalg.norm(Y.T @ w) < 1e-12
    assert np.linalg.norm(w) <= np.linalg.norm(v) + 1e-12  # projection never lengthens


def test_bad_arguments_name_the_value(manifold, rng):
    with pytest.raises(ValueError, match="'householder'"):
        manifold.retraction(manifold.random_point(rng), np.zeros((N, K)), "householder")
    with pytest.raises(ValueError, match="k=5 cannot exceed"):
        Grassmann(4, 5)


# ------------------------------------------------------------------ line search
def _quadratic_cost(manifold, target):
    # Rayleigh quotient f(U) = tr(U^T A U) / 2, A symmetric: smallest at the bottom
    # eigenvectors of A
    A = target @ target.T - 3.0 * np.diag(np.arange(N))

    def cost(U):
        return 0.5 * float(np.sum(U * (A @ U))), None

    def grad(U):
        return manifold.projection(U, A @ U)

    return cost, grad


def test_armijo_accepts_only_sufficient_decrease(manifold, rng):
    target = rng.standard_normal((N, K))
    cost, grad = _quadratic_cost(manifold, target)
    U = manifold.random_point(rng)
    f0, g = cost(U)[0], grad(U)
    slope = -float(np.vdot(g, g))
    ls = ArmijoLineSearch(sufficient_decrease=1e-4)
    res = ls.search(cost, manifold, U, -g, f0, slope, initial_step=10.0)
    assert res.value <= f0 + 1e-4 * res.step * slope
    assert res.n_evaluations > 1  # the huge first step was rejected...
    # ...and the step before the accepted one violated the condition
    rejected = res.step / ls.contraction
    f_rej = cost(manifold.retraction(U, -rejected * g))[0]
    assert f_rej > f0 + 1e-4 * rejected * slope


def test_armijo_never_returns_zero_step(manifold, rng):
    target = rng.standard_normal((N, K))
    cost, grad = _quadratic_cost(manifold, target)
    U = manifold.random_point(rng)
    g = grad(U)
    with pytest.raises(LineSearchFailed, match="not a descent direction"):
        ArmijoLineSearch().search(cost, manifold, U, g, cost(U)[0], float(np.vdot(g, g)), 1.0)
    with pytest.raises(LineSearchFailed, match="no sufficient decrease"):
        # claim a far steeper slope than the truth: no step can satisfy it
        ArmijoLineSearch(max_evaluations=5).search(cost, manifold, U, -g, cost(U)[0], -1e9,
                                                   1.0)


def test_armijo_initial_step_rules():
    ls = ArmijoLineSearch(initial="bb", growth=2.0)
    assert ls.initial_step(None, 4.0) == pytest.approx(0.25)
    assert ls.initial_step(0.5, 4.0, bb_step=0.9) == 0.9
    assert ls.initial_step(0.001, 4.0, bb_step=0.9) == pytest.approx(0.1)  # capped
    assert ArmijoLineSearch(initial="previous").initial_step(0.5, 4.0, bb_step=0.9) == 1.0
    with pytest.raises(ValueError, match="contraction"):
        ArmijoLineSearch(contraction=1.5).initial_step(None, 1.0)


# ------------------------------------------------------------------ notebook helpers
def test_trajectory_pca_depends_on_subspaces_only(manifold, rng):
    from mflib.solvers.riemannian import trajectory_pca

    U = manifold.random_point(rng)
    xi = manifold.random_tangent(U, rng)
    path = [manifold.exp(U, t * xi) for t in np.linspace(0, 0.2, 6)]
    coords = trajectory_pca(path)
    rotated = [P @ np.linalg.qr(rng.standard_normal((K, K)))[0] for P in path]
    np.testing.assert_allclose(np.abs(trajectory_pca(rotated)), np.abs(coords), atol=1e-8)
    # a short geodesic is nearly straight in these coordinates (its bending is O(t^2))
    assert np.abs(coords[:, 1]).max() < 0.05 * np.abs(coords[:, 0]).max()


def test_time_retractions_table(manifold, rng):
    from mflib.solvers.riemannian import time_retractions

    table = time_retractions(manifold, rng, n_calls=3)
    assert list(table["map"]) == ["qr", "polar", "cayley", "exp"]
    assert (table["orthonormality_error"] < 1e-12).all()
    assert table.loc[table["map"] == "exp", "dist_to_exp"].item() < 1e-12
