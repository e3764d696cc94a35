"""Item content features: one TF-IDF row per *item* from its genres and tags.

A rating-level feature table (one row per rating, indexed by item) repeats a movie's
row once per rating and lets the test part's tags leak into the vocabulary; here a
movie with thirty ratings has exactly one row, and the vectorizer (vocabulary and idf)
is fitted on the documents of the items that have a training rating, built from their
genres and the *training* tags only. Items without a training rating (cold-start items)
get rows too, transformed with that train-fitted vectorizer, so a model can predict them
from content.

Documents are token lists: each genre is one token (``genre:sci-fi``) and each tag
contributes its lower-cased words (``tag:dark``, ``tag:comedy``), so a genre and a tag
word never collide. Rows are L2-normalised TF-IDF vectors (scikit-learn's
:class:`~sklearn.feature_extraction.text.TfidfVectorizer`, sublinear term frequency by
default: a tag applied by many users counts more, but not linearly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from ..validation import DataError, check_positive_int, check_random_state
from .ratings import RatingMatrix

GENRE_PREFIX = "genre:"
TAG_PREFIX = "tag:"
DECADE_PREFIX = "decade:"
#: a release year at the end of a MovieLens title, "Heat (1995)"
TITLE_YEAR = r"\((\d{4})\)\s*$"
#: MovieLens' marker of a movie without genres (no token)
NO_GENRES = "(no genres listed)"
#: the words of a tag: runs of two or more word characters, as TfidfVectorizer's default
TAG_WORD = r"\w\w+"
#: where the tags of :func:`item_features` come from
TAG_SOURCES = ("train", "none")


def _tokens_as_given(doc):
    """The vectorizer's analyzer: documents are token lists already (a module-level
    function, so fitted features pickle)."""
    return doc


def training_tags(train: RatingMatrix, tags: pd.DataFrame | None = None) -> pd.DataFrame:
    """The tags that belong to the training part: those whose (user, item) pair is a
    rating of ``train``. A tag on a pair rated in validation or test (or never rated) is
    left out, so no tag of the held-out parts reaches the features.

    ``tags`` defaults to ``train.tags`` (columns user, item, tag, ... with raw ids).
    """
    tags = train.tags if tags is None else tags
    if tags is None or len(tags) == 0:
        return pd.DataFrame({"user": [], "item": [], "tag": []})
    missing = {"user", "item", "tag"} - set(tags.columns)
    if missing:
        raise DataError(f"tags must have columns user, item and tag; missing {sorted(missing)}")
    rated = pd.MultiIndex.from_arrays([train.user_ids[train.users], train.item_ids[train.items]])
    keep = pd.MultiIndex.from_arrays([tags["user"].to_numpy(), tags["item"].to_numpy()]).isin(rated)
    return tags.loc[keep]


def release_years(item_info: pd.DataFrame) -> pd.Series:
    """Release year per raw item id (float, NaN where unknown): the ``release_date``
    column when present (ml-100k, "01-Jan-1995"), else a year in parentheses at the end of
    the ``title`` (the other MovieLens sets, "Heat (1995)")."""
    if "release_date" in item_info.columns:
        dates = pd.to_datetime(item_info["release_date"], format="%d-%b-%Y", errors="coerce")
        return dates.dt.year.astype(float)
    if "title" in item_info.columns:
        return item_info["title"].astype(str).str.extract(TITLE_YEAR)[0].astype(float)
    return pd.Series(np.nan, index=item_info.index)


def item_documents(item_info: pd.DataFrame | None, tags: pd.DataFrame | None = None, *,
                   genres: bool = True, decades: bool = True) -> pd.Series:
    """One token list per raw item id (a Series indexed by item): its genre tokens, its
    release decade (``decade:1990``), then the words of its tags (one entry per tag
    application, so repeated tags weigh more).

    ``item_info`` is indexed by raw item id with a ``genres`` column ("A|B|C"); ``tags``
    has columns item and tag. Items appearing in either get a document.
    """
    parts = []
    if genres and item_info is not None:
        if "genres" not in item_info.columns:
            raise DataError("item_info has no 'genres' column; pass genres=False to use tags "
                            "only")
        g = item_info["genres"].astype(str).str.split("|").explode()
        g = g[(g != NO_GENRES) & (g != "")]
        parts.append(GENRE_PREFIX + g.str.lower())
    if decades and item_info is not None:
        years = release_years(item_info).dropna()
        parts.append(DECADE_PREFIX + (years // 10 * 10).astype(int).astype(str))
    if tags is not None and len(tags):
        words = (tags.set_index("item")["tag"].astype(str).str.lower()
                 .str.findall(TAG_WORD).explode().dropna())
        parts.append(TAG_PREFIX + words)
    if not parts:
        return pd.Series([], dtype=object)
    tokens = pd.concat(parts)
    return tokens.groupby(level=0, sort=True).agg(list)


@dataclass
class ItemFeatures:
    """Content rows of items, one per item, indexed by raw item id.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix or ndarray, shape (n_rows, n_features)
        One row per item (TF-IDF, or its TruncatedSVD reduction: see :meth:`reduce`).
    item_ids : ndarray, shape (n_rows,)
        Raw item id of each row. Rows of a training matrix's items come first, in its
        inner order, so ``matrix[:train.n_items]`` is aligned with the training index.
    feature_names : ndarray of str, shape (n_features,)
        Vocabulary terms (``genre:...``, ``tag:...``) or ``svd0``, ``svd1``, ...
    fitted : ndarray of bool, shape (n_rows,)
        Rows whose document the vectorizer was fitted on (items with a training rating).
    vectorizer : TfidfVectorizer
        The fitted vectorizer (its vocabulary and idf come from the fitted rows only).
    svd : TruncatedSVD or None
        The reduction, when the rows were reduced.
    """

    matrix: object
    item_ids: np.ndarray
    feature_names: np.ndarray
    fitted: np.ndarray
    vectorizer: TfidfVectorizer
    svd: TruncatedSVD | None = None

    @property
    def n_items(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.matrix.shape[1])

    def __repr__(self) -> str:
        kind = "dense" if isinstance(self.matrix, np.ndarray) else "sparse"
        return (f"ItemFeatures({self.n_items} items x {self.n_features} features, {kind}, "
                f"fitted on {int(self.fitted.sum())} items)")

    def _row_index(self, raw_ids) -> np.ndarray:
        return pd.Index(self.item_ids).get_indexer(np.asarray(raw_ids).ravel())

    def rows(self, raw_ids):
        """Feature rows of ``raw_ids`` (zero rows for ids without one), in the matrix's
        kind (sparse CSR or dense), shape (len(raw_ids), n_features)."""
        pos = self._row_index(raw_ids)
        have = pos >= 0
        if isinstance(self.matrix, np.ndarray):
            out = np.zeros((len(pos), self.n_features))
            out[have] = self.matrix[pos[have]]
            return out
        # a zero row is appended once per call and selected for missing ids
        padded = sp.vstack([self.matrix, sp.csr_matrix((1, self.n_features))], format="csr")
        return padded[np.where(have, pos, self.n_items)]

    def has_content(self, raw_ids) -> np.ndarray:
        """True for ids with a non-zero feature row."""
        pos = self._row_index(raw_ids)
        nonzero = self.nonzero_rows()
        out = np.zeros(len(pos), dtype=bool)
        out[pos >= 0] = nonzero[pos[pos >= 0]]
        return out

    def nonzero_rows(self) -> np.ndarray:
        """True for rows with at least one non-zero feature."""
        if isinstance(self.matrix, np.ndarray):
            return np.any(self.matrix != 0, axis=1)
        return np.diff(self.matrix.indptr) > 0

    def aligned(self, raw_ids) -> ItemFeatures:
        """The same features with rows for exactly ``raw_ids`` first (in that order; zero
        rows for ids without one), then the other items."""
        raw_ids = np.asarray(raw_ids)
        rest = ~pd.Index(self.item_ids).isin(raw_ids)
        first = self.rows(raw_ids)
        pos = self._row_index(raw_ids)
        fitted_first = np.zeros(len(raw_ids), dtype=bool)
        fitted_first[pos >= 0] = self.fitted[pos[pos >= 0]]
        stack = np.vstack if isinstance(self.matrix, np.ndarray) else sp.vstack
        matrix = stack([first, self.matrix[rest]])
        if not isinstance(matrix, np.ndarray):
            matrix = sp.csr_matrix(matrix)
        return ItemFeatures(matrix, np.concatenate([raw_ids, self.item_ids[rest]]),
                            self.feature_names, np.concatenate([fitted_first, self.fitted[rest]]),
                            self.vectorizer, self.svd)

    def reduce(self, n_components: int, random_state=None) -> ItemFeatures:
        """Dense rows of ``n_components`` TruncatedSVD coordinates; the SVD is fitted on
        the fitted (training) rows only and applied to every row."""
        if self.svd is not None:
            raise ValueError("these features are reduced already")
        check_positive_int(n_components, "n_components")
        fitted_rows = self.matrix[self.fitted]
        if n_components >= min(fitted_rows.shape):
            raise ValueError(
                f"n_components={n_components} must be below min(items fitted, features) = "
                f"{min(fitted_rows.shape)}; choose a smaller n_components (or None)"
            )
        seed = int(check_random_state(random_state).integers(2**31 - 1))
        svd = TruncatedSVD(n_components, random_state=seed).fit(fitted_rows)
        dense = svd.transform(self.matrix)
        names = np.array([f"svd{j}" for j in range(n_components)])
        return ItemFeatures(dense, self.item_ids, names, self.fitted, self.vectorizer, svd)

    def top_terms(self, item, n: int = 5) -> pd.Series:
        """The ``n`` largest features of raw ``item``'s row (name -> weight)."""
        row = self.rows([item])
        row = row[0] if isinstance(row, np.ndarray) else row.toarray()[0]
        order = np.argsort(-row, kind="stable")[:n]
        order = order[row[order] > 0]
        return pd.Series(row[order], index=self.feature_names[order], name=item)

    def examples(self, items, n: int = 4) -> pd.DataFrame:
        """A readable table of a few items' strongest features: one row per item with
        columns ``features`` (non-zero count) and ``top`` ("term 0.52, term 0.31 ...")."""
        rows = self.rows(items)
        counts = (np.count_nonzero(rows, axis=1) if isinstance(rows, np.ndarray)
                  else np.diff(rows.indptr))
        top = [", ".join(f"{t} {w:.2f}" for t, w in self.top_terms(item, n).items())
               for item in items]  # a handful of display rows
        return pd.DataFrame({"features": counts, "top": top}, index=pd.Index(items, name="item"))


def item_features(train: RatingMatrix, *, tags="train", genres: bool = True,
                  decades: bool = True, min_df=1,
                  max_df=1.0, sublinear_tf: bool = True, item_info: pd.DataFrame | None = None
                  ) -> ItemFeatures:
    """TF-IDF rows of items from their genres and tags, fitted on ``train`` only.

    Parameters
    ----------
    train : RatingMatrix
        The training part. Its items with at least one rating are the documents the
        vectorizer is fitted on (vocabulary and idf); every other item of its id map and of
        ``item_info`` gets a row transformed with that vectorizer.
    tags : {"train", "none"} or DataFrame, default "train"
        ``"train"``: the tags of ``train.tags`` whose (user, item) pair is a training rating
        (:func:`training_tags`); ``"none"``: genres only; a DataFrame (columns item, tag):
        those tags, used as given (the caller vouches that they are training information).
    genres : bool, default True
        Use the ``genres`` column of ``item_info``.
    decades : bool, default True
        Add the release decade (:func:`release_years`): metadata a new movie has too.
    min_df, max_df, sublinear_tf :
        Passed to :class:`~sklearn.feature_extraction.text.TfidfVectorizer`.
    item_info : DataFrame, optional
        Item metadata indexed by raw item id (default ``train.item_info``).

    Returns
    -------
    ItemFeatures
        Sparse CSR rows; the first ``train.n_items`` rows follow ``train``'s inner item
        order.

    Raises
    ------
    DataError
        When there is neither item metadata nor tags, or the training items' documents are
        all empty.
    """
    info = train.item_info if item_info is None else item_info
    if isinstance(tags, str):
        if tags not in TAG_SOURCES:
            raise ValueError(f"tags must be one of {TAG_SOURCES} or a DataFrame, got {tags!r}")
        tag_rows = training_tags(train) if tags == "train" else None
    elif isinstance(tags, pd.DataFrame):
        tag_rows = tags
    else:
        raise TypeError(f"tags must be one of {TAG_SOURCES} or a DataFrame, got "
                        f"{type(tags).__name__}")
    if (info is None or not genres) and (tag_rows is None or len(tag_rows) == 0):
        raise DataError(
            f"{train.name} has no item metadata (genres) and no training tags to build "
            "content features from; load a dataset with item_info (e.g. "
            "load_dataset('ml-latest-small')) or pass item_info=..."
        )
    docs = item_documents(info, tag_rows, genres=genres, decades=decades)
    extra = [] if info is None else info.index[~info.index.isin(train.item_ids)].to_numpy()
    all_ids = np.concatenate([train.item_ids, np.asarray(extra, dtype=train.item_ids.dtype)])
    all_docs = docs.reindex(all_ids)
    all_docs = all_docs.where(all_docs.notna(), pd.Series([[]] * len(all_docs),
                                                          index=all_docs.index))
    fitted = np.zeros(len(all_ids), dtype=bool)
    fitted[: train.n_items] = train.item_counts() > 0
    vectorizer = TfidfVectorizer(analyzer=_tokens_as_given, min_df=min_df, max_df=max_df,
                                 sublinear_tf=sublinear_tf, dtype=np.float64)
    fit_docs = all_docs[fitted].tolist()
    try:
        vectorizer.fit(fit_docs)
    except ValueError as exc:  # scikit-learn's "empty vocabulary" and min_df/max_df clashes
        raise DataError(f"no content features from the {int(fitted.sum())} training items' "
                        f"documents: {exc}") from exc
    matrix = sp.csr_matrix(vectorizer.transform(all_docs.tolist()))
    return ItemFeatures(matrix, all_ids, vectorizer.get_feature_names_out(), fitted, vectorizer)


def make_content_ratings(n_users=120, n_items=80, n_genres=6, rank=3, density=0.25, *,
                         noise=0.3, genre_effect=0.6, drift=0.0, tag_share=0.1,
                         random_state=None, name="synthetic-content") -> RatingMatrix:
    """Synthetic ratings whose items' biases and factors depend on their genres, with
    item metadata (genres, titles with years), tags and timestamps: content models have
    something to learn, and cold-start items can be predicted from their genres.

    Each item has one to three of ``n_genres`` genres; its bias is the mean of its genres'
    effects (N(0, genre_effect^2)) and its factor the mean of its genres' factors, each
    plus a little item noise. Users rate ``density`` of the items at increasing times;
    ``drift`` adds ``drift_u (s - 1)`` to user ``u``'s ratings (``s`` the position in the
    user's history, ``drift_u ~ N(0, drift^2)``). A random ``tag_share`` of the ratings
    carries a tag naming the item's first genre. Raw ids are 0..n-1.
    """
    check_positive_int(n_genres, "n_genres")
    rng = check_random_state(random_state)
    genre_of = rng.random((n_items, n_genres)) < 1.5 / n_genres
    genre_of[np.arange(n_items), rng.integers(0, n_genres, n_items)] = True
    share = genre_of / genre_of.sum(axis=1, keepdims=True)
    item_bias = share @ rng.normal(0, genre_effect, n_genres) + rng.normal(0, 0.05, n_items)
    item_factors = share @ rng.normal(0, 1, (n_genres, rank)) + rng.normal(0, 0.1,
                                                                           (n_items, rank))
    user_factors = rng.normal(0, 1 / np.sqrt(rank), (n_users, rank))
    user_bias = rng.normal(0, 0.3, n_users)
    cells = np.flatnonzero(rng.random(n_users * n_items) < density)
    users, items = np.divmod(cells, n_items)
    order = np.lexsort((rng.random(len(cells)), users))  # a random history per user
    users, items = users[order], items[order]
    counts = np.bincount(users, minlength=n_users)
    pos = np.arange(len(users)) - np.repeat(np.cumsum(counts) - counts, counts)
    times = 1_000_000_000 + users * 10 + pos * 86_400 * 30
    s = (pos + 0.5) / counts[users]
    ratings = (3.5 + user_bias[users] + item_bias[items]
               + np.einsum("na,na->n", user_factors[users], item_factors[items])
               + rng.normal(0, drift, n_users)[users] * (s - 1) + rng.normal(0, noise,
                                                                             len(users)))
    genre_names = np.array([f"Genre{g}" for g in range(n_genres)])
    info = pd.DataFrame({
        "title": [f"Item {i} ({1960 + 5 * (i % 12)})" for i in range(n_items)],
        "genres": ["|".join(genre_names[row]) for row in genre_of],
    }, index=pd.Index(np.arange(n_items), name="item"))
    tagged = rng.random(len(users)) < tag_share
    first_genre = genre_of.argmax(axis=1)
    tag_text = np.char.add("like ", np.char.lower(genre_names[first_genre[items[tagged]]]))
    tags = pd.DataFrame({"user": users[tagged], "item": items[tagged], "tag": tag_text,
                         "timestamp": times[tagged]})
    return RatingMatrix.from_arrays(users, items, ratings, times, item_info=info, tags=tags,
                                    name=name)


__all__ = ["ItemFeatures", "item_documents", "item_features", "make_content_ratings",
           "release_years", "training_tags"]
