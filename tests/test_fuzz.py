"""Fuzz: random small rating matrices, id and rating dtypes and parameter values, thrown
at every estimator exported by mflib.

Every fit must end in one of two ways (``conftest.check_fit_outcome``): a ValueError or
TypeError whose message names a parameter or the data problem, or a fitted model whose
predictions (training pairs, unknown ids, a recommendation) are finite. Parameter values
are drawn from each estimator's declared constraints, edges included, with a few values
the constraints refuse; so an estimator added to ``mflib.__all__`` is fuzzed without
changes here. Seeded and small: a failure names its case and the data, which
``_case(name, index)`` rebuilds (with the same ``MFLIB_FUZZ_SEED``).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from mflib.registry import estimators
from mflib.validation import NONE, Interval, Options

#: the default run is small and fixed; ``MFLIB_FUZZ_CASES=500 MFLIB_FUZZ_SEED=7`` digs deeper
SEED = int(os.environ.get("MFLIB_FUZZ_SEED", 16))
N_CASES = int(os.environ.get("MFLIB_FUZZ_CASES", 12))
ESTIMATORS = sorted(estimators().items())

#: parameters the fuzz leaves at one value: output, callbacks, hardware and object
#: parameters are not about the data or the numerics
FIXED = {"verbose": 0, "callbacks": None, "device": "cpu", "line_search": None}
#: real parameters whose size is their point (huge values must diverge cleanly, not hang)
SCALES = ("regularization", "learning_rate", "init_std", "strong_convexity", "gamma",
          "kappa", "proximity", "momentum", "beta", "clip_norm")
ID_KINDS = ("int", "str", "big int", "float", "str users, int items")
RATING_KINDS = ("stars", "float32", "constant", "large", "tiny", "negative", "bool")
BAD_RATING_KINDS = ("nan", "complex", "text")


def _real_candidates(name: str) -> list[float]:
    big = [1e3, 1e6] if any(word in name for word in SCALES) else []
    return [0.0, 1e-12, 1e-3, 0.5, 1.0, 10.0, *big]


def _parameter(rng, name, rules, default, refuse=False):
    """A value for ``name``: one its constraints accept, edges included, or (``refuse``)
    one they refuse."""
    if refuse:
        return [-1, "bogus", float("nan")][rng.integers(3)], "refused"
    if name in FIXED:
        return FIXED[name], "fixed"
    if name == "random_state":
        return int(rng.integers(1000)), "seed"
    if name == "n_jobs":
        return [None, 1][rng.integers(2)], "threads"
    if name == "max_iter":
        return int(rng.integers(1, 4)), "short"
    candidates = [default]
    for rule in rules:
        if isinstance(rule, Interval):
            candidates += [1, 2, 3, 20] if rule.kind == "int" else _real_candidates(name)
        elif isinstance(rule, Options) and rule is not NONE:
            candidates += list(rule.values)
        elif rule is NONE:
            candidates.append(None)
    accepted = [v for v in candidates if any(rule.accepts(v) for rule in rules)]
    return accepted[rng.integers(len(accepted))], "accepted"


def _ids(rng, kind, n, column):
    base = rng.permutation(n) + 1
    if kind == "str" or (kind == "str users, int items" and column == 0):
        return np.array([f"{'ui'[column]}{b}" for b in base], dtype=object)
    if kind == "big int":
        return base.astype(np.int64) + 10**15
    if kind == "float":
        return base.astype(np.float64)
    return base.astype(np.int64)


def _ratings(rng, kind, n):
    stars = rng.integers(1, 6, n)
    return {
        "stars": stars,
        "float32": rng.uniform(0.5, 5, n).astype(np.float32),
        "constant": np.full(n, 4.0),
        "large": rng.normal(0, 1e4, n),
        "tiny": rng.normal(0, 1e-6, n),
        "negative": -stars.astype(float),
        "bool": stars > 3,
        "nan": np.where(np.arange(n) == n // 2, np.nan, stars),
        "complex": stars + 1j,
        "text": stars.astype(str).astype(object),
    }[kind]


def _case(name: str, index: int):
    """``(estimator, X, y, description)`` of fuzz case ``index`` for estimator ``name``."""
    cls = estimators()[name]
    seed = SEED * 1_000_003 + sorted(estimators()).index(name) * 1009 + index
    rng = np.random.default_rng(seed)
    n_users, n_items = int(rng.integers(1, 11)), int(rng.integers(1, 11))
    n_pairs = n_users * n_items
    pairs = rng.choice(n_pairs, int(rng.integers(1, n_pairs + 1)), replace=False)
    id_kind = ID_KINDS[rng.integers(len(ID_KINDS))]
    users = _ids(rng, id_kind, n_users, 0)[pairs // n_items]
    items = _ids(rng, id_kind, n_items, 1)[pairs % n_items]
    X = np.empty((len(pairs), 2), dtype=object) if users.dtype != items.dtype else None
    if X is None:
        X = np.column_stack([users, items])
    else:
        X[:, 0], X[:, 1] = users, items
    # one case in six has ratings the estimators must refuse, one in six a parameter
    kinds = BAD_RATING_KINDS if rng.random() < 1 / 6 else RATING_KINDS
    rating_kind = kinds[rng.integers(len(kinds))]
    y = _ratings(rng, rating_kind, len(pairs))
    defaults = cls().get_params()
    constraints = cls._constraints()
    names = sorted(set(defaults) - set(FIXED))
    refused = names[rng.integers(len(names))] if rng.random() < 1 / 6 else None
    params, kinds = {}, {}
    for param in sorted(defaults):
        params[param], kinds[param] = _parameter(rng, param, constraints[param],
                                                 defaults[param], refuse=param == refused)
    est = cls(**params)
    changed = {k: v for k, v in params.items() if kinds[k] not in ("fixed",)}
    description = (f"{cls.__name__} fuzz case {index} (_case({name!r}, {index}), seed {seed}): "
                   f"{n_users}x{n_items} ids {id_kind}, {len(pairs)} ratings {rating_kind} "
                   f"dtype {y.dtype}, params {changed}, X={X.tolist()}, y={y.tolist()}")
    return est, X, y, description


@pytest.mark.parametrize("name,cls", ESTIMATORS)
def test_random_inputs_give_a_clear_error_or_a_finite_model(name, cls, fit_outcome):
    outcomes = []
    for index in range(N_CASES):
        est, X, y, description = _case(name, index)
        outcome = fit_outcome(est, X, y, description)
        if outcome == "fitted":
            recs = est.recommend(X[0, 0], k=3, exclude_seen=False)
            assert np.isfinite(recs["score"]).all(), description
        outcomes.append(outcome)
    # the generator must exercise both outcomes, or it tests less than it claims
    assert "fitted" in outcomes and "refused" in outcomes, outcomes


def test_cases_are_deterministic():
    first = _case("als", 3)
    again = _case("als", 3)
    assert first[3] == again[3]
    assert first[0].get_params() == again[0].get_params()
