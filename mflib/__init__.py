"""mflib: matrix factorization and matrix completion on rating data.

Every estimator follows scikit-learn's conventions; see :class:`FactorizationEstimator`.
"""

from .base import FactorizationEstimator, FactorState
from .callbacks import EarlyStopping, LogMetrics, TimeBudget
from .data import RatingMatrix, load_dataset, load_predefined_split, make_low_rank, make_split
from .execution import config_context
from .fitting import ConvergenceWarning, History, StopFit, run_loop
from .persistence import load
from .solvers.als import ALS
from .solvers.baselines import (
    BiasBaseline,
    GlobalMean,
    ItemMean,
    Popularity,
    UserItemMean,
    UserMean,
)
from .solvers.bayes import BayesianMF
from .solvers.bcd import BiasedBCD
from .solvers.blend import Blend
from .solvers.content import ContentBased
from .solvers.ensemble import CFEnsemble
from .solvers.euclidean_gd import EuclideanGD
from .solvers.hybrid import Hybrid
from .solvers.lasso_mf import LassoMF
from .solvers.riemannian import DANE, RAGD, RGD, RSARAH, RSPIDER, RSVRG, Catalyst
from .solvers.second_order import LevenbergMarquardt, NewtonCG, NewtonMF
from .solvers.sgd import SGD, SVRG
from .solvers.soft_impute import SoftImpute, soft_impute_path
from .solvers.soft_impute_als import SoftImputeALS
from .solvers.svdpp import SVDpp
from .solvers.temporal import DriftBaseline
from .solvers.weighted import AdamMF, WeightedALS

__version__ = "0.1.0"

__all__ = [
    "ALS",
    "AdamMF",
    "BayesianMF",
    "BiasBaseline",
    "BiasedBCD",
    "Blend",
    "CFEnsemble",
    "Catalyst",
    "ContentBased",
    "ConvergenceWarning",
    "DANE",
    "DriftBaseline",
    "EarlyStopping",
    "EuclideanGD",
    "FactorState",
    "FactorizationEstimator",
    "GlobalMean",
    "History",
    "Hybrid",
    "ItemMean",
    "LassoMF",
    "LevenbergMarquardt",
    "LogMetrics",
    "NewtonCG",
    "NewtonMF",
    "Popularity",
    "RatingMatrix",
    "RAGD",
    "RGD",
    "RSARAH",
    "RSPIDER",
    "RSVRG",
    "SGD",
    "SVRG",
    "SoftImpute",
    "SoftImputeALS",
    "StopFit",
    "SVDpp",
    "TimeBudget",
    "UserItemMean",
    "UserMean",
    "WeightedALS",
    "config_context",
    "load_dataset",
    "load_predefined_split",
    "make_low_rank",
    "load",
    "make_split",
    "run_loop",
    "soft_impute_path",
]
