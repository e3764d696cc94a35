"""No silent wrong answers: degenerate data for every estimator, fits that learn nothing,
arithmetic that runs away, and the specific cases of issue #16 (items 4-6).

Every estimator must end a fit on degenerate data either with a clear ValueError or
TypeError (naming a parameter or the data problem) or with a fitted model whose
predictions are finite and a stop reason (``conftest.check_fit_outcome``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_contract import _make as contract_instance

from mflib import (
    DANE,
    RAGD,
    RGD,
    RSARAH,
    RSPIDER,
    RSVRG,
    SGD,
    BiasedBCD,
    Catalyst,
    ConvergenceWarning,
    SoftImputeALS,
    make_split,
)
from mflib.base import FactorizationEstimator, FactorState
from mflib.data import make_low_rank
from mflib.fitting import History, StopFit, run_loop
from mflib.registry import estimators
from mflib.solvers.riemannian import Grassmann
from mflib.solvers.riemannian.dane import partition_users
from mflib.validation import POSITIVE_INT, Options, ParameterError

ESTIMATORS = sorted(estimators().items())


def _make(cls, **extra):
    """The contract suite's instance, with the ``extra`` parameters the class has."""
    names = cls().get_params()
    return contract_instance(cls, **{k: v for k, v in extra.items() if k in names})


def _case(case):
    """``(X, y, extra parameters)`` of each degenerate data set."""
    rng = np.random.default_rng(0)
    rm, _ = make_low_rank(20, 15, 2, 0.5, noise=0.1, random_state=4)
    X, y = rm.pairs(), rm.ratings
    if case == "one rating":
        return np.array([[3, 9]]), np.array([4.0]), {}
    if case == "two ratings of one user":
        return np.array([[3, 9], [3, 1]]), np.array([4.0, 2.0]), {}
    if case == "a diagonal (every user and item rated once)":
        return np.column_stack([np.arange(8), np.arange(8)]), rng.uniform(1, 5, 8), {}
    if case == "ratings of 1e8":
        return X, y * 1e8, {}
    if case == "ratings of 1e-8":
        return X, y * 1e-8, {}
    if case == "negative ratings":
        return X, -y, {}
    if case == "bool ratings":
        return X, y > 3, {}
    if case == "float32 ratings":
        return X, y.astype(np.float32), {}
    if case == "ids near 2**62":
        return X + 2**62, y, {}
    if case == "rank one":
        return X, y, {"n_factors": 1, "max_rank": 1, "init_rank": 1}
    if case == "one user constant, the rest varied":
        return X, np.where(X[:, 0] == X[0, 0], 2.5, y), {}
    raise AssertionError(case)


CASES = ("one rating", "two ratings of one user", "a diagonal (every user and item rated once)",
         "ratings of 1e8", "ratings of 1e-8", "negative ratings", "bool ratings",
         "float32 ratings", "ids near 2**62", "rank one", "one user constant, the rest varied")


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_degenerate_data(name, cls, case, fit_outcome):
    X, y, extra = _case(case)
    fit_outcome(_make(cls, **extra), X, y, f"{name} on {case}")


# ---------------------------------------------------------------------- item 4: lambda = 0
def test_bcd_refuses_regularization_zero_when_rows_have_too_few_ratings(small_low_rank):
    train, _ = small_low_rank
    X = train.pairs()
    keep = (X[:, 0] != X[0, 0]) | (np.arange(len(X)) == 0)  # user X[0, 0]: one rating
    with pytest.raises(ValueError, match=r"BiasedBCD: regularization=0 leaves the ridge system"
                                         r".* 1 user\(s\), e\.g\. user .* with 1 rating\(s\)"
                                         r".*regularization > 0.*n_factors <= 1"):
        BiasedBCD(n_factors=3, regularization=0).fit(X[keep], train.ratings[keep])


def test_bcd_with_regularization_zero_fits_when_every_block_is_determined(small_low_rank):
    train, _ = small_low_rank  # every user and item has >= 3 ratings here
    assert min(train.user_counts().min(), train.item_counts().min()) >= 3
    m = BiasedBCD(n_factors=3, regularization=0, max_iter=10, tol=0, random_state=0).fit(train)
    assert m.n_iter_ == 10
    objective = m.history_["objective"]
    assert np.all(np.diff(objective) <= 1e-12 * objective[:-1])  # exact blocks: never rises
    assert objective[-1] < 0.05 * objective[0]


class _StopsAt(FactorizationEstimator):
    """A toy whose step raises ``StopFit(reason)`` at iteration ``at``."""

    _parameter_constraints = {"at": [POSITIVE_INT],
                              "reason": [Options("stopped: singular", "converged")]}

    def __init__(self, at=1, reason="stopped: singular", max_iter=5, n_jobs=None):
        self.at, self.reason, self.max_iter, self.n_jobs = at, reason, max_iter, n_jobs

    def _init_state(self, train):
        self._calls = 0
        return FactorState(0.0)

    def _step(self, state, train):
        self._calls += 1
        if self._calls >= self.at:
            raise StopFit(self.reason)
        state.global_mean = float(train.ratings.mean())
        return {"objective": 1.0 / self._calls}


def test_a_fit_that_learned_nothing_warns_loudly(small_low_rank):
    train, _ = small_low_rank
    with pytest.warns(ConvergenceWarning, match=r"_StopsAt learned nothing: it stopped before "
                                                r"completing one iteration \(stopped: singular"):
        m = _StopsAt(at=1).fit(train)
    assert m.n_iter_ == 0 and m.global_mean_ == 0.0 and len(m.history_.to_frame()) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        assert _StopsAt(at=3).fit(train).n_iter_ == 2  # it learned something: no warning
        assert _StopsAt(at=1, reason="converged").fit(train).stop_reason_ == "converged"


# ---------------------------------------------------------------------- item 5
class _Overflows(_StopsAt):
    def _step(self, state, train):
        self._calls += 1
        if self._calls == self.at:
            return {"objective": float(10.0 ** 400)}  # Python floats raise OverflowError
        state.global_mean = float(self._calls)
        return {"objective": 1.0 / self._calls}


def test_overflow_inside_a_step_is_a_divergence_keeping_the_last_state(small_low_rank):
    train, _ = small_low_rank
    with pytest.warns(ConvergenceWarning, match="diverged: OverflowError"):
        m = _Overflows(at=3).fit(train)
    assert m.stop_reason_.startswith("diverged: OverflowError")
    assert "the state of iteration 2 was kept" in m.stop_reason_
    assert m.n_iter_ == 2 and m.global_mean_ == 2.0


def test_run_loop_without_a_state_copy_lets_overflow_through():
    def step(state):
        raise OverflowError("(34, 'Numerical result out of range')")

    with pytest.raises(OverflowError):
        run_loop(step, None, max_iter=3)


@pytest.mark.parametrize("cls", [RGD, RAGD, RSVRG, RSARAH, RSPIDER, Catalyst, DANE])
def test_grassmann_solvers_on_constant_ratings_stop_converged(cls):
    rm, _ = make_low_rank(30, 20, 2, 0.5, random_state=1)
    y = np.full(rm.nnz, 3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        m = _make(cls, n_factors=2, max_iter=3).fit(rm.pairs(), y)
    assert m.stop_reason_ == "converged"
    np.testing.assert_allclose(m.predict(rm.pairs()), 3.0, atol=1e-12)


@pytest.mark.parametrize("cls", [RGD, RAGD, RSVRG])
def test_grassmann_svd_start_for_any_rank_and_for_zero_centred_data(cls):
    rm, _ = make_low_rank(4, 6, 2, 0.9, random_state=1)
    with warnings.catch_warnings():  # the SVD start is already (nearly) stationary here
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = _make(cls, n_factors=4, init="svd", max_iter=2).fit(rm)  # k >= min(shape) = 4
    assert np.isfinite(m.predict(rm)).all()
    U = m.item_factors_
    np.testing.assert_allclose(U.T @ U, np.eye(4), atol=1e-10)
    flat = _make(cls, n_factors=2, init="svd", max_iter=2).fit(rm.pairs(), np.full(rm.nnz, 2.0))
    assert flat.stop_reason_ == "converged"


def test_polar_retraction_survives_a_huge_step():
    manifold = Grassmann(12, 3)
    rng = np.random.default_rng(0)
    U = manifold.random_point(rng)
    xi = manifold.random_tangent(U, rng)
    for scale in (0.1, 1e9):
        Y = manifold.retraction(U, scale * xi, "polar")
        np.testing.assert_allclose(Y.T @ Y, np.eye(3), atol=1e-10)
    # the stable path agrees with the Gram path where both apply
    y = U + 0.1 * xi
    left, _, right_t = np.linalg.svd(y, full_matrices=False)
    np.testing.assert_allclose(manifold.retraction(U, 0.1 * xi, "polar"), left @ right_t,
                               atol=1e-12)


def test_dane_needs_a_user_with_ratings_per_worker_and_gets_one():
    rm, _ = make_low_rank(3, 10, 1, 0.8, random_state=0)
    with pytest.raises(ValueError, match=r"n_workers=4 exceeds the 3 user\(s\) with training "
                                         r"ratings.*n_workers <= 3"):
        DANE(n_factors=1, n_workers=4, max_iter=1, random_state=0).fit(rm)
    counts = np.array([0, 500, 0, 1, 1, 0, 1, 2])  # one heavy user, idle users between
    blocks = partition_users(counts, 4)
    assert [int(counts[b].sum() > 0) for b in blocks] == [1, 1, 1, 1]
    np.testing.assert_array_equal(np.concatenate(blocks), np.arange(len(counts)))
    counts = np.random.default_rng(0).integers(1, 50, 40)  # no idle users: cuts unchanged
    cum = np.cumsum(counts)
    before = np.split(np.arange(40), np.searchsorted(cum, cum[-1] * np.arange(1, 4) / 4))
    assert [list(b) for b in partition_users(counts, 4)] == [list(b) for b in before]


def test_soft_impute_als_without_regularization_on_constant_ratings():
    rm, _ = make_low_rank(10, 8, 2, 0.6, random_state=0)
    m = SoftImputeALS(regularization=0.0, n_factors=2, max_iter=3, random_state=0)
    m.fit(rm.pairs(), np.full(rm.nnz, 4.0))
    np.testing.assert_allclose(m.predict(rm.pairs()), 4.0, atol=1e-12)


# ---------------------------------------------------------------------- item 6
def test_history_frame_after_divergence_at_the_first_epoch(small_low_rank):
    train, _ = small_low_rank
    with pytest.warns(ConvergenceWarning, match="diverged"):
        m = SGD(n_factors=2, learning_rate=1e3, max_iter=3, random_state=0).fit(train)
    assert m.n_iter_ == 0
    frame = m.history_.to_frame()
    assert frame.index.name == "iteration" and len(frame) == len(m.history_)
    empty = History().to_frame()
    assert empty.index.name == "iteration" and empty.empty


def test_negative_seeds_are_refused_by_name(small_low_rank):
    train, _ = small_low_rank
    with pytest.raises(ParameterError, match="random_state must be None or an int >= 0"):
        SGD(random_state=-1).fit(train)
    with pytest.raises(ValueError, match="random_state must be an int >= 0"):
        make_split(train, "random", random_state=-1)
