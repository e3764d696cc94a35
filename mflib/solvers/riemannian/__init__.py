"""Riemannian optimisation on the Grassmann manifold for matrix completion.

Kept apart as pymanopt keeps them: the geometry (:mod:`.manifolds`), the problem
(:mod:`.completion`, f by variable projection, and :mod:`.objectives`), the line
search (:mod:`.line_search`), the shared estimator base and Armijo step (:mod:`.base`),
and one module per family of optimisers: :mod:`.first_order` (RGD, RAGD),
:mod:`.variance_reduced` (R-SVRG, R-SARAH, R-SPIDER), :mod:`.catalyst` and
:mod:`.dane`. :mod:`.paths` draws an optimisation path. Euclidean gradient descent on
the same model is :mod:`mflib.solvers.euclidean_gd`.
"""

from .base import GrassmannEstimator, GrassmannState, armijo_gradient_step, gradient_descent
from .catalyst import Catalyst
from .completion import Evaluation, VariableProjectionProblem
from .dane import DANE, dane_worker_gradient, dane_worker_solve, partition_users
from .first_order import RAGD, RGD
from .line_search import ArmijoLineSearch, LineSearchFailed, barzilai_borwein_step
from .manifolds import Grassmann, time_retractions
from .objectives import DaneLocalObjective, FullObjective, ProximalObjective
from .paths import PathRecorder, trajectory_pca
from .variance_reduced import (
    RSARAH,
    RSPIDER,
    RSVRG,
    HeavyBall,
    snapshot_bb_step,
    solve_proximal,
    spider_step_length,
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
    "DaneLocalObjective",
    "Evaluation",
    "FullObjective",
    "Grassmann",
    "GrassmannEstimator",
    "GrassmannState",
    "HeavyBall",
    "LineSearchFailed",
    "PathRecorder",
    "ProximalObjective",
    "VariableProjectionProblem",
    "armijo_gradient_step",
    "barzilai_borwein_step",
    "dane_worker_gradient",
    "dane_worker_solve",
    "gradient_descent",
    "partition_users",
    "snapshot_bb_step",
    "solve_proximal",
    "spider_step_length",
    "time_retractions",
    "trajectory_pca",
    "variance_reduced_epoch",
]
