"""Input checks whose error messages name the value received and the fix."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd


class DataError(ValueError):
    """Raised for rating data that cannot be used as given (NaN, duplicates, bad shapes)."""


class IdTypeError(DataError, TypeError):
    """Raw ids of another type than the training ids (e.g. str ids for a model fitted on
    int ids), which would otherwise all look unknown."""


def check_ratings(ratings, *, name: str = "ratings") -> np.ndarray:
    """Return ``ratings`` as a 1-D float64 array, refusing NaN and infinities.

    Only real numbers (bool, int, float dtypes) are accepted: complex values would lose
    their imaginary part and object/str arrays would be converted value by value, so both
    are refused with the first offending value.
    """
    arr = np.asarray(ratings)
    if arr.dtype.kind == "c":
        idx = np.flatnonzero(arr.ravel().imag != 0)
        example = _plain(arr.ravel()[idx[0] if idx.size else 0]) if arr.size else None
        raise DataError(
            f"{name} are complex numbers (dtype {arr.dtype}, e.g. {example!r}); ratings must "
            f"be real: pass {name}.real if the imaginary parts are meant to be dropped"
        )
    if arr.dtype.kind not in "biuf":
        flat = arr.ravel()
        example = ""
        if flat.size:
            numeric = pd.to_numeric(pd.Series(flat), errors="coerce").notna().to_numpy()
            pos = int(np.flatnonzero(~numeric)[0]) if (~numeric).any() else 0
            value = _plain(flat[pos])
            example = f"; e.g. {value!r} of type {type(value).__name__} at position {pos}"
        raise DataError(
            f"{name} must be an array of real numbers, got dtype {arr.dtype}{example}; "
            f"convert it explicitly, e.g. np.asarray({name}, dtype=float), after checking "
            "that every value is a number"
        )
    arr = arr.astype(np.float64, copy=False)
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


_ID_KINDS = {"integer": "int", "floating": "float", "mixed-integer-float": "float",
             "decimal": "float", "string": "str", "bytes": "bytes", "boolean": "bool",
             "empty": "empty"}
_NUMERIC_IDS = {"int", "float"}
_PY_TYPES = {"int": (numbers.Integral,), "float": (numbers.Real,), "str": (str,),
             "bytes": (bytes,), "bool": (bool, np.bool_)}


def id_kind(ids) -> str:
    """The kind of raw ids: ``int``, ``float``, ``str``, ``bytes``, ``bool``, ``empty``,
    or pandas' name for anything else (``mixed``, ``mixed-integer`` ...). Missing values
    (None, NaN) are ignored."""
    arr = np.asarray(ids)
    kind = {"i": "int", "u": "int", "f": "float", "U": "str", "S": "bytes", "b": "bool"}
    if arr.dtype.kind in kind:
        return kind[arr.dtype.kind] if arr.size else "empty"
    inferred = pd.api.types.infer_dtype(arr.ravel(), skipna=True)
    return _ID_KINDS.get(inferred, inferred)


def check_id_kind(given, trained_kind: str, trained_example, what: str) -> None:
    """Refuse raw ``what`` ids whose kind differs from the training ids' (``trained_kind``).

    Ints and floats are interchangeable (``1.0`` finds id ``1``); a str id never matches an
    int id, so a mismatch would silently make every id unknown: it raises
    :class:`IdTypeError` instead. Training ids of an unusual kind are not checked.
    """
    if trained_kind not in _PY_TYPES:
        return
    kind = id_kind(given)
    if kind in ("empty", trained_kind) or {kind, trained_kind} <= _NUMERIC_IDS:
        return
    flat = np.asarray(given).ravel()
    ok = _PY_TYPES["float" if trained_kind in _NUMERIC_IDS else trained_kind]
    example = _plain(next((x for x in flat if not isinstance(x, ok) and not pd.isna(x)),
                          flat[0]))
    shown = "a mix of types" if kind.startswith("mixed") else kind
    raise IdTypeError(
        f"the {what} ids given are {shown} (e.g. {example!r} of type "
        f"{type(example).__name__}), but the {what} ids they are looked up in (a fitted "
        f"model's training ids) are {trained_kind} (e.g. {_plain(trained_example)!r}): no id "
        f"would match; pass {what} ids of type {trained_kind}"
    )


def _plain(value):
    """A NumPy scalar as the Python value it holds, so messages show ``'7'``, not
    ``np.str_('7')``."""
    return value.item() if isinstance(value, np.generic) else value


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
    if isinstance(random_state, numbers.Integral) and random_state < 0:
        raise ValueError(f"random_state must be an int >= 0 (or a numpy Generator), got "
                         f"{random_state!r}")
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


# ---------------------------------------------------------------------- parameter constraints
class ParameterError(ValueError, TypeError):
    """An estimator parameter outside its declared constraints (a ValueError and a
    TypeError, so either ``except`` catches it)."""


class Constraint:
    """One accepted form of a parameter: ``accepts(value)`` and ``describe()``."""

    def accepts(self, value) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Interval(Constraint):
    """An ``int`` or ``real`` number in an interval.

    ``closed`` says which ends belong to it: "both", "left", "right" or "neither";
    None for an end means unbounded.
    """

    def __init__(self, kind: str, low=None, high=None, closed: str = "both"):
        if kind not in ("int", "real"):
            raise ValueError(f"kind must be 'int' or 'real', got {kind!r}")
        self.kind, self.low, self.high, self.closed = kind, low, high, closed

    def accepts(self, value) -> bool:
        if not (_is_int(value) if self.kind == "int" else _is_real(value)):
            return False
        if self.kind == "real" and value != value:  # NaN
            return False
        lo_ok = self.low is None or (value >= self.low if self.closed in ("both", "left")
                                     else value > self.low)
        hi_ok = self.high is None or (value <= self.high if self.closed in ("both", "right")
                                      else value < self.high)
        return bool(lo_ok and hi_ok)

    def describe(self) -> str:
        what = "an integer" if self.kind == "int" else "a real number"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        if self.low is not None and self.high is not None:
            return f"{what} in {left}{self.low}, {self.high}{right}"
        if self.low is not None:
            return f"{what} {'>=' if left == '[' else '>'} {self.low}"
        if self.high is not None:
            return f"{what} {'<=' if right == ']' else '<'} {self.high}"
        return what


class Options(Constraint):
    """One of a fixed set of values (strings, None, ...)."""

    def __init__(self, *values):
        self.values = values

    def accepts(self, value) -> bool:
        return any(value is v or (isinstance(value, str) and value == v) for v in self.values)

    def describe(self) -> str:
        if len(self.values) == 1:
            return repr(self.values[0])
        return "one of " + ", ".join(map(repr, self.values))


class InstanceOf(Constraint):
    """An instance of one of ``types`` (described by ``description``)."""

    def __init__(self, types, description: str):
        self.types, self.description = types, description

    def accepts(self, value) -> bool:
        return isinstance(value, self.types) and not (isinstance(value, bool)
                                                      and bool not in _as_tuple(self.types))

    def describe(self) -> str:
        return self.description


class HasMethods(Constraint):
    """An object with the given methods (e.g. a line search with ``search``)."""

    def __init__(self, *methods):
        self.methods = methods

    def accepts(self, value) -> bool:
        return all(callable(getattr(value, m, None)) for m in self.methods)

    def describe(self) -> str:
        return "an object with method(s) " + ", ".join(self.methods)


class Callbacks(Constraint):
    """A list or tuple of callables ``cb(iteration, metrics, model)``."""

    def accepts(self, value) -> bool:
        return isinstance(value, (list, tuple)) and all(callable(cb) for cb in value)

    def describe(self) -> str:
        return "a list of callables cb(iteration, metrics, model)"


def _as_tuple(types):
    return types if isinstance(types, tuple) else (types,)


#: reusable constraints
NONE = Options(None)
BOOLEAN = InstanceOf((bool, np.bool_), "True or False")
POSITIVE_INT = Interval("int", 1)
NONNEGATIVE_INT = Interval("int", 0)
POSITIVE = Interval("real", 0, closed="neither")
NONNEGATIVE = Interval("real", 0)
class _Seed(Constraint):
    """A seed numpy accepts: an int >= 0 (numpy refuses negative ones), a Generator, a
    SeedSequence or a legacy RandomState."""

    def accepts(self, value) -> bool:
        if _is_int(value):
            return value >= 0
        return isinstance(value, (np.random.Generator, np.random.SeedSequence,
                                  np.random.RandomState))

    def describe(self) -> str:
        return "an int >= 0, a numpy Generator or None"


RANDOM_STATE = _Seed()
DTYPE = Options("float64", "float32", np.float64, np.float32)
N_JOBS = (NONE, Interval("int", 1), Interval("int", None, -1))


def check_constraints(owner: str, constraints: dict, params: dict) -> None:
    """Check every ``params[name]`` against ``constraints[name]`` (a list of
    :class:`Constraint`; the value must satisfy one of them).

    Raises
    ------
    ParameterError
        Naming ``owner``, the parameter, what it accepts and the value received.
    """
    missing = sorted(set(params) - set(constraints))
    if missing:
        raise TypeError(f"{owner} declares no constraint for parameter(s) {missing}")
    for name, value in params.items():
        rules = constraints[name]
        if any(rule.accepts(value) for rule in rules):
            continue
        accepted = " or ".join(rule.describe() for rule in rules)
        raise ParameterError(
            f"{owner}: {name} must be {accepted}; got {value!r} ({type(value).__name__})"
        )
