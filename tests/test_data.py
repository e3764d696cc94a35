"""Data layer: RatingMatrix, registry/loading (real archives and built ones), splits."""

from __future__ import annotations

import io
import shutil
import zipfile

import numpy as np
import pytest

from mflib.data import (
    ChecksumError,
    DataNotFoundError,
    RatingMatrix,
    cold_start_split,
    kfold,
    load_dataset,
    load_predefined_split,
    make_low_rank,
    make_split,
    random_split,
    temporal_split,
    user_split,
)
from mflib.data.datasets import REGISTRY, DataFileError, get_dataset
from mflib.validation import DataError, IdTypeError


# ---------------------------------------------------------------------- RatingMatrix
def test_from_arrays_maps_ids_and_keeps_row_order():
    rm = RatingMatrix.from_arrays(["b", "a", "b"], [30, 10, 10], [1, 2, 3])
    assert list(rm.user_ids) == ["a", "b"] and list(rm.item_ids) == [10, 30]
    np.testing.assert_array_equal(rm.users, [1, 0, 1])
    np.testing.assert_array_equal(rm.items, [1, 0, 0])
    assert rm.ratings.dtype == np.float64
    np.testing.assert_array_equal(rm.to_csr().toarray(), [[2, 0], [3, 1]])
    assert rm.pairs().tolist() == [["b", 30], ["a", 10], ["b", 10]]


def test_id_lookup_marks_unknown_ids():
    rm = RatingMatrix.from_arrays([5, 7], [1, 2], [3.0, 4.0])
    np.testing.assert_array_equal(rm.user_index([7, 5, 99]), [1, 0, -1])
    np.testing.assert_array_equal(rm.item_index([2, 3]), [1, -1])
    # float ids (e.g. X = data[:, :2] of a float array) still find int ids
    np.testing.assert_array_equal(rm.user_index(np.array([7.0, 5.5])), [1, -1])
    strs = RatingMatrix.from_arrays(["a", "b"], [1, 2], [3.0, 4.0])
    np.testing.assert_array_equal(strs.user_index(np.array(["b", "z"], dtype=object)), [1, -1])


@pytest.mark.parametrize(
    "which,given,shown,trained",
    [
        ("user", ["7", "5"], "are str (e.g. '7'", "are int (e.g. 5)"),
        ("item", np.array(["1"]), "are str (e.g. '1'", "are int (e.g. 1)"),
        ("user", "7", "are str (e.g. '7'", "are int"),
        ("user", np.array([7, "5"], dtype=object), "a mix of types (e.g. '5'", "are int"),
    ],
)
def test_id_lookup_refuses_ids_of_another_type(which, given, shown, trained):
    rm = RatingMatrix.from_arrays([5, 7], [1, 2], [3.0, 4.0])
    lookup = rm.user_index if which == "user" else rm.item_index
    with pytest.raises(IdTypeError) as err:
        lookup(given)
    assert isinstance(err.value, TypeError) and isinstance(err.value, DataError)
    assert shown in str(err.value) and trained in str(err.value)
    assert f"pass {which} ids of type int" in str(err.value)


def test_id_lookup_refuses_int_ids_for_str_training_ids():
    rm = RatingMatrix.from_arrays(["a", "b"], ["x", "y"], [3.0, 4.0])
    with pytest.raises(IdTypeError, match=r"given are int \(e.g. 1 .*are str \(e.g. 'x'\)"):
        rm.item_index([1])


@pytest.mark.parametrize(
    "ratings,match",
    [
        (np.array([4.0 + 0j, 3 + 1j]), r"complex numbers \(dtype complex128, e.g. \(3\+1j\)\)"),
        (np.array([4.0, 3.0], dtype=object), "dtype object"),
        (np.array([4.0, None], dtype=object), "None of type NoneType at position 1"),
        (["4", "x"], "'x' of type str at position 1"),
    ],
)
def test_complex_and_non_numeric_ratings_are_refused(ratings, match):
    with pytest.raises(DataError, match=match):
        RatingMatrix.from_arrays([1, 2], [1, 2], ratings)


@pytest.mark.parametrize(
    "users,items,ratings,match",
    [
        ([1, 2], [1, 2], [1.0, np.nan], "non-finite"),
        ([1, 2], [1, 2], [1.0, np.inf], "non-finite"),
        ([], [], [], "empty"),
        ([1, 2], [1], [1.0, 2.0], "equal length"),
        ([1, None], [1, 2], [1.0, 2.0], "missing value"),
        ([1, 1], [2, 2], [1.0, 2.0], "duplicate"),
    ],
)
def test_bad_input_is_refused(users, items, ratings, match):
    with pytest.raises(DataError, match=match):
        RatingMatrix.from_arrays(np.array(users, dtype=object) if None in users else users,
                                 items, ratings)


def test_pairs_of_wrong_shape_name_the_fix():
    with pytest.raises(DataError, match=r"X\[:, :2\]"):
        RatingMatrix.from_pairs(np.ones((4, 3)), np.ones(4))
    with pytest.raises(DataError, match="y .* is required"):
        RatingMatrix.from_pairs(np.ones((4, 2)), None)


def test_duplicates_can_be_combined_explicitly():
    users, items, r = [1, 1, 2], [5, 5, 5], [1.0, 3.0, 4.0]
    mean = RatingMatrix.from_arrays(users, items, r, duplicates="mean")
    assert mean.nnz == 2 and sorted(mean.ratings) == [2.0, 4.0]
    last = RatingMatrix.from_arrays(users, items, r, timestamps=[9, 1, 5], duplicates="last")
    assert sorted(last.ratings) == [1.0, 4.0]  # the later timestamp wins


def test_summary_counts_and_scale(small_low_rank):
    rm = RatingMatrix.from_arrays([1, 1, 2], [1, 2, 2], [1.0, 2.0, 5.0])
    s = rm.summary()
    assert (s["users"], s["items"], s["ratings"]) == (2, 2, 3)
    assert s["density"] == pytest.approx(0.75)
    assert (s["rating_min"], s["rating_max"], s["rating_step"]) == (1.0, 5.0, 1.0)


# ---------------------------------------------------------------------- real archives
@pytest.mark.realdata
def test_ml100k_loads_with_item_metadata(ml100k):
    s = ml100k.summary()
    assert (s["users"], s["items"], s["ratings"]) == (943, 1682, 100000)
    assert ml100k.item_info.loc[1, "title"] == "Toy Story (1995)"
    assert ml100k.item_info.loc[1, "genres"] == "Animation|Children's|Comedy"
    assert ml100k.timestamps is not None


@pytest.mark.realdata
def test_ml_latest_small_has_tags_and_genres(ml_latest_small):
    s = ml_latest_small.summary()
    assert (s["users"], s["items"], s["ratings"]) == (610, 9724, 100836)
    assert len(ml_latest_small.tags) == 3683
    assert (s["rating_min"], s["rating_step"]) == (0.5, 0.5)
    assert ml_latest_small.item_info.loc[1, "genres"].startswith("Adventure|Animation")


@pytest.mark.realdata
def test_netflix_course_split_reads_columns_by_name(netflix_split):
    assert netflix_split.train.nnz == netflix_split.test.nnz == 51161
    unseen = netflix_split.unseen("test")
    assert unseen == {"unseen_user_pairs": 152, "unseen_item_pairs": 853, "unseen_pairs": 1002}
    # test.csv starts "movie_id,user_id,rating,date" / "2956,1574,4,2005-06-14"
    first = netflix_split.test.to_frame().iloc[0]
    assert (first["item"], first["user"], first["rating"]) == (2956, 1574, 4.0)


@pytest.mark.realdata
def test_ml100k_predefined_split_partitions_u_data(ml100k_u1, ml100k):
    assert ml100k_u1.train.nnz == 80000 and ml100k_u1.test.nnz == 20000


@pytest.mark.realdata
def test_zip_and_extracted_folder_give_the_same_data(tmp_path, monkeypatch, ml_latest_small):
    src = REGISTRY["ml-latest-small"]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    from mflib.data.datasets import fetch

    with zipfile.ZipFile(fetch("ml-latest-small", download=False)) as zf:
        zf.extractall(data_dir)
    monkeypatch.setenv("MFLIB_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MFLIB_CACHE_DIR", str(tmp_path / "cache"))
    assert (data_dir / src.folder / "ratings.csv").is_file()
    from_folder = load_dataset("ml-latest-small", download=False)
    np.testing.assert_array_equal(from_folder.ratings, ml_latest_small.ratings)
    np.testing.assert_array_equal(from_folder.item_ids, ml_latest_small.item_ids)


@pytest.mark.realdata
def test_corrupt_file_reports_expected_checksum(tmp_path, monkeypatch, netflix_split):
    from mflib.data.datasets import fetch

    good = fetch("netflix", download=False)
    bad = tmp_path / "cuhk-stat3009-netflix"
    shutil.copytree(good, bad)
    with open(bad / "test.csv", "a") as fh:
        fh.write("1,2,3,2005-01-01\n")
    monkeypatch.setenv("MFLIB_DATA_DIR", str(tmp_path))
    with pytest.raises(ChecksumError, match=get_dataset("netflix").files["test.csv"]):
        load_dataset("netflix", download=False)


def test_missing_dataset_error_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MFLIB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MFLIB_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("ml-1m", download=False)
    msg = str(err.value)
    assert "ml-1m.zip" in msg and REGISTRY["ml-1m"].archive_sha256 in msg
    assert str(tmp_path / "data") in msg and "MFLIB_DATA_DIR" in msg


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(KeyError, match="ml-100k"):
        load_dataset("ml-2m")


# ---------------------------------------------------------------------- built archives
def _zip(path, folder, files: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(folder + "/", b"")
        for name, content in files.items():
            zf.writestr(f"{folder}/{name}", content)


ML1M_RATINGS = b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"
ML1M_MOVIES = ("1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
               "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
               "3::Caf\xe9 Society (1995)::Drama\n").encode("latin-1")


def test_ml1m_parser_on_a_built_archive(tmp_path, monkeypatch):
    _zip(tmp_path / "ml-1m.zip", "ml-1m",
         {"ratings.dat": ML1M_RATINGS, "movies.dat": ML1M_MOVIES,
          "users.dat": b"1::F::1::10::48067\n"})
    monkeypatch.setenv("MFLIB_DATA_DIR", str(tmp_path))
    with pytest.raises(ChecksumError):  # a built archive is not the published one
        load_dataset("ml-1m", download=False)
    rm = load_dataset("ml-1m", download=False, verify=False)
    assert (rm.nnz, rm.n_users, rm.n_items) == (3, 2, 2)
    np.testing.assert_array_equal(rm.ratings, [5, 3, 4])
    np.testing.assert_array_equal(rm.timestamps, [978300760, 978302109, 978298413])
    assert rm.item_info.loc[3, "title"] == "Café Society (1995)"
    assert rm.item_info.loc[661, "genres"] == "Animation|Children's|Musical"


def test_ml10m_parser_reads_half_stars_and_tags(tmp_path, monkeypatch):
    ratings = b"1::122::5::838985046\n1::185::4.5::838983525\n7::122::0.5::1049764000\n"
    movies = b"122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action|Crime|Thriller\n"
    tags = b"15::4973::excellent!::1215184630\n20::1747::politics::1188263867\n"
    _zip(tmp_path / "ml-10m.zip", "ml-10M100K",
         {"ratings.dat": ratings, "movies.dat": movies, "tags.dat": tags})
    monkeypatch.setenv("MFLIB_DATA_DIR", str(tmp_path))
    rm = load_dataset("ml-10m", download=False, verify=False)
    np.testing.assert_array_equal(rm.ratings, [5, 4.5, 0.5])
    assert list(rm.tags["tag"]) == ["excellent!", "politics"]
    assert rm.item_info.loc[185, "title"] == "Net, The (1995)"


def test_parser_error_names_the_file(tmp_path, monkeypatch):
    _zip(tmp_path / "ml-1m.zip", "ml-1m",
         {"ratings.dat": b"1::1193::not-a-number::978300760\n", "movies.dat": ML1M_MOVIES})
    monkeypatch.setenv("MFLIB_DATA_DIR", str(tmp_path))
    with pytest.raises(DataFileError) as err:
        load_dataset("ml-1m", download=False, verify=False)
    assert (err.value.path, err.value.line, err.value.value) == (
        f"{tmp_path / 'ml-1m.zip'}:ml-1m/ratings.dat", 1, "not-a-number")
    assert "ratings.dat, line 1: rating 'not-a-number' is not a rating of ml-1m" in str(err.value)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty MFLIB_DATA_DIR and cache, so only what a test puts there is found."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("MFLIB_DATA_DIR", str(root))
    monkeypatch.setenv("MFLIB_CACHE_DIR", str(tmp_path / "cache"))
    return root


ML1M_GOOD = [b"1::1193::5::978300760", b"1::661::3::978302109", b"2::1193::4::978298413"]


@pytest.mark.parametrize(
    "line,bad,message",
    [
        (2, b"1::661::6::978302109", "rating '6' is not a rating of ml-1m, whose ratings are "
                                     "integers 1 to 5"),
        (2, b"1::661::3.5::978302109", "rating '3.5' is not a rating"),
        (2, b"1::661::0::978302109", "rating '0' is not a rating"),
        (3, b"2::1193::4::-5", "timestamp '-5' is out of range"),
        (3, b"2::1193::4::978298413000", "timestamp '978298413000' is out of range"),
        (3, b"2::1193::4::9782984.13", "timestamp '9782984.13' is not an integer"),
        (1, b"0::1193::5::978300760", "user '0' is out of range (must be >= 1)"),
        (2, b"1::6610::3::978302109", "item '6610' is not in movies.dat (3 ids)"),
        (2, b"1::661x::3::978302109", "item '661x' is not an integer"),
        (2, b"", "user an empty field is not an integer"),
        (2, b"1::661::3", "timestamp an empty field is not an integer"),
        (2, b"1::661::3::978302109::7", "cannot be parsed"),
        (1, b"9999999999999999999::1193::5::978300760", "user '9999999999999999999' is too large"),
        (1, b"99999999999999999999::1193::5::978300760",
         "user '99999999999999999999' is not an integer (of at most 18 digits)"),
        (2, "1::\u0663::3::978302109".encode(), "item '\u0663' is not an integer"),
    ],
)
def test_ml1m_parser_names_file_line_and_value(data_dir, line, bad, message):
    rows = list(ML1M_GOOD)
    rows[line - 1] = bad
    _zip(data_dir / "ml-1m.zip", "ml-1m",
         {"ratings.dat": b"\n".join(rows) + b"\n", "movies.dat": ML1M_MOVIES})
    with pytest.raises(DataFileError) as err:
        load_dataset("ml-1m", download=False, verify=False)
    assert err.value.line == line
    assert f"ratings.dat, line {line}: {message}" in str(err.value)
    assert "restore it from ml-1m.zip" in str(err.value)


def test_ml1m_movie_table_is_checked(data_dir):
    movies = ML1M_MOVIES + b"661::Duplicate (1996)::Drama\n"
    _zip(data_dir / "ml-1m.zip", "ml-1m",
         {"ratings.dat": b"\n".join(ML1M_GOOD) + b"\n", "movies.dat": movies})
    with pytest.raises(DataFileError, match=r"movies.dat, line 4: item '661' appears twice "
                                            r"\(first on line 2\)"):
        load_dataset("ml-1m", download=False, verify=False)


def test_trailing_empty_lines_are_fine_but_not_empty_lines_inside(data_dir):
    ratings = b"\n".join(ML1M_GOOD) + b"\n\n\n"
    _zip(data_dir / "ml-1m.zip", "ml-1m", {"ratings.dat": ratings, "movies.dat": ML1M_MOVIES})
    assert load_dataset("ml-1m", download=False, verify=False).nnz == 3
    ratings = ML1M_GOOD[0] + b"\n\n" + b"\n".join(ML1M_GOOD[1:]) + b"\n"
    _zip(data_dir / "ml-1m.zip", "ml-1m", {"ratings.dat": ratings, "movies.dat": ML1M_MOVIES})
    with pytest.raises(DataFileError, match="line 2: user an empty field"):
        load_dataset("ml-1m", download=False, verify=False)


def test_ml10m_scale_is_half_stars(data_dir):
    ratings = b"1::122::5::838985046\n1::185::4.25::838983525\n"
    movies = b"122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action\n"
    _zip(data_dir / "ml-10m.zip", "ml-10M100K", {"ratings.dat": ratings, "movies.dat": movies})
    with pytest.raises(DataFileError, match=r"line 2: rating '4.25' .* 0.5 to 5 in steps of 0.5"):
        load_dataset("ml-10m", download=False, verify=False)


def test_extracted_ml1m_without_checksums_is_checked_by_the_parser(data_dir):
    """Only ml-1m.zip's sha256 is published: a folder is accepted on the parser's checks."""
    assert all(sha is None for sha in REGISTRY["ml-1m"].files.values())
    folder = data_dir / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_bytes(b"\n".join(ML1M_GOOD) + b"\n")
    (folder / "movies.dat").write_bytes(ML1M_MOVIES)
    assert load_dataset("ml-1m", download=False).nnz == 3  # verify=True: nothing to hash
    (folder / "ratings.dat").write_bytes(b"1::1193::5::978300760\n1::661::9::978302109\n")
    with pytest.raises(DataFileError, match="line 2: rating '9'"):
        load_dataset("ml-1m", download=False)


def test_netflix_lines_count_the_header(data_dir):
    folder = data_dir / "cuhk-stat3009-netflix"
    folder.mkdir()
    (folder / "train.csv").write_text("movie_id,user_id,rating,date\n10,1,4,2004-02-10\n")
    (folder / "test.csv").write_text("movie_id,user_id,rating,date\n10,2,3,2004-02-11\n"
                                     "11,2,5,2004-02-30\n")
    with pytest.raises(DataFileError) as err:
        load_dataset("netflix", download=False, verify=False)
    assert err.value.line == 3 and err.value.value == "2004-02-30"
    assert "test.csv, line 3: date '2004-02-30' is not a valid date Y-m-d" in str(err.value)
    with pytest.raises(ChecksumError, match="train.csv does not match the sha256"):
        load_dataset("netflix", download=False)


def test_a_repeated_rating_names_both_lines(data_dir):
    ratings = b"\n".join(ML1M_GOOD + [b"1::661::4::978302999"]) + b"\n"
    _zip(data_dir / "ml-1m.zip", "ml-1m", {"ratings.dat": ratings, "movies.dat": ML1M_MOVIES})
    with pytest.raises(DataFileError, match=r"ratings.dat, line 4: user 1 rates item 661 again "
                                            r"\(first on line 2\)"):
        load_dataset("ml-1m", download=False, verify=False)
    folder = data_dir / "cuhk-stat3009-netflix"
    folder.mkdir()
    (folder / "train.csv").write_text("movie_id,user_id,rating,date\n10,1,4,2004-02-10\n"
                                      "11,1,4,2004-02-10\n")
    (folder / "test.csv").write_text("movie_id,user_id,rating,date\n12,1,4,2004-02-10\n"
                                     "11,1,3,2004-02-11\n")
    with pytest.raises(DataFileError) as err:
        load_predefined_split("netflix", "course", download=False, verify=False)
    assert err.value.path == str(folder / "test.csv") and err.value.line == 3
    assert f"again (first on line 3 of {folder / 'train.csv'})" in str(err.value)


def test_a_file_that_is_not_a_zip_is_reported(data_dir):
    (data_dir / "ml-1m.zip").write_bytes(b"<html>rate limited</html>")
    with pytest.raises(DataError, match="ml-1m.zip is not a readable zip archive"):
        load_dataset("ml-1m", download=False, verify=False)
    with pytest.raises(DataError, match="does not match the published sha256 of ml-1m.zip"):
        load_dataset("ml-1m", download=False)


@pytest.fixture(scope="session")
def ml100k_path(ml100k):
    """The real ml-100k copy (found before a test points MFLIB_DATA_DIR elsewhere)."""
    from mflib.data.datasets import fetch

    return fetch("ml-100k", download=False, verify=False)


@pytest.fixture(scope="session")
def latest_zip(ml_latest_small):
    from mflib.data.datasets import fetch

    path = fetch("ml-latest-small", download=False, verify=False)
    assert zipfile.is_zipfile(path), "these tests rebuild the original archive"
    return path


def _copy_ml100k(source, data_dir):
    folder = data_dir / "ml-100k"
    if source.is_dir():
        shutil.copytree(source, folder)
    else:  # the archive
        with zipfile.ZipFile(source) as zf:
            zf.extractall(data_dir)
    for f in folder.iterdir():
        f.chmod(0o644)
    return folder


def _edit_line(path, line: int, text: bytes):
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = text
    path.write_bytes(b"\n".join(lines))


@pytest.mark.realdata
def test_corrupt_ml100k_split_file_is_refused(data_dir, ml100k_path):
    """One bad line in u1.base (no published checksum) used to load as 20000 unseen pairs."""
    folder = _copy_ml100k(ml100k_path, data_dir)
    _edit_line(folder / "u1.base", 5, b"1\t2x\t3\t876893171")
    with pytest.raises(ChecksumError) as err:
        load_predefined_split("ml-100k", "u1", download=False)
    assert "u1.base does not match" in str(err.value)
    assert REGISTRY["ml-100k"].files["u1.base"] in str(err.value)
    with pytest.raises(DataFileError) as err:
        load_predefined_split("ml-100k", "u1", download=False, verify=False)
    assert (err.value.path, err.value.line, err.value.value) == (
        str(folder / "u1.base"), 5, "2x")
    assert "u1.base, line 5: item '2x' is not an integer" in str(err.value)
    # the whole dataset does not read u1.base, so it still loads, verified
    assert load_dataset("ml-100k", download=False).nnz == 100000


@pytest.mark.realdata
def test_corrupt_ml100k_genre_file_is_refused(data_dir, ml100k_path):
    folder = _copy_ml100k(ml100k_path, data_dir)
    _edit_line(folder / "u.genre", 3, b"Adventure|twenty")
    with pytest.raises(ChecksumError, match="u.genre does not match"):
        load_dataset("ml-100k", download=False)
    with pytest.raises(DataFileError, match="u.genre, line 3: id 'twenty' is not an integer"):
        load_dataset("ml-100k", download=False, verify=False)


@pytest.mark.realdata
def test_ml100k_folder_missing_a_file_names_it(data_dir, ml100k_path):
    folder = _copy_ml100k(ml100k_path, data_dir)
    (folder / "u.item").unlink()
    for download in (False, True):  # never "download failed": the folder is the user's
        with pytest.raises(DataNotFoundError) as err:
            load_dataset("ml-100k", download=download)
        assert "lacks u.item" in str(err.value) and str(folder) in str(err.value)
        assert "download failed" not in str(err.value)
    (folder / "u.item").write_bytes(b"")  # restored as an empty file: a checksum mismatch
    with pytest.raises(ChecksumError, match="u.item does not match"):
        load_dataset("ml-100k", download=False)
    with pytest.raises(DataFileError, match="u.item.*has no data lines"):
        load_dataset("ml-100k", download=False, verify=False)
    _copy_ml100k(ml100k_path, data_dir / "fresh")
    (data_dir / "fresh" / "ml-100k" / "u.item").replace(folder / "u.item")
    (folder / "u2.test").unlink()
    with pytest.raises(DataNotFoundError, match="u2.test is missing"):
        load_predefined_split("ml-100k", "u2", download=False)


def _rezip_latest(source, target, edit=None):
    """A copy of ml-latest-small.zip rebuilt member by member, ``edit`` applied to them."""
    with zipfile.ZipFile(source) as src, \
            zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for name in src.namelist():
            data = src.read(name)
            if edit is not None:
                data = edit(name, data)
            if data is not None:
                out.writestr(name, data)


def _bad_movie_id(name, data):
    if name.endswith("ratings.csv"):
        lines = data.split(b"\n")  # the file has CRLF line ends
        assert lines[2] == b"1,3,4.0,964981247\r"
        lines[2] = b"1,3a,4.0,964981247\r"
        data = b"\n".join(lines)
    return data


@pytest.mark.realdata
def test_bad_movie_id_in_ml_latest_small_is_refused(data_dir, latest_zip, ml_latest_small):
    """It used to turn every item id into a str."""
    _rezip_latest(latest_zip, data_dir / "ml-latest-small.zip", _bad_movie_id)
    with pytest.raises(ChecksumError) as err:
        load_dataset("ml-latest-small", download=False)
    msg = str(err.value)
    assert "ml-latest-small/ratings.csv does not match" in msg
    assert REGISTRY["ml-latest-small"].files["ratings.csv"] in msg
    with pytest.raises(DataFileError) as err:
        load_dataset("ml-latest-small", download=False, verify=False)
    assert (err.value.line, err.value.value) == (3, "3a")
    assert "ratings.csv, line 3: movieId '3a' is not an integer" in str(err.value)


@pytest.mark.realdata
def test_repacked_archive_with_intact_members_loads(data_dir, latest_zip, ml_latest_small):
    from mflib.data.datasets import local_status

    _rezip_latest(latest_zip, data_dir / "ml-latest-small.zip")
    rm = load_dataset("ml-latest-small", download=False)
    np.testing.assert_array_equal(rm.ratings, ml_latest_small.ratings)
    assert local_status("ml-latest-small")[1].startswith("ok (not the published archive")
    _rezip_latest(latest_zip, data_dir / "ml-latest-small.zip",
                  lambda name, data: None if name.endswith("tags.csv") else data)
    with pytest.raises(DataNotFoundError, match="has no member ml-latest-small/tags.csv"):
        load_dataset("ml-latest-small", download=False)


@pytest.mark.realdata
def test_every_recorded_checksum_matches_the_real_files(ml100k, ml_latest_small, netflix_split):
    from mflib.data.datasets import _Source, local_status

    for name in ("ml-100k", "ml-latest-small", "netflix"):
        ds = REGISTRY[name]
        path, status = local_status(name)
        assert status == "ok", (name, status)
        src = _Source(ds, path, verify=True, trusted=False)
        src._trusted = False  # check the members even where the archive matches
        for fname in ds.files:
            src.read(fname)
        assert src._checked == set(ds.files)
    assert len(REGISTRY["ml-100k"].files) == 23


def test_netflix_header_order_is_not_assumed(tmp_path, monkeypatch):
    folder = tmp_path / "cuhk-stat3009-netflix"
    folder.mkdir()
    (folder / "train.csv").write_text("movie_id,user_id,rating,date\n10,1,4,2004-02-10\n")
    (folder / "test.csv").write_text("rating,user_id,movie_id,date\n3,2,10,2004-02-11\n")
    monkeypatch.setenv("MFLIB_DATA_DIR", str(tmp_path))
    rm = load_dataset("netflix", download=False, verify=False)
    assert rm.to_frame()[["user", "item", "rating"]].values.tolist() == [[1, 10, 4], [2, 10, 3]]


# ---------------------------------------------------------------------- splits
@pytest.fixture(scope="module")
def stamped():
    rng = np.random.default_rng(3)
    rm, _ = make_low_rank(80, 60, 3, 0.3, random_state=3)
    return RatingMatrix.from_arrays(rm.user_ids[rm.users], rm.item_ids[rm.items], rm.ratings,
                                    timestamps=rng.integers(0, 10**6, rm.nnz))


def _rows(part):
    return set(zip(part.users.tolist(), part.items.tolist(), strict=True))


def test_random_split_partitions_and_is_seeded(stamped):
    s = random_split(stamped, test_size=0.2, val_size=0.1, random_state=0)
    parts = [_rows(p) for p in s.parts().values()]
    assert sum(map(len, parts)) == stamped.nnz == len(set().union(*parts))
    assert s.test.nnz == round(0.2 * stamped.nnz)
    assert _rows(random_split(stamped, 0.2, 0.1, random_state=0).test) == parts[2]
    assert _rows(random_split(stamped, 0.2, 0.1, random_state=1).test) != parts[2]


def test_user_split_keeps_every_user_in_training(stamped):
    s = user_split(stamped, test_size=0.3, random_state=0)
    counts = stamped.user_counts()
    assert np.all(s.train.user_counts()[counts >= 2] >= 1)
    frac = s.test.user_counts()[counts >= 10] / counts[counts >= 10]
    assert np.all(np.abs(frac - 0.3) <= 0.5 / 10 + 1e-12)


def test_temporal_split_orders_each_user_by_time(stamped):
    s = temporal_split(stamped, test_size=0.15, val_size=0.15)
    for u in range(0, stamped.n_users, 7):
        tr = s.train.timestamps[s.train.users == u]
        va = s.validation.timestamps[s.validation.users == u]
        te = s.test.timestamps[s.test.users == u]
        if len(tr) and len(te):
            assert tr.max() <= te.min()
        if len(va) and len(te):
            assert va.max() <= te.min()
    assert abs(s.train.nnz / stamped.nnz - 0.7) < 0.05


def test_temporal_split_needs_timestamps(small_low_rank):
    with pytest.raises(DataError, match="no timestamps"):
        temporal_split(small_low_rank[0])


def test_kfold_tests_each_rating_once(stamped):
    folds = kfold(stamped, 4, random_state=0)
    tests = [_rows(f.test) for f in folds]
    assert sum(map(len, tests)) == stamped.nnz == len(set().union(*tests))
    assert all(_rows(f.train).isdisjoint(_rows(f.test)) for f in folds)


def test_cold_start_split_holds_out_whole_items(stamped):
    s = cold_start_split(stamped, test_size=0.2, random_state=0)
    assert set(s.test.items.tolist()).isdisjoint(s.train.items.tolist())
    assert s.unseen("test")["unseen_item_pairs"] == s.test.nnz


def test_unseen_counts_match_a_direct_count(stamped):
    s = random_split(stamped, test_size=0.5, random_state=0)
    seen_u, seen_i = set(s.train.users.tolist()), set(s.train.items.tolist())
    direct = sum((u not in seen_u) or (i not in seen_i) for u, i in _rows(s.test))
    assert s.unseen("test")["unseen_pairs"] == direct
    assert s.summary().loc["test", "ratings"] == s.test.nnz


def test_split_arguments_are_checked(stamped):
    with pytest.raises(ValueError, match="unknown split method 'time'"):
        make_split(stamped, "time")
    with pytest.raises(ValueError, match="test_size"):
        random_split(stamped, test_size=1.5)
    with pytest.raises(ValueError, match=r"test_size \+ val_size must be < 1"):
        temporal_split(stamped, test_size=0.5, val_size=0.5)


# ---------------------------------------------------------------------- synthetic
def test_low_rank_generator_plants_its_truth():
    rm, truth = make_low_rank(50, 40, 4, 0.5, noise=0.0, random_state=0)
    assert rm.nnz == 1000
    dense = truth.dense()
    np.testing.assert_allclose(rm.ratings, dense[rm.user_ids[rm.users], rm.item_ids[rm.items]])
    assert np.linalg.matrix_rank(dense - truth.global_mean - truth.user_bias[:, None]
                                 - truth.item_bias[None, :]) == 4
    rm2, _ = make_low_rank(50, 40, 4, 0.5, noise=0.0, random_state=0)
    np.testing.assert_array_equal(rm.ratings, rm2.ratings)


def test_low_rank_generator_sparse_regime_is_exact_in_count():
    rm, _ = make_low_rank(3000, 2000, 2, 0.001, random_state=1)
    assert rm.nnz == 6000
    assert len(set(zip(rm.users.tolist(), rm.items.tolist(), strict=True))) == 6000


def test_rating_matrix_csv_round_trip():
    rm = RatingMatrix.from_arrays([1, 2], [3, 4], [1.5, 2.5])
    buf = io.StringIO()
    rm.to_frame().to_csv(buf, index=False)
    assert buf.getvalue().splitlines()[0] == "user,item,rating"


# ---------------------------------------------------------------------- download path
@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on loopback serving tmp_path/www."""
    import functools
    import http.server
    import threading

    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.mark.realdata
def test_download_verifies_the_checksum(tmp_path, monkeypatch, local_server, ml_latest_small):
    import dataclasses

    from mflib.data.datasets import fetch

    root, url = local_server
    shutil.copy(fetch("ml-latest-small", download=False), root / "ml-latest-small.zip")
    entry = dataclasses.replace(REGISTRY["ml-latest-small"], url=url + "ml-latest-small.zip")
    monkeypatch.setitem(REGISTRY, "ml-latest-small", entry)
    monkeypatch.setenv("MFLIB_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("MFLIB_CACHE_DIR", str(tmp_path / "cache"))
    rm = load_dataset("ml-latest-small")
    assert (tmp_path / "cache" / "ml-latest-small.zip").is_file()
    np.testing.assert_array_equal(rm.ratings, ml_latest_small.ratings)

    (root / "other.zip").write_bytes(b"PK not the archive")
    bad = dataclasses.replace(entry, url=url + "other.zip", archive="other.zip")
    monkeypatch.setitem(REGISTRY, "ml-latest-small", bad)
    with pytest.raises(ChecksumError, match=entry.archive_sha256):
        load_dataset("ml-latest-small")


def test_offline_download_failure_says_what_to_do(tmp_path, monkeypatch):
    import dataclasses

    entry = dataclasses.replace(REGISTRY["ml-1m"], url="http://127.0.0.1:9/ml-1m.zip")
    monkeypatch.setitem(REGISTRY, "ml-1m", entry)
    monkeypatch.setenv("MFLIB_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("MFLIB_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError, match="download failed.*MFLIB_DATA_DIR"):
        load_dataset("ml-1m")
