"""Item content features (one TF-IDF row per item, fitted on training data only) and the
content-based model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

import mflib
from mflib.data import make_low_rank, make_split
from mflib.data.content import (
    item_documents,
    item_features,
    make_content_ratings,
    release_years,
    training_tags,
)
from mflib.metrics import rmse
from mflib.validation import DataError


@pytest.fixture(scope="module")
def content_data():
    return make_content_ratings(random_state=0)


def test_documents_hold_genre_decade_and_tag_tokens():
    info = pd.DataFrame({"title": ["Heat (1995)", "Odd one"],
                         "genres": ["Action|Crime", "(no genres listed)"]},
                        index=pd.Index([10, 20], name="item"))
    tags = pd.DataFrame({"user": [1, 2], "item": [10, 10], "tag": ["Great score!", "heist"]})
    docs = item_documents(info, tags)
    assert docs[10] == ["genre:action", "genre:crime", "decade:1990", "tag:great",
                        "tag:score", "tag:heist"]
    assert 20 not in docs.index  # no genres, no year, no tags: no document at all
    years = release_years(info)
    assert years[10] == 1995 and np.isnan(years[20])


def test_one_row_per_item_whatever_its_number_of_ratings(content_data):
    F = item_features(content_data)
    counts = content_data.item_counts()
    assert counts.max() >= 30  # a movie rated 30+ times still has one row
    assert F.matrix.shape[0] == content_data.n_items == len(np.unique(F.item_ids))
    np.testing.assert_array_equal(F.item_ids[: content_data.n_items], content_data.item_ids)
    norms = np.sqrt(np.asarray(F.matrix.multiply(F.matrix).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms[F.nonzero_rows()], 1.0)  # L2-normalised rows


def test_no_vocabulary_or_idf_from_validation_or_test(content_data):
    split = make_split(content_data, "temporal", test_size=0.2, val_size=0.1)
    test_pair = split.test.pairs()[0]
    tags = pd.concat([content_data.tags, pd.DataFrame({
        "user": [test_pair[0]], "item": [test_pair[1]], "tag": ["onlyintest"],
        "timestamp": [0]})], ignore_index=True)
    train = split.train
    train.tags = tags
    F = item_features(train)
    assert "tag:onlyintest" not in set(F.feature_names)
    assert any(name.startswith("tag:") for name in F.feature_names)
    # the idf is the one of the training items' documents (genres, decades, train tags)
    rated = train.item_ids[train.item_counts() > 0]
    docs = item_documents(train.item_info, training_tags(train)).reindex(rated)
    docs = [d if isinstance(d, list) else [] for d in docs]
    reference = TfidfVectorizer(analyzer=lambda d: d, sublinear_tf=True).fit(docs)
    np.testing.assert_array_equal(reference.get_feature_names_out(), F.feature_names)
    np.testing.assert_allclose(reference.idf_, F.vectorizer.idf_)


def test_training_tags_keep_only_pairs_rated_in_training(content_data):
    split = make_split(content_data, "random", test_size=0.3, random_state=0)
    kept = training_tags(split.train)
    rated = set(map(tuple, split.train.pairs().tolist()))
    assert len(kept) and all((u, i) in rated for u, i in zip(kept.user, kept.item, strict=True))
    dropped = len(content_data.tags) - len(kept)
    assert dropped > 0  # tags of test pairs went


def test_cold_items_get_rows_from_the_train_fitted_vectorizer(content_data):
    split = make_split(content_data, "cold_start", test_size=0.2, random_state=1)
    F = item_features(split.train)
    cold = np.flatnonzero(split.train.item_counts() == 0)
    assert cold.size and not F.fitted[cold].any() and F.fitted[split.train.item_counts() > 0].all()
    # cold rows carry their genres (metadata), but none of their tags (all in test)
    cold_rows = F.matrix[cold].toarray()
    tag_cols = np.array([n.startswith("tag:") for n in F.feature_names])
    genre_cols = np.array([n.startswith("genre:") for n in F.feature_names])
    assert (cold_rows[:, genre_cols] > 0).any(axis=1).all()
    assert (cold_rows[:, tag_cols] == 0).all()


def test_rows_aligned_and_unknown_ids(content_data):
    F = item_features(content_data)
    ids = content_data.item_ids[[5, 2]]
    rows = F.rows(np.r_[ids, 10_000]).toarray()
    np.testing.assert_array_equal(rows[0], F.matrix[5].toarray()[0])
    assert not rows[2].any() and not F.has_content([10_000])[0]
    moved = F.aligned(ids[::-1])
    np.testing.assert_array_equal(moved.item_ids[:2], ids[::-1])
    np.testing.assert_array_equal(moved.matrix[0].toarray(), F.matrix[2].toarray())


def test_reduction_is_fitted_on_training_rows_only(content_data):
    split = make_split(content_data, "cold_start", test_size=0.2, random_state=1)
    F = item_features(split.train)
    R = F.reduce(4, random_state=3)
    assert isinstance(R.matrix, np.ndarray) and R.matrix.shape == (F.n_items, 4)
    seed = int(np.random.default_rng(3).integers(2**31 - 1))
    reference = TruncatedSVD(4, random_state=seed).fit(F.matrix[F.fitted])
    np.testing.assert_allclose(R.svd.components_, reference.components_)
    with pytest.raises(ValueError, match="n_components"):
        F.reduce(F.n_features)


def test_features_need_metadata_or_tags():
    rm, _ = make_low_rank(20, 15, 2, 0.5, random_state=0)
    with pytest.raises(DataError, match="no item metadata"):
        item_features(rm)
    with pytest.raises(ValueError, match="tags must be one of"):
        item_features(make_content_ratings(random_state=0), tags="all")


@pytest.mark.realdata
def test_ml_latest_small_features(ml_latest_small):
    split = make_split(ml_latest_small, "temporal", test_size=0.15, val_size=0.15)
    F = item_features(split.train)
    assert F.n_items == len(ml_latest_small.item_info.index.union(
        pd.Index(ml_latest_small.item_ids)))
    names = pd.Series(F.feature_names)
    assert names.str.startswith("tag:").sum() > 100 and names.str.startswith("genre:").sum() > 15
    # user 2 tagged movie 89774 ("Boxing story", "MMA") in a rating that is not training
    assert "tag:mma" not in set(F.feature_names)


@pytest.mark.realdata
def test_ml100k_features_are_genres_and_decades(ml100k):
    F = item_features(make_split(ml100k, "random", test_size=0.2, random_state=0).train)
    assert all(n.startswith(("genre:", "decade:")) for n in F.feature_names)
    assert sum(n.startswith("genre:") for n in F.feature_names) == 19


# ---------------------------------------------------------------------- ContentBased
def test_content_based_objective_never_rises(content_data):
    model = mflib.ContentBased(n_components=None, max_iter=8, tol=0).fit(content_data)
    obj = model.history_["objective"]
    assert np.all(np.diff(obj) <= 1e-10 * obj[0])
    assert model.user_factors_.shape == (content_data.n_users, model.item_features_.n_features)


def test_content_based_predicts_cold_items_from_features(content_data):
    split = make_split(content_data, "cold_start", test_size=0.2, random_state=1)
    model = mflib.ContentBased(n_components=None, regularization=5.0).fit(split.train)
    pred, known = model.predict(split.test, return_known=True)
    assert known.all()  # every cold item has genres
    fallback = mflib.BiasBaseline(3.0).fit(split.train).predict(split.test)
    assert rmse(split.test.ratings, pred) < rmse(split.test.ratings, fallback) - 0.02
    # a raw id the training index never saw, whose features are known, takes the same path
    u = split.test.users[0]
    raw = np.array([[split.test.user_ids[u], split.test.item_ids[split.test.items[0]]]])
    np.testing.assert_allclose(model.predict(raw), pred[:1])


def test_content_based_without_features_is_a_bias_model(content_data):
    plain = mflib.ContentBased(item_features="none", max_iter=300, tol=1e-13).fit(content_data)
    assert plain.item_features_ is None and plain.user_factors_.shape[1] == 0
    base = mflib.BiasBaseline(3.0, max_iter=300, tol=1e-13).fit(content_data)
    np.testing.assert_allclose(plain.predict(content_data), base.predict(content_data),
                               atol=1e-3)
