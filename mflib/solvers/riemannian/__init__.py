"""Riemannian optimisation on the Grassmann manifold for matrix completion.

Geometry (:mod:`.manifolds`), the variable-projection problem (:mod:`.completion`),
the line search (:mod:`.line_search`) and the optimisers (:mod:`.optimizers`) are kept
apart, so each can be swapped or tested on its own.
"""

from .completion import Evaluation, VariableProjectionProblem
from .line_search import ArmijoLineSearch, LineSearchFailed, barzilai_borwein_step
from .manifolds import Grassmann
from .optimizers import RAGD, RGD, RSARAH, RSPIDER, RSVRG

__all__ = [
    "RAGD",
    "RGD",
    "RSARAH",
    "RSPIDER",
    "RSVRG",
    "ArmijoLineSearch",
    "Evaluation",
    "Grassmann",
    "LineSearchFailed",
    "VariableProjectionProblem",
    "barzilai_borwein_step",
]
