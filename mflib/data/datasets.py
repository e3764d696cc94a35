"""Dataset registry: where each archive comes from, its checksum, and its parser.

Loading looks, in order, in ``$MFLIB_DATA_DIR``, in the cache folder
(``$MFLIB_CACHE_DIR`` or the OS cache dir), and then downloads with pooch and
verifies the checksum. The original zip and an already-extracted folder are both
accepted. Nothing here is ever redistributed by mflib.
"""

from __future__ import annotations

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


class DataNotFoundError(DataError, FileNotFoundError):
    """The dataset is neither on disk nor downloadable (offline)."""


class ChecksumError(DataError):
    """A file on disk or a download does not match its published checksum."""


@dataclass(frozen=True)
class Dataset:
    """One registry entry.

    ``files`` maps each file name that must be present to its ``sha256`` (None where no
    checksum is published). ``archive`` is the zip the files come in (with its URL and
    sha256), or None when the files are served one by one from ``url``.
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------- sources
class _Source:
    """Read access to a dataset's files, from a zip or from a folder."""

    def __init__(self, path: Path, folder: str | None):
        self.path = path
        self.folder = folder
        self._zip = zipfile.ZipFile(path) if path.is_file() else None
        if self._zip is not None:
            names = self._zip.namelist()
            prefix = [n for n in names if n.endswith("/")]
            self._prefix = (folder + "/") if folder and (folder + "/") in names else (
                prefix[0] if len(prefix) == 1 else ""
            )
        elif folder and (path / folder).is_dir():
            self.path = path / folder

    def exists(self, name: str) -> bool:
        if self._zip is not None:
            return self._prefix + name in self._zip.namelist()
        return (self.path / name).is_file()

    def open(self, name: str):
        if self._zip is not None:
            return io.BytesIO(self._zip.read(self._prefix + name))
        return open(self.path / name, "rb")

    def describe(self, name: str) -> str:
        if self._zip is not None:
            return f"{self.path}:{self._prefix}{name}"
        return str(self.path / name)


# ---------------------------------------------------------------------- parsers
def _read_table(src: _Source, name: str, sep: str, names, encoding="utf-8", **kw):
    with src.open(name) as fh:
        try:
            return pd.read_csv(
                fh, sep=sep, names=names, header=None, engine="python" if len(sep) > 1 else "c",
                encoding=encoding, **kw,
            )
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"could not parse {src.describe(name)}: {exc}") from exc


def _require_columns(df: pd.DataFrame, cols, where: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"{where} lacks column(s) {missing}; found {list(df.columns)}")


def _to_matrix(df, name, item_info=None, tags=None) -> RatingMatrix:
    ts = df["timestamp"].to_numpy() if "timestamp" in df else None
    return RatingMatrix.from_arrays(
        df["user"].to_numpy(), df["item"].to_numpy(), df["rating"].to_numpy(), ts,
        item_info=item_info, tags=tags, name=name,
    )


def _ml100k_items(src: _Source) -> pd.DataFrame:
    genres = _read_table(src, "u.genre", "|", ["genre", "id"], encoding="latin-1")
    genre_names = genres.dropna()["genre"].tolist()
    cols = ["item", "title", "release_date", "video_release_date", "imdb_url", *genre_names]
    items = _read_table(src, "u.item", "|", cols, encoding="latin-1")
    flags = items[genre_names].to_numpy(dtype=bool)
    items["genres"] = ["|".join(g for g, f in zip(genre_names, row, strict=True) if f)
                       for row in flags]
    return items[["item", "title", "release_date", "genres"]].set_index("item")


def _ml100k_ratings(src: _Source, name: str) -> pd.DataFrame:
    return _read_table(src, name, "\t", ["user", "item", "rating", "timestamp"])


def parse_ml100k(src: _Source, name="ml-100k") -> RatingMatrix:
    """MovieLens 100K: ``u.data`` (tab separated), ``u.item`` + ``u.genre`` (latin-1)."""
    return _to_matrix(_ml100k_ratings(src, "u.data"), name, item_info=_ml100k_items(src))


def _dat_movies(src: _Source) -> pd.DataFrame:
    movies = _read_table(src, "movies.dat", "::", ["item", "title", "genres"], encoding="latin-1")
    return movies.set_index("item")


def parse_ml1m(src: _Source, name="ml-1m") -> RatingMatrix:
    """MovieLens 1M: ``ratings.dat`` and ``movies.dat``, ``::`` separated, latin-1."""
    ratings = _read_table(src, "ratings.dat", "::", ["user", "item", "rating", "timestamp"])
    return _to_matrix(ratings, name, item_info=_dat_movies(src))


def parse_ml10m(src: _Source, name="ml-10m") -> RatingMatrix:
    """MovieLens 10M: ``ratings.dat``, ``movies.dat`` and ``tags.dat`` (``::`` separated)."""
    ratings = _read_table(src, "ratings.dat", "::", ["user", "item", "rating", "timestamp"])
    tags = None
    if src.exists("tags.dat"):
        tags = _read_table(src, "tags.dat", "::", ["user", "item", "tag", "timestamp"],
                           encoding="utf-8", quoting=3)
    return _to_matrix(ratings, name, item_info=_dat_movies(src), tags=tags)


def parse_ml_latest(src: _Source, name="ml-latest-small") -> RatingMatrix:
    """MovieLens latest(-small): ``ratings.csv``, ``movies.csv`` and ``tags.csv``."""
    with src.open("ratings.csv") as fh:
        ratings = pd.read_csv(fh)
    _require_columns(ratings, ["userId", "movieId", "rating", "timestamp"], "ratings.csv")
    ratings = ratings.rename(columns={"userId": "user", "movieId": "item"})
    with src.open("movies.csv") as fh:
        movies = pd.read_csv(fh).rename(columns={"movieId": "item"}).set_index("item")
    with src.open("tags.csv") as fh:
        tags = pd.read_csv(fh).rename(columns={"userId": "user", "movieId": "item"})
    return _to_matrix(ratings, name, item_info=movies, tags=tags)


def _course_frame(src: _Source, fname: str) -> pd.DataFrame:
    with src.open(fname) as fh:
        df = pd.read_csv(fh)
    # columns by name: the files' header order is movie_id,user_id,rating,date
    _require_columns(df, ["user_id", "movie_id", "rating"], src.describe(fname))
    out = df.rename(columns={"user_id": "user", "movie_id": "item"})
    if "date" in df:
        dates = pd.to_datetime(df["date"], format="%Y-%m-%d")
        out["timestamp"] = (dates - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    return out[[c for c in ("user", "item", "rating", "timestamp") if c in out]]


def parse_netflix(src: _Source, name="netflix") -> RatingMatrix:
    """The course Netflix subset: ``train.csv`` then ``test.csv`` (rows in file order)."""
    both = pd.concat([_course_frame(src, "train.csv"), _course_frame(src, "test.csv")],
                     ignore_index=True)
    return _to_matrix(both, name)


# ---------------------------------------------------------------------- registry
ML100K_SPLITS = {f"u{k}": (f"u{k}.base", f"u{k}.test") for k in range(1, 6)}
ML100K_SPLITS.update({"ua": ("ua.base", "ua.test"), "ub": ("ub.base", "ub.test")})

REGISTRY: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            "ml-100k", "MovieLens 100K: 100,000 ratings (1-5) of 1,682 movies by 943 users",
            GROUPLENS + "ml-100k.zip",
            files={"u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
                   "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
                   "u.genre": None},
            parser=parse_ml100k, archive="ml-100k.zip",
            archive_sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
            folder="ml-100k", splits=ML100K_SPLITS,
            citation="F. M. Harper and J. A. Konstan (2015), The MovieLens Datasets, ACM TiiS 5(4)",
        ),
        Dataset(
            "ml-1m", "MovieLens 1M: 1,000,209 ratings (1-5) of ~3,900 movies by 6,040 users",
            GROUPLENS + "ml-1m.zip", files={"ratings.dat": None, "movies.dat": None},
            parser=parse_ml1m, archive="ml-1m.zip",
            archive_sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
            folder="ml-1m",
            citation="F. M. Harper and J. A. Konstan (2015), The MovieLens Datasets, ACM TiiS 5(4)",
        ),
        Dataset(
            "ml-10m", "MovieLens 10M: 10,000,054 ratings (0.5-5) and 95,580 tags, 10,681 movies",
            GROUPLENS + "ml-10m.zip",
            files={"ratings.dat": None, "movies.dat": None, "tags.dat": None},
            parser=parse_ml10m, archive="ml-10m.zip",
            archive_sha256="813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862",
            folder="ml-10M100K",
            citation="F. M. Harper and J. A. Konstan (2015), The MovieLens Datasets, ACM TiiS 5(4)",
        ),
        Dataset(
            "ml-latest-small",
            "MovieLens latest-small (2018): 100,836 ratings, 3,683 tags, 9,742 movies, 610 users",
            GROUPLENS + "ml-latest-small.zip",
            files={"ratings.csv": None, "movies.csv": None, "tags.csv": None},
            parser=parse_ml_latest, archive="ml-latest-small.zip",
            archive_sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
            folder="ml-latest-small",
            citation="F. M. Harper and J. A. Konstan (2015), The MovieLens Datasets, ACM TiiS 5(4)",
        ),
        Dataset(
            "netflix",
            "Netflix-prize subset of the CUHK STAT3009 course: train.csv / test.csv, "
            "51,161 ratings each (1-5)",
            COURSE,
            files={"train.csv": "e8c33b1f4a6608c166d570d908aafc1583808ad5973e8e9d15f29919d6cf8075",
                   "test.csv": "95f02b1576b62c09ae45345cbf694bf8ab2ca17ec428eb049981161f99202424"},
            parser=parse_netflix, folder="cuhk-stat3009-netflix",
            splits={"course": ("train.csv", "test.csv")},
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


def _verify(path: Path, expected: str | None, ds: Dataset) -> None:
    if expected is None:
        return
    got = _sha256(path)
    if got != expected:
        raise ChecksumError(
            f"{path} does not match the published checksum of {ds.name}: expected sha256 "
            f"{expected}, got {got}. The file is corrupt or a different version; delete it "
            f"and download it again from {ds.url}"
        )


def _find_local(ds: Dataset, verify: bool) -> _Source | None:
    for base in data_dirs():
        if ds.archive and (base / ds.archive).is_file():
            if verify:
                _verify(base / ds.archive, ds.archive_sha256, ds)
            return _Source(base / ds.archive, ds.folder)
        for folder in (base / (ds.folder or ds.name), base / ds.name):
            if folder.is_dir() and all((folder / f).is_file() for f in ds.files):
                if verify:
                    for fname, sha in ds.files.items():
                        _verify(folder / fname, sha, ds)
                return _Source(folder, None)
    return None


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


def fetch(name: str, *, download: bool = True, verify: bool = True) -> Path:
    """Path of the dataset's archive or folder, downloading it into the cache if needed."""
    ds = get_dataset(name)
    src = _find_local(ds, verify)
    if src is not None:
        return src.path
    if not download:
        raise DataNotFoundError(_not_found_message(ds, "not found locally and download=False"))
    import pooch  # noqa: PLC0415

    target = cache_dir()
    try:
        if ds.archive:
            pooch.retrieve(ds.url, known_hash=f"sha256:{ds.archive_sha256}",
                           fname=ds.archive, path=target, progressbar=False)
            return target / ds.archive
        for fname, sha in ds.files.items():
            pooch.retrieve(ds.url + fname, known_hash=sha and f"sha256:{sha}", fname=fname,
                           path=target / ds.folder, progressbar=False)
        return target / ds.folder
    except ValueError as exc:  # pooch reports a hash mismatch as ValueError
        raise ChecksumError(f"download of {ds.name} failed its checksum: {exc}") from exc
    except Exception as exc:  # network errors have many types; say what to do instead
        raise DataNotFoundError(_not_found_message(ds, f"download failed ({exc})")) from exc


def _source(name: str, download: bool, verify: bool) -> tuple[Dataset, _Source]:
    ds = get_dataset(name)
    path = fetch(name, download=download, verify=verify)
    return ds, _Source(path, ds.folder)


def load_dataset(name: str, *, download: bool = True, verify: bool = True) -> RatingMatrix:
    """All ratings of a registered dataset as a :class:`RatingMatrix`.

    Examples
    --------
    >>> rm = load_dataset("ml-100k")          # doctest: +SKIP
    >>> rm.summary()                          # doctest: +SKIP
    """
    ds, src = _source(name, download, verify)
    return ds.parser(src, name=ds.name)


def load_predefined_split(name: str, split: str, *, download: bool = True, verify: bool = True):
    """A split shipped with the dataset, e.g. ``("ml-100k", "u1")`` or ``("netflix", "course")``.

    Returns a :class:`mflib.data.split.Split` whose train and test share id maps; test
    pairs with users or items absent from train are counted in ``split.summary()``.
    """
    from .split import Split  # noqa: PLC0415

    ds, src = _source(name, download, verify)
    if split not in ds.splits:
        choices = ", ".join(ds.splits) or "none"
        raise KeyError(f"{name} has no predefined split {split!r}; its splits: {choices}")
    train_file, test_file = ds.splits[split]
    if name == "netflix":
        frames = [_course_frame(src, train_file), _course_frame(src, test_file)]
        item_info = None
    else:
        frames = [_ml100k_ratings(src, train_file), _ml100k_ratings(src, test_file)]
        item_info = _ml100k_items(src)
    both = _to_matrix(pd.concat(frames, ignore_index=True), f"{name}/{split}", item_info)
    n_train = len(frames[0])
    rows = np.arange(both.nnz)
    return Split(both.take(rows[:n_train]), both.take(rows[n_train:]), method=f"{name}:{split}")
