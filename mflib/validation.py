"""Input checks whose error messages name the value received and the fix."""

from __future__ import annotations

import numbers

import numpy as np


class DataError(ValueError):
    """Raised for rating data that cannot be used as given (NaN, duplicates, bad shapes)."""


def check_ratings(ratings, *, name: str = "ratings") -> np.ndarray:
    """Return ``ratings`` as a 1-D float64 array, refusing NaN and infinities."""
    try:
        arr = np.asarray(ratings, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be numeric; could not convert: {exc}") from exc
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-D, got an array of shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise DataError(
            f"{name} contains {idx.size} non-finite value(s) (first at position {idx[0]}: "
            f"{arr[idx[0]]!r}); remove or impute those rows before fitting"
        )
    return arr


def check_pairs(X, *, name: str = "X") -> np.ndarray:
    """Check an (n, 2) array of raw (user, item) ids and return it as an ndarray."""
    arr = np.asarray(X)
    if arr.ndim != 2 or arr.shape[1] != 2:
        hint = ""
        if arr.ndim == 2 and arr.shape[1] == 3:
            hint = (
                "; it looks like (user, item, rating) triples: pass X[:, :2] as X and "
                "X[:, 2] as y"
            )
        raise DataError(
            f"{name} must be an (n, 2) array of (user, item) ids, got shape {arr.shape}{hint}"
        )
    if arr.shape[0] == 0:
        raise DataError(f"{name} is empty: at least one (user, item) pair is needed")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{name} contains NaN or infinite ids; ids must be finite")
    return arr


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_nonnegative(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{name} must be a real number >= 0, got {value!r}")
    return float(value)


def check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name} must be a real number > 0, got {value!r}")
    return float(value)


def check_fraction(value, name: str, *, allow_zero: bool = True) -> float:
    ok = isinstance(value, numbers.Real) and (0 <= value < 1 if allow_zero else 0 < value < 1)
    if not ok:
        lo = "[0" if allow_zero else "(0"
        raise ValueError(f"{name} must be a fraction in {lo}, 1), got {value!r}")
    return float(value)


def check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(
            f"unknown {name} {value!r}; choose one of: {', '.join(map(repr, choices))}"
        )
    return value


def check_random_state(random_state) -> np.random.Generator:
    """A ``numpy.random.Generator`` from None, an int, a SeedSequence or a Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, (numbers.Integral, np.random.SeedSequence)):
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    raise ValueError(
        f"random_state must be None, an int or a numpy Generator, got {random_state!r}"
    )


def check_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt
