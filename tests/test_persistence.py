"""Model files (arrays + JSON, no pickle), their checks, and the provenance they record.

The round trip of every estimator is in ``test_contract.py``; here are the file format's
own promises: nothing in a file runs code, a damaged or foreign file is one clear error,
ids of every kind survive, and a model knows the data and split it was fitted on.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mflib
from mflib import ALS, RGD, SGD, BiasBaseline, UserMean
from mflib.base import FactorizationEstimator, FactorState
from mflib.callbacks import EarlyStopping
from mflib.data import RatingMatrix, make_low_rank, make_split
from mflib.persistence import (
    FORMAT_VERSION,
    METADATA,
    ModelFileError,
    ModelFileWarning,
    describe,
    git_revision,
    read_metadata,
    split_mismatch,
)
from mflib.solvers.riemannian import ArmijoLineSearch
from mflib.validation import DataError, IdTypeError


@pytest.fixture(scope="module")
def split():
    rm, _ = make_low_rank(30, 20, 2, 0.5, noise=0.1, random_state=2)
    rm.provenance = {"dataset": "synthetic-test"}  # as load_dataset would record it
    return make_split(rm, "random", test_size=0.25, random_state=5)


@pytest.fixture
def saved(split, tmp_path):
    model = BiasBaseline(max_iter=3).fit(split.train)
    return model, model.save(tmp_path / "model.npz")


class _Payload:
    """Unpickling this writes a marker file: the proof that a loader ran code."""

    marker: Path

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


# ---------------------------------------------------------------------- no code runs
def test_a_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = marker
    evil = tmp_path / "evil.npz"
    evil.write_bytes(pickle.dumps({"format": 1, "class": "ALS", "model": payload}))
    with pytest.raises(ModelFileError, match="is a Python pickle.*can run code"):
        mflib.load(evil)
    with pytest.raises(ModelFileError, match="pickle"):
        ALS.load(evil)
    assert not marker.exists()


def test_an_object_array_inside_an_npz_is_refused_without_running_it(saved, tmp_path):
    model, path = saved
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = marker
    evil = tmp_path / "evil.npz"
    with np.load(path) as npz:
        members = {k: npz[k] for k in npz.files}
    name = next(k for k in members if k != METADATA)
    members[name] = np.array([payload, 1], dtype=object)  # a pickled .npy member
    np.savez(evil, **members)
    with pytest.raises(ModelFileError, match="evil.npz"):
        mflib.load(evil)
    assert not marker.exists()


def test_no_module_of_mflib_unpickles():
    root = Path(mflib.__file__).parent
    offenders = [f"{p.relative_to(root)}:{n}" for p in root.rglob("*.py")
                 for n, line in enumerate(p.read_text().splitlines(), 1)
                 if re.search(r"pickle\.loads?\(|joblib\.load\(", line)]
    assert not offenders, offenders


# ---------------------------------------------------------------------- damaged files
def _rewrite(path, out, *, meta=None, arrays=None):
    """Copy the model file ``path`` to ``out`` with metadata/array edits."""
    with np.load(path) as npz:
        members = {k: npz[k] for k in npz.files}
    document = json.loads(members.pop(METADATA).tobytes())
    if meta:
        meta(document)
    if arrays:
        arrays(members)
    blob = np.frombuffer(json.dumps(document).encode(), dtype=np.uint8)
    np.savez(out, **{METADATA: blob}, **members)
    return out


def _first_array(document):
    return next(iter(document["arrays"]))


@pytest.mark.parametrize("damage,message", [
    (lambda p, o: o.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "truncated"),
    (lambda p, o: o.write_bytes(b""), "is empty"),
    (lambda p, o: o.write_text("user,item,rating\n1,2,3\n"), "not a .npz archive"),
    (lambda p, o: np.savez(o, weights=np.ones(3)), "without mflib metadata"),
    (lambda p, o: _rewrite(p, o, meta=lambda d: d.update(format_version=FORMAT_VERSION + 1)),
     "upgrade mflib"),
    (lambda p, o: _rewrite(p, o, meta=lambda d: d.update({"class": "Popen"})),
     "'Popen', which is not an mflib estimator"),
    (lambda p, o: _rewrite(p, o, meta=lambda d: d.update(format="something")),
     "not that of an mflib model file"),
    (lambda p, o: _rewrite(p, o, arrays=lambda a: a.update(extra=np.zeros(2))),
     "does not declare"),
    (lambda p, o: _rewrite(p, o, arrays=lambda a: a.pop(sorted(a)[0])), "lacks the array"),
    (lambda p, o: _rewrite(p, o, arrays=lambda a: a.update(
        {k: v[:-1] for k, v in a.items() if k.endswith("user_bias_")})), "metadata says"),
    (lambda p, o: _rewrite(p, o, arrays=lambda a: a.update(
        {k: np.full_like(v, np.nan) for k, v in a.items() if k.endswith("user_bias_")})),
     "non-finite"),
    (lambda p, o: _rewrite(p, o, meta=lambda d: d["parameters"].update(regularization=-1.0)),
     "refuses"),
    (lambda p, o: _rewrite(p, o, meta=lambda d: d["parameters"].update(lam=1.0)),
     "does not have"),
    (lambda p, o: _rewrite(p, o, meta=lambda d: d["fitted"].update(
        fallback_={"__type__": "Popen", "args": "rm -rf /"})), "tagged 'Popen'"),
])
def test_a_damaged_or_foreign_file_is_one_clear_error(saved, tmp_path, damage, message):
    model, path = saved
    out = tmp_path / "damaged.npz"
    damage(path, out)
    with pytest.raises(ModelFileError) as info:
        mflib.load(out)
    assert str(out) in str(info.value) and message in str(info.value), info.value


def test_a_flipped_byte_is_caught_by_the_archive_checksums(saved, tmp_path):
    model, path = saved
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:  # a byte inside the compressed factors
        info = zf.getinfo(next(n for n in zf.namelist() if "user_bias_" in n))
    data[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0xFF
    out = tmp_path / "flipped.npz"
    out.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="flipped.npz: is truncated or corrupt"):
        mflib.load(out)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        mflib.load(tmp_path / "nothing.npz")
    with pytest.raises(ModelFileError, match="is a directory"):
        mflib.load(tmp_path)


def test_loading_as_another_class_says_which_class_the_file_holds(saved):
    model, path = saved
    with pytest.raises(TypeError, match="holds a BiasBaseline, not a ALS"):
        ALS.load(path)
    assert type(FactorizationEstimator.load(path)) is BiasBaseline


# ---------------------------------------------------------------------- what is stored
@pytest.mark.parametrize("user_ids, item_ids", [
    (np.arange(30) * 7 + 10**15, np.arange(20)),                       # big ints
    (np.array([f"user-{i}" for i in range(30)], dtype=object),
     np.array([f"ítem-{i}" for i in range(20)], dtype=object)),         # str, non-ASCII
    (np.array([f"u{i}" for i in range(30)], dtype=object), np.arange(20) + 0.5),  # str/float
])
def test_ids_of_every_kind_survive_without_object_arrays(user_ids, item_ids, tmp_path):
    rm, _ = make_low_rank(30, 20, 2, 0.6, random_state=0)
    X = np.empty((rm.nnz, 2), dtype=object)
    X[:, 0], X[:, 1] = user_ids[rm.users], item_ids[rm.items]
    model = ALS(n_factors=2, max_iter=2, random_state=0).fit(X, rm.ratings)
    loaded = mflib.load(model.save(tmp_path / "ids.npz"))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.user_ids_.dtype == model.user_ids_.dtype
    assert list(loaded.user_ids_) == list(model.user_ids_)
    recs = loaded.recommend(X[0, 0], k=3, exclude_seen=False)
    assert list(recs["item"]) == list(model.recommend(X[0, 0], k=3, exclude_seen=False)["item"])
    wrong = np.array([[123, X[0, 1]]], dtype=object) if isinstance(X[0, 0], str) else \
        np.array([["no-such-user", X[0, 1]]], dtype=object)
    with pytest.raises(IdTypeError):  # still says so after loading
        loaded.predict(wrong)


def test_parameters_a_file_cannot_hold_are_named_and_loaded_as_defaults(split, tmp_path):
    model = ALS(n_factors=2, max_iter=2, callbacks=[EarlyStopping(patience=1)],
                random_state=np.random.default_rng(0)).fit(split.train, eval_set=split.test)
    path = model.save(tmp_path / "m.npz")
    notes = read_metadata(path)["parameters_not_stored"]
    assert set(notes) == {"callbacks", "random_state"}
    assert "EarlyStopping" in notes["callbacks"] and "default None" in notes["callbacks"]
    with pytest.warns(ModelFileWarning, match="callbacks.*random_state"):
        loaded = mflib.load(path)
    assert loaded.callbacks is None and loaded.random_state is None
    np.testing.assert_array_equal(loaded.predict(split.test), model.predict(split.test))


@pytest.mark.parametrize("dtype", [np.float32, "float32"])
def test_a_dtype_parameter_survives_in_its_own_form(split, tmp_path, dtype):
    model = SGD(n_factors=2, max_iter=2, dtype=dtype, random_state=0).fit(split.train)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelFileWarning)  # nothing was left out
        loaded = mflib.load(model.save(tmp_path / "sgd.npz"))
    assert loaded.dtype == dtype and type(loaded.dtype) is type(dtype)
    np.testing.assert_array_equal(loaded.predict(split.test), model.predict(split.test))


def test_a_line_search_object_is_rebuilt_from_its_settings(split, tmp_path):
    search = ArmijoLineSearch(contraction=0.3, initial="previous")
    model = RGD(n_factors=2, max_iter=2, line_search=search, random_state=0).fit(split.train)
    loaded = mflib.load(model.save(tmp_path / "rgd.npz"))
    assert isinstance(loaded.line_search, ArmijoLineSearch)
    assert (loaded.line_search.contraction, loaded.line_search.initial) == (0.3, "previous")


def test_an_attribute_a_file_cannot_hold_refuses_to_save(split, tmp_path):
    class Custom(UserMean):
        def _finalize(self, state):
            super()._finalize(state)
            self.transform_ = lambda x: x

    with pytest.raises(TypeError, match="fitted attribute transform_ is a builtins.function"):
        Custom().fit(split.train).save(tmp_path / "c.npz")
    assert not list(tmp_path.iterdir())  # no file, and no partial file either


def test_an_unregistered_class_loads_only_through_itself(split, tmp_path):
    class Shifted(FactorizationEstimator):
        _parameter_constraints = {}

        def __init__(self, n_jobs=None):
            self.n_jobs = n_jobs

        def _init_state(self, train):
            return FactorState(float(train.ratings.mean()) + 1.0)

        def _step(self, state, train):
            return {"converged": True}

    path = Shifted().fit(split.train).save(tmp_path / "s.npz")
    with pytest.raises(ModelFileError, match="'Shifted', which is not an mflib estimator"):
        mflib.load(path)
    assert type(Shifted.load(path)) is Shifted


def test_training_ratings_and_item_table_only_on_request(split, tmp_path):
    train = split.train
    info = pd.DataFrame({"title": [f"Movie {i}" if i % 3 else np.nan
                                   for i in range(train.n_items)],
                         "year": np.arange(train.n_items) + 1990},
                        index=pd.Index(train.item_ids, name="item"))
    train = RatingMatrix(train.users, train.items, train.ratings, train.user_ids,
                         train.item_ids, item_info=info, name="with titles",
                         provenance=train.provenance)
    model = SGD(n_factors=2, max_iter=2, random_state=0).fit(train)
    lean = model.save(tmp_path / "lean.npz")
    full = model.save(tmp_path / "full.npz", include_seen=True)
    assert not read_metadata(lean)["include_seen"] and "seen" not in read_metadata(lean)
    with np.load(lean) as npz:
        assert not any("item_info" in k or "seen" in k for k in npz.files)
    with_titles = mflib.load(full)._train_index.item_info
    pd.testing.assert_frame_equal(with_titles, info, check_dtype=False)
    assert mflib.load(lean)._train_index.item_info is None
    with pytest.raises(ValueError, match="holds no training ratings"):
        mflib.load(lean).save(tmp_path / "again.npz", include_seen=True)
    assert "not included" in describe(lean) and "included (include_seen=True)" in describe(full)


def test_save_is_atomic_and_refuses_a_directory(split, tmp_path):
    model = UserMean().fit(split.train)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        model.save(tmp_path)
    path = model.save(tmp_path / "m.model")  # any suffix: the name is kept as given
    model.save(path)  # replacing an existing file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.model"]
    with pytest.raises(AttributeError, match="not fitted"):
        UserMean().save(tmp_path / "unfitted.npz")


def test_the_file_is_json_and_arrays_only(saved):
    model, path = saved
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert all(n.endswith(".npy") for n in names)
    meta = read_metadata(path)
    assert meta["class"] == "BiasBaseline" and meta["mflib_version"] == mflib.__version__
    with np.load(path, allow_pickle=False) as npz:
        for name, spec in meta["arrays"].items():
            assert list(npz[name].shape) == spec["shape"] and npz[name].dtype.str == spec["dtype"]
    text = describe(path)
    for words in ("a fitted BiasBaseline", "id maps: 30 users, 20 items", "user_bias_",
                  "fitted on: synthetic-test, random split (test_size=0.25, val_size=0.0, "
                  "random_state=5), part train", "stopped: "):
        assert words in text, (words, text)


def test_pickling_stays_available_for_scikit_learn(saved):
    model, path = saved
    loaded = mflib.load(path)
    buffer = io.BytesIO()
    pickle.dump(loaded, buffer)
    again = pickle.loads(buffer.getvalue())
    np.testing.assert_array_equal(again.user_bias_, model.user_bias_)
    assert "__getstate__" not in vars(FactorizationEstimator)


# ---------------------------------------------------------------------- provenance
def test_fit_records_the_data_split_code_and_a_fingerprint(split):
    model = UserMean().fit(split.train)
    p = model.provenance_
    assert p["data"] == {"dataset": "synthetic-test", "part": "train",
                         "split": {"kind": "random", "test_size": 0.25, "val_size": 0.0,
                                   "random_state": 5}}
    assert p["ratings"] == split.train.nnz and p["mflib_version"] == mflib.__version__
    assert re.fullmatch(r"[0-9a-f]{64}", p["training_sha256"])
    revision = git_revision()
    assert p.get("git_revision") == revision
    assert revision is None or re.fullmatch(r"[0-9a-f]{40,64}", revision)
    # the fingerprint tells the exact ratings apart
    other = UserMean().fit(split.train.with_ratings(split.train.ratings + 1e-9))
    assert other.provenance_["training_sha256"] != p["training_sha256"]
    assert other.provenance_["data"] is None  # derived ratings: origin not claimed


def test_git_revision_is_absent_when_git_is_not_there(monkeypatch):
    monkeypatch.setenv("PATH", "")  # no git executable
    assert git_revision.__wrapped__() is None


def test_split_mismatch_names_both_sides(split):
    rm = split.train  # parent-independent: rebuild the parent from the split's parts
    parent, _ = make_low_rank(30, 20, 2, 0.5, noise=0.1, random_state=2)
    parent.provenance = {"dataset": "synthetic-test"}
    model = UserMean().fit(rm)
    same = make_split(parent, "random", test_size=0.25, random_state=5)
    assert split_mismatch(model, same.train) is None
    for other, words in [
        (make_split(parent, "random", test_size=0.25, random_state=6), "random_state=6"),
        (make_split(parent, "random", test_size=0.3, random_state=5), "test_size=0.3"),
        (make_split(parent, "user", test_size=0.25, random_state=5), "user split"),
    ]:
        message = split_mismatch(model, other.train)
        assert "random_state=5" in message and words in message, message
    loose = make_split(parent, "random", test_size=0.25, random_state=np.random.default_rng(5))
    assert "drawn without an integer seed" in split_mismatch(UserMean().fit(loose.train),
                                                             same.train)
    on_arrays = UserMean().fit(rm.pairs(), rm.ratings)
    assert "records no dataset or split" in split_mismatch(on_arrays, same.train)


def test_restore_seen_items_accepts_only_the_models_own_ratings(saved, split):
    model, path = saved
    loaded = mflib.load(path)
    with pytest.raises(DataError, match="not the training ratings"):
        loaded.restore_seen_items(split.test)
    with pytest.raises(DataError, match="must be a RatingMatrix"):
        loaded.restore_seen_items(split.train.pairs())
    user = split.train.pairs()[0, 0]
    assert loaded.restore_seen_items(split.train).recommend(user, k=2).equals(
        model.recommend(user, k=2))


@pytest.mark.realdata
def test_loaders_record_dataset_and_split(ml100k, ml100k_u1):
    assert ml100k.provenance == {"dataset": "ml-100k", "checksums_verified": True}
    for part, rm in ml100k_u1.parts().items():
        assert rm.provenance == {"dataset": "ml-100k", "checksums_verified": True,
                                 "split": {"kind": "predefined", "name": "u1"}, "part": part}
    fold = make_split(ml100k, "kfold", n_splits=5, fold=2, val_size=0.1, random_state=3)
    assert fold.validation.provenance["split"] == {
        "kind": "kfold", "n_splits": 5, "fold": 2, "val_size": 0.1, "random_state": 3}
    temporal = make_split(ml100k, "temporal")
    assert temporal.train.provenance["split"] == {
        "kind": "temporal", "test_size": 0.15, "val_size": 0.15, "rule": "floor"}
    assert ml100k.take(np.arange(10)).provenance is None  # a subset is not the dataset
