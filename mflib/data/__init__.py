"""Data layer: dataset registry and loading, ``RatingMatrix``, splits, synthetic data."""

from .datasets import (
    REGISTRY,
    ChecksumError,
    DataNotFoundError,
    fetch,
    first_available,
    get_dataset,
    list_datasets,
    load_dataset,
    load_predefined_split,
)
from .ratings import RatingMatrix, as_rating_matrix
from .split import (
    Split,
    cold_start_split,
    kfold,
    kfold_split,
    make_split,
    random_split,
    summarize_splits,
    temporal_split,
    user_split,
)
from .synthetic import LowRankTruth, make_low_rank

__all__ = [
    "REGISTRY",
    "ChecksumError",
    "DataNotFoundError",
    "LowRankTruth",
    "RatingMatrix",
    "Split",
    "as_rating_matrix",
    "cold_start_split",
    "fetch",
    "first_available",
    "get_dataset",
    "kfold",
    "kfold_split",
    "list_datasets",
    "load_dataset",
    "load_predefined_split",
    "make_low_rank",
    "make_split",
    "random_split",
    "summarize_splits",
    "temporal_split",
    "user_split",
]
