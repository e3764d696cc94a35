"""Dataset registry: where each archive comes from, the checksum of every file, its parser.

Loading looks, in order, in ``$MFLIB_DATA_DIR``, in the cache folder
(``$MFLIB_CACHE_DIR`` or the OS cache dir), and then downloads with pooch and
verifies the checksum. The original zip and an already-extracted folder are both
accepted. Nothing here is ever redistributed by mflib.

Integrity, in two layers that do not depend on each other:

* **checksums** (``verify=True``, the default). A zip whose sha256 equals the published
  one is hashed once and then trusted whole. Every other copy (an extracted folder, a
  re-packed zip) is checked file by file: each file is hashed as it is read, once per
  load, against the sha256 recorded in the registry. Where no per-file checksum is known
  (ml-1m, ml-10m: only their archives' sha256 are published) an extracted folder is
  accepted unhashed and a re-packed archive is refused.
* **parsers** (always, also with ``verify=False``). Ids must be integers, ratings must
  lie on the dataset's scale, timestamps and dates must be valid, rated items must be
  in the movie table. The first value that breaks a rule is reported as
  :class:`DataFileError` with the file, the 1-based line number (header counted, as an
  editor shows it) and the value as written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..validation import DataError
from .ratings import RatingMatrix

GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
COURSE = (
    "https://raw.githubusercontent.com/statmlben/CUHK-STAT3009/"
    "4fff0703418a4ce62d694fb0bbd17f2955d455f8/dataset/netflix/"
)
# 2100-01-01 00:00:00 UTC: a larger "seconds since 1970" is milliseconds or garbage
MAX_TIMESTAMP = 4_102_444_800


class DataNotFoundError(DataError, FileNotFoundError):
    """The dataset, or a file it needs, is neither on disk nor downloadable (offline)."""


class ChecksumError(DataError):
    """A file on disk or a download does not match its published or recorded checksum."""


class DataFileError(DataError):
    """A line of a dataset file breaks the file's format (bad id, rating, timestamp...).

    Attributes ``path`` (the file, ``archive.zip:member`` inside a zip), ``line``
    (1-based, header counted) and ``value`` (as written in the file, or None).
    """

    def __init__(self, message: str, *, path: str, line: int | None = None, value=None):
        super().__init__(message)
        self.path, self.line, self.value = path, line, value


def _error(cls, message: str, reason: str):
    """An exception with a short ``reason`` for tables such as ``mflib data list``."""
    exc = cls(message)
    exc.reason = reason
    return exc


@dataclass(frozen=True)
class RatingScale:
    """Ratings allowed in a dataset: ``low`` to ``high`` in steps of ``step``."""

    low: float
    high: float
    step: float

    def __str__(self) -> str:
        if self.step == 1:
            return f"integers {self.low:g} to {self.high:g}"
        return f"{self.low:g} to {self.high:g} in steps of {self.step:g}"


STARS_1_5 = RatingScale(1, 5, 1)
HALF_STARS = RatingScale(0.5, 5, 0.5)


@dataclass(frozen=True)
class Dataset:
    """One registry entry.

    ``files`` maps every file of the dataset whose content we know to its ``sha256``
    (None where no checksum is known); ``required`` lists the files the parser reads
    (default: all of ``files``). ``archive`` is the zip the files come in (with its
    sha256), or None when the files are served one by one from ``url``. ``scale`` is the
    rating scale the parser enforces.
    """

    name: str
    description: str
    url: str
    files: dict
    parser: Callable
    archive: str | None = None
    archive_sha256: str | None = None
    folder: str | None = None  # folder inside the zip / extracted directory name
    splits: dict = field(default_factory=dict)  # predefined train/test files
    citation: str = ""
    required: tuple = ()
    scale: RatingScale = STARS_1_5

    @property
    def needed(self) -> tuple:
        """Files that must be present for :func:`load_dataset`."""
        return tuple(self.required) or tuple(self.files)

    def origin(self) -> str:
        """Where a good copy comes from, for error messages."""
        return f"{self.archive} ({self.url})" if self.archive else self.url


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------- sources
class _Source:
    """Read access to one local copy of a dataset (a zip or a folder).

    With ``verify=True`` every file is checked before the parser sees it: a zip whose
    sha256 is the published one is hashed once, here, and trusted whole; otherwise each
    file is hashed as it is read (once: ``read`` remembers what it checked) against its
    sha256 in ``Dataset.files``. ``verify=False`` hashes nothing; the parsers still check
    every line.
    """

    def __init__(self, ds: Dataset, path: Path, *, verify: bool, trusted: bool = False):
        self.ds = ds
        self.path = Path(path)
        self.verify = verify
        self._trusted = trusted
        self._checked: set[str] = set()
        self._archive_problem = None  # why a zip is not trusted whole
        self._zip = None
        if not self.path.is_file():
            return
        if verify and not trusted:
            if ds.archive_sha256 is None:
                self._archive_problem = f"no published sha256 for {self.path.name}"
            else:
                got = _sha256(self.path)
                if got == ds.archive_sha256:
                    self._trusted = True
                else:
                    self._archive_problem = (
                        f"{self.path} does not match the published sha256 of {ds.archive} "
                        f"(expected {ds.archive_sha256}, got {got})"
                    )
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            extra = f"; {self._archive_problem}" if self._archive_problem else ""
            raise _error(
                DataError,
                f"{self.path} is not a readable zip archive ({exc}){extra}. The download is "
                f"incomplete or the file is not {ds.archive}: delete it and download "
                f"{ds.url} again",
                "not a readable zip archive",
            ) from exc
        names = self._zip.namelist()
        self._members = set(names)
        dirs = [n for n in names if n.endswith("/") and n.count("/") == 1]
        if ds.folder and any(n.startswith(ds.folder + "/") for n in names):
            self._prefix = ds.folder + "/"
        else:
            self._prefix = dirs[0] if len(dirs) == 1 else ""

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc) -> None:
        if self._zip is not None:
            self._zip.close()

    @property
    def is_zip(self) -> bool:
        return self._zip is not None

    def exists(self, name: str) -> bool:
        if self._zip is not None:
            return self._prefix + name in self._members
        return (self.path / name).is_file()

    def describe(self, name: str) -> str:
        if self._zip is not None:
            return f"{self.path}:{self._prefix}{name}"
        return str(self.path / name)

    def _missing(self, name: str) -> DataNotFoundError:
        ds = self.ds
        if self._zip is not None:
            msg = (f"{self.path} has no member {self._prefix}{name}, which {ds.name} needs: the "
                   f"archive is incomplete or not {ds.archive}; delete it and download "
                   f"{ds.url} again")
            return _error(DataNotFoundError, msg, f"no member {name}")
        msg = (f"{self.path / name} is missing: the folder {self.path} lacks {name}, which "
               f"{ds.name} needs; copy {name} from {ds.origin()} into it (or put the "
               "original archive there instead of the folder)")
        return _error(DataNotFoundError, msg, f"missing {name}")

    def read(self, name: str) -> bytes:
        """The bytes of ``name``, verified against the registry when ``verify`` is on."""
        if not self.exists(name):
            raise self._missing(name)
        if self._zip is not None:
            try:
                data = self._zip.read(self._prefix + name)
            except (zipfile.BadZipFile, OSError) as exc:  # CRC error, truncated member
                raise _error(
                    DataError,
                    f"member {name} of {self.path} cannot be read ({exc}): the archive is "
                    f"corrupt; delete it and download {self.ds.url} again",
                    f"member {name} unreadable",
                ) from exc
        else:
            data = (self.path / name).read_bytes()
        if self.verify and not self._trusted and name not in self._checked:
            self._check(name, data)
            self._checked.add(name)
        return data

    def _check(self, name: str, data: bytes) -> None:
        ds = self.ds
        expected = ds.files.get(name)
        if expected is None:
            if self._zip is not None and ds.archive_sha256 is not None:
                raise _error(
                    ChecksumError,
                    f"{self._archive_problem}, and no sha256 is recorded for its member "
                    f"{name}, so the archive cannot be verified member by member. Delete it "
                    f"and download {ds.url} again, or pass verify=False to load it unverified "
                    "(the parser still checks every line)",
                    f"archive sha256 differs and {name} has no recorded checksum",
                )
            return  # nothing recorded for this file: the parser's checks are all there is
        got = hashlib.sha256(data).hexdigest()
        if got != expected:
            where = f"; {self._archive_problem}" if self._archive_problem else ""
            raise _error(
                ChecksumError,
                f"{self.describe(name)} does not match the sha256 recorded for {ds.name}'s "
                f"{name}: expected {expected}, got {got}{where}. The file is corrupt or "
                f"edited: restore it from {ds.origin()}. (verify=False skips this check; the "
                "parser then names the first line it cannot accept, if any)",
                f"{name} sha256 differs",
            )

    def verify_all(self) -> list[str]:
        """Check the whole copy: needed files present, every recorded checksum matching.

        Returns the files that could not be verified (no checksum recorded); raises
        :class:`DataNotFoundError` or :class:`ChecksumError` listing every problem.
        """
        missing = [f for f in self.ds.needed if not self.exists(f)]
        if missing:
            first = self._missing(missing[0])
            if len(missing) > 1:
                raise _error(DataNotFoundError, f"{first} (also missing: {missing[1:]})",
                             "missing " + ", ".join(missing))
            raise first
        if self._trusted:
            return []
        bad, reasons, unverified = [], [], []
        for name in self.ds.files:
            if not self.exists(name):
                continue
            if self.ds.files[name] is None and not (self.is_zip and self.ds.archive_sha256):
                unverified.append(name)  # nothing to compare with; the parser checks it
                continue
            try:
                self.read(name)
            except DataError as exc:
                bad.append(str(exc))
                reasons.append(getattr(exc, "reason", name))
        if bad:
            raise _error(ChecksumError, "\n".join(bad), "; ".join(reasons))
        return unverified


# ---------------------------------------------------------------------- tables
_INTEGER = r"\s*[+-]?[0-9]{1,18}\s*"  # what always fits in int64


class _Table:
    """One parsed file plus what is needed to point at a line of it in an error."""

    def __init__(self, src: _Source, name: str, *, sep: str, names=None, header=False,
                 encoding="utf-8", quoted=False):
        self.src, self.name, self.header = src, name, int(header)
        self.where = src.describe(name)
        data = src.read(name)
        engine = "c"
        if len(sep) > 1:  # "::" (ml-1m, ml-10m): the C parser takes one character
            if b"\t" in data:
                engine = "python"
            else:
                data, sep = data.replace(sep.encode(), b"\t"), "\t"
        self._data = data
        self._kw = dict(
            sep=sep, names=names, header=0 if header else None, encoding=encoding,
            engine=engine, skip_blank_lines=False, keep_default_na=False, na_values=[""],
            quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE,
        )
        self.df = self._parse()
        if names is None and header:
            self.df.columns = [str(c).strip() for c in self.df.columns]
        # trailing empty lines (u.genre ends with one) carry nothing; empty lines inside
        # the data are reported by the column checks, with their line numbers
        filled = self.df.notna().any(axis=1).to_numpy()
        if not filled.any():
            raise self.error(None, None, None, "has no data lines")
        n = int(np.flatnonzero(filled)[-1]) + 1
        if n < len(self.df):  # parse again without them, so the columns get their own dtypes
            self._kw["nrows"] = n
            self.df = self._parse()
            if names is None and header:
                self.df.columns = [str(c).strip() for c in self.df.columns]
        self._raw = None

    def _parse(self, **extra) -> pd.DataFrame:
        try:
            return pd.read_csv(io.BytesIO(self._data), **{**self._kw, **extra})
        except UnicodeDecodeError as exc:
            pos = self._decode_error_at()
            line = self._data[:pos].count(b"\n") + 1 if pos is not None else None
            value = self._data[pos : pos + 4] if pos is not None else None
            raise self.error(line, None, value,
                             f"is not valid {self._kw['encoding']} text ({exc.reason})",
                             absolute=True) from exc
        except (pd.errors.ParserError, ValueError) as exc:
            msg = " ".join(str(exc).split())
            line = None
            marker = " in line "
            if marker in msg:  # "Expected 4 fields in line 57, saw 5" (1-based, header counted)
                digits = msg.split(marker, 1)[1].split(",")[0].strip()
                line = int(digits) if digits.isdigit() else None
            raise self.error(line, None, None, f"cannot be parsed ({msg})",
                             absolute=True) from exc

    def _decode_error_at(self):
        try:
            self._data.decode(self._kw["encoding"])
        except UnicodeDecodeError as exc:
            return exc.start
        return None

    def raw(self, column: str) -> pd.Series:
        """``column`` as the strings written in the file (NaN for an empty field)."""
        if self._raw is None:
            self._raw = self._parse(dtype=str)
            if self._kw["names"] is None and self.header:
                self._raw.columns = self.df.columns
        return self._raw[column]

    def line(self, row: int) -> int:
        """1-based line of data row ``row``: header lines, then one line per row, plus the
        line breaks inside quoted fields of the rows before it."""
        extra = 0
        if self._kw["quoting"] != csv.QUOTE_NONE and row > 0:
            before = self._parse(dtype=str).iloc[:row]
            for col in before.columns:
                extra += int(before[col].str.count("\n").fillna(0).sum())
        return self.header + 1 + row + extra

    def error(self, row, column, value, problem: str, *, absolute: bool = False):
        """A :class:`DataFileError` for data row ``row`` (or file line ``row`` if absolute)."""
        ds = self.src.ds
        line = row if absolute or row is None else self.line(row)
        at = f", line {line}" if line is not None else ""
        what = ""
        if column is not None:
            shown = "an empty field" if value is None or (
                isinstance(value, float) and np.isnan(value)) else repr(value)
            what = f"{column} {shown} "
        elif value is not None:
            what = f"{value!r} "
        hint = ""
        if not self.src.verify and (ds.files.get(self.name) or ds.archive_sha256):
            hint = " (loading with verify=True compares it with its recorded checksum)"
        fix = f"The file is corrupt, edited or not {ds.name}'s: restore it from {ds.origin()}{hint}"
        return DataFileError(f"{self.where}{at}: {what}{problem}. {fix}",
                             path=self.where, line=line, value=value)

    # ------------------------------------------------------------------ column checks
    def require(self, columns) -> None:
        missing = [c for c in columns if c not in self.df.columns]
        if missing:
            raise DataFileError(
                f"{self.where} lacks column(s) {missing}; found {list(self.df.columns)}. "
                f"Restore it from {self.src.ds.origin()}", path=self.where, line=1)

    def _first(self, bad: np.ndarray, column: str, problem: str):
        row = int(np.flatnonzero(bad)[0])
        value = self.raw(column).iloc[row]
        return self.error(row, column, None if pd.isna(value) else value, problem)

    def ints(self, column: str, *, low: int, high: int | None = None) -> np.ndarray:
        """``column`` as int64, every value an integer numeral in ``[low, high]``."""
        s = self.df[column]
        if s.dtype.kind not in "iu":
            raw = self.raw(column)
            bad = ~raw.str.fullmatch(_INTEGER).fillna(False).to_numpy(dtype=bool)
            if not bad.any():  # pandas refused a value the pattern accepts: show the first
                bad = np.ones(len(raw), dtype=bool)
            raise self._first(bad, column, "is not an integer (of at most 18 digits)")
        v = s.to_numpy()
        if v.dtype == np.uint64 and (v > np.iinfo(np.int64).max).any():
            raise self._first(v > np.iinfo(np.int64).max, column, "is too large for an id")
        bad = v < low
        if high is not None:
            bad |= v > high
        if bad.any():
            rng = f"between {low} and {high}" if high is not None else f">= {low}"
            raise self._first(bad, column, f"is out of range (must be {rng})")
        return v.astype(np.int64, copy=False)

    def ratings(self, column: str, scale: RatingScale) -> np.ndarray:
        """``column`` as float64, every value on ``scale``."""
        s = self.df[column]
        if s.dtype.kind not in "iuf":
            v = pd.to_numeric(self.raw(column), errors="coerce").to_numpy(dtype=float)
        else:
            v = s.to_numpy(dtype=np.float64)
        steps = (v - scale.low) / scale.step
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(v) | (v < scale.low) | (v > scale.high) | (steps != np.round(steps))
        if bad.any():
            raise self._first(bad, column, f"is not a rating of {self.src.ds.name}, whose "
                                           f"ratings are {scale}")
        return v

    def timestamps(self, column: str) -> np.ndarray:
        return self.ints(column, low=0, high=MAX_TIMESTAMP)

    def dates(self, column: str, fmt: str = "%Y-%m-%d") -> np.ndarray:
        """``column`` (dates written as ``fmt``) as int64 seconds since 1970-01-01."""
        d = pd.to_datetime(self.df[column], format=fmt, errors="coerce")
        bad = d.isna().to_numpy()
        if bad.any():
            raise self._first(bad, column, f"is not a valid date {fmt.replace('%', '')}")
        return ((d - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)

    def unique(self, column: str, values: np.ndarray) -> None:
        dup = pd.Series(values).duplicated().to_numpy()
        if dup.any():
            row = int(np.flatnonzero(dup)[0])
            first = int(np.flatnonzero(values == values[row])[0])
            raise self._first(dup, column, f"appears twice (first on line {self.line(first)})")

    def known(self, column: str, values: np.ndarray, known: np.ndarray, table: str) -> None:
        bad = ~np.isin(values, known)
        if bad.any():
            raise self._first(bad, column, f"is not in {table} ({len(known)} ids)")


# ---------------------------------------------------------------------- parsers
def _frame(user, item, rating, timestamp=None) -> pd.DataFrame:
    cols = {"user": user, "item": item, "rating": rating}
    if timestamp is not None:
        cols["timestamp"] = timestamp
    return pd.DataFrame(cols)


def _duplicate_error(parts) -> DataFileError | None:
    """The second rating of a (user, item) pair already rated, with both lines."""
    both = pd.concat([f[["user", "item"]] for f, _ in parts], ignore_index=True)
    dup = both.duplicated(keep=False).to_numpy()
    if not dup.any():
        return None
    rows = np.flatnonzero(dup)
    pairs = both.to_numpy()
    first = rows[0]
    again = rows[1:][(pairs[rows[1:]] == pairs[first]).all(axis=1)][0]
    starts = np.cumsum([0] + [len(f) for f, _ in parts])

    def locate(row):
        k = int(np.searchsorted(starts, row, side="right") - 1)
        return parts[k][1], int(row - starts[k])

    (t1, r1), (t2, r2) = locate(first), locate(again)
    before = f"line {t1.line(r1)}" + ("" if t1 is t2 else f" of {t1.where}")
    user, item = pairs[first]
    return t2.error(r2, None, None, f"user {user} rates item {item} again (first on {before}); "
                                    "each (user, item) pair is rated once")


def _to_matrix(parts, name, item_info=None, tags=None) -> RatingMatrix:
    """One RatingMatrix from (frame, table) parts, rows in file order."""
    frames = [f for f, _ in parts]
    df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    ts = df["timestamp"].to_numpy() if "timestamp" in df else None
    try:
        return RatingMatrix.from_arrays(
            df["user"].to_numpy(), df["item"].to_numpy(), df["rating"].to_numpy(), ts,
            item_info=item_info, tags=tags, name=name,
        )
    except DataError as exc:
        located = _duplicate_error(parts)
        if located is not None:
            raise located from exc
        raise DataError(f"{' + '.join(t.where for _, t in parts)}: {exc}") from exc


def _ratings_table(t: _Table, scale: RatingScale, known_items=None, movies_file="",
                   cols=("user", "item", "rating", "timestamp")) -> tuple[pd.DataFrame, _Table]:
    """user, item, rating, timestamp of a ratings file (columns ``cols`` in the file),
    every line checked; rated items must be in ``known_items`` (from ``movies_file``)."""
    user_col, item_col, rating_col, time_col = cols
    user = t.ints(user_col, low=1)
    item = t.ints(item_col, low=1)
    if known_items is not None:
        t.known(item_col, item, known_items, movies_file)
    return _frame(user, item, t.ratings(rating_col, scale), t.timestamps(time_col)), t


def _ml100k_items(src: _Source) -> pd.DataFrame:
    g = _Table(src, "u.genre", sep="|", names=["genre", "id"], encoding="latin-1")
    ids = g.ints("id", low=0, high=len(g.df) - 1)
    g.unique("id", ids)
    names = g.df["genre"].astype(str).to_numpy()[np.argsort(ids)].tolist()
    cols = ["item", "title", "release_date", "video_release_date", "imdb_url", *names]
    t = _Table(src, "u.item", sep="|", names=cols, encoding="latin-1")
    item = t.ints("item", low=1)
    t.unique("item", item)
    flags = np.column_stack([t.ints(c, low=0, high=1) for c in names]).astype(bool)
    items = pd.DataFrame({"item": item, "title": t.df["title"].to_numpy(),
                          "release_date": t.df["release_date"].to_numpy()})
    items["genres"] = ["|".join(g for g, f in zip(names, row, strict=True) if f)
                       for row in flags]
    return items.set_index("item")


def _ml100k_ratings(src: _Source, name: str, items: pd.DataFrame):
    t = _Table(src, name, sep="\t", names=["user", "item", "rating", "timestamp"])
    return _ratings_table(t, src.ds.scale, items.index.to_numpy(), "u.item")


def parse_ml100k(src: _Source, name="ml-100k") -> RatingMatrix:
    """MovieLens 100K: ``u.data`` (tab separated), ``u.item`` + ``u.genre`` (latin-1)."""
    items = _ml100k_items(src)
    return _to_matrix([_ml100k_ratings(src, "u.data", items)], name, items)


def _dat_movies(src: _Source) -> pd.DataFrame:
    t = _Table(src, "movies.dat", sep="::", names=["item", "title", "genres"],
               encoding="latin-1")
    item = t.ints("item", low=1)
    t.unique("item", item)
    return pd.DataFrame({"item": item, "title": t.df["title"].to_numpy(),
                         "genres": t.df["genres"].to_numpy()}).set_index("item")


def _dat_ratings(src: _Source, movies: pd.DataFrame):
    t = _Table(src, "ratings.dat", sep="::", names=["user", "item", "rating", "timestamp"])
    return _ratings_table(t, src.ds.scale, movies.index.to_numpy(), "movies.dat")


def parse_ml1m(src: _Source, name="ml-1m") -> RatingMatrix:
    """MovieLens 1M: ``ratings.dat`` and ``movies.dat``, ``::`` separated, latin-1."""
    movies = _dat_movies(src)
    return _to_matrix([_dat_ratings(src, movies)], name, movies)


def _tags(t: _Table, user_col="user", item_col="item") -> pd.DataFrame:
    return pd.DataFrame({"user": t.ints(user_col, low=1), "item": t.ints(item_col, low=1),
                         "tag": t.df["tag"].to_numpy(), "timestamp": t.timestamps("timestamp")})


def parse_ml10m(src: _Source, name="ml-10m") -> RatingMatrix:
    """MovieLens 10M: ``ratings.dat``, ``movies.dat`` and ``tags.dat`` (``::`` separated)."""
    movies = _dat_movies(src)
    ratings = _dat_ratings(src, movies)
    tags = None
    if src.exists("tags.dat"):
        tags = _tags(_Table(src, "tags.dat", sep="::", names=["user", "item", "tag", "timestamp"]))
    return _to_matrix([ratings], name, movies, tags)


def parse_ml_latest(src: _Source, name="ml-latest-small") -> RatingMatrix:
    """MovieLens latest(-small): ``ratings.csv``, ``movies.csv`` and ``tags.csv``."""
    m = _Table(src, "movies.csv", sep=",", header=True, quoted=True)
    m.require(["movieId", "title", "genres"])
    item = m.ints("movieId", low=1)
    m.unique("movieId", item)
    movies = pd.DataFrame({"item": item, "title": m.df["title"].to_numpy(),
                           "genres": m.df["genres"].to_numpy()}).set_index("item")
    r = _Table(src, "ratings.csv", sep=",", header=True, quoted=True)
    r.require(["userId", "movieId", "rating", "timestamp"])
    ratings = _ratings_table(r, src.ds.scale, item, "movies.csv",
                             cols=("userId", "movieId", "rating", "timestamp"))
    t = _Table(src, "tags.csv", sep=",", header=True, quoted=True)
    t.require(["userId", "movieId", "tag", "timestamp"])
    return _to_matrix([ratings], name, movies, _tags(t, "userId", "movieId"))


def _course_frame(src: _Source, fname: str) -> tuple[pd.DataFrame, _Table]:
    t = _Table(src, fname, sep=",", header=True, quoted=True)
    # columns by name: the files' header order is movie_id,user_id,rating,date
    t.require(["user_id", "movie_id", "rating"])
    # ids are 0-based (LabelEncoder codes) in the course files
    return _frame(t.ints("user_id", low=0), t.ints("movie_id", low=0),
                  t.ratings("rating", src.ds.scale),
                  t.dates("date") if "date" in t.df else None), t


def parse_netflix(src: _Source, name="netflix") -> RatingMatrix:
    """The course Netflix subset: ``train.csv`` then ``test.csv`` (rows in file order)."""
    return _to_matrix([_course_frame(src, f) for f in ("train.csv", "test.csv")], name)


# ---------------------------------------------------------------------- registry
ML100K_SPLITS = {f"u{k}": (f"u{k}.base", f"u{k}.test") for k in range(1, 6)}
ML100K_SPLITS.update({"ua": ("ua.base", "ua.test"), "ub": ("ub.base", "ub.test")})

# sha256 of the 23 files of ml-100k.zip. u.data, u.item (and u.user) are published by
# GroupLens as separate downloads; the others were computed from an extracted copy that
# agrees with those and with several independent copies (see shared/data/SOURCES.md).
ML100K_FILES = {
    "README": "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52",
    "allbut.pl": "bfc6a75cbd65c74bb38a0b580dbe866af252733dfa9a65a2c4b93258774ee8a3",
    "mku.sh": "7929735c375e89a04340e34de621bf2ea643cd04b0bcda2c6f458e4be961ae71",
    "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
    "u.info": "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b",
    "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
    "u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
    "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
    "u1.base": "ce253ec86c448b44fb3ba9a30d12dcfc2e9210cbde71efada3730c22e9ac212a",
    "u1.test": "18c6014a4b2c7324f250a63f8904a7b16b2b19f911129e346141507b0cbac950",
    "u2.base": "6c06f0b5df4b256da1a994f3ac66edc8da4d3f09bc9282df6b14d893366d703e",
    "u2.test": "4de658d1e04ed9104629509a2e2528fce833ac8e048280183f1df167632038c3",
    "u3.base": "afdc155c291c6edc41c0407e39d7462eb98d341e064f0b0a12175b80b3c4af5d",
    "u3.test": "0f548b51c78327de4c156461d3e430b7e5579fe2b5681586a59416e48fd35f6d",
    "u4.base": "219f0f4d40dfe9c5141d425f53fa91ee23ed275f14e280bbf1b50117afb064ca",
    "u4.test": "7c02ad0a1e7ab1083c8b9d4b627203a051dd7b5eab46d99fa44de33470de8db9",
    "u5.base": "a9574e59ce961eec2121627760b6e9b0974ce1637b3fe69ac32cb14a4bfab485",
    "u5.test": "351cc52e0d15b6c721466276fc24671d40936899e3d01fadeaf312915b8c5634",
    "ua.base": "67b5bcdb380c29f85d56a012ecd88612ae020f30a6730d117a334ee8203b91f2",
    "ua.test": "d0497e202417720f57a184ec8c66be2d1afa4ff41bb53787c57b28d6bf79bc42",
    "ub.base": "237254d253b6ad7de84f919d041055428646254f34ed8f562703c899430cd881",
    "ub.test": "d54a72d05730d5892062734b2bec73e976f9b713d18c828a18b968d6cce442da",
}

# sha256 of the five members of the published ml-latest-small.zip (computed from it)
ML_LATEST_SMALL_FILES = {
    "README.txt": "63d22ac138e80fae37021797ed8e1b9424b5239dc576a137422adf783ae3f404",
    "links.csv": "97ad18e4e56a09363c65676b6cb3482ce3e2cea2372a24620c1599c843325f31",
    "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
    "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
    "tags.csv": "92a9f8bb7916dceef6151209845788c3643f794dfa79d1feaec7121b5960399d",
}

MOVIELENS = "F. M. Harper and J. A. Konstan (2015), The MovieLens Datasets, ACM TiiS 5(4)"

REGISTRY: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            "ml-100k", "MovieLens 100K: 100,000 ratings (1-5) of 1,682 movies by 943 users",
            GROUPLENS + "ml-100k.zip", files=ML100K_FILES, required=("u.data", "u.item", "u.genre"),
            parser=parse_ml100k, archive="ml-100k.zip",
            archive_sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
            folder="ml-100k", splits=ML100K_SPLITS, scale=STARS_1_5, citation=MOVIELENS,
        ),
        Dataset(
            "ml-1m", "MovieLens 1M: 1,000,209 ratings (1-5) of ~3,900 movies by 6,040 users",
            GROUPLENS + "ml-1m.zip",
            # Only the archive's sha256 is published and no copy of its files was available
            # to compute theirs: an extracted folder is accepted on the parser's checks
            # alone, and a zip must be the published one (or verify=False).
            files={"ratings.dat": None, "movies.dat": None},
            parser=parse_ml1m, archive="ml-1m.zip",
            archive_sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
            folder="ml-1m", scale=STARS_1_5, citation=MOVIELENS,
        ),
        Dataset(
            "ml-10m", "MovieLens 10M: 10,000,054 ratings (0.5-5) and 95,580 tags, 10,681 movies",
            GROUPLENS + "ml-10m.zip",
            # as for ml-1m: only the archive's sha256 is known, none of its files'
            files={"ratings.dat": None, "movies.dat": None, "tags.dat": None},
            required=("ratings.dat", "movies.dat"),
            parser=parse_ml10m, archive="ml-10m.zip",
            archive_sha256="813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862",
            folder="ml-10M100K", scale=HALF_STARS, citation=MOVIELENS,
        ),
        Dataset(
            "ml-latest-small",
            "MovieLens latest-small (2018): 100,836 ratings, 3,683 tags, 9,742 movies, 610 users",
            GROUPLENS + "ml-latest-small.zip", files=ML_LATEST_SMALL_FILES,
            required=("ratings.csv", "movies.csv", "tags.csv"),
            parser=parse_ml_latest, archive="ml-latest-small.zip",
            archive_sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
            folder="ml-latest-small", scale=HALF_STARS, citation=MOVIELENS,
        ),
        Dataset(
            "netflix",
            "Netflix-prize subset of the CUHK STAT3009 course: train.csv / test.csv, "
            "51,161 ratings each (1-5)",
            COURSE,
            files={"train.csv": "e8c33b1f4a6608c166d570d908aafc1583808ad5973e8e9d15f29919d6cf8075",
                   "test.csv": "95f02b1576b62c09ae45345cbf694bf8ab2ca17ec428eb049981161f99202424"},
            parser=parse_netflix, folder="cuhk-stat3009-netflix",
            splits={"course": ("train.csv", "test.csv")}, scale=STARS_1_5,
            citation="B. Dai, CUHK STAT3009 Recommender Systems (course data)",
        ),
    ]
}


def get_dataset(name: str) -> Dataset:
    """Registry entry of ``name``; an unknown name gets the list of known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown dataset {name!r}; known datasets: {', '.join(REGISTRY)}"
        ) from None


def list_datasets() -> pd.DataFrame:
    """Name, description and official URL of every registered dataset."""
    return pd.DataFrame(
        [(d.name, d.description, d.url) for d in REGISTRY.values()],
        columns=["name", "description", "url"],
    ).set_index("name")


def data_dirs() -> list[Path]:
    """Folders searched for datasets: ``$MFLIB_DATA_DIR`` then the cache folder."""
    dirs = []
    if os.environ.get("MFLIB_DATA_DIR"):
        dirs.append(Path(os.environ["MFLIB_DATA_DIR"]).expanduser())
    dirs.append(cache_dir())
    return dirs


def cache_dir() -> Path:
    if os.environ.get("MFLIB_CACHE_DIR"):
        return Path(os.environ["MFLIB_CACHE_DIR"]).expanduser()
    import pooch  # noqa: PLC0415

    return Path(pooch.os_cache("mflib"))


def _locate(ds: Dataset) -> tuple[Path | None, tuple[Path, list] | None]:
    """The first local copy (archive, or folder holding every needed file), and the
    first incomplete folder met on the way with the files it lacks. Hashes nothing."""
    incomplete = None
    for base in data_dirs():
        if ds.archive and (base / ds.archive).is_file():
            return base / ds.archive, incomplete
        for folder in dict.fromkeys((base / (ds.folder or ds.name), base / ds.name)):
            if folder.is_dir():
                missing = [f for f in ds.needed if not (folder / f).is_file()]
                if not missing:
                    return folder, incomplete
                incomplete = incomplete or (folder, missing)
    return None, incomplete


def _not_found_message(ds: Dataset, reason: str) -> str:
    where = ", ".join(str(d) for d in data_dirs())
    if ds.archive:
        what = (f"the archive {ds.archive} (sha256 {ds.archive_sha256}) or its extracted "
                f"folder {ds.folder}/")
    else:
        what = "the files " + ", ".join(f"{f} (sha256 {s})" for f, s in ds.files.items())
        what += f" in a folder {ds.folder}/"
    return (
        f"dataset {ds.name!r} is not available: {reason}. Download {ds.url} and put {what} "
        f"into one of: {where} (or set MFLIB_DATA_DIR to the folder that holds it)"
    )


def _incomplete_error(ds: Dataset, folder: Path, missing: list) -> DataNotFoundError:
    names = ", ".join(missing)
    return _error(
        DataNotFoundError,
        f"the folder {folder} holds {ds.name} but lacks {names} (needed: "
        f"{', '.join(ds.needed)}); copy {names} from {ds.origin()} into it, or put the "
        "original archive in its place",
        f"missing {names}",
    )


def _obtain(ds: Dataset, download: bool) -> tuple[Path, bool]:
    """Path of a local copy, downloading one if allowed; True if pooch just verified it."""
    path, incomplete = _locate(ds)
    if path is not None:
        return path, False
    if incomplete is not None:
        folder, missing = incomplete
        # a half-finished download into our cache is completed; a user's folder is not
        fill_in = download and ds.archive is None and folder == cache_dir() / ds.folder
        if not fill_in:
            raise _incomplete_error(ds, folder, missing)
    if not download:
        raise DataNotFoundError(_not_found_message(ds, "not found locally and download=False"))
    import pooch  # noqa: PLC0415

    target = cache_dir()
    try:
        if ds.archive:
            pooch.retrieve(ds.url, known_hash=f"sha256:{ds.archive_sha256}",
                           fname=ds.archive, path=target, progressbar=False)
            return target / ds.archive, True
        for fname, sha in ds.files.items():
            pooch.retrieve(ds.url + fname, known_hash=sha and f"sha256:{sha}", fname=fname,
                           path=target / ds.folder, progressbar=False)
        return target / ds.folder, all(ds.files.values())
    except ValueError as exc:  # pooch reports a hash mismatch as ValueError
        raise ChecksumError(f"download of {ds.name} failed its checksum: {exc}") from exc
    except Exception as exc:  # network errors have many types; say what to do instead
        raise DataNotFoundError(_not_found_message(ds, f"download failed ({exc})")) from exc


def fetch(name: str, *, download: bool = True, verify: bool = True) -> Path:
    """Path of the dataset's archive or folder, downloading it into the cache if needed.

    With ``verify=True`` the whole local copy is checked: every needed file present, and
    the archive's sha256 (or, for a folder or a re-packed zip, every file's) matching the
    registry. Raises :class:`DataNotFoundError` or :class:`ChecksumError` otherwise.
    """
    ds = get_dataset(name)
    path, fresh = _obtain(ds, download)
    if verify and not fresh:
        with _Source(ds, path, verify=True) as src:
            src.verify_all()
    return path


def first_available(*names: str) -> str:
    """The first of ``names`` with a local copy (looked up, never downloaded), saying so
    when it is not the first; the last name when none is local (loading it then downloads
    it). Lets a profile ask for a dataset "when present" and fall back to another."""
    for name in names:
        if _locate(get_dataset(name))[0] is not None:
            if name != names[0]:
                print(f"{names[0]} is not available here; using {name} instead")
            return name
    return names[-1]


def local_status(name: str) -> tuple[Path | None, str]:
    """Where the local copy of ``name`` is and whether it is intact; downloads nothing.

    The status is ``"ok"``, ``"ok (files not verified: ...)"`` where no checksum is
    recorded, ``"not downloaded"``, ``"incomplete: missing ..."`` or ``"corrupt: ..."``.
    """
    ds = get_dataset(name)
    path, incomplete = _locate(ds)
    if path is None:
        if incomplete is None:
            return None, "not downloaded"
        return incomplete[0], "incomplete: " + _incomplete_error(ds, *incomplete).reason
    try:
        with _Source(ds, path, verify=True) as src:
            unverified = src.verify_all()
    except DataNotFoundError as exc:
        return path, "incomplete: " + getattr(exc, "reason", str(exc))
    except (DataError, OSError) as exc:
        return path, "corrupt: " + getattr(exc, "reason", str(exc))
    if unverified:
        return path, f"ok (no checksum recorded for {', '.join(unverified)})"
    if src.is_zip and not src._trusted:
        return path, "ok (not the published archive, but every member matches its checksum)"
    return path, "ok"


def _source(name: str, download: bool, verify: bool) -> tuple[Dataset, _Source]:
    ds = get_dataset(name)
    path, fresh = _obtain(ds, download)
    return ds, _Source(ds, path, verify=verify, trusted=fresh)


def load_dataset(name: str, *, download: bool = True, verify: bool = True) -> RatingMatrix:
    """All ratings of a registered dataset as a :class:`RatingMatrix`.

    ``verify=True`` checks each file it reads against the registry's sha256 (once);
    ``verify=False`` skips the checksums but never the parser's line checks.

    Raises
    ------
    DataNotFoundError
        No local copy and no download, or a local folder lacking a needed file.
    ChecksumError
        A file (or the archive) differs from its recorded sha256.
    DataFileError
        A line breaks the format; the message names the file, line and value.

    Examples
    --------
    >>> rm = load_dataset("ml-100k")          # doctest: +SKIP
    >>> rm.summary()                          # doctest: +SKIP
    """
    ds, src = _source(name, download, verify)
    with src:
        rm = ds.parser(src, name=ds.name)
    rm.provenance = {"dataset": ds.name, "checksums_verified": bool(verify)}
    return rm


def load_predefined_split(name: str, split: str, *, download: bool = True, verify: bool = True):
    """A split shipped with the dataset, e.g. ``("ml-100k", "u1")`` or ``("netflix", "course")``.

    Returns a :class:`mflib.data.split.Split` whose train and test share id maps; test
    pairs with users or items absent from train are counted in ``split.summary()``.
    The files are verified and checked as in :func:`load_dataset`.
    """
    from .split import Split, set_split_provenance  # noqa: PLC0415

    ds = get_dataset(name)
    if split not in ds.splits:
        choices = ", ".join(ds.splits) or "none"
        raise KeyError(f"{name} has no predefined split {split!r}; its splits: {choices}")
    ds, src = _source(name, download, verify)
    files = ds.splits[split]
    with src:
        if name == "netflix":
            parts = [_course_frame(src, f) for f in files]
            item_info = None
        else:
            item_info = _ml100k_items(src)
            parts = [_ml100k_ratings(src, f, item_info) for f in files]
        both = _to_matrix(parts, f"{name}/{split}", item_info)
    n_train = len(parts[0][0])
    rows = np.arange(both.nnz)
    out = Split(both.take(rows[:n_train]), both.take(rows[n_train:]), method=f"{name}:{split}")
    return set_split_provenance(out, {"dataset": ds.name, "checksums_verified": bool(verify),
                                      "split": {"kind": "predefined", "name": split}})
