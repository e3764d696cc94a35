"""Model files that hold only arrays and plain metadata, and the provenance they record.

:meth:`FactorizationEstimator.save <mflib.base.FactorizationEstimator.save>` writes one
``.npz`` archive (NumPy's zip of ``.npy`` arrays) and :func:`load_model` (``mflib.load``,
``Estimator.load``) reads it with ``np.load(..., allow_pickle=False)`` and ``json``
only: nothing in a model file can run code when it is loaded. Pickling an estimator
still works, as scikit-learn expects (``pickle.dumps(model)``), but unpickling runs code
chosen by whoever wrote the file, so it is for files you made yourself.

Format ``mflib.model``, version 2 (version 1 was a pickle and is refused)
-----------------------------------------------------------------------
* member ``__metadata__``: a UTF-8 JSON document stored as a ``uint8`` array, with
  ``format``, ``format_version``, ``mflib_version`` (of the writer), ``class`` (the
  estimator's class name, looked up in :mod:`mflib.registry` on load), ``parameters``
  (the constructor parameters), ``parameters_not_stored`` (name -> why: a value a file
  cannot hold, e.g. a list of callbacks or a numpy Generator, is loaded as the class
  default and the loader warns), ``fitted`` (every fitted attribute ending in ``_``,
  ``provenance_`` included), ``training_name``, ``include_seen``, ``seen``/``item_info``/
  ``tags`` (the training ratings and item tables, only with ``include_seen=True``),
  ``arrays`` (the shape and dtype of every other member) and ``contents`` (the same in
  words, see :func:`describe`);
* every other member is one array of numbers, booleans or fixed-width strings (never an
  object array), referenced from the JSON by name.

JSON values are plain JSON except objects ``{"__type__": T, ...}``: ``array`` (a member;
``object`` says to rebuild an object array of str / int ids), ``float`` (nan, inf),
``dtype`` (a numeric NumPy dtype or scalar type, e.g. a ``dtype`` parameter), ``tuple``,
``dict``, ``History``, ``Fallback``, ``sparse`` (CSR/CSC), ``DataFrame`` and ``object``
(a parameter object of a short list of mflib classes, e.g. ``ArmijoLineSearch``). The
loader builds nothing else.

Provenance
----------
``fit`` records ``provenance_``: ``data`` (the training matrix's ``provenance``: dataset,
split kind and arguments with the seed, part), ``name``, ``ratings``,
``training_sha256`` (a fingerprint of the training ratings and id maps),
``mflib_version`` and, when mflib runs from a git checkout, ``git_revision``.
:func:`split_mismatch` compares it with the train part of a split, so that a saved model
is not scored on a split whose test part overlaps its training ratings.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import json
import math
import numbers
import os
import re
import reprlib
import subprocess
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .base import FactorizationEstimator, Fallback
from .data.ratings import RatingMatrix
from .fitting import History
from .validation import DataError, ParameterError, check_constraints

FORMAT = "mflib.model"
FORMAT_VERSION = 2
METADATA = "__metadata__"
_PICKLE_MAGIC = b"\x80"
_ZIP_MAGIC = b"PK\x03\x04"


class ModelFileError(ValueError):
    """A file that cannot be read as an mflib model file (corrupt, truncated, foreign,
    written by a newer mflib, or an old pickle); the message names the file and why."""


class ModelFileWarning(UserWarning):
    """Something a loaded model lacks compared with the one saved (e.g. a parameter that
    a file cannot hold was loaded as its default)."""


class _Unstorable(Exception):
    """A value a model file cannot hold; the message describes it."""


# ====================================================================== provenance
@functools.lru_cache(maxsize=1)
def git_revision() -> str | None:
    """``git rev-parse HEAD`` of the repository holding this package when it runs from a
    git checkout; None otherwise (an installed package) or when git is unavailable."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    revision = out.stdout.strip()
    return revision if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", revision) \
        else None


def _mflib_version() -> str:
    import mflib  # noqa: PLC0415 (imported late: mflib/__init__ imports this module)

    return mflib.__version__


def _id_bytes(ids: np.ndarray) -> bytes:
    ids = np.asarray(ids)
    if ids.dtype.kind in "biufUS":
        return ids.dtype.str.encode() + np.ascontiguousarray(ids).tobytes()
    return "\x1f".join(f"{type(x).__name__}:{x}" for x in ids.tolist()).encode()


def ratings_fingerprint(rm: RatingMatrix) -> str:
    """sha256 of the ratings of ``rm`` with their (user, item) pairs and id maps: equal
    exactly when two matrices hold the same ratings on the same ids in the same order.
    Cached on the matrix (as its training layout is): every fit records it, and hashing
    10M ratings takes most of a second."""
    if "ratings_fingerprint" not in rm._cache:
        rm._cache["ratings_fingerprint"] = _fingerprint(rm)
    return rm._cache["ratings_fingerprint"]


def _fingerprint(rm: RatingMatrix) -> str:
    h = hashlib.sha256()
    for arr in (rm.users.astype("<i8"), rm.items.astype("<i8"), rm.ratings.astype("<f8")):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(_id_bytes(rm.user_ids))
    h.update(b"\x00")
    h.update(_id_bytes(rm.item_ids))
    return h.hexdigest()


def training_provenance(train: RatingMatrix) -> dict:
    """What ``fit`` records in ``provenance_`` (module docstring)."""
    out = {
        "data": copy.deepcopy(train.provenance) if train.provenance else None,
        "name": train.name,
        "ratings": train.nnz,
        "training_sha256": ratings_fingerprint(train),
        "mflib_version": _mflib_version(),
    }
    revision = git_revision()
    if revision is not None:
        out["git_revision"] = revision
    return out


def describe_data(data: dict | None, *, part: bool = True) -> str:
    """A data provenance record in words, e.g. ``ml-100k, random split (test_size=0.2,
    val_size=0.0, random_state=0), part train`` (without the part when ``part=False``)."""
    if not data:
        return "unrecorded data (fitted on arrays or a hand-built RatingMatrix)"
    text = data.get("dataset") or "an unregistered rating matrix"
    split = data.get("split")
    if split:
        kind = split.get("kind")
        args = ", ".join(f"{k}={v!r}" for k, v in split.items()
                         if k not in ("kind", "name", "reproducible"))
        if kind == "predefined":
            text += f", predefined split {split.get('name')!r}"
        else:
            text += f", {kind} split ({args})"
        if split.get("reproducible") is False:
            text += " drawn without an integer seed"
    else:
        text += ", all ratings"
    if part and data.get("part"):
        text += f", part {data['part']}"
    return text


def _comparable(data: dict | None):
    return None if not data else (data.get("dataset"), data.get("split"))


def split_mismatch(model, train: RatingMatrix) -> str | None:
    """None when ``train`` is the train part of the data and split ``model`` was fitted
    on (dataset, split kind and arguments, seed, and the ratings themselves); otherwise a
    sentence naming both."""
    recorded = getattr(model, "provenance_", None) or {}
    fitted_on = recorded.get("data")
    if not fitted_on:
        return ("the model records no dataset or split (it was fitted on arrays or on a "
                "hand-built RatingMatrix), so the split cannot be checked")
    fitted_text = describe_data(fitted_on, part=False)
    if (fitted_on.get("split") or {}).get("reproducible") is False:
        return f"the model was fitted on {fitted_text}, which cannot be re-created or checked"
    given = train.provenance
    if _comparable(fitted_on) != _comparable(given):
        return (f"the model was fitted on {fitted_text}, but the split given is "
                f"{describe_data(given, part=False)}")
    if recorded.get("training_sha256") not in (None, ratings_fingerprint(train)):
        return (f"the model was fitted on {fitted_text}, and the same split now has other "
                "training ratings (have the data files changed?)")
    return None


def check_training_data(model, train) -> None:
    """Raise ``DataError`` unless ``train`` holds exactly the model's training ratings."""
    if not isinstance(train, RatingMatrix):
        raise DataError(f"train must be a RatingMatrix (the model's training ratings), got "
                        f"{type(train).__name__}")
    recorded = getattr(model, "provenance_", None) or {}
    expected = recorded.get("training_sha256")
    same_ids = train.shares_index_with(model._train_index)
    if not same_ids or (expected is not None and ratings_fingerprint(train) != expected):
        raise DataError(
            f"these are not the training ratings of this {type(model).__name__} "
            f"({describe_data(train.provenance)}, {train.nnz} ratings; the model was fitted "
            f"on {describe_data(recorded.get('data'))}, {recorded.get('ratings')} ratings); "
            "pass the train part of the split the model was fitted on"
        )


# ====================================================================== encoding
def _parameter_objects() -> dict[str, type]:
    """Parameter objects a file may hold, rebuilt from their constructor arguments."""
    from .solvers.riemannian.line_search import ArmijoLineSearch  # noqa: PLC0415

    return {"ArmijoLineSearch": ArmijoLineSearch}


def _plain_array(arr: np.ndarray) -> tuple[np.ndarray, str | None]:
    """``arr`` as an array ``np.save`` writes without pickle, and the kind of Python
    object to restore (``"str"``, ``"bytes"``, ``"int"``, ``"float"``) for an object
    array."""
    if arr.dtype.kind in "biufcUSMm":
        return np.ascontiguousarray(arr), None
    if arr.dtype.kind == "O":
        flat = arr.ravel().tolist()
        for kind, types, dtype in (("str", str, np.str_), ("bytes", bytes, np.bytes_),
                                   ("float", float, np.float64)):
            if all(isinstance(x, types) for x in flat):
                return np.asarray(flat, dtype=dtype).reshape(arr.shape), kind
        if all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in flat):
            try:
                return np.asarray(flat, dtype=np.int64).reshape(arr.shape), "int"
            except OverflowError:
                raise _Unstorable("an object array of integers beyond int64") from None
        kinds = sorted({type(x).__name__ for x in flat})
        raise _Unstorable(f"an object array holding {', '.join(kinds)}")
    raise _Unstorable(f"an array of dtype {arr.dtype}")


class _Encoder:
    """Turns a value into JSON plus named arrays (``self.arrays``)."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, arr, name: str) -> dict:
        plain, kind = _plain_array(np.asarray(arr))
        key = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        while key in self.arrays or key == METADATA:
            key += "_"
        self.arrays[key] = plain
        out = {"__type__": "array", "name": key}
        if kind is not None:
            out["object"] = kind
        return out

    def encode(self, value, name: str):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real):
            value = float(value)
            return value if math.isfinite(value) else {"__type__": "float",
                                                       "value": repr(value)}
        if isinstance(value, np.ndarray):
            return self.array(value, name)
        if isinstance(value, np.dtype) or (isinstance(value, type)
                                           and issubclass(value, np.generic)):
            dtype = np.dtype(value)
            if dtype.kind not in "biufc":
                raise _Unstorable(f"the dtype {dtype}")
            return {"__type__": "dtype", "name": dtype.name, "scalar_type": value is dtype.type}
        if isinstance(value, tuple):
            return {"__type__": "tuple",
                    "items": [self.encode(v, f"{name}.{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{name}.{i}") for i, v in enumerate(value)]
        if isinstance(value, dict):
            bad = next((k for k in value if not isinstance(k, str)), None)
            if bad is not None:
                raise _Unstorable(f"a dict with a key of type {type(bad).__name__} ({bad!r})")
            return {"__type__": "dict",
                    "items": {k: self.encode(v, f"{name}.{k}") for k, v in value.items()}}
        if isinstance(value, History):
            return {"__type__": "History",
                    "records": [self.encode(r, f"{name}.{i}")
                                for i, r in enumerate(value.records)]}
        if isinstance(value, Fallback):
            return {"__type__": "Fallback", "mean": self.encode(value.mean, name),
                    "user_bias": self.array(value.user_bias, f"{name}.user_bias"),
                    "item_bias": self.array(value.item_bias, f"{name}.item_bias"),
                    "damping": self.encode(value.damping, name)}
        if sp.issparse(value):
            fmt = value.format if value.format in ("csr", "csc") else "csr"
            m = value.asformat(fmt)
            return {"__type__": "sparse", "format": fmt, "shape": list(m.shape),
                    **{part: self.array(getattr(m, part), f"{name}.{part}")
                       for part in ("data", "indices", "indptr")}}
        if isinstance(value, pd.DataFrame):
            return self._frame(value, name)
        objects = _parameter_objects()
        if objects.get(type(value).__name__) is type(value):
            names = list(inspect.signature(type(value).__init__).parameters)[1:]
            return {"__type__": "object", "class": type(value).__name__,
                    "parameters": {n: self.encode(getattr(value, n), f"{name}.{n}")
                                   for n in names}}
        raise _Unstorable(f"a {type(value).__module__}.{type(value).__qualname__}")

    def _frame(self, df: pd.DataFrame, name: str) -> dict:
        columns = []
        for i, col in enumerate(df.columns):
            if not isinstance(col, str):
                raise _Unstorable(f"a DataFrame with a column named {col!r} (not a str)")
            series = df[col]
            missing = series.isna().to_numpy()
            values = series.to_numpy(dtype=object) if series.dtype.kind in "OSUT" or \
                not isinstance(series.dtype, np.dtype) else series.to_numpy()
            if missing.any() and values.dtype == object:
                values = values.copy()
                values[missing] = ""  # a placeholder the mask undoes
            columns.append({"name": col, "dtype": str(series.dtype),
                            "values": self.array(values, f"{name}.{i}"),
                            "missing": self.array(missing, f"{name}.{i}.missing")})
        return {"__type__": "DataFrame", "index_name": df.index.name,
                "index": self.array(df.index.to_numpy(dtype=object)
                                    if df.index.dtype.kind in "OSUT" else df.index.to_numpy(),
                                    f"{name}.index"),
                "columns": columns}


class _Decoder:
    """The inverse of :class:`_Encoder`, building only the types listed there."""

    def __init__(self, arrays: dict[str, np.ndarray], fail):
        self.arrays, self.fail = arrays, fail

    def array(self, spec) -> np.ndarray:
        if not isinstance(spec, dict) or spec.get("__type__") != "array":
            self.fail(f"an array reference was expected, found {str(spec)[:60]!r}")
        name = spec.get("name")
        if name not in self.arrays:
            self.fail(f"it refers to an array {name!r} it does not hold")
        arr = self.arrays[name]
        kind = spec.get("object")
        if kind is None:
            return arr
        if kind not in ("str", "bytes", "int", "float"):
            self.fail(f"array {name!r} has an unknown object kind {kind!r}")
        out = np.empty(arr.shape, dtype=object)
        out.ravel()[:] = arr.ravel().tolist()
        return out

    def decode(self, value):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if not isinstance(value, dict):
            self.fail(f"it holds a value of unexpected JSON type {type(value).__name__}")
        kind = value.get("__type__")
        if kind == "array":
            return self.array(value)
        if kind == "float":
            if value.get("value") not in ("nan", "inf", "-inf"):
                self.fail(f"it holds a bad float {value.get('value')!r}")
            return float(value["value"])
        if kind == "dtype":
            dtype = np.dtype(str(value.get("name")))
            if dtype.kind not in "biufc":
                self.fail(f"it holds a dtype {dtype} mflib does not use")
            return dtype.type if value.get("scalar_type") else dtype
        if kind == "tuple":
            return tuple(self.decode(v) for v in value.get("items", []))
        if kind == "dict":
            return {k: self.decode(v) for k, v in value.get("items", {}).items()}
        if kind == "History":
            records = [self.decode(r) for r in value.get("records", [])]
            if not all(isinstance(r, dict) for r in records):
                self.fail("its history records are not dicts")
            return History(records)
        if kind == "Fallback":
            return Fallback(float(self.decode(value["mean"])), self.array(value["user_bias"]),
                            self.array(value["item_bias"]), float(self.decode(value["damping"])))
        if kind == "sparse":
            fmt = value.get("format")
            if fmt not in ("csr", "csc"):
                self.fail(f"it holds a sparse matrix of unknown format {fmt!r}")
            parts = tuple(self.array(value[p]) for p in ("data", "indices", "indptr"))
            build = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
            try:
                return build(parts, shape=tuple(value["shape"]))
            except (ValueError, TypeError) as exc:
                self.fail(f"its sparse matrix is inconsistent ({exc})")
        if kind == "DataFrame":
            return self._frame(value)
        if kind == "object":
            cls = _parameter_objects().get(value.get("class"))
            if cls is None:
                self.fail(f"it holds an object of class {value.get('class')!r}, which mflib "
                          "does not rebuild from a file")
            return cls(**{k: self.decode(v) for k, v in value.get("parameters", {}).items()})
        self.fail(f"it holds a value tagged {kind!r}, which this mflib does not know")

    def _frame(self, value) -> pd.DataFrame:
        data = {}
        for col in value.get("columns", []):
            values, missing = self.array(col["values"]), self.array(col["missing"])
            series = pd.Series(values)
            if missing.any():
                series = series.astype(object)
                series[missing] = np.nan
            try:
                series = series.astype(col.get("dtype", "object"))
            except (TypeError, ValueError):
                pass  # keep the values as read; the dtype name was only a preference
            data[col["name"]] = series
        index = pd.Index(self.array(value["index"]), name=value.get("index_name"))
        return pd.DataFrame({k: v.to_numpy() for k, v in data.items()}, index=index)


# ====================================================================== save
def _fitted_attributes(model) -> dict:
    return {k: v for k, v in vars(model).items() if k.endswith("_") and not k.startswith("_")}


def _constructor_defaults(cls) -> dict:
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def save_model(model: FactorizationEstimator, path, *, include_seen: bool = False) -> Path:
    """Write fitted ``model`` to ``path`` (see the module docstring); returns the path.

    Raises
    ------
    TypeError
        A fitted attribute that a model file cannot hold (the message names it).
    IsADirectoryError
        ``path`` is a folder.
    """
    model._check_fitted()
    cls = type(model)
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name inside it, e.g. "
                                f"{path / 'model.npz'}")
    encoder = _Encoder()
    defaults = _constructor_defaults(cls)
    parameters, not_stored = {}, {}
    for name, value in model.get_params(deep=False).items():
        trial = _Encoder()
        trial.arrays = dict(encoder.arrays)
        try:
            parameters[name] = trial.encode(value, f"param.{name}")
        except _Unstorable as why:
            not_stored[name] = (f"{reprlib.repr(value)} holds {why}, which a model file "
                                f"cannot store; loaded as the default {defaults.get(name)!r} "
                                "(it matters only if the model is fitted again)")
            continue
        encoder.arrays = trial.arrays
    fitted = {}
    for name, value in _fitted_attributes(model).items():
        try:
            fitted[name] = encoder.encode(value, f"fitted.{name}")
        except _Unstorable as why:
            raise TypeError(
                f"cannot save this {cls.__name__}: its fitted attribute {name} is {why}, which "
                "a model file cannot hold (arrays, numbers, strings, lists and dicts of them, "
                "History, Fallback, sparse matrices and DataFrames)"
            ) from None
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mflib_version": _mflib_version(),
        "class": cls.__name__,
        "parameters": parameters,
        "parameters_not_stored": not_stored,
        "fitted": fitted,
        "training_name": model._train_index.name,
        "include_seen": bool(include_seen),
    }
    if include_seen:
        if getattr(model, "_seen", None) is None:
            raise ValueError(f"this {cls.__name__} holds no training ratings (it was loaded "
                             "from a file saved without them); call "
                             "model.restore_seen_items(train) first, or save with "
                             "include_seen=False")
        try:
            meta["seen"] = encoder.encode(model._seen, "seen")
            for table in ("item_info", "tags"):
                value = getattr(model._train_index, table)
                meta[table] = None if value is None else encoder.encode(value, table)
        except _Unstorable as why:
            raise TypeError(f"cannot save the training data of this {cls.__name__} "
                            f"(include_seen=True): it holds {why}; save with "
                            "include_seen=False") from None
    meta["arrays"] = {k: {"shape": list(a.shape), "dtype": a.dtype.str}
                      for k, a in encoder.arrays.items()}
    meta["contents"] = _contents(meta)
    blob = np.frombuffer(json.dumps(meta, allow_nan=False).encode("utf-8"), dtype=np.uint8)
    # written beside the target and renamed, so an interrupted save leaves no half file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with tmp.open("wb") as fh:
            np.savez_compressed(fh, **{METADATA: blob}, **encoder.arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _contents(meta: dict) -> list[str]:
    """The file's contents in words (stored in it, and printed by :func:`describe`)."""
    arrays = meta["arrays"]
    fitted = meta["fitted"]

    def shape_of(ref):
        spec = arrays.get(ref.get("name")) if isinstance(ref, dict) else None
        return "x".join(map(str, spec["shape"])) if spec else "?"

    out = [f"a fitted {meta['class']} (mflib {meta['mflib_version']})"]
    ids = [f"{shape_of(fitted.get(f'{w}_ids_'))} {w}s" for w in ("user", "item")
           if isinstance(fitted.get(f"{w}_ids_"), dict)]
    if ids:
        out.append("id maps: " + ", ".join(ids))
    listed = [f"{k} ({shape_of(v)})" for k, v in fitted.items()
              if isinstance(v, dict) and v.get("__type__") == "array"
              and k not in ("user_ids_", "item_ids_")]
    if listed:
        out.append("fitted arrays: " + ", ".join(listed))
    out.append(f"parameters: {len(meta['parameters'])} stored")
    if meta["parameters_not_stored"]:
        out.append("parameters not stored (loaded as defaults): "
                   + ", ".join(meta["parameters_not_stored"]))
    out.append("training ratings and item table: " + (
        "included (include_seen=True)" if meta["include_seen"] else
        "not included: recommend(exclude_seen=True) and ranking metrics need "
        "model.restore_seen_items(train) or a file saved with include_seen=True"))
    return out


# ====================================================================== load
def _open(path) -> tuple[Path, dict, dict]:
    """``(path, metadata, arrays)`` of a model file, every array checked against the
    metadata; any failure is one :class:`ModelFileError` naming the file."""
    path = Path(path).expanduser()

    def fail(why):
        raise ModelFileError(f"{path}: {why}")

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    if path.is_dir():
        fail("is a directory, not a model file")
    with path.open("rb") as fh:
        head = fh.read(4)
    if not head:
        fail("the file is empty (an interrupted save?); fit and save the model again")
    if head[:1] == _PICKLE_MAGIC:
        fail("is a Python pickle (an mflib model file of format 1, or not from mflib); "
             "mflib no longer loads pickles, which can run code while loading: fit the model "
             "again and save it with this version")
    if head != _ZIP_MAGIC:
        fail("is not an mflib model file (not a .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            members = set(npz.files)
            if METADATA not in members:
                fail("is a .npz archive without mflib metadata, not an mflib model file")
            meta = json.loads(npz[METADATA].tobytes().decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                fail("its metadata is not that of an mflib model file")
            version = meta.get("format_version")
            if version != FORMAT_VERSION:
                newer = isinstance(version, int) and version > FORMAT_VERSION
                fail(f"has format version {version!r}, this mflib reads version "
                     f"{FORMAT_VERSION}" + ("; upgrade mflib to load it" if newer else ""))
            declared = meta.get("arrays")
            if not isinstance(declared, dict):
                fail("its metadata lists no arrays")
            extra = sorted(members - set(declared) - {METADATA})
            if extra:
                fail(f"holds arrays its metadata does not declare ({', '.join(extra[:5])})")
            arrays = {}
            for name, spec in declared.items():
                if name not in members:
                    fail(f"lacks the array {name!r} its metadata declares (truncated?)")
                arr = npz[name]
                if arr.dtype.str != spec.get("dtype") or list(arr.shape) != spec.get("shape"):
                    fail(f"array {name!r} is {arr.dtype.str} {list(arr.shape)}, but the "
                         f"metadata says {spec.get('dtype')} {spec.get('shape')}")
                arrays[name] = arr
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        fail(f"is truncated or corrupt ({type(exc).__name__}: {exc})")
    except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
        # np.load refuses object arrays (they would need pickle); JSON or layout errors
        fail(f"is corrupt or not an mflib model file ({type(exc).__name__}: {exc})")
    return path, meta, arrays


def read_metadata(path) -> dict:
    """The JSON metadata of a model file (checked like :func:`load_model` checks it)."""
    return _open(path)[1]


def _estimator_class(name, expected, fail) -> type:
    from .registry import estimators  # noqa: PLC0415 (the registry imports mflib)

    known = {cls.__name__: cls for cls in estimators().values()}
    cls = known.get(name)
    if cls is None:
        if expected is not FactorizationEstimator and expected.__name__ == name:
            return expected  # a class outside the registry, named by the caller
        fail(f"holds a {name!r}, which is not an mflib estimator (known: "
             f"{', '.join(sorted(known))})")
    if not issubclass(cls, expected):
        raise TypeError(f"the model file holds a {name}, not a {expected.__name__}; load it "
                        f"with mflib.load or {name}.load")
    return cls


def _check_consistent(model, fail) -> None:
    """Shapes that must agree for predictions to be right, and finite model values."""
    n_users, n_items = len(model.user_ids_), len(model.item_ids_)
    fallback = model.fallback_
    if not isinstance(fallback, Fallback):
        fail("its fallback_ is not a Fallback")
    lengths = {"user_counts_": (model.user_counts_, n_users),
               "item_counts_": (model.item_counts_, n_items),
               "fallback_ user_bias": (fallback.user_bias, n_users),
               "fallback_ item_bias": (fallback.item_bias, n_items)}
    for what, n in (("user", n_users), ("item", n_items)):
        for attr in (f"{what}_bias_", f"{what}_factors_"):
            value = getattr(model, attr, None)
            if value is not None:
                lengths[attr] = (value, n)
    for attr, (value, n) in lengths.items():
        if not isinstance(value, np.ndarray) or value.shape[0] != n:
            fail(f"{attr} has {getattr(value, 'shape', '?')} rows where its id map has {n}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            fail(f"{attr} holds non-finite values")
    P, Q = getattr(model, "user_factors_", None), getattr(model, "item_factors_", None)
    if P is not None and Q is not None and (P.ndim != 2 or Q.ndim != 2
                                            or P.shape[1] != Q.shape[1]):
        fail(f"user_factors_ {P.shape} and item_factors_ {Q.shape} do not share a rank")
    if not math.isfinite(float(model.global_mean_)) or not math.isfinite(fallback.mean):
        fail("its global mean is not finite")
    if not isinstance(model.history_, History) or not isinstance(model.n_iter_, int):
        fail("its history_ or n_iter_ is malformed")
    seen = getattr(model, "_seen", None)
    if seen is not None and seen.shape != (n_users, n_items):
        fail(f"its training ratings have shape {seen.shape}, not {(n_users, n_items)}")


def load_model(path, *, expected: type = FactorizationEstimator):
    """Read a model file written by :meth:`FactorizationEstimator.save`.

    Only ``np.load(..., allow_pickle=False)`` and ``json`` read the file. Its class must
    be an mflib estimator (by name, from :mod:`mflib.registry`; or ``expected`` itself
    when that class is not registered) and a subclass of ``expected``.

    Raises
    ------
    ModelFileError
        Corrupt, truncated or foreign file, an unknown class, a format this mflib does not
        read, arrays that disagree with the metadata or with each other.
    TypeError
        The file holds another estimator class than ``expected``.
    FileNotFoundError
        No such file.
    """
    path, meta, arrays = _open(path)

    def fail(why):
        raise ModelFileError(f"{path}: {why}")

    cls = _estimator_class(meta.get("class"), expected, fail)
    decoder = _Decoder(arrays, fail)
    try:
        parameters = decoder.decode({"__type__": "dict", "items": meta["parameters"]})
        model = cls()
        unknown = sorted(set(parameters) - set(model.get_params(deep=False)))
        if unknown:
            fail(f"stores parameter(s) {unknown} that this mflib's {cls.__name__} does not "
                 "have (written by another mflib version?)")
        model.set_params(**parameters)
        check_constraints(cls.__name__, cls._constraints(), model.get_params(deep=False))
        fitted = decoder.decode({"__type__": "dict", "items": meta["fitted"]})
        for name, value in fitted.items():
            if not (name.endswith("_") and not name.startswith("_")):
                fail(f"it names a fitted attribute {name!r} (they end in '_')")
            setattr(model, name, value)
        tables = {t: decoder.decode(meta.get(t)) if meta.get("include_seen") else None
                  for t in ("item_info", "tags")}
        empty = np.zeros(0, dtype=np.int32)
        model._train_index = RatingMatrix(empty, empty.copy(), np.zeros(0), model.user_ids_,
                                          model.item_ids_, None, tables["item_info"],
                                          tables["tags"], str(meta.get("training_name")))
        model._seen = decoder.decode(meta["seen"]) if meta.get("include_seen") else None
        _check_consistent(model, fail)
    except ModelFileError:
        raise
    except ParameterError as exc:
        fail(f"stores a parameter this mflib refuses ({exc})")
    except (KeyError, AttributeError, TypeError, ValueError, IndexError) as exc:
        fail(f"is incomplete or inconsistent ({type(exc).__name__}: {exc})")
    if meta.get("parameters_not_stored"):
        notes = "; ".join(f"{k}: {v}" for k, v in meta["parameters_not_stored"].items())
        warnings.warn(f"{path}: {cls.__name__} loaded without some parameters ({notes})",
                      ModelFileWarning, stacklevel=3)
    return model


def load(path):
    """Load any mflib model file written by ``model.save(path)`` (see
    :func:`load_model`)."""
    return load_model(path)


def describe(path) -> str:
    """What a model file holds, in words: class, parameters, fitted arrays, provenance,
    whether it carries training ratings (``python -m mflib model info FILE``)."""
    path, meta, _ = _open(path)
    fitted = meta.get("fitted", {})
    def fail(why):
        raise ModelFileError(f"{path}: {why}")

    provenance = _Decoder({}, fail).decode(fitted.get("provenance_")) or {}
    params = ", ".join(f"{k}={_short(v)}" for k, v in meta.get("parameters", {}).items())
    lines = [f"mflib model file {path} ({path.stat().st_size / 1024:.1f} KiB, format "
             f"{meta['format']} {meta['format_version']}, written by mflib "
             f"{meta.get('mflib_version')})",
             *meta.get("contents", []),
             f"parameter values: {params}",
             f"fitted on: {describe_data(provenance.get('data'))}; "
             f"{provenance.get('ratings')} ratings (sha256 "
             f"{str(provenance.get('training_sha256'))[:12]}...)",
             f"fitted with: mflib {provenance.get('mflib_version')}"
             + (f", git revision {provenance['git_revision']}"
                if provenance.get("git_revision") else ", no git revision (not a checkout)"),
             f"stopped: {fitted.get('stop_reason_')} after {fitted.get('n_iter_')} "
             "iteration(s)"]
    return "\n".join(lines)


def _short(value) -> str:
    if isinstance(value, dict) and value.get("__type__") == "object":
        return f"{value['class']}(...)"
    if isinstance(value, dict) and value.get("__type__") == "float":
        return value["value"]
    if isinstance(value, dict):
        return f"<{value.get('__type__')}>"
    return repr(value)
