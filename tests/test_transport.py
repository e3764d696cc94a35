"""mflib.transport against the mathematics of optimal transport on the line and against
independent references (scipy, a dense LP, per-user loops)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats

ot = pytest.importorskip("ot")

from mflib import BiasBaseline  # noqa: E402
from mflib.data import RatingMatrix  # noqa: E402
from mflib.transport import (  # noqa: E402
    activity_groups,
    barycenter_moments,
    entropic_barycenter,
    free_support_barycenter,
    genre_ground_cost,
    genre_matrix,
    genre_profiles,
    group_barycenters,
    histograms,
    nearest_users,
    neighbour_agreement,
    ot_distance_matrix,
    predictions_frame,
    quantile_barycenter,
    rating_grid,
    snap_to_grid,
    wasserstein_distance_1d,
    wasserstein_table,
)

GRID = np.arange(1.0, 6.0)
FINE = np.round(np.arange(1.0, 5.0001, 0.1), 10)


def random_histograms(n, rng, grid=GRID, sparsity=0.3):
    h = rng.dirichlet(np.full(grid.size, 0.7), size=n)
    h[rng.random(h.shape) < sparsity] = 0.0
    h[np.arange(n), rng.integers(grid.size, size=n)] += 0.1  # never all zero
    return h / h.sum(axis=1, keepdims=True)


def quantile(h, grid, t):
    """Reference quantile function of one histogram, the plain way."""
    return grid[np.minimum(np.searchsorted(np.cumsum(h), t - 1e-12), grid.size - 1)]


def toy_ratings(n_users=30, n_items=12, seed=0):
    """Random ratings on 1..5 with genres, one missing genre and one genre-less item."""
    rng = np.random.default_rng(seed)
    pairs = [(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < 0.6]
    users, items = np.array(pairs).T
    ratings = rng.integers(1, 6, size=users.size).astype(float)
    genres = ["Action|Adventure", "Action", "Adventure|Children's", "Children's|Animation",
              "Animation", "Drama", "Drama|Romance", "Romance", "Documentary", "Action|Drama",
              "(no genres listed)", "Comedy"]
    info = pd.DataFrame({"genres": genres[: n_items - 1]}, index=np.arange(n_items - 1))
    # item n_items - 1 is absent from item_info on purpose
    return RatingMatrix.from_arrays(users + 100, items, ratings, item_info=info, name="toy")


# ---------------------------------------------------------------- grids and histograms
def test_rating_grid_inferred_declared_and_refused():
    np.testing.assert_allclose(rating_grid([1, 3, 5, 2]), GRID)
    np.testing.assert_allclose(rating_grid([0.5, 5, 1, 3.5]), np.arange(0.5, 5.01, 0.5))
    np.testing.assert_allclose(rating_grid([1, 3, 5], step=0.5), np.arange(1, 5.01, 0.5))
    with pytest.raises(ValueError, match=r"values has 1 value\(s\) off the grid.*3\.3"):
        rating_grid([1, 2, 3.3])
    with pytest.raises(ValueError, match="step must be"):
        rating_grid([1, 2], step=0)
    with pytest.raises(ValueError, match="values contains 1 non-finite"):
        rating_grid([1, np.nan])


def test_snap_to_grid_clips_and_rounds():
    out = snap_to_grid([0.2, 1.49, 1.5, 2.51, 4.7, 6.3], GRID)
    np.testing.assert_array_equal(out, [1, 1, 1, 3, 5, 5])
    with pytest.raises(ValueError, match="grid must be strictly increasing"):
        snap_to_grid([1.0], [1, 3, 2])


def test_histograms_match_a_loop_over_groups():
    rng = np.random.default_rng(1)
    values = rng.integers(1, 6, size=500).astype(float)
    groups = rng.integers(0, 7, size=500)
    weights = rng.random(500)
    got = histograms(values, GRID, groups, n_groups=8, weights=weights, normalize=False)
    ref = np.zeros((8, 5))
    for v, g, w in zip(values, groups, weights, strict=True):
        ref[g, int(v) - 1] += w
    np.testing.assert_allclose(got, ref)
    norm = histograms(values, GRID, groups)
    assert norm.shape == (7, 5)
    for g in range(7):
        counts = np.array([(values[groups == g] == x).sum() for x in GRID])
        np.testing.assert_allclose(norm[g], counts / counts.sum())


def test_histograms_refuse_bad_input():
    with pytest.raises(ValueError, match="row 1 has zero mass"):
        histograms([1.0, 2.0], GRID, [0, 2])
    with pytest.raises(ValueError, match=r"values has 1 value\(s\) off the grid"):
        histograms([1.0, 2.5], GRID)
    with pytest.raises(ValueError, match="weights must be >= 0"):
        histograms([1.0, 2.0], GRID, weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="n_groups=1 but groups holds the label 2"):
        histograms([1.0, 2.0], GRID, [0, 2], n_groups=1)
    with pytest.raises(ValueError, match="groups must be integers"):
        histograms([1.0, 2.0], GRID, [0.0, 1.0])


# ---------------------------------------------------------------- 1-D distances
@pytest.mark.parametrize("seed", range(4))
def test_w1_matches_scipy_on_samples_and_on_weighted_grid_histograms(seed):
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=80), rng.gamma(2.0, size=55)
    assert wasserstein_distance_1d(u, v) == pytest.approx(
        scipy.stats.wasserstein_distance(u, v), rel=1e-10)
    a, b = random_histograms(2, rng)
    assert wasserstein_distance_1d(GRID, GRID, a, b) == pytest.approx(
        scipy.stats.wasserstein_distance(GRID, GRID, a, b), rel=1e-10)
    # unnormalised weights mean the same distributions
    assert wasserstein_distance_1d(GRID, GRID, 3 * a, b) == pytest.approx(
        wasserstein_distance_1d(GRID, GRID, a, b), rel=1e-12)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_wp_on_a_grid_equals_the_linear_program(p):
    rng = np.random.default_rng(p)
    a, b = random_histograms(2, rng)
    cost = np.abs(GRID[:, None] - GRID[None, :]) ** p
    lp = ot.emd2(a, b, cost) ** (1 / p)
    assert wasserstein_distance_1d(GRID, GRID, a, b, p=p) == pytest.approx(lp, rel=1e-9)


@pytest.mark.parametrize("p", [1, 2])
def test_wp_is_a_distance(p):
    rng = np.random.default_rng(10 + p)
    h = random_histograms(3, rng)
    d = lambda x, y: wasserstein_distance_1d(GRID, GRID, x, y, p=p)  # noqa: E731
    assert d(h[0], h[0]) == pytest.approx(0.0, abs=1e-12)
    assert d(h[0], h[1]) == pytest.approx(d(h[1], h[0]), rel=1e-12)
    assert d(h[0], h[1]) > 0
    assert d(h[0], h[2]) <= d(h[0], h[1]) + d(h[1], h[2]) + 1e-12
    shift = rng.normal(size=40)
    assert wasserstein_distance_1d(shift, shift + 0.7, p=p) == pytest.approx(0.7, rel=1e-9)


def test_wasserstein_distance_refuses_bad_masses():
    with pytest.raises(ValueError, match="u_weights has 1 negative"):
        wasserstein_distance_1d(GRID, GRID, [1, -1, 1, 1, 1], None)
    with pytest.raises(ValueError, match="v_weights has zero total mass"):
        wasserstein_distance_1d(GRID, GRID, None, np.zeros(5))
    with pytest.raises(ValueError, match="v_weights has 4 entries but the v_values has 5"):
        wasserstein_distance_1d(GRID, GRID, None, np.ones(4))
    with pytest.raises(ValueError, match="p must be"):
        wasserstein_distance_1d(GRID, GRID, p=0.5)


def test_wasserstein_table_orders_w1_w2_rmse_and_sees_shrinkage(small_low_rank):
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 6, size=400).astype(float)
    shrunk = truth.mean() + 0.3 * (truth - truth.mean()) + rng.normal(0, 0.2, size=400)
    noisy = truth + rng.normal(0, 1.0, size=400)
    table = wasserstein_table(truth, {"shrunk": shrunk, "noisy": noisy, "exact": truth})
    assert list(table.index) == ["test ratings", "shrunk", "noisy", "exact"]
    # W1 <= W2 (Jensen) <= RMSE (the pairing is one coupling)
    assert (table["w1"] <= table["w2"] + 1e-12).all()
    assert (table["w2"] <= table["rmse"] + 1e-12).all()
    assert table.loc["exact", ["w1", "w2", "rmse", "w1_stars"]].abs().max() < 1e-12
    assert table.loc["shrunk", "std_ratio"] < 0.5 < 1 < table.loc["noisy", "std_ratio"]
    assert table.loc["shrunk", "w1"] == pytest.approx(
        scipy.stats.wasserstein_distance(shrunk, truth), rel=1e-10)
    stars = snap_to_grid(noisy, GRID)
    assert table.loc["noisy", "w1_stars"] == pytest.approx(
        scipy.stats.wasserstein_distance(stars, truth), rel=1e-10)
    # fitted estimators are asked for their predictions of the test pairs
    rm, _ = small_low_rank
    model = BiasBaseline().fit(rm)
    by_model = wasserstein_table(rm, {"biases": model}, grid=np.arange(-3.0, 10.0))
    assert by_model.loc["biases", "w1"] == pytest.approx(wasserstein_distance_1d(
        model.predict(rm), rm.ratings), rel=1e-12)


def test_wasserstein_table_and_frame_refuse_bad_input():
    truth = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"predictions\['m'\] has 2 values but y_true has 3"):
        wasserstein_table(truth, {"m": [1.0, 2.0]})
    with pytest.raises(ValueError, match="pass y_true as the RatingMatrix"):
        wasserstein_table(truth, {"m": BiasBaseline()})
    with pytest.raises(ValueError, match="non-empty mapping"):
        wasserstein_table(truth, {})
    with pytest.raises(ValueError, match="label 'a' is also a model name"):
        predictions_frame(truth, {"a": truth}, label="a")


def test_predictions_frame_is_long_and_ordered():
    truth = np.array([1.0, 2.0, 5.0])
    frame = predictions_frame(truth, {"m1": truth + 0.5, "m2": truth - 1})
    assert list(frame["model"].cat.categories) == ["test ratings", "m1", "m2"]
    np.testing.assert_allclose(frame.loc[frame["model"] == "m2", "rating"], truth - 1)
    assert len(frame) == 9
    stars = predictions_frame(truth, {"m1": truth + 0.6, "m2": truth - 1.2}, stars=True)
    np.testing.assert_array_equal(stars["rating"], [1, 2, 5, 2, 3, 5, 1, 1, 4])


# ---------------------------------------------------------------- barycenters
@pytest.mark.parametrize("w", [0.5, 0.25, 0.8])
def test_entropic_barycenter_of_two_diracs_sits_between_them(w):
    a, b = np.eye(5)[1], np.eye(5)[3]  # Diracs at 2 and 4
    support, bary = entropic_barycenter([a, b], GRID, weights=[w, 1 - w], support=FINE)
    target = 2 * w + 4 * (1 - w)
    mean = support @ bary
    assert mean == pytest.approx(target, abs=0.02)  # entropic blur, truncated at 1 and 5
    assert bary[(support < 2 - 1e-9) | (support > 4 + 1e-9)].sum() < 0.02
    assert abs(support[np.argmax(bary)] - target) <= 0.1 + 1e-9
    assert bary.sum() == pytest.approx(1.0)
    # exact W2 barycenter: one Dirac at the weighted mean
    loc, mass = quantile_barycenter([a, b], GRID, weights=[w, 1 - w])
    np.testing.assert_allclose(loc, [target])
    np.testing.assert_allclose(mass, [1.0])


def test_entropic_barycenter_of_shifted_histograms_is_the_halfway_shift():
    h = np.array([0.1, 0.6, 0.3, 0.0, 0.0])
    shifted = np.roll(h, 2)  # the same shape two stars higher
    support, bary = entropic_barycenter([h, shifted], GRID, support=FINE)
    mean_h = GRID @ h
    assert support @ bary == pytest.approx(mean_h + 1.0, abs=0.02)
    sd = lambda x, m: np.sqrt(x**2 @ m - (x @ m) ** 2)  # noqa: E731
    assert sd(support, bary) == pytest.approx(sd(GRID, h), abs=0.1)
    loc, mass = quantile_barycenter([h, shifted], GRID)
    np.testing.assert_allclose(np.sort(loc), GRID[h > 0] + 1.0)
    # the entropic one is the exact one blurred by about width * sqrt(reg / 2)
    blur = lambda reg: 4.0 * np.sqrt(reg / 2)  # noqa: E731

    def gap(reg):
        where, bary = entropic_barycenter([h, shifted], GRID, support=FINE, reg=reg)
        return wasserstein_distance_1d(where, loc, bary, mass, p=2)

    assert gap(1e-2) < 1.25 * blur(1e-2)
    assert gap(5e-3) < 1.25 * blur(5e-3) < gap(1e-2)


def test_entropic_barycenter_refuses_bad_input():
    h = np.array([[0.2, 0.3, 0.5, 0, 0]])
    with pytest.raises(ValueError, match="histograms has 4 columns but the grid has 5"):
        entropic_barycenter(h[:, :4], GRID)
    with pytest.raises(ValueError, match="histograms has negative masses"):
        entropic_barycenter([[0.5, -0.1, 0.6, 0, 0]], GRID)
    with pytest.raises(ValueError, match="histograms row 1 has zero mass"):
        entropic_barycenter(np.vstack([h, np.zeros(5)]), GRID)
    with pytest.raises(ValueError, match="support must contain every grid point.*5.5"):
        entropic_barycenter(h, np.arange(1, 6) + 0.5, support=FINE)
    with pytest.raises(ValueError, match="weights has 3 entries"):
        entropic_barycenter(h, GRID, weights=[1, 1, 1])
    with pytest.raises(ValueError, match="overflowed at reg=0.0001"):
        entropic_barycenter(np.vstack([h, np.roll(h, 2)]), GRID, reg=1e-4, support=FINE)


@pytest.mark.parametrize("seed", range(3))
def test_quantile_barycenter_averages_quantile_functions(seed):
    rng = np.random.default_rng(seed)
    h = random_histograms(6, rng)
    w = rng.random(6)
    loc, mass = quantile_barycenter(h, GRID, weights=w)
    w = w / w.sum()
    levels = (np.arange(2000) + 0.5) / 2000
    ref = sum(wj * quantile(hj, GRID, levels) for wj, hj in zip(w, h, strict=True))
    got = loc[np.minimum(np.searchsorted(np.cumsum(mass), levels - 1e-12), loc.size - 1)]
    np.testing.assert_allclose(got, ref, atol=1e-9)
    # it minimises sum_j w_j W2^2(., h_j): no better than the mixture, nor the entropic one
    objective = lambda x, m: sum(  # noqa: E731
        wj * wasserstein_distance_1d(x, GRID, m, hj, p=2) ** 2 for wj, hj in zip(w, h,
                                                                               strict=True))
    best = objective(loc, mass)
    assert best <= objective(GRID, w @ h) + 1e-12
    assert best <= objective(*entropic_barycenter(h, GRID, weights=w, support=FINE)) + 1e-12


@pytest.mark.parametrize("n_atoms", [1, 7, 40])
def test_free_support_barycenter_matches_the_closed_form(n_atoms):
    rng = np.random.default_rng(n_atoms)
    h = random_histograms(5, rng)
    w = rng.random(5)
    loc, mass = free_support_barycenter(h, GRID, n_atoms=n_atoms, weights=w)
    w = w / w.sum()
    # atom k: weighted mean over histograms of the mean of Q_j on [k/K, (k+1)/K]
    sub = (np.arange(4000) + 0.5) / 4000
    levels = (np.arange(n_atoms)[:, None] + sub[None, :]) / n_atoms
    avg_q = sum(wj * quantile(hj, GRID, levels.ravel()) for wj, hj in zip(w, h, strict=True))
    ref = avg_q.reshape(n_atoms, -1).mean(axis=1)
    np.testing.assert_allclose(loc, ref, atol=2e-3)
    np.testing.assert_allclose(mass, 1 / n_atoms)
    # the same distribution as the exact barycenter, seen through K equal atoms
    exact = quantile_barycenter(h, GRID, weights=w)
    # (within an atom's interval Q moves by its own increment: W1 <= width / n_atoms)
    assert wasserstein_distance_1d(loc, exact[0], mass, exact[1]) <= 4.0 / n_atoms + 1e-9


# ---------------------------------------------------------------- groups
def test_group_barycenters_moments_obey_the_variance_identity():
    rm = toy_ratings(n_users=60, n_items=12)
    frame = group_barycenters(rm, "activity", n_groups=2, min_ratings=3)
    assert set(frame.columns) >= {"group", "method", "rating", "mass", "cdf", "n_users"}
    moments = barycenter_moments(frame)
    grid = rating_grid(rm.ratings)
    groups = activity_groups(rm, 2).cat.codes.to_numpy()
    counts = histograms(rm.ratings, grid, rm.users, n_groups=rm.n_users, normalize=False)
    for g, label in enumerate(frame["group"].cat.categories):
        h = counts[(groups == g) & (counts.sum(1) >= 3)]
        h = h / h.sum(1, keepdims=True)
        m = moments.loc[label]
        assert m.loc["exact W2 barycenter", "n_users"] == len(h)
        assert m.loc["mean of histograms", "mean"] == pytest.approx(np.mean(h @ grid))
        for method in ("exact W2 barycenter", "free-support barycenter"):
            assert m.loc[method, "mean"] == pytest.approx(m.loc["mean of histograms", "mean"])
        assert m.loc["entropic barycenter", "mean"] == pytest.approx(
            m.loc["mean of histograms", "mean"], abs=0.03)
        # var(mixture) - var(barycenter) = mean squared W2 of the users to the barycenter
        ex = frame[(frame["group"] == label) & (frame["method"] == "exact W2 barycenter")]
        gap = np.mean([wasserstein_distance_1d(ex["rating"], grid, ex["mass"], hj, p=2) ** 2
                       for hj in h])
        assert (m.loc["mean of histograms", "std"] ** 2
                - m.loc["exact W2 barycenter", "std"] ** 2) == pytest.approx(gap, rel=1e-9)
        cdf = ex["cdf"].to_numpy()
        assert np.all(np.diff(cdf) >= 0) and cdf[-1] == pytest.approx(1.0)


def test_group_barycenters_by_genre_use_each_users_ratings_of_that_genre():
    rm = toy_ratings(n_users=40, n_items=12)
    frame = group_barycenters(rm, "genre", genres=["Action", "Drama"], min_ratings=2,
                              methods=["mean of histograms"])
    G, names = genre_matrix(rm)
    for genre in ("Action", "Drama"):
        in_genre = G[:, list(names).index(genre)].toarray().ravel() > 0
        hists = []
        for u in range(rm.n_users):  # the plain per-user reference
            r = rm.ratings[(rm.users == u) & in_genre[rm.items]]
            if r.size >= 2:
                hists.append(np.bincount(r.astype(int) - 1, minlength=5) / r.size)
        got = frame[frame["group"] == genre]
        np.testing.assert_allclose(got["mass"], np.mean(hists, axis=0))
        assert (got["n_users"] == len(hists)).all()


def test_group_barycenters_refuse_bad_input():
    rm = toy_ratings()
    with pytest.raises(ValueError, match="unknown genres \\['Westerns'\\]"):
        group_barycenters(rm, "genre", genres=["Westerns"])
    with pytest.raises(ValueError, match="unknown by 'genres'"):
        group_barycenters(rm, "genres")
    with pytest.raises(ValueError, match="unknown methods \\['median'\\]"):
        group_barycenters(rm, methods=["median"])
    with pytest.raises(ValueError, match="no member with >= 1000 ratings"):
        group_barycenters(rm, min_ratings=1000)
    with pytest.raises(ValueError, match="frame lacks columns"):
        barycenter_moments(pd.DataFrame({"group": [1]}))


def test_activity_groups_are_count_quantiles():
    rm = toy_ratings(n_users=50)
    groups = activity_groups(rm, 3)
    counts = rm.user_counts()
    codes = groups.cat.codes.to_numpy()
    assert len(groups) == rm.n_users and codes.min() == 0 and codes.max() == 2
    # more ratings never means a lower group
    order = np.argsort(counts, kind="stable")
    assert np.all(np.diff(codes[order]) >= 0)


# ---------------------------------------------------------------- genres and users
def test_genre_matrix_and_profiles_by_hand():
    rm = toy_ratings()
    G, names = genre_matrix(rm)
    # Comedy belongs to the item missing from item_info, so no item has it
    assert list(names) == sorted(["Action", "Adventure", "Animation", "Children's",
                                  "Documentary", "Drama", "Romance"])
    dense = G.toarray()
    assert dense[rm.item_index([10])[0]].sum() == 0  # "(no genres listed)"
    assert dense[rm.item_index([11])[0]].sum() == 0  # absent from item_info
    assert dense[rm.item_index([0])[0]].sum() == 2
    prof = genre_profiles(rm, min_rating=4)
    np.testing.assert_allclose(prof.sum(axis=1), 1.0)
    u = prof.index[0]
    inner = rm.user_index([u])[0]
    liked = rm.items[(rm.users == inner) & (rm.ratings >= 4)]
    ref = sum(dense[i] / dense[i].sum() for i in liked if dense[i].sum() > 0)
    np.testing.assert_allclose(prof.loc[u], ref / ref.sum())
    all_users = genre_profiles(rm)
    assert len(all_users) + all_users.attrs["users_without_profile"] == rm.n_users
    with pytest.raises(ValueError, match="has no item genres"):
        genre_matrix(RatingMatrix.from_arrays([1, 2], [1, 2], [3.0, 4.0]))


def test_jaccard_ground_cost_is_a_metric_by_hand():
    rm = toy_ratings()
    cost = genre_ground_cost(rm)
    G, names = genre_matrix(rm)
    sets = {g: set(np.flatnonzero(G[:, k].toarray().ravel())) for k, g in enumerate(names)}
    a, b = "Action", "Adventure"
    assert cost.loc[a, b] == pytest.approx(1 - len(sets[a] & sets[b]) / len(sets[a] | sets[b]))
    C = cost.to_numpy()
    np.testing.assert_allclose(C, C.T)
    np.testing.assert_allclose(np.diag(C), 0.0)
    assert (C >= 0).all() and (C <= 1).all()
    # triangle inequality C[i, k] <= C[i, j] + C[j, k], axes (i, j, k)
    assert (C[:, None, :] <= C[:, :, None] + C[None, :, :] + 1e-12).all()
    np.testing.assert_array_equal(genre_ground_cost(rm, "binary"), 1 - np.eye(len(names)))


def test_ot_distances_are_a_metric_and_total_variation_under_binary_cost():
    rng = np.random.default_rng(3)
    genres = list("abcde")
    prof = pd.DataFrame(rng.dirichlet(np.ones(5), size=6), columns=genres)
    binary = pd.DataFrame(1 - np.eye(5), index=genres, columns=genres)
    d = ot_distance_matrix(prof, prof, binary).to_numpy()
    P = prof.to_numpy()
    np.testing.assert_allclose(d, 0.5 * np.abs(P[:, None] - P[None, :]).sum(-1), atol=1e-12)
    line = pd.DataFrame(np.abs(np.arange(5)[:, None] - np.arange(5)[None, :]) * 1.0,
                        index=genres, columns=genres)
    d = ot_distance_matrix(prof, prof, line).to_numpy()
    np.testing.assert_allclose(d, d.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(d), 0.0, atol=1e-12)
    assert (d >= 0).all()
    np.testing.assert_allclose(d[0, 1], wasserstein_distance_1d(np.arange(5.0), np.arange(5.0),
                                                                P[0], P[1]), rtol=1e-9)
    with pytest.raises(ValueError, match=r"cost has shape \(4, 4\), expected \(5, 5\)"):
        ot_distance_matrix(prof, prof, np.ones((4, 4)))
    with pytest.raises(ValueError, match="cost is indexed by"):
        ot_distance_matrix(prof, prof, binary.iloc[::-1, ::-1])
    bad = prof.copy()
    bad.iloc[2, 1] = -0.5
    with pytest.raises(ValueError, match="profiles_b must hold finite masses >= 0"):
        ot_distance_matrix(prof, bad, binary)


def test_nearest_users_see_related_genres_that_cosine_cannot():
    genres = ["Action", "Adventure", "Documentary"]
    prof = pd.DataFrame([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0], [0.8, 0, 0.2]],
                        index=["query", "adventure fan", "documentary fan", "mixed", "some docs"],
                        columns=genres, dtype=float)
    cost = pd.DataFrame([[0, 0.3, 1], [0.3, 0, 1], [1, 1, 0]], index=genres, columns=genres,
                        dtype=float)
    table = nearest_users(prof, "query", cost)
    assert "query" not in table.index
    order = ["mixed", "some docs", "adventure fan", "documentary fan"]
    assert list(table.index) == order
    np.testing.assert_allclose(table["ot_distance"], [0.15, 0.2, 0.3, 1.0], atol=1e-12)
    # total variation ignores that Adventure is near Action: both fans are at distance 1
    np.testing.assert_allclose(table["tv_distance"], [0.5, 0.2, 1.0, 1.0], atol=1e-12)
    np.testing.assert_array_equal(table["tv_rank"], [2, 1, 3, 3])
    # cosine: both single-genre fans are orthogonal to the query, a tie
    np.testing.assert_allclose(table["cosine_similarity"],
                               [0.5 / np.sqrt(0.5), 0.8 / np.sqrt(0.68), 0, 0], atol=1e-12)
    np.testing.assert_array_equal(table["cosine_rank"], [2, 1, 3, 3])
    assert table.loc["mixed", "top_genres"].startswith("Action, Adventure")
    agree = neighbour_agreement(table, 1)
    assert (agree["shared_top_k"] == 0).all()  # OT's nearest is "mixed", the others' not
    agree = neighbour_agreement(table, 2)
    assert (agree["shared_top_k"] == 2).all()
    rho = scipy.stats.spearmanr(table["ot_distance"], -table["cosine_similarity"])[0]
    assert agree.loc["cosine", "spearman"] == pytest.approx(rho)
    with pytest.raises(ValueError, match="user 'nobody' has no genre profile"):
        nearest_users(prof, "nobody", cost)
    with pytest.raises(ValueError, match="table lacks columns"):
        neighbour_agreement(table.drop(columns="tv_rank"))


# ---------------------------------------------------------------- real data
@pytest.mark.realdata
def test_ml100k_barycenters_and_genre_cost(ml100k):
    frame = group_barycenters(ml100k, "activity", n_groups=2)
    moments = barycenter_moments(frame)
    for label in frame["group"].cat.categories:
        m = moments.loc[label]
        assert m.loc["exact W2 barycenter", "std"] < m.loc["mean of histograms", "std"]
        assert m.loc["free-support barycenter", "mean"] == pytest.approx(
            m.loc["mean of histograms", "mean"])
    cost = genre_ground_cost(ml100k)
    assert cost.shape == (19, 19)
    assert cost.loc["Action", "Adventure"] < cost.loc["Action", "Documentary"]
