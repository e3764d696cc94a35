"""Riemannian optimisation on the Grassmann manifold for matrix completion.

Geometry (:mod:`.manifolds`), the variable-projection problem (:mod:`.completion`),
the line search (:mod:`.line_search`) and the optimisers (:mod:`.optimizers`) are kept
apart, so each can be swapped or tested on its own.
"""

from .completion import Evaluation, VariableProjectionProblem
from .line_search import ArmijoLineSearch, LineSearchFailed, barzilai_borwein_step
from .manifolds import Grassmann, time_retractions
from .optimizers import (
    DANE,
    RAGD,
    RGD,
    RSARAH,
    RSPIDER,
    RSVRG,
    Catalyst,
    EuclideanGD,
    HeavyBall,
    PathRecorder,
    ProximalObjective,
    dane_worker_gradient,
    dane_worker_solve,
    fit_models,
    partition_users,
    snapshot_bb_step,
    solve_proximal,
    summary_table,
    trajectory_pca,
    variance_reduced_epoch,
)

__all__ = [
    "DANE",
    "RAGD",
    "RGD",
    "RSARAH",
    "RSPIDER",
    "RSVRG",
    "ArmijoLineSearch",
    "Catalyst",
    "EuclideanGD",
    "ProximalObjective",
    "Evaluation",
    "Grassmann",
    "HeavyBall",
    "PathRecorder",
    "LineSearchFailed",
    "VariableProjectionProblem",
    "barzilai_borwein_step",
    "dane_worker_gradient",
    "dane_worker_solve",
    "fit_models",
    "partition_users",
    "snapshot_bb_step",
    "solve_proximal",
    "summary_table",
    "time_retractions",
    "trajectory_pca",
    "variance_reduced_epoch",
]
