"""Read a registry rating file so that each MPI rank keeps only its shard.

Every rank streams the file once (chunk by chunk, hashing it against the registry's
sha256 when one is recorded) and keeps the rows ``row % size == rank``; no rank ever
holds the whole file or all its ratings. The id maps are global (the sorted union of
every rank's ids, exchanged once), so the shards of all ranks together are exactly the
matrix :func:`mflib.data.load_dataset` would build, and a rating keeps its inner
indices whichever rank holds it.

Formats: the ratings files of the registry (``u.data``/``uN.base``/``uN.test`` of
ml-100k, ``ratings.dat`` of ml-1m and ml-10m, ``ratings.csv`` of ml-latest(-small), the
course CSVs of the Netflix subset).
"""

from __future__ import annotations

import hashlib
import io
import resource
import zipfile
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.datasets import DataFileError, fetch, get_dataset
from ..data.ratings import RatingMatrix
from ..validation import DataError
from .comm import Exchange


@dataclass(frozen=True)
class RatingFile:
    """How one ratings file is laid out: separator, header, and which columns hold the
    user, the item, the rating and (optionally) the time."""

    sep: str
    header: bool
    user: str
    item: str
    rating: str
    time: str | None = None


_TAB = RatingFile("\t", False, "0", "1", "2", "3")
_DAT = RatingFile("::", False, "0", "1", "2", "3")
_LATEST = RatingFile(",", True, "userId", "movieId", "rating", "timestamp")
_COURSE = RatingFile(",", True, "user_id", "movie_id", "rating")
FORMATS = {"ml-100k": _TAB, "ml-1m": _DAT, "ml-10m": _DAT, "ml-latest-small": _LATEST,
           "netflix": _COURSE}
#: the file holding all ratings of each dataset
RATINGS_FILES = {"ml-100k": ("u.data",), "ml-1m": ("ratings.dat",), "ml-10m": ("ratings.dat",),
                 "ml-latest-small": ("ratings.csv",), "netflix": ("train.csv", "test.csv")}


class _Hashing(io.RawIOBase):
    """A binary stream that hashes what passes through it and turns the ``::`` separator
    of the ``.dat`` files into a tab (pandas' C parser takes one-character separators)."""

    def __init__(self, raw, translate: bool):
        self.raw, self.translate, self.sha = raw, translate, hashlib.sha256()
        self._carry = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer) - 1)  # room for a carried ':'
        self.sha.update(data)
        at_end = not data
        data = self._carry + data
        self._carry = b""
        if self.translate and not at_end:
            if data.endswith(b":") and not data.endswith(b"::"):
                data, self._carry = data[:-1], b":"  # the pair may straddle two reads
            data = data.replace(b"::", b"\t")
        buffer[: len(data)] = data
        return len(data)


def _open_member(path, folder, name):
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        members = archive.namelist()
        for candidate in (f"{folder}/{name}" if folder else name, name):
            if candidate in members:
                return archive.open(candidate)
        raise DataError(f"{path} has no member {name}")
    return open(path / name, "rb")


def read_shard(name: str, files=None, *, exchange: Exchange, verify: bool = True,
               chunk_rows: int = 1 << 20) -> RatingMatrix:
    """This rank's shard of the ratings in ``files`` (default: all of the dataset's).

    Parameters
    ----------
    name : str
        A registered dataset.
    files : sequence of str, optional
        Ratings files of the dataset (e.g. ``["u1.base"]``), read as one table in order.
    exchange : Exchange
        The communicator (its rank and size choose the shard).
    verify : bool
        Hash each file while streaming it and refuse one whose sha256 differs from the
        registry's (when the registry records one).

    Returns
    -------
    RatingMatrix with the global id maps; ``provenance`` says which shard it is.
    """
    ds = get_dataset(name)
    fmt = FORMATS[name]
    files = tuple(files or RATINGS_FILES[name])
    path = fetch(name, verify=False)
    parts, offset, file_of_row = [], 0, []
    for index, fname in enumerate(files):
        expected = ds.files.get(fname)
        with _open_member(path, ds.folder, fname) as raw:
            stream = _Hashing(raw, translate=fmt.sep == "::")
            reader = pd.read_csv(
                io.BufferedReader(stream, 1 << 20), sep="\t" if fmt.sep == "::" else fmt.sep,
                header=0 if fmt.header else None, chunksize=chunk_rows, dtype=str,
                keep_default_na=False)
            for chunk in reader:
                if not fmt.header:
                    chunk.columns = [str(c) for c in chunk.columns]
                keep = (offset + np.arange(len(chunk))) % exchange.size == exchange.rank
                parts.append(_checked(chunk[keep], fmt, ds, f"{path}:{fname}",
                                      offset + np.flatnonzero(keep), fmt.header))
                file_of_row.append(np.full(int(keep.sum()), index, dtype=np.int8))
                offset += len(chunk)
            stream.raw.read()  # hash any trailing bytes the parser did not need
        if verify and expected is not None and stream.sha.hexdigest() != expected:
            raise DataError(f"{path}:{fname} does not match its recorded sha256 "
                            f"({expected}); the copy is corrupt: fetch it again")
    users = np.concatenate([p[0] for p in parts])
    items = np.concatenate([p[1] for p in parts])
    ratings = np.concatenate([p[2] for p in parts])
    user_ids = np.unique(np.concatenate(exchange.allgather_objects(np.unique(users))))
    item_ids = np.unique(np.concatenate(exchange.allgather_objects(np.unique(items))))
    shard = RatingMatrix(np.searchsorted(user_ids, users).astype(np.int32),
                         np.searchsorted(item_ids, items).astype(np.int32), ratings,
                         user_ids, item_ids, name=f"{name} shard {exchange.rank}")
    shard._cache["file_of_row"] = np.concatenate(file_of_row)
    shard.provenance = {"dataset": name, "files": list(files),
                        "shard": {"rank": exchange.rank, "size": exchange.size}}
    return shard


def read_split_shard(name: str, split: str, *, exchange: Exchange, verify: bool = True):
    """This rank's shard of a predefined split (e.g. ``("ml-100k", "u1")``): train and test
    parts sharing the global id maps of both files, as :func:`load_predefined_split`
    builds them."""
    from ..data.split import Split  # noqa: PLC0415

    ds = get_dataset(name)
    if split not in ds.splits:
        raise KeyError(f"{name} has no predefined split {split!r}; its splits: "
                       f"{', '.join(ds.splits) or 'none'}")
    both = read_shard(name, ds.splits[split], exchange=exchange, verify=verify)
    in_test = both._cache["file_of_row"] == 1
    train, test = both.take(~in_test), both.take(in_test)
    for part, which in ((train, "train"), (test, "test")):
        part.provenance = {**both.provenance, "split": split, "part": which}
    return Split(train, test, method=f"{name}:{split} shard")


def _checked(chunk: pd.DataFrame, fmt: RatingFile, ds, where: str, rows: np.ndarray,
             header: bool):
    """Integer ids and ratings on the dataset's scale, or an error naming file, line and
    value (the same rules as the single-process parsers)."""
    line = rows + 1 + int(header)
    out = []
    for column, what in ((fmt.user, "user id"), (fmt.item, "item id")):
        text = chunk[column].to_numpy(dtype=str)
        ok = np.char.isdigit(text) & (np.char.str_len(text) <= 18)
        if not ok.all():
            k = int(np.flatnonzero(~ok)[0])
            raise DataFileError(f"{where} line {line[k]}: {what} {text[k]!r} is not a "
                                f"non-negative integer", path=where, line=int(line[k]),
                                value=text[k])
        out.append(text.astype(np.int64))
    values = pd.to_numeric(chunk[fmt.rating], errors="coerce").to_numpy(dtype=float)
    scale = ds.scale
    steps = (values - scale.low) / scale.step
    ok = (values >= scale.low) & (values <= scale.high) & np.isclose(steps, np.round(steps))
    if not ok.all():
        k = int(np.flatnonzero(~ok)[0])
        raw = chunk[fmt.rating].iloc[k]
        raise DataFileError(f"{where} line {line[k]}: rating {raw!r} is not on the dataset's "
                            f"scale ({scale})", path=where, line=int(line[k]), value=raw)
    out.append(values)
    return out


def memory_per_rank(exchange: Exchange) -> list[float]:
    """Peak resident memory of every rank in MB (``ru_maxrss``), in rank order."""
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return exchange.allgather_objects(peak_mb)
