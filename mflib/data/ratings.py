"""``RatingMatrix``: ratings with contiguous inner indices and the raw id maps."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..validation import DataError, _plain, check_id_kind, check_pairs, check_ratings, id_kind


def _index_ids(raw, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Factorize raw ids into (inner codes, unique raw ids) in order of first appearance
    sorted by value when the ids are sortable, so the same data always gives the same map."""
    raw = np.asarray(raw)
    if raw.dtype == object and pd.isna(raw).any():
        pos = int(np.flatnonzero(pd.isna(raw))[0])
        raise DataError(f"{what} ids contain a missing value (None/NaN) at position {pos}")
    try:
        codes, uniques = pd.factorize(raw, sort=True)
    except TypeError as exc:
        raise DataError(
            f"{what} ids mix types that cannot be ordered ({exc}); convert them to one type, "
            "e.g. all str or all int"
        ) from exc
    return codes.astype(np.int32), np.asarray(uniques)


@dataclass(eq=False)
class RatingMatrix:
    """Explicit ratings on observed (user, item) pairs.

    Rows keep the order of the source file, so "record 8560" of a test file stays
    row 8560 here.

    Attributes
    ----------
    users, items : ndarray of int32, shape (nnz,)
        Inner indices in ``[0, n_users)`` and ``[0, n_items)``.
    ratings : ndarray of float64, shape (nnz,)
    user_ids, item_ids : ndarray, shape (n_users,), (n_items,)
        Raw id of each inner index. Splits of one matrix share these arrays, so inner
        indices agree between train, validation and test.
    timestamps : ndarray of int64 (seconds since the epoch), shape (nnz,), or None
    item_info : DataFrame indexed by raw item id (title, genres, ...), or None
    tags : DataFrame with columns user, item, tag, timestamp (raw ids), or None
    name : str
    provenance : dict or None
        Where these ratings come from, as plain values: ``dataset`` (registry name),
        ``checksums_verified``, and for a part of a split ``split`` (its ``kind`` and
        arguments, seed included) and ``part`` ("train", "validation" or "test"). Filled by
        :func:`~mflib.data.load_dataset`, :func:`~mflib.data.load_predefined_split` and the
        split functions; ``fit`` copies it into the model's ``provenance_``. None for
        ratings built by hand and for subsets (:meth:`take`), whose origin it cannot state.
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    timestamps: np.ndarray | None = None
    item_info: pd.DataFrame | None = None
    tags: pd.DataFrame | None = None
    name: str = "ratings"
    provenance: dict | None = field(default=None, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        users,
        items,
        ratings,
        timestamps=None,
        *,
        item_info=None,
        tags=None,
        name="ratings",
        duplicates="error",
    ) -> RatingMatrix:
        """Build from raw user ids, raw item ids and ratings (all length nnz).

        ``duplicates`` says what to do with repeated (user, item) pairs: ``"error"``
        (default), ``"mean"`` (average them) or ``"last"`` (keep the last by row order,
        or by timestamp when given).
        """
        ratings = check_ratings(ratings)
        users = np.asarray(users)
        items = np.asarray(items)
        if not (users.ndim == items.ndim == 1 and len(users) == len(items) == len(ratings)):
            raise DataError(
                "users, items and ratings must be 1-D and of equal length, got lengths "
                f"{len(users)}, {len(items)}, {len(ratings)}"
            )
        if len(ratings) == 0:
            raise DataError("no ratings: the data is empty")
        if timestamps is not None:
            timestamps = np.asarray(timestamps, dtype=np.int64)
            if timestamps.shape != ratings.shape:
                raise DataError(
                    f"timestamps has shape {timestamps.shape}, expected {ratings.shape}"
                )
        u, user_ids = _index_ids(users, "user")
        i, item_ids = _index_ids(items, "item")
        rm = cls(u, i, ratings, user_ids, item_ids, timestamps, item_info, tags, name)
        return rm._resolve_duplicates(duplicates)

    @classmethod
    def from_pairs(cls, X, y, **kwargs) -> RatingMatrix:
        """Build from an (n, 2) array of raw (user, item) ids and ratings ``y``."""
        X = check_pairs(X)
        if y is None:
            raise DataError("y (the ratings) is required when X is an array of (user, item) ids")
        y = check_ratings(y, name="y")
        if len(y) != len(X):
            raise DataError(f"X has {len(X)} rows but y has {len(y)} ratings")
        return cls.from_arrays(X[:, 0], X[:, 1], y, **kwargs)

    def _resolve_duplicates(self, how: str) -> RatingMatrix:
        key = self.users.astype(np.int64) * self.n_items + self.items
        uniq, first, counts = np.unique(key, return_index=True, return_counts=True)
        if len(uniq) == len(key):
            return self
        n_dup = int((counts - 1).sum())
        if how == "error":
            k = int(np.flatnonzero(counts > 1)[0])
            u, i = divmod(int(uniq[k]), self.n_items)
            raise DataError(
                f"{n_dup} duplicate (user, item) rating(s), e.g. user "
                f"{_plain(self.user_ids[u])!r} and item {_plain(self.item_ids[i])!r} rated "
                f"{int(counts[k])} times; pass "
                "duplicates='mean' or duplicates='last' to combine them"
            )
        if how == "mean":
            inv = np.unique(key, return_inverse=True)[1]
            mean = np.bincount(inv, weights=self.ratings) / counts
            keep = np.sort(first)
            out = self.take(keep)
            out.ratings = mean[inv[keep]]
            return out
        if how == "last":
            order = (
                np.lexsort((np.arange(len(key)), self.timestamps, key))
                if self.timestamps is not None
                else np.lexsort((np.arange(len(key)), key))
            )
            last = order[np.r_[np.flatnonzero(np.diff(key[order])), len(key) - 1]]
            return self.take(np.sort(last))
        raise ValueError(f"duplicates must be 'error', 'mean' or 'last', got {how!r}")

    # ------------------------------------------------------------------ views
    @property
    def nnz(self) -> int:
        return int(self.ratings.shape[0])

    @property
    def n_users(self) -> int:
        return int(len(self.user_ids))

    @property
    def n_items(self) -> int:
        return int(len(self.item_ids))

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_users, self.n_items

    def __len__(self) -> int:
        return self.nnz

    def __repr__(self) -> str:
        return (
            f"RatingMatrix(name={self.name!r}, users={self.n_users}, items={self.n_items}, "
            f"ratings={self.nnz})"
        )

    def take(self, rows) -> RatingMatrix:
        """The ratings at ``rows`` (indices or a boolean mask), sharing the id maps.

        The subset has no ``provenance`` (the caller that knows what it is sets it)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        ts = None if self.timestamps is None else self.timestamps[rows]
        return RatingMatrix(
            self.users[rows],
            self.items[rows],
            self.ratings[rows],
            self.user_ids,
            self.item_ids,
            ts,
            self.item_info,
            self.tags,
            self.name,
        )

    def with_ratings(self, ratings) -> RatingMatrix:
        """Same pairs and id maps, new ratings (e.g. residuals after a baseline)."""
        ratings = check_ratings(ratings)
        if ratings.shape != self.ratings.shape:
            raise DataError(f"ratings has shape {ratings.shape}, expected {self.ratings.shape}")
        out = self.take(np.arange(self.nnz))
        out.ratings = ratings
        return out

    def user_counts(self) -> np.ndarray:
        return np.bincount(self.users, minlength=self.n_users)

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.items, minlength=self.n_items)

    def to_csr(self, dtype=np.float64) -> sp.csr_matrix:
        """Users x items CSR matrix of the ratings (cached per dtype)."""
        key = ("csr", np.dtype(dtype).str)
        if key not in self._cache:
            m = sp.csr_matrix(
                (self.ratings.astype(dtype), (self.users, self.items)), shape=self.shape
            )
            m.sort_indices()
            self._cache[key] = m
        return self._cache[key]

    def to_csc(self, dtype=np.float64) -> sp.csc_matrix:
        key = ("csc", np.dtype(dtype).str)
        if key not in self._cache:
            self._cache[key] = self.to_csr(dtype).tocsc()
        return self._cache[key]

    def to_frame(self) -> pd.DataFrame:
        """One row per rating with raw ids: columns user, item, rating[, timestamp]."""
        df = pd.DataFrame(
            {
                "user": self.user_ids[self.users],
                "item": self.item_ids[self.items],
                "rating": self.ratings,
            }
        )
        if self.timestamps is not None:
            df["timestamp"] = self.timestamps
        return df

    def pairs(self) -> np.ndarray:
        """(nnz, 2) array of raw (user, item) ids, as accepted by ``fit``/``predict``."""
        u, i = self.user_ids[self.users], self.item_ids[self.items]
        if u.dtype == i.dtype or (u.dtype.kind in "iuf" and i.dtype.kind in "iuf"):
            return np.column_stack([u, i])
        out = np.empty((self.nnz, 2), dtype=object)  # keep each column's own id type
        out[:, 0], out[:, 1] = u, i
        return out

    # ------------------------------------------------------------------ id mapping
    def _id_index(self, which: str) -> pd.Index:
        key = ("index", which)
        if key not in self._cache:
            ids = self.user_ids if which == "user" else self.item_ids
            self._cache[key] = pd.Index(ids)
        return self._cache[key]

    def _lookup(self, which: str, raw) -> np.ndarray:
        raw = np.asarray(raw).ravel()
        key = ("kind", which)
        if key not in self._cache:
            ids = self.user_ids if which == "user" else self.item_ids
            self._cache[key] = id_kind(ids)
        ids = self.user_ids if which == "user" else self.item_ids
        check_id_kind(raw, self._cache[key], ids[0] if len(ids) else None, which)
        return self._id_index(which).get_indexer(raw).astype(np.int64)

    def user_index(self, raw) -> np.ndarray:
        """Inner indices of raw user ids; -1 where the id is not in this matrix.

        Raises :class:`~mflib.validation.IdTypeError` when the ids are of another type
        than this matrix's (e.g. str for int ids), which no id could match."""
        return self._lookup("user", raw)

    def item_index(self, raw) -> np.ndarray:
        """Inner indices of raw item ids; -1 where the id is not in this matrix.

        Raises :class:`~mflib.validation.IdTypeError` when the ids are of another type
        than this matrix's (e.g. str for int ids), which no id could match."""
        return self._lookup("item", raw)

    def shares_index_with(self, other: RatingMatrix) -> bool:
        """True when both matrices use the same id maps (so inner indices agree)."""
        same = lambda a, b: a is b or (a.shape == b.shape and np.array_equal(a, b))  # noqa: E731
        return same(self.user_ids, other.user_ids) and same(self.item_ids, other.item_ids)

    # ------------------------------------------------------------------ summary
    def summary(self) -> pd.Series:
        """Users and items with at least one rating, ratings, density, rating scale."""
        n_u = int((self.user_counts() > 0).sum())
        n_i = int((self.item_counts() > 0).sum())
        values = np.unique(self.ratings)
        step = np.diff(values).min() if len(values) > 1 else 0.0
        s = {
            "dataset": self.name,
            "users": n_u,
            "items": n_i,
            "ratings": self.nnz,
            "density": self.nnz / max(n_u * n_i, 1),
            "rating_min": float(values[0]),
            "rating_max": float(values[-1]),
            "rating_step": float(step),
            "rating_mean": float(self.ratings.mean()),
            "ratings_per_user_median": float(np.median(self.user_counts()[self.user_counts() > 0])),
            "ratings_per_item_median": float(np.median(self.item_counts()[self.item_counts() > 0])),
            "has_timestamps": self.timestamps is not None,
            "has_item_info": self.item_info is not None,
            "has_tags": self.tags is not None,
        }
        return pd.Series(s, name=self.name)


def as_rating_matrix(X, y=None, *, name: str = "X") -> RatingMatrix:
    """Accept a ``RatingMatrix`` or an (n, 2) array of raw ids with ratings ``y``."""
    if isinstance(X, RatingMatrix):
        if y is not None:
            raise DataError(
                f"{name} is a RatingMatrix, which carries its ratings; do not also pass y"
            )
        return X
    return RatingMatrix.from_pairs(X, y)
