"""Convergence and data plots (matplotlib + seaborn), used by the notebooks."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .fitting import History


def _histories(models_or_histories) -> dict[str, History]:
    out = {}
    for name, h in dict(models_or_histories).items():
        out[name] = h.history_ if hasattr(h, "history_") else h
    return out


def plot_history(models_or_histories, metrics=("objective", "val_rmse"), *, x="iteration",
                 logy=(), axes=None, title=None):
    """One panel per metric, one line per model, against ``x`` = "iteration" or "time".

    ``models_or_histories`` maps a label to a fitted estimator or a :class:`History`.
    Metrics a model does not record are skipped for that model.
    """
    hs = _histories(models_or_histories)
    metrics = list(metrics)
    if axes is None:
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4),
                                 squeeze=False)
        axes = axes[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for label, h in hs.items():
            if metric not in h:
                continue
            xs = np.arange(1, len(h) + 1) if x == "iteration" else h[x]
            ax.plot(xs, h[metric], marker="." if len(h) < 40 else None, label=label)
        ax.set_xlabel("iteration" if x == "iteration" else f"{x} (s)")
        ax.set_ylabel(metric)
        if metric in logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    if title:
        axes[0].figure.suptitle(title)
    axes[0].figure.tight_layout()
    return axes


def plot_rating_histogram(rm, ax=None):
    """Bar chart of how often each rating value occurs."""
    import pandas as pd  # noqa: PLC0415

    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    counts = pd.Series(rm.ratings).value_counts().sort_index()
    ax.bar(counts.index.astype(str), counts.to_numpy(), color="steelblue")
    ax.set_xlabel("rating")
    ax.set_ylabel("count")
    ax.set_title(f"{rm.name}: rating histogram")
    return ax


def plot_activity(rm, axes=None):
    """Ratings per user and per item, sorted, on log axes (the long tail)."""
    if axes is None:
        axes = plt.subplots(1, 2, figsize=(9, 3.2))[1]
    for ax, counts, who in ((axes[0], rm.user_counts(), "user"),
                            (axes[1], rm.item_counts(), "item")):
        c = np.sort(counts[counts > 0])[::-1]
        ax.loglog(np.arange(1, len(c) + 1), c)
        ax.set_xlabel(f"{who} rank")
        ax.set_ylabel(f"ratings per {who}")
        ax.grid(alpha=0.3, which="both")
    axes[0].figure.suptitle(f"{rm.name}: activity (log-log)")
    axes[0].figure.tight_layout()
    return axes


def plot_genres(rm, ax=None):
    """Horizontal bars: movies per genre (from ``item_info["genres"]``, "A|B|C")."""
    if rm.item_info is None or "genres" not in rm.item_info:
        raise ValueError(f"{rm.name} has no item genres (item_info['genres'])")
    ax = ax or plt.subplots(figsize=(5, 4))[1]
    counts = rm.item_info["genres"].str.get_dummies(sep="|").sum().sort_values()
    counts.plot.barh(ax=ax, title=f"{rm.name}: movies per genre")
    ax.set_xlabel("movies")
    return ax


def plot_path(points, ax=None, *, title=None):
    """An optimisation path on the Grassmann manifold in the plane of its first two
    principal components (:func:`mflib.solvers.riemannian.trajectory_pca`)."""
    from .solvers.riemannian.paths import trajectory_pca  # noqa: PLC0415

    coords = trajectory_pca(points)
    ax = ax or plt.subplots(figsize=(4.5, 3.6))[1]
    ax.plot(coords[:, 0], coords[:, 1], marker=".")
    ax.annotate("start", coords[0])
    ax.annotate("end", coords[-1])
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    return ax


def plot_lambda_path(path, axes=None, *, title=None):
    """RMSE (train and validation) and rank against ``lambda`` on a log axis.

    ``path`` is the DataFrame of :func:`mflib.soft_impute_path` (``lambda`` is its
    ``regularization`` column); the selected ``lambda`` is marked by a dashed line.
    """
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    lam = path["regularization"]
    for column in ("train_rmse", "val_rmse"):
        axes[0].plot(lam, path[column], marker=".", label=column)
    axes[1].plot(lam, path["rank"], marker=".", color="tab:green")
    for ax, label in zip(axes, ("RMSE", "rank"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("lambda")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        if "selected" in path and path["selected"].any():
            ax.axvline(lam[path["selected"]].iloc[0], ls="--", color="gray")
    axes[0].legend(fontsize="small")
    if title:
        axes[0].figure.suptitle(title)
    axes[0].figure.tight_layout()
    return axes
