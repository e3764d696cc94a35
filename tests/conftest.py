"""Shared fixtures. Real-data tests skip without the archives, but fail when
``MFLIB_REQUIRE_DATA=1`` (CI sets it, with ``MFLIB_DATA_DIR=../shared/data``)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MFLIB_PROGRESS", "0")


def _require(name: str):
    from mflib.data import DataNotFoundError, load_dataset

    try:
        return load_dataset(name, download=False)
    except DataNotFoundError as exc:
        if os.environ.get("MFLIB_REQUIRE_DATA") == "1":
            pytest.fail(f"MFLIB_REQUIRE_DATA=1 but {name} is missing: {exc}")
        pytest.skip(f"{name} not available (set MFLIB_DATA_DIR): {exc}")


def require_split(name: str, split: str):
    """A predefined split of a real dataset, with the same skip/fail rule."""
    from mflib.data import DataNotFoundError, load_predefined_split

    try:
        return load_predefined_split(name, split, download=False)
    except DataNotFoundError as exc:
        if os.environ.get("MFLIB_REQUIRE_DATA") == "1":
            pytest.fail(f"MFLIB_REQUIRE_DATA=1 but {name} is missing: {exc}")
        pytest.skip(f"{name} not available (set MFLIB_DATA_DIR): {exc}")


@pytest.fixture(scope="session")
def ml100k():
    return _require("ml-100k")


@pytest.fixture(scope="session")
def ml_latest_small():
    return _require("ml-latest-small")


@pytest.fixture(scope="session")
def netflix_split():
    return require_split("netflix", "course")


@pytest.fixture(scope="session")
def ml100k_u1():
    return require_split("ml-100k", "u1")


@pytest.fixture
def small_low_rank():
    """A 60 x 50 planted rank-3 matrix with biases, 40% observed, noise 0.05."""
    from mflib.data import make_low_rank

    return make_low_rank(60, 50, 3, 0.4, noise=0.05, random_state=0)


# ---------------------------------------------------------------------- fit outcomes
#: words an error about the data itself may name (besides the estimator's parameters)
DATA_WORDS = ("rating", "ratings", "user", "users", "item", "items", "id", "ids", "data",
              "X", "y", "empty", "dtype")


def check_fit_outcome(est, X, y, case: str) -> str:
    """Fit ``est`` on ``(X, y)`` and accept exactly two outcomes: ``"refused"`` (a
    ValueError or TypeError whose message names one of the estimator's parameters or the
    data problem) or ``"fitted"`` (a stop reason, and finite predictions for the training
    pairs and for unknown ids). Anything else fails the test with ``case`` in the message,
    so a failing case can be re-run from it."""
    import re
    import warnings

    import numpy as np

    from mflib import ConvergenceWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # learned nothing / diverged
            est.fit(X, y)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        words = (*est.get_params(deep=False), *DATA_WORDS)
        named = [w for w in words if re.search(rf"(?<![A-Za-z_]){re.escape(w)}(?![A-Za-z_])",
                                               message)]
        assert named, f"{case}: {type(exc).__name__} names no parameter or data: {message}"
        return "refused"
    except Exception as exc:  # noqa: BLE001 - the point is that nothing else escapes
        pytest.fail(f"{case}: {type(exc).__name__} escaped fit: {exc}")
    assert isinstance(est.stop_reason_, str) and est.stop_reason_, f"{case}: no stop reason"
    assert len(est.history_.to_frame()) == len(est.history_), case
    pred = est.predict(X)
    assert pred.shape == (len(X),) and np.isfinite(pred).all(), \
        f"{case}: non-finite predictions {pred[~np.isfinite(pred)][:5]} ({est.stop_reason_})"
    unknown = np.array([[_unseen_id(X[:, 0]), X[0, 1]], [X[0, 0], _unseen_id(X[:, 1])]],
                       dtype=X.dtype)
    assert np.isfinite(est.predict(unknown)).all(), f"{case}: non-finite fallback"
    return "fitted"


def _unseen_id(column):
    """An id of the column's type that the column does not hold."""
    first = column[0]
    if isinstance(first, str):
        return "unseen-" + "".join(sorted(map(str, column)))[:20]
    return max(column) + 1


@pytest.fixture
def fit_outcome():
    """:func:`check_fit_outcome`, for the contract, robustness and fuzz tests."""
    return check_fit_outcome
