"""The command line: python -m mflib {data,fit,evaluate,reports,bench}."""

from __future__ import annotations

import pickle
import subprocess
import sys
import zipfile

import pytest

from mflib import cli
from mflib.callbacks import progress_enabled
from mflib.cli import build_parser, main, parse_value


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("error: ") and err.endswith("\n"), err
    assert err.count("\n") == 1, f"not one line:\n{err}"
    return err


def test_data_list_shows_every_dataset(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "status" in out.splitlines()[0]
    for name in ("ml-100k", "ml-1m", "ml-10m", "ml-latest-small", "netflix"):
        assert name in out


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("MFLIB_DATA_DIR", str(root))
    monkeypatch.setenv("MFLIB_CACHE_DIR", str(tmp_path / "cache"))
    return root


def _status_of(out: str, name: str) -> str:
    line = next(row for row in out.splitlines() if row.startswith(name + " "))
    return line[len(name):].strip()


def test_data_list_survives_broken_copies_and_marks_them(data_dir, capsys):
    (data_dir / "ml-1m.zip").write_bytes(b"<html>not a zip</html>")
    with zipfile.ZipFile(data_dir / "ml-10m.zip", "w") as zf:  # lacks movies.dat
        zf.writestr("ml-10M100K/ratings.dat", b"1::122::5::838985046\n")
    (data_dir / "ml-100k").mkdir()
    (data_dir / "ml-100k" / "u.data").write_bytes(b"1\t1\t5\t874965758\n")
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert _status_of(out, "ml-1m").startswith("corrupt: not a readable zip archive")
    assert _status_of(out, "ml-10m").startswith("incomplete: no member movies.dat")
    assert _status_of(out, "ml-100k").startswith("incomplete: missing u.item, u.genre")
    assert _status_of(out, "netflix").startswith("not downloaded")
    # the same copies used by a command: one line naming the problem
    assert main(["data", "info", "ml-1m"]) == 2
    assert "ml-1m.zip is not a readable zip archive" in _one_error_line(capsys)


@pytest.fixture(scope="session")
def latest_zip(ml_latest_small):
    """The real ml-latest-small.zip (found before a test points MFLIB_DATA_DIR elsewhere)."""
    from mflib.data.datasets import fetch

    return fetch("ml-latest-small", download=False, verify=False)


@pytest.mark.realdata
def test_data_list_marks_an_archive_with_a_corrupt_member(latest_zip, data_dir, capsys):
    real = latest_zip
    with zipfile.ZipFile(real) as src, zipfile.ZipFile(data_dir / real.name, "w") as out:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("ratings.csv"):
                data = data.replace(b"\n1,3,4.0,", b"\n1,3,9.0,", 1)
            out.writestr(name, data)
    assert main(["data", "list"]) == 0
    status = _status_of(capsys.readouterr().out, "ml-latest-small")
    assert status.startswith("corrupt: ratings.csv sha256 differs ")
    assert main(["data", "fetch", "ml-latest-small"]) == 2
    assert "ratings.csv does not match the sha256" in _one_error_line(capsys)


@pytest.mark.realdata
def test_fit_prints_test_rmse(netflix_split, capsys, tmp_path):
    model_file = tmp_path / "m.pkl"
    assert main(["fit", "--model", "biasbaseline", "--dataset", "netflix", "--split", "course",
                 "--param", "regularization=5", "--save", str(model_file)]) == 0
    out = capsys.readouterr().out
    assert "rmse" in out and "ndcg@10" in out and "BiasBaseline" in out
    assert main(["evaluate", "--model-file", str(model_file), "--dataset", "netflix",
                 "--split", "course"]) == 0
    assert "rmse" in capsys.readouterr().out


@pytest.mark.realdata
def test_fit_with_a_generated_split(ml100k, capsys):
    assert main(["fit", "--model", "usermean", "--split", "user", "--val-size", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "Split(user: train=" in out and "validation=" in out and "rmse" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["fit", "--model", "nosuchmodel"], "unknown model 'nosuchmodel'"),
        (["fit", "--model", "biasbaseline", "--param", "lam=1"], "no parameter(s) ['lam']"),
        (["data", "info", "ml-2m"], "unknown dataset 'ml-2m'"),
        (["reports", "--profile", "nosuchprofile"], "unknown profile 'nosuchprofile'"),
    ],
)
def test_bad_names_get_a_clear_error(argv, message, capsys):
    assert main(argv) == 2
    assert message in _one_error_line(capsys)


# ---------------------------------------------------------------------- parameter values
@pytest.mark.parametrize(
    "text,value",
    [
        ("1e-3", 0.001), ("1E3", 1000.0), ("-2.5e+2", -250.0), (".5", 0.5), ("20", 20),
        ("010", 10), ("0o10", 8), ("0x1f", 31), ("true", True), ("False", False),
        ("null", None), ("yes", "yes"), ("on", "on"), ("2020-01-01", "2020-01-01"),
        ("1:30", "1:30"), ("1_000", "1_000"), ("als", "als"), ("'1e-3'", "1e-3"),
        ("[1, 2e-3]", [1, 0.002]),
    ],
)
def test_parameter_values_are_yaml_1_2(text, value):
    got = parse_value(text)
    assert got == value and type(got) is type(value)


def test_param_option_reaches_the_estimator_as_a_float():
    args = build_parser().parse_args(
        ["fit", "--model", "sgd", "--param", "learning_rate=1e-3", "--param", "n_factors=8"])
    assert args.param == [("learning_rate", 0.001), ("n_factors", 8)]
    assert isinstance(args.param[0][1], float)


# ---------------------------------------------------------------------- one-line errors
class _Reached(Exception):
    """Raised if a command got as far as loading data (it should have stopped before)."""


@pytest.fixture
def no_data(monkeypatch):
    def refuse(*args, **kwargs):
        raise _Reached("data was loaded: the option was not checked first")

    for name in ("load_dataset", "load_predefined_split", "make_split"):
        monkeypatch.setattr(cli, name, refuse)


@pytest.fixture
def model_files(tmp_path):
    (tmp_path / "empty.pkl").write_bytes(b"")
    (tmp_path / "garbage.pkl").write_bytes(b"\x80\x05not a pickle at all")
    (tmp_path / "text.pkl").write_text("hello\n")
    with open(tmp_path / "other.pkl", "wb") as fh:
        pickle.dump({"format": "something else"}, fh)
    (tmp_path / "folder").mkdir()
    return tmp_path


FIT = ["fit", "--model", "biasbaseline"]


@pytest.mark.parametrize(
    "argv,words",
    [
        (FIT + ["-k", "0"], ["argument -k", "integer >= 1", "'0'"]),
        (FIT + ["-k", "three"], ["argument -k", "'three'"]),
        (["evaluate", "--model-file", "{tmp}/garbage.pkl", "-k", "-1"], ["argument -k", "'-1'"]),
        (FIT + ["--param", "reg=[1,"], ["--param", "parameter 'reg'", "'[1,'", "YAML"]),
        (FIT + ["--param", "=1"], ["--param", "no parameter name"]),
        (FIT + ["--param", "regularization=1", "--param", "regularization=2"],
         ["--param regularization is given twice"]),
        (FIT + ["--save", "{tmp}"], ["--save", "is a directory"]),
        (FIT + ["--save", "{tmp}/no/such/folder/m.pkl"], ["--save", "does not exist"]),
        (FIT + ["--split", "u1", "--test-size", "0.9"],
         ["--test-size does not apply", "predefined split 'u1'"]),
        (FIT + ["--dataset", "netflix", "--split", "course", "--seed", "3", "--val-size", "0.1"],
         ["--val-size and --seed do not apply", "'course'"]),
        (FIT + ["--split", "temporal", "--seed", "3"], ["--seed does not apply", "temporal"]),
        (FIT + ["--split", "u9"], ["unknown split 'u9'", "u1"]),
        (FIT + ["--test-size", "1.5"], ["--test-size", "fraction", "'1.5'"]),
        (FIT + ["--test-size", "0"], ["--test-size must be > 0"]),
        (["evaluate", "--model-file", "{tmp}/folder"], ["folder", "is a directory"]),
        (["evaluate", "--model-file", "{tmp}/nothing.pkl"], ["nothing.pkl", "no such file"]),
        (["evaluate", "--model-file", "{tmp}/empty.pkl"], ["empty.pkl", "is empty"]),
        (["evaluate", "--model-file", "{tmp}/garbage.pkl"], ["garbage.pkl", "cannot be loaded"]),
        (["evaluate", "--model-file", "{tmp}/text.pkl"], ["text.pkl", "cannot be loaded"]),
        (["evaluate", "--model-file", "{tmp}/other.pkl"], ["other.pkl", "cannot be loaded",
                                                           "is a Python pickle"]),
        (["model", "info", "{tmp}/garbage.pkl"], ["garbage.pkl", "is a Python pickle"]),
        (["model", "info", "{tmp}/text.pkl"], ["text.pkl", "not an mflib model file"]),
        (["model", "info", "{tmp}/folder"], ["folder", "is a directory"]),
        (["model", "info", "{tmp}/nothing.npz"], ["nothing.npz", "no such file"]),
        (["nosuchcommand"], ["invalid choice", "'nosuchcommand'"]),
        (["fit"], ["required", "--model"]),
        (["data", "info"], ["needs a dataset name"]),
        (["bench", "nosuchbench"], ["unknown benchmark 'nosuchbench'"]),
        (["reports", "--params-dir", "{tmp}/nothing"], ["--params-dir", "not a folder"]),
    ],
)
def test_every_error_is_one_line_before_any_work(argv, words, model_files, no_data, capsys):
    argv = [a.replace("{tmp}", str(model_files)) for a in argv]
    assert main(argv) != 0
    err = _one_error_line(capsys)
    for word in words:
        assert word.replace("{tmp}", str(model_files)) in err, (word, err)


def test_reports_finds_the_repository_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["reports", "--profile", "nosuchprofile"]) == 2
    err = _one_error_line(capsys)
    assert "params/: " in err and "quick" in err  # the repository's profiles were listed
    (tmp_path / "params" / "p").mkdir(parents=True)
    (tmp_path / "nbs").mkdir()
    assert main(["reports", "--profile", "p", "--params-dir", str(tmp_path / "params"),
                 "--notebooks-dir", str(tmp_path / "nbs"), "--notebooks", "00",
                 "--output-dir", str(tmp_path / "out")]) == 2
    assert f"no notebook in {tmp_path / 'nbs'}/ matches ['00']" in _one_error_line(capsys)


# ---------------------------------------------------------------------- MFLIB_PROGRESS
@pytest.mark.parametrize("value", ["0", "off", "OFF", "False", "no", " No "])
def test_progress_can_be_turned_off_in_any_case(value, monkeypatch):
    monkeypatch.setenv("MFLIB_PROGRESS", value)
    assert progress_enabled(1) is False


@pytest.mark.parametrize("value", ["1", "on", "TRUE", "Yes", ""])
def test_progress_on_values_leave_it_to_verbose(value, monkeypatch):
    monkeypatch.setenv("MFLIB_PROGRESS", value)
    assert progress_enabled(1) is True and progress_enabled(0) is False


@pytest.mark.parametrize("value", ["maybe", "2", "nein"])
def test_progress_refuses_other_values(value, monkeypatch, capsys):
    monkeypatch.setenv("MFLIB_PROGRESS", value)
    with pytest.raises(ValueError, match=f"MFLIB_PROGRESS='{value}' is not understood"):
        progress_enabled(0)
    assert main(["data", "list"]) == 2
    assert f"MFLIB_PROGRESS='{value}'" in _one_error_line(capsys)


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "mflib", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "fit" in out and "reports" in out


# ---------------------------------------------------------------------- saved models
@pytest.fixture
def fake_ml100k(monkeypatch):
    """A small synthetic matrix served as ml-100k (with the provenance load_dataset gives),
    so the model-file commands run without the real archive."""
    import numpy as np

    from mflib.data import make_low_rank

    rm, _ = make_low_rank(60, 40, 3, 0.4, noise=0.3, random_state=0)
    rm.ratings = np.clip(np.round(rm.ratings), 1, 5)
    rm.provenance = {"dataset": "ml-100k", "checksums_verified": True}
    monkeypatch.setattr(cli, "load_dataset", lambda name, **kw: rm)
    return rm


def _fit_and_save(path, capsys, *extra):
    assert main(["fit", "--model", "als", "--param", "n_factors=3", "--param", "max_iter=3",
                 "--param", "random_state=0", "--seed", "0", "--save", str(path), *extra]) == 0
    return capsys.readouterr().out


def test_evaluate_uses_the_models_own_split_and_refuses_another(fake_ml100k, tmp_path, capsys):
    model_file = tmp_path / "als.npz"
    fitted = _fit_and_save(model_file, capsys)
    own_rmse = float(next(line.split()[1] for line in fitted.splitlines()
                          if line.startswith("test_rmse")))
    # no split option: the split recorded in the file, with ranking metrics
    assert main(["evaluate", "--model-file", str(model_file)]) == 0
    out = capsys.readouterr().out
    assert "Split(random: train=" in out and "ndcg@10" in out
    assert f"{own_rmse:.6f}" in out
    assert main(["evaluate", "--model-file", str(model_file), "--seed", "0"]) == 0
    capsys.readouterr()
    for other, words in [(["--seed", "1"], ["random_state=0", "random_state=1"]),
                         (["--test-size", "0.3"], ["test_size=0.2", "test_size=0.3"]),
                         (["--split", "user"], ["random split", "user split"])]:
        assert main(["evaluate", "--model-file", str(model_file), *other]) == 2
        err = _one_error_line(capsys)
        for word in [*words, "--allow-other-split", "--seed 0", "als.npz"]:
            assert word in err, (word, err)
    # an explicit override scores it, says so, and skips what it cannot compute
    assert main(["evaluate", "--model-file", str(model_file), "--seed", "1",
                 "--allow-other-split"]) == 0
    captured = capsys.readouterr()
    assert "warning: the model was fitted on" in captured.err
    assert "no ranking metrics" in captured.err and "ndcg@10" not in captured.out
    other_rmse = float(next(line.split()[1] for line in captured.out.splitlines()
                            if line.startswith("test_rmse")))
    # the other split's test part is mostly the model's training ratings: flattering
    assert other_rmse < own_rmse


def test_include_seen_and_model_info(fake_ml100k, tmp_path, capsys):
    model_file = tmp_path / "full.npz"
    _fit_and_save(model_file, capsys, "--include-seen")
    assert main(["evaluate", "--model-file", str(model_file), "--seed", "1",
                 "--allow-other-split"]) == 0
    assert "ndcg@10" in capsys.readouterr().out  # the file carries its seen items
    assert main(["model", "info", str(model_file)]) == 0
    out = capsys.readouterr().out
    for words in ("a fitted ALS", "id maps: 60 users, 40 items",
                  "fitted on: ml-100k, random split (test_size=0.2, val_size=0.0, "
                  "random_state=0), part train", "included (include_seen=True)"):
        assert words in out, (words, out)


def test_a_crafted_pickle_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("code ran",))

    evil = tmp_path / "model.pkl"
    evil.write_bytes(pickle.dumps(Payload()))
    assert main(["evaluate", "--model-file", str(evil)]) == 2
    assert "is a Python pickle" in _one_error_line(capsys)
    assert main(["model", "info", str(evil)]) == 2
    assert "is a Python pickle" in _one_error_line(capsys)
    assert not marker.exists()


@pytest.mark.realdata
def test_another_seed_would_score_on_training_ratings(ml100k, tmp_path, capsys):
    # issue 16: the model fitted on seed 0 scored on seed 1's test part (mostly its own
    # training ratings) looked far better than on its own test part; a weakly
    # regularised ALS (the default before issue 13) makes the gap plain
    model_file = tmp_path / "als.npz"
    assert main(["fit", "--model", "als", "--param", "random_state=0", "--param",
                 "regularization=0.1", "--save", str(model_file)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model-file", str(model_file), "--seed", "1"]) == 2
    assert "random_state=0" in _one_error_line(capsys)
    scores = {}
    for name, extra in (("own", []), ("other", ["--seed", "1", "--allow-other-split"])):
        assert main(["evaluate", "--model-file", str(model_file), *extra]) == 0
        out = capsys.readouterr().out
        scores[name] = float(next(line.split()[1] for line in out.splitlines()
                                  if line.startswith("test_rmse")))
    assert scores["other"] < scores["own"] - 0.2, scores
