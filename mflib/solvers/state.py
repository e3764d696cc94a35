"""State shared by the solvers that read the training layout (ALS, BCD, Lasso-MF)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..base import FactorState
from ..data.layout import TrainingLayout


@dataclass
class LayoutState(FactorState):
    """Model parameters plus the training layout (state copies share it: it has no
    ``copy`` method, so :meth:`FactorState.copy` passes it along)."""

    layout: TrainingLayout | None = None


def residuals(state: FactorState, layout: TrainingLayout) -> np.ndarray:
    """``r - r_hat`` for every training rating, in CSR order, float64."""
    return layout.ratings_csr - state.predict(layout.user_of_rating, layout.user_items)


def initial_factors(rng, n_users: int, n_items: int, k: int, std: float,
                    dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """User then item factors with N(0, std^2) entries drawn from ``rng`` (a Generator)."""
    P = rng.normal(0.0, std, (n_users, k)).astype(dtype, copy=False)
    Q = rng.normal(0.0, std, (n_items, k)).astype(dtype, copy=False)
    return P, Q
