"""The command line: python -m mflib {data,fit,evaluate,reports,bench}."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mflib.cli import main


def test_data_list_shows_every_dataset(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("ml-100k", "ml-1m", "ml-10m", "ml-latest-small", "netflix"):
        assert name in out


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
    assert message in capsys.readouterr().err


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "mflib", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "fit" in out and "reports" in out
