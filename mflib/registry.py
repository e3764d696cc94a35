"""Every public estimator by name, for the CLI, the experiment runner and the contract tests.

An estimator becomes available everywhere by being exported from ``mflib/__init__.py``.
"""

from __future__ import annotations

from .base import FactorizationEstimator


def estimators() -> dict[str, type]:
    """Lower-case name -> class of every estimator in ``mflib.__all__``."""
    import mflib  # noqa: PLC0415

    out = {}
    for name in mflib.__all__:
        obj = getattr(mflib, name)
        if (isinstance(obj, type) and issubclass(obj, FactorizationEstimator)
                and obj is not FactorizationEstimator):
            out[name.lower()] = obj
    return out


def make_estimator(name: str, **params) -> FactorizationEstimator:
    """Instantiate an estimator by (case-insensitive) name with keyword parameters."""
    known = estimators()
    cls = known.get(name.lower())
    if cls is None:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(known))}")
    valid = cls().get_params()
    bad = sorted(set(params) - set(valid))
    if bad:
        raise TypeError(
            f"{cls.__name__} has no parameter(s) {bad}; its parameters: {sorted(valid)}"
        )
    return cls(**params)
