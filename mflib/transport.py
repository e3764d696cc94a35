"""Optimal transport on rating data, with POT.

Three questions, one section each:

* **How far is a model's distribution of predictions from the distribution of true
  ratings?** :func:`wasserstein_distance_1d` and :func:`wasserstein_table`. On the line the
  optimal coupling pairs quantiles, so ``W_p`` compares the two *distributions* whatever
  the pairing of predictions with ratings; RMSE uses the pairing itself. Because the
  pairing is one admissible coupling, ``W2 <= RMSE`` always: a model can be accurate and
  still have the wrong spread (least-squares predictions shrink towards the mean).
* **What does a typical rating histogram of a group of users look like?**
  :func:`entropic_barycenter` (fixed support, ``ot.barycenter``),
  :func:`free_support_barycenter` (``ot.lp.free_support_barycenter``) and the exact 1-D
  :func:`quantile_barycenter`, collected for groups of users by :func:`group_barycenters`.
  The arithmetic mean of histograms averages their CDFs vertically (a mixture: it keeps
  the users' disagreement about *where* they rate), the W2 barycenter averages their
  quantile functions, i.e. the CDFs horizontally (a typical user). Both have the same
  mean; the mixture's variance exceeds the barycenter's by exactly the mean squared W2
  distance of the users to the barycenter (:func:`barycenter_moments`).
* **Which users have similar tastes when genres are not independent axes?**
  :func:`genre_profiles`, :func:`genre_ground_cost`, :func:`ot_distance_matrix` and
  :func:`nearest_users`: W1 between genre profiles with a genre-to-genre ground cost,
  beside cosine similarity, which treats every genre as orthogonal to every other.

Histograms live on a *grid* of rating values (``1..5`` for MovieLens 100K, ``0.5..5`` step
0.5 for ml-latest-small), inferred from the data or declared.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .data.ratings import RatingMatrix
from .metrics import rmse
from .validation import check_choice, check_positive, check_positive_int

try:
    import ot
except ImportError as exc:  # POT is in the "notebooks" extra
    raise ImportError(
        "mflib.transport needs POT (Python Optimal Transport); install it with "
        "`pip install 'mflib[notebooks]'` or `pip install pot`"
    ) from exc

__all__ = [
    "activity_groups",
    "barycenter_moments",
    "entropic_barycenter",
    "free_support_barycenter",
    "genre_ground_cost",
    "genre_matrix",
    "genre_profiles",
    "group_barycenters",
    "histograms",
    "nearest_users",
    "neighbour_agreement",
    "ot_distance_matrix",
    "predictions_frame",
    "quantile_barycenter",
    "rating_grid",
    "snap_to_grid",
    "wasserstein_distance_1d",
    "wasserstein_table",
]

_GRID_TOL = 1e-9  # relative tolerance for "this value is a grid point"
_NO_GENRE = "(no genres listed)"  # ml-latest's marker for an item without genres


# ---------------------------------------------------------------------- checks
def _check_values(values, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric; could not convert: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: at least one value is needed")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(
            f"{name} contains {bad.size} non-finite value(s) (first at position {bad[0]}: "
            f"{float(arr[bad[0]]):g}); remove them first"
        )
    return arr


def _check_grid(grid, name: str = "grid") -> np.ndarray:
    arr = _check_values(grid, name)
    steps = np.diff(arr)
    if (steps <= 0).any():
        k = int(np.flatnonzero(steps <= 0)[0])
        raise ValueError(
            f"{name} must be strictly increasing, but {name}[{k}] = {float(arr[k]):g} >= "
            f"{name}[{k + 1}] = {float(arr[k + 1]):g}; build it with rating_grid()"
        )
    return arr


def _check_masses(masses, name: str, *, size: int | None = None,
                  what: str = "grid") -> np.ndarray:
    """Non-negative finite masses with positive total, shape (size,), normalised to 1."""
    arr = _check_values(masses, name)
    if size is not None and arr.shape[0] != size:
        raise ValueError(
            f"{name} has {arr.shape[0]} entries but the {what} has {size}; give one mass per "
            f"{what} point"
        )
    neg = np.flatnonzero(arr < 0)
    if neg.size:
        raise ValueError(
            f"{name} has {neg.size} negative mass(es) (first at position {neg[0]}: "
            f"{float(arr[neg[0]]):g}); masses must be >= 0"
        )
    total = arr.sum()
    if not total > 0:
        raise ValueError(f"{name} has zero total mass; a distribution needs some positive mass")
    return arr / total


def _check_histograms(hists, grid: np.ndarray, name: str = "histograms") -> np.ndarray:
    """Rows of non-negative masses on ``grid``, each with positive mass, normalised."""
    try:
        arr = np.asarray(hists, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric; could not convert: {exc}") from exc
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (n_histograms, n_grid) with n_histograms >= 1, got "
            f"shape {np.shape(hists)}"
        )
    if arr.shape[1] != grid.shape[0]:
        raise ValueError(
            f"{name} has {arr.shape[1]} columns but the grid has {grid.shape[0]} points; "
            "pass the grid the histograms were built on"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite masses")
    if (arr < 0).any():
        r, c = np.argwhere(arr < 0)[0]
        raise ValueError(
            f"{name} has negative masses (first at row {int(r)}, column {int(c)}: "
            f"{float(arr[r, c]):g}); masses must be >= 0"
        )
    totals = arr.sum(axis=1)
    if (totals <= 0).any():
        r = int(np.flatnonzero(totals <= 0)[0])
        raise ValueError(
            f"{name} row {r} has zero mass; drop empty histograms (e.g. groups without "
            "ratings) before normalising"
        )
    return arr / totals[:, None]


def _check_weights(weights, n: int, name: str = "weights") -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    return _check_masses(weights, name, size=n, what="set of histograms")


# ---------------------------------------------------------------------- grids and histograms
def rating_grid(values, step=None) -> np.ndarray:
    """The grid of rating values that ``values`` lie on.

    Parameters
    ----------
    values : array-like of shape (n,)
        Ratings, e.g. ``RatingMatrix.ratings``.
    step : float, optional
        Grid spacing. Inferred as the smallest gap between distinct values when omitted
        (so a data set without any half-star rating gives step 1 even if its scale allows
        halves: declare ``step=0.5`` then).

    Returns
    -------
    ndarray of shape (n_grid,)
        ``min(values), min(values) + step, ..., max(values)``.

    Raises
    ------
    ValueError
        If a value is not on the grid (continuous predictions: use :func:`snap_to_grid`
        or the sample form of :func:`wasserstein_distance_1d`).
    """
    values = _check_values(values, "values")
    lo, hi = float(values.min()), float(values.max())
    if step is None:
        distinct = np.unique(values)
        step = float(np.diff(distinct).min()) if distinct.size > 1 else 1.0
    step = check_positive(step, "step")
    n = int(round((hi - lo) / step)) + 1
    grid = lo + step * np.arange(n)
    _grid_index(values, grid, "values")  # every value must be a grid point
    return grid


def _grid_index(values: np.ndarray, grid: np.ndarray, name: str) -> np.ndarray:
    """Position of each value on ``grid``; ValueError for a value between grid points."""
    if grid.size == 1:
        nearest = np.zeros(values.shape, dtype=np.int64)
    else:
        pos = np.clip(np.searchsorted(grid, values), 1, grid.size - 1)
        left = pos - 1
        nearest = np.where(np.abs(values - grid[left]) <= np.abs(values - grid[pos]), left, pos)
    scale = max(1.0, float(np.abs(grid).max()))
    off = np.abs(values - grid[nearest]) > _GRID_TOL * scale
    if off.any():
        k = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"{name} has {int(off.sum())} value(s) off the grid {grid[0]:g}..{grid[-1]:g} "
            f"(step {grid[1] - grid[0] if grid.size > 1 else 0:g}), first at position {k}: "
            f"{float(values[k]):g}; round them with snap_to_grid(), or declare a grid that "
            "holds them"
        )
    return nearest


def snap_to_grid(values, grid) -> np.ndarray:
    """Clip ``values`` to the grid's range and round each to its nearest grid point.

    This is how a continuous prediction is shown as stars. Ties go to the lower point.

    Parameters
    ----------
    values : array-like of shape (n,)
    grid : array-like of shape (n_grid,), strictly increasing

    Returns
    -------
    ndarray of shape (n,), values of ``grid``
    """
    values = _check_values(values, "values")
    grid = _check_grid(grid)
    if grid.size == 1:
        return np.full(values.shape, grid[0])
    v = np.clip(values, grid[0], grid[-1])
    pos = np.clip(np.searchsorted(grid, v), 1, grid.size - 1)
    lower = (v - grid[pos - 1]) <= (grid[pos] - v)
    return grid[np.where(lower, pos - 1, pos)]


def histograms(values, grid, groups=None, *, n_groups=None, weights=None,
               normalize=True) -> np.ndarray:
    """Histograms of ``values`` on ``grid``, one per group, in one ``np.bincount``.

    Parameters
    ----------
    values : array-like of shape (n,)
        Values on the grid (ratings).
    grid : array-like of shape (n_grid,), strictly increasing
    groups : array-like of int of shape (n,), optional
        Group of each value in ``[0, n_groups)`` (e.g. ``RatingMatrix.users``). One
        histogram of everything when omitted.
    n_groups : int, optional
        Number of rows; ``groups.max() + 1`` when omitted.
    weights : array-like of shape (n,), optional
        Mass of each value (default 1).
    normalize : bool, default True
        Divide each row by its total. A group without mass is then an error: select
        the groups you need, or pass ``normalize=False`` and filter on the counts.

    Returns
    -------
    ndarray of shape (n_groups, n_grid)
    """
    values = _check_values(values, "values")
    grid = _check_grid(grid)
    idx = _grid_index(values, grid, "values")
    if groups is None:
        groups = np.zeros(values.shape[0], dtype=np.int64)
    groups = np.asarray(groups)
    if groups.shape != values.shape or groups.dtype.kind not in "iu":
        raise ValueError(
            f"groups must be integers of shape {values.shape} (one group per value), got "
            f"dtype {groups.dtype} and shape {groups.shape}"
        )
    if (groups < 0).any():
        raise ValueError(f"groups must be >= 0, got {int(groups.min())}")
    needed = int(groups.max()) + 1
    n_groups = needed if n_groups is None else check_positive_int(n_groups, "n_groups")
    if n_groups < needed:
        raise ValueError(f"n_groups={n_groups} but groups holds the label {needed - 1}; "
                         f"pass n_groups >= {needed}")
    if weights is not None:
        weights = _check_values(weights, "weights")
        if weights.shape != values.shape:
            raise ValueError(f"weights has shape {weights.shape}, expected {values.shape}")
        if (weights < 0).any():
            raise ValueError("weights must be >= 0")
    flat = np.bincount(groups.astype(np.int64) * grid.size + idx, weights=weights,
                       minlength=n_groups * grid.size)
    hist = flat.reshape(n_groups, grid.size).astype(np.float64)
    return _check_histograms(hist, grid) if normalize else hist


# ---------------------------------------------------------------------- 1-D distances
def wasserstein_distance_1d(u_values, v_values, u_weights=None, v_weights=None, *,
                            p=1) -> float:
    """The p-Wasserstein distance between two distributions on the line (POT).

    Parameters
    ----------
    u_values, v_values : array-like of shape (n,), (m,)
        Atoms (samples, or grid points).
    u_weights, v_weights : array-like of shape (n,), (m,), optional
        Masses of the atoms (normalised here); uniform when omitted. With grid points as
        atoms and histograms as weights this is the distance between two histograms.
    p : float >= 1, default 1

    Returns
    -------
    float
        ``W_p = (inf over couplings of E|X - Y|^p)^(1/p)``; POT's ``ot.wasserstein_1d``
        returns ``W_p^p``, whose p-th root is taken here.
    """
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not p >= 1:
        raise ValueError(f"p must be a real number >= 1, got {p!r}")
    u = _check_values(u_values, "u_values")
    v = _check_values(v_values, "v_values")
    uw = None if u_weights is None else _check_masses(u_weights, "u_weights", size=u.size,
                                                       what="u_values")
    vw = None if v_weights is None else _check_masses(v_weights, "v_weights", size=v.size,
                                                       what="v_values")
    cost = float(ot.wasserstein_1d(u, v, uw, vw, p=p))
    return max(cost, 0.0) ** (1.0 / p)


def _prediction_arrays(y_true, predictions) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """True ratings and one prediction array per model (fitted estimators are asked)."""
    truth = y_true.ratings if isinstance(y_true, RatingMatrix) else y_true
    truth = _check_values(truth, "y_true")
    if not hasattr(predictions, "items") or len(predictions) == 0:
        raise ValueError("predictions must be a non-empty mapping of model name to fitted "
                         "estimator or prediction array")
    out = {}
    for name, pred in predictions.items():  # a handful of models, not a hot path
        if hasattr(pred, "predict"):
            if not isinstance(y_true, RatingMatrix):
                raise ValueError(f"predictions[{name!r}] is an estimator; pass y_true as the "
                                 "RatingMatrix to predict (e.g. split.test)")
            pred = pred.predict(y_true)
        pred = _check_values(pred, f"predictions[{name!r}]")
        if pred.shape != truth.shape:
            raise ValueError(f"predictions[{name!r}] has {pred.size} values but y_true has "
                             f"{truth.size}; predict the same pairs")
        out[str(name)] = pred
    return truth, out


def wasserstein_table(y_true, predictions, *, grid=None) -> pd.DataFrame:
    """Distribution of each model's predictions against the true ratings.

    Parameters
    ----------
    y_true : RatingMatrix or array-like of shape (n,)
        The test ratings.
    predictions : mapping of str to fitted estimator or array-like of shape (n,)
        Estimators are asked ``predict(y_true)`` (``y_true`` must then be a RatingMatrix).
    grid : array-like, optional
        Rating grid for the star columns; ``rating_grid(y_true)`` when omitted.

    Returns
    -------
    DataFrame
        One row for the test ratings, then one per model, with columns ``mean``, ``std``,
        ``std_ratio`` (std / std of the test ratings: below 1 means shrinkage towards the
        mean), ``rmse`` (pairs each prediction with its rating), ``w1`` and ``w2`` (optimal
        coupling of the two distributions; ``w2 <= rmse``), and ``w1_stars``: W1 after
        showing predictions as stars (clipped and rounded to the grid).
    """
    truth, preds = _prediction_arrays(y_true, predictions)
    grid = rating_grid(truth) if grid is None else _check_grid(grid)
    true_std = float(truth.std())
    if not true_std > 0:
        raise ValueError(f"y_true holds one value only ({float(truth[0]):g}); the spread of the "
                         "predictions cannot be compared with it")
    rows = {"test ratings": {"mean": float(truth.mean()), "std": true_std, "std_ratio": 1.0,
                             "rmse": 0.0, "w1": 0.0, "w2": 0.0, "w1_stars": 0.0}}
    for name, pred in preds.items():  # one row per model
        rows[name] = {
            "mean": float(pred.mean()),
            "std": float(pred.std()),
            "std_ratio": float(pred.std()) / true_std,
            "rmse": rmse(truth, pred),
            "w1": wasserstein_distance_1d(pred, truth, p=1),
            "w2": wasserstein_distance_1d(pred, truth, p=2),
            "w1_stars": wasserstein_distance_1d(snap_to_grid(pred, grid), truth, p=1),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def predictions_frame(y_true, predictions, *, stars=False, grid=None,
                      label="test ratings") -> pd.DataFrame:
    """Long table (``model``, ``rating``) of the test ratings and every model's predictions,
    for one seaborn call, e.g. ``sns.ecdfplot(frame, x="rating", hue="model")``.

    Parameters
    ----------
    y_true, predictions : as in :func:`wasserstein_table`
    stars : bool, default False
        Show each prediction as stars: clipped and rounded to ``grid``
        (:func:`snap_to_grid`), so it can be counted beside the true ratings.
    grid : array-like, optional
        ``rating_grid(y_true)`` when omitted.
    label : str
        Name of the true ratings in the ``model`` column.

    Returns
    -------
    DataFrame with columns ``model`` (ordered categorical: ``label``, then the models) and
    ``rating``; ``(1 + n_models) * n`` rows.
    """
    truth, preds = _prediction_arrays(y_true, predictions)
    names = [label, *preds]
    if len(set(names)) != len(names):
        raise ValueError(f"label {label!r} is also a model name; pass another label")
    values = np.concatenate([truth, *preds.values()])
    if stars:
        grid = rating_grid(truth) if grid is None else _check_grid(grid)
        values[truth.size:] = snap_to_grid(values[truth.size:], grid)
    model = np.repeat(np.arange(len(names)), truth.size)
    return pd.DataFrame({
        "model": pd.Categorical.from_codes(model, categories=names, ordered=True),
        "rating": values,
    })


# ---------------------------------------------------------------------- barycenters
def _support_for(grid: np.ndarray, support) -> tuple[np.ndarray, np.ndarray]:
    """Support of a fixed-support barycenter and the position of each grid point in it."""
    if support is None:
        return grid, np.arange(grid.size)
    support = _check_grid(support, "support")
    pos = np.clip(np.searchsorted(support, grid), 0, support.size - 1)
    scale = max(1.0, float(np.abs(support).max()))
    missing = np.abs(support[pos] - grid) > _GRID_TOL * scale
    if missing.any():
        k = int(np.flatnonzero(missing)[0])
        raise ValueError(
            f"support must contain every grid point, but grid value {float(grid[k]):g} is not in "
            "it; use a support that refines the grid (e.g. step 0.1 from grid[0] to grid[-1])"
        )
    return support, pos


def entropic_barycenter(hists, grid, *, reg=5e-3, weights=None, support=None,
                        max_iter=20000, tol=1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Entropic W2 barycenter of histograms on a fixed support (``ot.barycenter``).

    Iterative Bregman projections (Benamou et al. 2015) for
    ``argmin_b sum_j w_j W_reg(b, h_j)`` with cost ``(x - y)^2 / max (x - y)^2`` on the
    support, so ``reg`` is relative to the squared width of the support: it blurs the
    barycenter by a standard deviation of about ``width * sqrt(reg / 2)``.

    Parameters
    ----------
    hists : array-like of shape (n_histograms, n_grid)
        Non-negative masses on ``grid`` (rows are normalised here).
    grid : array-like of shape (n_grid,)
    reg : float > 0, default 5e-3
        Entropic regularisation (relative, see above); smaller values are sharper but
        need many more Sinkhorn iterations. Too small a value overflows
        ``exp(-cost / reg)``; that is reported as a ValueError.
    weights : array-like of shape (n_histograms,), optional
        Weight of each histogram (normalised); uniform when omitted.
    support : array-like of shape (n_support,), optional
        Points the barycenter may use; must contain the grid (a finer grid lets the
        barycenter sit between rating values). The grid itself when omitted.
    max_iter, tol : Sinkhorn iteration limit and stopping threshold (POT's
        ``numItermax``, ``stopThr``).

    Returns
    -------
    support : ndarray of shape (n_support,)
    masses : ndarray of shape (n_support,), summing to 1
    """
    grid = _check_grid(grid)
    hists = _check_histograms(hists, grid)
    w = _check_weights(weights, hists.shape[0])
    reg = check_positive(reg, "reg")
    support, pos = _support_for(grid, support)
    if support.size == 1:
        return support, np.ones(1)
    A = np.zeros((support.size, hists.shape[0]))
    A[pos] = hists.T
    M = (support[:, None] - support[None, :]) ** 2
    M /= M.max()
    # POT 0.9's method="sinkhorn" starts its scalings at the *unweighted* geometric mean
    # and its updates keep their weighted geometric mean fixed, so with non-uniform
    # weights it converges to a wrong fixed point (fix proposed in PythonOT/POT PR #870);
    # "sinkhorn_log" is right for any weights but far slower, so it is kept for that case.
    uniform = bool(np.all(w == w[0]))
    method = "sinkhorn" if uniform else "sinkhorn_log"
    errors = {"over": "raise", "invalid": "raise", "under": "ignore",
              "divide": "raise" if uniform else "ignore"}  # log(0) = -inf is fine in logs
    problem = (f"the entropic barycenter overflowed at reg={reg:g}; increase reg "
               "(exp(-1/reg) must stay far from 0, e.g. reg >= 2e-3) or use a coarser support")
    try:
        with np.errstate(**errors):
            bary = ot.barycenter(A, M, reg, weights=w, method=method, numItermax=max_iter,
                                 stopThr=tol)
    except FloatingPointError as exc:
        raise ValueError(f"{problem} ({exc})") from exc
    if not np.all(np.isfinite(bary)):
        raise ValueError(problem)
    bary = np.asarray(bary, dtype=np.float64)
    return support, bary / bary.sum()


def _quantile_levels(hists: np.ndarray, levels: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Quantile function of each histogram at ``levels``: shape (n_histograms, n_levels).

    Vectorised over histograms by offsetting row j's CDF by 2j, so one ``searchsorted``
    on the concatenated CDFs answers every (histogram, level) query.
    """
    n, m = hists.shape
    cdf = np.cumsum(hists, axis=1)
    cdf[:, -1] = 1.0  # remove rounding so the top level always maps to the last atom
    offset = 2.0 * np.arange(n)[:, None]
    flat = (cdf + offset).ravel()
    query = (levels[None, :] + offset).ravel()
    pos = np.searchsorted(flat, query, side="left").reshape(n, levels.size)
    idx = np.clip(pos - m * np.arange(n)[:, None], 0, m - 1)
    return grid[idx]


def quantile_barycenter(hists, grid, *, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """The exact W2 barycenter of histograms on the line (no regularisation).

    On the line the W2 barycenter's quantile function is the weighted average of the
    quantile functions. For histograms on a grid every quantile function is a step
    function, so the barycenter is discrete: one atom per interval between consecutive
    CDF levels of any input.

    Parameters
    ----------
    hists : array-like of shape (n_histograms, n_grid)
    grid : array-like of shape (n_grid,)
    weights : array-like of shape (n_histograms,), optional

    Returns
    -------
    locations : ndarray of shape (n_atoms,), non-decreasing
    masses : ndarray of shape (n_atoms,), summing to 1
    """
    grid = _check_grid(grid)
    hists = _check_histograms(hists, grid)
    w = _check_weights(weights, hists.shape[0])
    levels = np.unique(np.clip(np.cumsum(hists, axis=1), 0.0, 1.0))
    levels = np.union1d(levels, [0.0, 1.0])
    masses = np.diff(levels)
    keep = masses > 1e-12  # drop rounding slivers between equal levels
    mids = 0.5 * (levels[:-1] + levels[1:])[keep]
    locations = w @ _quantile_levels(hists, mids, grid)
    masses = masses[keep]
    return locations, masses / masses.sum()


def free_support_barycenter(hists, grid, *, n_atoms=50, weights=None, max_iter=100,
                            tol=1e-9) -> tuple[np.ndarray, np.ndarray]:
    """W2 barycenter on ``n_atoms`` free atoms of equal mass
    (``ot.lp.free_support_barycenter``, Cuturi & Doucet 2014).

    The atoms start at the pooled distribution's quantiles and move to the barycentric
    projections of exact transport plans until they stop moving. On the line the answer
    is known: atom k sits at the weighted average, over histograms, of the mean of each
    quantile function over ``[k/n_atoms, (k+1)/n_atoms]``.

    Parameters
    ----------
    hists : array-like of shape (n_histograms, n_grid)
    grid : array-like of shape (n_grid,)
    n_atoms : int, default 50
    weights : array-like of shape (n_histograms,), optional
    max_iter, tol : fixed-point iteration limit and threshold on the squared displacement.

    Returns
    -------
    locations : ndarray of shape (n_atoms,), sorted
    masses : ndarray of shape (n_atoms,), all ``1 / n_atoms``
    """
    grid = _check_grid(grid)
    hists = _check_histograms(hists, grid)
    w = _check_weights(weights, hists.shape[0])
    n_atoms = check_positive_int(n_atoms, "n_atoms")
    pooled = w @ hists
    start = _quantile_levels(pooled[None, :], (np.arange(n_atoms) + 0.5) / n_atoms, grid)[0]
    # distinct starting atoms, so the first plans are the monotone (optimal) ones
    start = start + 1e-6 * (np.arange(n_atoms) - (n_atoms - 1) / 2) / n_atoms
    locations = [grid[:, None]] * hists.shape[0]
    X = ot.lp.free_support_barycenter(locations, list(hists), start[:, None], weights=w,
                                      numItermax=max_iter, stopThr=tol)
    X = np.sort(np.asarray(X, dtype=np.float64)[:, 0])
    return X, np.full(n_atoms, 1.0 / n_atoms)


# ---------------------------------------------------------------------- groups of users
def activity_groups(rm: RatingMatrix, n_groups=4) -> pd.Series:
    """Activity group of each user: quantile bins of the number of ratings per user.

    Parameters
    ----------
    rm : RatingMatrix
    n_groups : int, default 4
        Number of quantile bins (fewer when counts tie at the bin edges).

    Returns
    -------
    Series of shape (n_users,), indexed by inner user index
        Ordered categorical labels such as ``"20-32 ratings"``; missing for users without
        a rating in ``rm``.
    """
    n_groups = check_positive_int(n_groups, "n_groups")
    counts = rm.user_counts()
    active = counts > 0
    codes, edges = pd.qcut(counts[active], n_groups, labels=False, retbins=True,
                           duplicates="drop")
    lo = np.r_[edges[0], np.floor(edges[1:-1]) + 1].astype(int)
    hi = np.floor(edges[1:]).astype(int)
    labels = [f"{a}-{b} ratings" for a, b in zip(lo, hi, strict=True)]
    full = np.full(rm.n_users, -1)
    full[active] = codes
    return pd.Series(pd.Categorical.from_codes(full, categories=labels, ordered=True),
                     name="activity")


def genre_matrix(rm: RatingMatrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """Item-by-genre indicator matrix from ``rm.item_info["genres"]`` ("A|B|C").

    Returns
    -------
    G : csr_matrix of shape (n_items, n_genres), entries 0/1
        Items absent from ``item_info`` and ml-latest's "(no genres listed)" get no genre.
    genres : ndarray of str, shape (n_genres,), sorted
    """
    info = rm.item_info
    if info is None or "genres" not in getattr(info, "columns", ()):
        raise ValueError(
            f"{rm.name!r} has no item genres (item_info with a 'genres' column); load a "
            "MovieLens dataset, e.g. load_dataset('ml-100k')"
        )
    genres = info["genres"].reindex(rm.item_ids).fillna("").astype(str)
    dummies = genres.str.get_dummies(sep="|")
    dummies = dummies.drop(columns=[c for c in (_NO_GENRE, "") if c in dummies.columns])
    if dummies.shape[1] == 0:
        raise ValueError(f"no item of {rm.name!r} has a genre")
    dummies = dummies.reindex(columns=sorted(dummies.columns))
    G = sp.csr_matrix(dummies.to_numpy(dtype=np.float64))
    return G, np.asarray(dummies.columns, dtype=str)


def _member_histograms(rm, by, n_groups, genres, min_ratings, grid):
    """Per-member count histograms and each member's group (members: users, or
    (user, genre) pairs)."""
    if by == "activity":
        group = activity_groups(rm, n_groups)
        counts = histograms(rm.ratings, grid, rm.users, n_groups=rm.n_users, normalize=False)
        keep = (group.cat.codes.to_numpy() >= 0) & (counts.sum(axis=1) >= min_ratings)
        return counts[keep], group.cat.codes.to_numpy()[keep], list(group.cat.categories)
    G, names = genre_matrix(rm)
    chosen = list(names) if genres is None else list(genres)
    unknown = sorted(set(chosen) - set(names))
    if unknown or not chosen:
        raise ValueError(f"unknown genres {unknown}; {rm.name!r} has: {', '.join(names)}")
    cols = np.searchsorted(names, chosen)
    # one (rating, genre) pair per genre of the rated item: rows of G picked per rating
    pairs = G[:, cols].tocsr()[rm.items].tocoo()
    rows, genre_of = pairs.row, pairs.col
    member = rm.users[rows].astype(np.int64) * len(chosen) + genre_of
    counts = histograms(rm.ratings[rows], grid, member, n_groups=rm.n_users * len(chosen),
                        normalize=False)
    keep = counts.sum(axis=1) >= min_ratings
    return counts[keep], (np.arange(counts.shape[0]) % len(chosen))[keep], chosen


def _frame_rows(group, method, locations, masses, n_members):
    order = np.argsort(locations, kind="stable")
    return pd.DataFrame({"group": group, "method": method, "rating": locations[order],
                         "mass": masses[order], "cdf": np.cumsum(masses[order]),
                         "n_users": n_members})


_METHODS = ("mean of histograms", "entropic barycenter", "free-support barycenter",
            "exact W2 barycenter")


def group_barycenters(rm: RatingMatrix, by="activity", *, n_groups=4, genres=None,
                      min_ratings=10, reg=5e-3, support_step=0.1, n_atoms=50, grid=None,
                      methods=_METHODS) -> pd.DataFrame:
    """Rating histograms of groups of users summarised four ways, as one tidy table.

    Every member's histogram has weight 1 in its group (a heavy rater counts as much as
    a light one). Per group:

    * ``"mean of histograms"``: the arithmetic mean, a mixture: it averages the CDFs
      vertically and keeps the spread *between* users' typical ratings;
    * ``"entropic barycenter"``: :func:`entropic_barycenter` on a support of step
      ``support_step`` (finer than the rating grid, so it can sit between stars);
    * ``"free-support barycenter"``: :func:`free_support_barycenter` with ``n_atoms``;
    * ``"exact W2 barycenter"``: :func:`quantile_barycenter`, the closed form the other
      two approximate. It averages the CDFs horizontally: same mean as the mixture,
      smaller variance (see :func:`barycenter_moments`).

    Parameters
    ----------
    rm : RatingMatrix
    by : {"activity", "genre"}
        ``"activity"``: members are users, grouped by quantiles of their number of ratings
        (``n_groups`` bins). ``"genre"``: members are (user, genre) pairs, the histogram of
        one user's ratings of one genre's items, grouped by genre.
    n_groups : int, default 4
        Activity bins (``by="activity"`` only).
    genres : list of str, optional
        Genres to keep (``by="genre"``); all when omitted.
    min_ratings : int, default 10
        Members with fewer ratings are left out (their histograms are mostly noise);
        ``n_users`` in the result says how many remain.
    reg : float, default 5e-3
        Entropic regularisation, relative to the squared width of the grid.
    support_step : float, default 0.1
        Step of the entropic barycenter's support (must divide the grid step).
    n_atoms : int, default 50
        Atoms of the free-support barycenter.
    grid : array-like, optional
        Rating grid; ``rating_grid(rm.ratings)`` when omitted.
    methods : sequence of str
        Any of the four names above.

    Returns
    -------
    DataFrame
        Columns ``group`` (ordered categorical), ``method``, ``rating`` (atom location),
        ``mass``, ``cdf`` (cumulative mass, for a step plot) and ``n_users``.
    """
    by = check_choice(by, "by", ("activity", "genre"))
    bad = [m for m in methods if m not in _METHODS]
    if bad or not len(methods):
        raise ValueError(f"unknown methods {bad}; choose from {list(_METHODS)}")
    min_ratings = check_positive_int(min_ratings, "min_ratings")
    grid = rating_grid(rm.ratings) if grid is None else _check_grid(grid)
    support_step = check_positive(support_step, "support_step")
    n_support = int(round((grid[-1] - grid[0]) / support_step)) + 1
    support = grid[0] + support_step * np.arange(n_support)
    counts, member_group, labels = _member_histograms(rm, by, n_groups, genres, min_ratings,
                                                      grid)
    frames = []
    for g, label in enumerate(labels):  # a handful of groups; each call is vectorised
        hists = counts[member_group == g]
        if hists.shape[0] == 0:
            raise ValueError(f"group {label!r} has no member with >= {min_ratings} ratings; "
                             "lower min_ratings or choose other groups")
        n = hists.shape[0]
        if "mean of histograms" in methods:
            mean = _check_histograms(hists, grid).mean(axis=0)
            frames.append(_frame_rows(label, "mean of histograms", grid, mean, n))
        if "entropic barycenter" in methods:
            frames.append(_frame_rows(label, "entropic barycenter",
                                      *entropic_barycenter(hists, grid, reg=reg,
                                                           support=support), n))
        if "free-support barycenter" in methods:
            frames.append(_frame_rows(label, "free-support barycenter",
                                      *free_support_barycenter(hists, grid, n_atoms=n_atoms),
                                      n))
        if "exact W2 barycenter" in methods:
            frames.append(_frame_rows(label, "exact W2 barycenter",
                                      *quantile_barycenter(hists, grid), n))
    out = pd.concat(frames, ignore_index=True)
    out["group"] = pd.Categorical(out["group"], categories=labels, ordered=True)
    return out


def barycenter_moments(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of every (group, method) distribution of
    :func:`group_barycenters`, with the number of users.

    The mixture (mean of histograms) and the exact W2 barycenter share their mean, and
    ``var(mixture) = var(barycenter) + sum_j w_j W2(h_j, barycenter)^2``: with ``Q_j`` the
    quantile functions and ``Q`` their average, ``sum_j w_j int (Q_j - Q)^2`` is both the
    gap between the second moments and the barycenter's objective. The gap measures how
    much the users' histograms differ (in location and in shape).
    """
    missing = {"group", "method", "rating", "mass", "n_users"} - set(frame.columns)
    if missing:
        raise ValueError(f"frame lacks columns {sorted(missing)}; pass group_barycenters()'s "
                         "result")
    f = frame.assign(m1=frame["mass"] * frame["rating"], m2=frame["mass"] * frame["rating"] ** 2)
    g = f.groupby(["group", "method"], observed=True, sort=False)
    sums = g[["mass", "m1", "m2"]].sum()
    mean = sums["m1"] / sums["mass"]
    var = (sums["m2"] / sums["mass"] - mean**2).clip(lower=0.0)
    return pd.DataFrame({"mean": mean, "std": np.sqrt(var), "n_users": g["n_users"].first()})


# ---------------------------------------------------------------------- users and genres
def genre_profiles(rm: RatingMatrix, *, min_rating=None) -> pd.DataFrame:
    """Each user's distribution of mass over genres.

    Every counted rating gives mass 1, shared equally by its item's genres (so a
    three-genre film does not weigh three times), and each user's row is normalised.
    With ``min_rating`` (e.g. 4) only ratings >= ``min_rating`` count: the profile is
    what the user *likes*, not merely what the user watched.

    Returns
    -------
    DataFrame of shape (n_profiled_users, n_genres)
        Indexed by raw user id; columns are genre names; rows sum to 1. Users without a
        counted rating of an item with a genre have no profile and are left out; their
        number is in ``attrs["users_without_profile"]``.
    """
    G, names = genre_matrix(rm)
    share = sp.diags(1.0 / np.maximum(np.asarray(G.sum(axis=1)).ravel(), 1.0)) @ G
    counted = np.ones(rm.nnz) if min_rating is None else (rm.ratings >= min_rating) * 1.0
    R = sp.csr_matrix((counted, (rm.users, rm.items)), shape=rm.shape)
    mass = np.asarray((R @ share).todense())
    total = mass.sum(axis=1)
    has = total > 0
    out = pd.DataFrame(mass[has] / total[has, None], index=rm.user_ids[has], columns=names)
    out.index.name = "user"
    out.attrs["users_without_profile"] = int((~has).sum())
    return out


def genre_ground_cost(rm: RatingMatrix, kind="jaccard") -> pd.DataFrame:
    """Genre-to-genre ground cost for OT between genre profiles.

    ``"jaccard"``: ``1 - |I_g & I_h| / |I_g | I_h|`` where ``I_g`` is the set of items of
    genre g. The Jaccard distance is a metric, so W1 with this cost is a metric on
    profiles; genres that share many films (Action, Adventure, Thriller) are close.
    ``"binary"``: 0 on the diagonal, 1 elsewhere; W1 is then the total-variation distance,
    which, like cosine, treats all genres as unrelated.

    Returns
    -------
    DataFrame of shape (n_genres, n_genres), genre names on both axes
    """
    kind = check_choice(kind, "kind", ("jaccard", "binary"))
    G, names = genre_matrix(rm)
    if kind == "binary":
        cost = 1.0 - np.eye(names.size)
    else:
        both = np.asarray((G.T @ G).todense())
        size = np.diag(both)
        either = size[:, None] + size[None, :] - both
        cost = 1.0 - np.divide(both, either, out=np.zeros_like(both), where=either > 0)
        np.fill_diagonal(cost, 0.0)
    return pd.DataFrame(cost, index=names, columns=names)


def _check_profiles_cost(profiles, cost, name: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(profiles, pd.DataFrame):
        raise ValueError(f"{name} must be a DataFrame of genre profiles (genre_profiles())")
    if isinstance(cost, pd.DataFrame):
        if list(cost.index) != list(profiles.columns) or list(cost.columns) != list(
                profiles.columns):
            raise ValueError(f"cost is indexed by {list(cost.columns)} but {name} has columns "
                             f"{list(profiles.columns)}; build both from the same data")
        M = np.ascontiguousarray(cost.to_numpy(dtype=np.float64))
    else:
        M = np.ascontiguousarray(cost, dtype=np.float64)
    g = profiles.shape[1]
    if M.shape != (g, g):
        raise ValueError(f"cost has shape {M.shape}, expected ({g}, {g}) for {g} genres")
    if not np.isfinite(M).all() or (M < 0).any():
        raise ValueError("cost must be finite and >= 0")
    P = np.ascontiguousarray(profiles.to_numpy(dtype=np.float64))
    if (P < 0).any() or not np.isfinite(P).all():
        raise ValueError(f"{name} must hold finite masses >= 0")
    totals = P.sum(axis=1)
    if (totals <= 0).any():
        raise ValueError(f"{name} row {profiles.index[np.flatnonzero(totals <= 0)[0]]!r} has "
                         "zero mass")
    return P / totals[:, None], M


def ot_distance_matrix(profiles_a: pd.DataFrame, profiles_b: pd.DataFrame,
                       cost) -> pd.DataFrame:
    """Exact OT cost (``ot.emd2``) between every row of ``profiles_a`` and of ``profiles_b``.

    Parameters
    ----------
    profiles_a, profiles_b : DataFrame of shape (n_a, n_genres), (n_b, n_genres)
        Distributions over the same genres (rows are normalised here).
    cost : DataFrame or array of shape (n_genres, n_genres)
        Ground cost, e.g. :func:`genre_ground_cost`. With a metric cost the result is W1.

    Returns
    -------
    DataFrame of shape (n_a, n_b), indexed by the two profiles' indices
    """
    A, M = _check_profiles_cost(profiles_a, cost, "profiles_a")
    B, _ = _check_profiles_cost(profiles_b, cost, "profiles_b")
    if list(profiles_a.columns) != list(profiles_b.columns):
        raise ValueError("profiles_a and profiles_b must have the same genre columns")
    # One linear program per pair; POT takes all of b's columns per call (an n_b-column b),
    # so the Python loop is over rows of a only: a handful of query users, not a hot path.
    out = np.empty((A.shape[0], B.shape[0]))
    for r in range(A.shape[0]):
        out[r] = ot.emd2(A[r], np.ascontiguousarray(B.T), M)
    return pd.DataFrame(np.maximum(out, 0.0), index=profiles_a.index, columns=profiles_b.index)


def nearest_users(profiles: pd.DataFrame, user, cost) -> pd.DataFrame:
    """Every other user ranked by OT distance, total variation and cosine similarity to
    ``user``.

    The three differ in two ways, which the table separates: OT and total variation
    (OT with the 0/1 cost, ``0.5 * ||p - q||_1``) differ only by the ground cost, i.e. by
    how much it discounts mass moved between related genres; total variation and cosine
    differ only by geometry: mass counted linearly against an angle, in which the
    heaviest genres dominate (coordinates enter squared).

    Parameters
    ----------
    profiles : DataFrame of shape (n_users, n_genres), from :func:`genre_profiles`
    user : raw user id, a row of ``profiles``
    cost : ground cost, from :func:`genre_ground_cost`

    Returns
    -------
    DataFrame indexed by raw user id (``user`` excluded), sorted by OT distance
        Columns ``ot_distance``, ``ot_rank`` (1 = nearest), ``tv_distance``, ``tv_rank``,
        ``cosine_similarity``, ``cosine_rank`` (1 = most similar) and ``top_genres`` (the
        user's three heaviest genres, for reading the table).
    """
    if user not in profiles.index:
        raise ValueError(f"user {user!r} has no genre profile; pick one of profiles.index "
                         f"(e.g. {profiles.index[0]!r})")
    others = profiles.drop(index=user)
    if others.shape[0] == 0:
        raise ValueError("profiles must hold at least one user besides the query user")
    dist = ot_distance_matrix(profiles.loc[[user]], others, cost).iloc[0]
    P, _ = _check_profiles_cost(others, cost, "profiles")
    q, _ = _check_profiles_cost(profiles.loc[[user]], cost, "profiles")
    tv = 0.5 * np.abs(P - q).sum(axis=1)
    cosine = (P @ q[0]) / (np.linalg.norm(P, axis=1) * np.linalg.norm(q[0]))
    top = np.argsort(-P, axis=1, kind="stable")[:, :3]
    names = np.asarray(profiles.columns, dtype=str)[top]
    rank = lambda x: pd.Series(x).rank(method="min").to_numpy().astype(int)  # noqa: E731
    table = pd.DataFrame({
        "ot_distance": dist.to_numpy(),
        "ot_rank": rank(dist.to_numpy()),
        "tv_distance": tv,
        "tv_rank": rank(tv),
        "cosine_similarity": cosine,
        "cosine_rank": rank(-cosine),
        "top_genres": pd.Series(names[:, 0]).str.cat([names[:, 1], names[:, 2]],
                                                     sep=", ").to_numpy(),
    }, index=others.index)
    return table.sort_values(["ot_rank", "cosine_rank"], kind="stable")


def neighbour_agreement(table: pd.DataFrame, n_neighbors=10) -> pd.DataFrame:
    """How closely total variation and cosine reproduce the OT neighbourhood of
    :func:`nearest_users`.

    Returns
    -------
    DataFrame with rows ``"total variation"`` and ``"cosine"``
        ``shared_top_k``: users in both the OT and that measure's top-``n_neighbors``;
        ``spearman``: rank correlation of OT distance with that measure's dissimilarity
        (``tv_distance``, ``-cosine_similarity``) over all users (1 = the same order).
    """
    n_neighbors = check_positive_int(n_neighbors, "n_neighbors")
    needed = {"ot_rank", "ot_distance", "tv_rank", "tv_distance", "cosine_rank",
              "cosine_similarity"}
    missing = needed - set(table)
    if missing:
        raise ValueError(f"table lacks columns {sorted(missing)}; pass nearest_users()'s result")
    near = table["ot_rank"] <= n_neighbors
    rows = {
        "total variation": (table["tv_rank"], table["tv_distance"]),
        "cosine": (table["cosine_rank"], -table["cosine_similarity"]),
    }
    return pd.DataFrame({
        name: {"shared_top_k": int((near & (r <= n_neighbors)).sum()),
               "spearman": float(table["ot_distance"].corr(d, method="spearman"))}
        for name, (r, d) in rows.items()
    }).T.astype({"shared_top_k": int})
