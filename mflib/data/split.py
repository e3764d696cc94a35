"""Train / validation / test splits of a :class:`RatingMatrix`, all seeded.

Every split keeps the parent's id maps, so inner indices agree across parts, and
reports how many validation/test pairs have a user or an item that training lacks
(those pairs are kept and predicted by the estimators' documented fallback).

Every part records its ``provenance``: the parent's (dataset), the split's kind and
arguments with the seed, and which part it is; a model fitted on the train part keeps it
(``provenance_``), so a saved model can refuse to be scored on another split.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..validation import (
    DataError,
    check_choice,
    check_fraction,
    check_positive_int,
    check_random_state,
)
from .ratings import RatingMatrix


@dataclass
class Split:
    """The parts of one split; ``validation`` may be None."""

    train: RatingMatrix
    test: RatingMatrix
    validation: RatingMatrix | None = None
    method: str = ""

    def parts(self) -> dict[str, RatingMatrix]:
        out = {"train": self.train}
        if self.validation is not None:
            out["validation"] = self.validation
        out["test"] = self.test
        return out

    def unseen(self, part: str = "test") -> dict[str, int]:
        """Counts of ``part`` pairs whose user / item / either is absent from training."""
        rm = self.parts()[part]
        u_seen = self.train.user_counts() > 0
        i_seen = self.train.item_counts() > 0
        new_u = ~u_seen[rm.users]
        new_i = ~i_seen[rm.items]
        return {
            "unseen_user_pairs": int(new_u.sum()),
            "unseen_item_pairs": int(new_i.sum()),
            "unseen_pairs": int((new_u | new_i).sum()),
        }

    def summary(self) -> pd.DataFrame:
        """Ratings, users, items and unseen-pair counts of each part."""
        rows = []
        for name, rm in self.parts().items():
            row = {
                "ratings": rm.nnz,
                "users": int((rm.user_counts() > 0).sum()),
                "items": int((rm.item_counts() > 0).sum()),
                "fraction": rm.nnz / sum(p.nnz for p in self.parts().values()),
            }
            row.update(self.unseen(name) if name != "train" else dict.fromkeys(
                ("unseen_user_pairs", "unseen_item_pairs", "unseen_pairs"), 0))
            rows.append(pd.Series(row, name=name))
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v.nnz}" for k, v in self.parts().items())
        return f"Split({self.method}: {sizes}, test unseen pairs={self.unseen()['unseen_pairs']})"


def summarize_splits(splits: dict) -> pd.DataFrame:
    """The :meth:`Split.summary` of several named splits, stacked (split, part) x counts."""
    return pd.concat({name: split.summary() for name, split in splits.items()})


def split_provenance(parent: dict | None, kind: str, arguments: dict) -> dict:
    """The split part of a provenance record: ``parent`` (the data's own provenance)
    plus ``split = {"kind": kind, **arguments}``. A seed that is not an integer (None, a
    Generator) cannot re-create the split: it is stored as None with
    ``reproducible: False``."""
    described = {"kind": kind}
    for name, value in arguments.items():
        if name == "random_state":
            seeded = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            value = int(value) if seeded else None
            if not seeded:
                described["reproducible"] = False
        elif isinstance(value, np.generic):
            value = value.item()
        described[name] = value
    return {**(parent or {"dataset": None}), "split": described}


def set_split_provenance(split: Split, record: dict) -> Split:
    """Give each part of ``split`` the provenance ``record`` plus its ``part`` name."""
    for part, rm in split.parts().items():
        rm.provenance = {**record, "part": part}
    return split


def _records_provenance(kind: str):
    """Decorate a split function so each part of its result records the parent's
    provenance, ``kind`` and the function's arguments (defaults included)."""

    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def split_recording_provenance(rm, *args, **kwargs):
            split = fn(rm, *args, **kwargs)
            bound = signature.bind(rm, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(list(bound.arguments.items())[1:])
            return set_split_provenance(split, split_provenance(rm.provenance, kind, arguments))

        return split_recording_provenance

    return decorate


def _assign(rm: RatingMatrix, label: np.ndarray, method: str) -> Split:
    """label: 0 train, 1 validation, 2 test."""
    if not (label == 0).any():
        raise DataError(f"{method} split left no training ratings; use smaller test/val sizes")
    if not (label == 2).any():
        raise DataError(f"{method} split left no test ratings; use a larger test size")
    val = rm.take(label == 1) if (label == 1).any() else None
    return Split(rm.take(label == 0), rm.take(label == 2), val, method)


def _check_sizes(test_size, val_size):
    check_fraction(test_size, "test_size", allow_zero=False)
    check_fraction(val_size, "val_size")
    if test_size + val_size >= 1:
        raise ValueError(
            f"test_size + val_size must be < 1, got {test_size} + {val_size}"
        )


@_records_provenance("random")
def random_split(rm: RatingMatrix, test_size=0.2, val_size=0.0, random_state=None) -> Split:
    """Hold out a uniformly random fraction of all ratings."""
    _check_sizes(test_size, val_size)
    rng = check_random_state(random_state)
    n = rm.nnz
    perm = rng.permutation(n)
    n_test, n_val = int(round(test_size * n)), int(round(val_size * n))
    label = np.zeros(n, dtype=np.int8)
    label[perm[:n_test]] = 2
    label[perm[n_test : n_test + n_val]] = 1
    return _assign(rm, label, "random")


def _rank_within_user(rm: RatingMatrix, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each rating within its user when sorted by ``key``, and the user's count."""
    order = np.lexsort((np.arange(rm.nnz), key, rm.users))
    counts = rm.user_counts()
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.empty(rm.nnz, dtype=np.int64)
    pos[order] = np.arange(rm.nnz) - starts[rm.users[order]]
    return pos, counts[rm.users]


@_records_provenance("user")
def user_split(rm: RatingMatrix, test_size=0.2, val_size=0.0, random_state=None) -> Split:
    """Per-user stratified holdout: each user's ratings are split in the given fractions,
    rounding so that every user with at least two ratings keeps one in training."""
    _check_sizes(test_size, val_size)
    rng = check_random_state(random_state)
    pos, n_u = _rank_within_user(rm, rng.random(rm.nnz))
    n_test = np.minimum(np.round(test_size * n_u), n_u - 1)
    n_val = np.minimum(np.round(val_size * n_u), n_u - 1 - n_test)
    label = np.where(pos < n_test, 2, np.where(pos < n_test + n_val, 1, 0)).astype(np.int8)
    return _assign(rm, label, "user")


TEMPORAL_RULES = ("floor", "nearest")


@_records_provenance("temporal")
def temporal_split(rm: RatingMatrix, test_size=0.15, val_size=0.15, *, rule="floor") -> Split:
    """Per-user split by timestamp: each user's oldest ratings train, newest test.

    With ``n_u`` ratings sorted by time (ties kept in row order), ``rule="floor"`` (the
    content study's protocol) puts the first ``floor(t n_u)`` in training, those up to
    ``floor((1 - test_size) n_u)`` in validation and the rest in test, where
    ``t = 1 - test_size - val_size`` (70/15/15 by default: ``int(0.7 n)``, ``int(0.85 n)``).
    ``rule="nearest"`` rounds the boundaries to the nearest rating instead (a rating
    trains when its midpoint ``(position + 0.5) / n_u`` lies below ``t``).
    """
    if rm.timestamps is None:
        raise DataError(f"{rm.name} has no timestamps; use method='user' or 'random' instead")
    _check_sizes(test_size, val_size)
    check_choice(rule, "rule", TEMPORAL_RULES)
    pos, n_u = _rank_within_user(rm, rm.timestamps)
    # rounded so that 1 - 0.15 - 0.15 is the literal 0.7 the original protocol used
    train_end, val_end = round(1 - test_size - val_size, 12), round(1 - test_size, 12)
    if rule == "floor":
        key, n_train, n_kept = pos, np.floor(train_end * n_u), np.floor(val_end * n_u)
    else:
        key, n_train, n_kept = (pos + 0.5) / n_u, train_end, val_end
    label = np.where(key < n_train, 0, np.where(key < n_kept, 1, 2)).astype(np.int8)
    return _assign(rm, label, "temporal")


def kfold(rm: RatingMatrix, n_splits=5, val_size=0.0, random_state=None) -> list[Split]:
    """``n_splits`` random folds; fold k tests on its ratings and trains on the rest
    (``val_size``: a random fraction of the rest validates instead)."""
    if isinstance(random_state, np.random.Generator):  # one draw, the same for every fold
        random_state = int(random_state.integers(2**63))
    return [kfold_split(rm, n_splits, k, val_size, random_state) for k in range(n_splits)]


@_records_provenance("kfold")
def kfold_split(rm: RatingMatrix, n_splits=5, fold=0, val_size=0.0, random_state=None) -> Split:
    """Fold ``fold`` (0-based) of :func:`kfold`: the same folds for the same seed."""
    check_positive_int(n_splits, "n_splits", minimum=2)
    check_fraction(val_size, "val_size")
    if n_splits > rm.nnz:
        raise ValueError(f"n_splits={n_splits} exceeds the {rm.nnz} ratings")
    if not (isinstance(fold, (int, np.integer)) and 0 <= fold < n_splits):
        raise ValueError(f"fold must be an integer in [0, {n_splits}), got {fold!r}")
    rng = check_random_state(random_state)
    assignment = np.empty(rm.nnz, dtype=np.int64)
    assignment[rng.permutation(rm.nnz)] = np.arange(rm.nnz) % n_splits
    label = np.where(assignment == fold, 2, 0).astype(np.int8)
    rest = np.flatnonzero(label == 0)
    label[rng.choice(rest, int(round(val_size * len(rest))), replace=False)] = 1
    return _assign(rm, label, f"kfold {fold + 1}/{n_splits}")


@_records_provenance("cold_start")
def cold_start_split(rm: RatingMatrix, test_size=0.1, val_size=0.0, random_state=None):
    """Hold out whole items for cold-start evaluation: ``test_size`` is the fraction of
    rated items whose ratings all go to test; ``val_size`` then carves a random
    validation fraction out of the warm ratings."""
    check_fraction(test_size, "test_size", allow_zero=False)
    check_fraction(val_size, "val_size")
    rng = check_random_state(random_state)
    rated = np.flatnonzero(rm.item_counts() > 0)
    n_cold = max(1, int(round(test_size * len(rated))))
    cold = np.zeros(rm.n_items, dtype=bool)
    cold[rng.choice(rated, n_cold, replace=False)] = True
    label = np.where(cold[rm.items], 2, 0).astype(np.int8)
    warm = np.flatnonzero(label == 0)
    label[rng.choice(warm, int(round(val_size * len(warm))), replace=False)] = 1
    return _assign(rm, label, "cold_start")


SPLITS = {
    "random": random_split,
    "user": user_split,
    "temporal": temporal_split,
    "cold_start": cold_start_split,
    "kfold": kfold_split,
}


def make_split(rm: RatingMatrix, method: str = "random", **kwargs) -> Split:
    """Dispatch by name: ``random``, ``user``, ``temporal``, ``cold_start`` or ``kfold``.

    Every kind takes ``val_size``; all but ``kfold`` take ``test_size`` (``kfold``'s test
    part is one of ``n_splits`` folds, chosen by ``fold``); the seeded ones take
    ``random_state``.
    """
    if method not in SPLITS:
        raise ValueError(f"unknown split method {method!r}; choose one of {', '.join(SPLITS)}")
    return SPLITS[method](rm, **kwargs)
