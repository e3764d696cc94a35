"""Pictures of an optimisation path on the Grassmann manifold: a callback that records
the iterates, and their principal-component coordinates."""

from __future__ import annotations

import numpy as np


class PathRecorder:
    """Callback keeping every iterate ``U`` of a Grassmann estimator (``points``), for
    pictures of the optimisation path; memory is ``n_items * k`` floats per iteration."""

    def __init__(self):
        self.points: list[np.ndarray] = []

    def __call__(self, iteration, metrics, model):
        self.points.append(model._current_point.copy())


def trajectory_pca(points, n_components: int = 2) -> np.ndarray:
    """Coordinates (len(points), n_components) of a path on Gr(n, k) for plotting.

    Each representative is rotated onto the last point (orthogonal Procrustes,
    ``U O`` with ``O = polar(U^T U_last)``), so the coordinates depend on the
    subspaces only; then ordinary PCA of the flattened aligned matrices.
    """
    last = points[-1]
    aligned = []
    for U in points:
        a, _, bt = np.linalg.svd(U.T @ last)
        aligned.append((U @ (a @ bt)).ravel())
    X = np.asarray(aligned)
    X = X - X.mean(axis=0)
    left, s, _ = np.linalg.svd(X, full_matrices=False)
    return left[:, :n_components] * s[:n_components]
