"""Distributed runs under ``mpiexec -n 2`` and ``-n 3`` (MPICH from PyPI), compared with the
single-process results. Each script in ``tests/mpi/`` asserts on every rank; a failing
rank must end every rank (MPI_Abort) rather than hang, which is tested too.

Skipped without mpi4py, except when ``MFLIB_REQUIRE_MPI=1`` (CI), where that fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "mpi"


def _mpiexec() -> str:
    try:
        import mpi4py  # noqa: F401
    except ImportError as exc:
        if os.environ.get("MFLIB_REQUIRE_MPI") == "1":
            pytest.fail(f"MFLIB_REQUIRE_MPI=1 but mpi4py is missing: {exc}")
        pytest.skip(f"mpi4py not installed ({exc}); pip install 'mflib[mpi]'")
    exe = Path(sys.executable).parent / "mpiexec"
    found = str(exe) if exe.exists() else shutil.which("mpiexec")
    if found is None:
        if os.environ.get("MFLIB_REQUIRE_MPI") == "1":
            pytest.fail("MFLIB_REQUIRE_MPI=1 but no mpiexec is on the PATH")
        pytest.skip("no mpiexec")
    return found


def run_mpi(n: int, script: str, *args, timeout: float = 240) -> subprocess.CompletedProcess:
    """``mpiexec -n n python tests/mpi/script args`` with this interpreter."""
    cmd = [_mpiexec(), "-n", str(n), sys.executable, str(HERE / script), *map(str, args)]
    env = {**os.environ, "MFLIB_PROGRESS": "0", "OMP_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _check(result: subprocess.CompletedProcess, n: int) -> None:
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.stdout.count(" ok") >= n, result.stdout


@pytest.mark.parametrize("n", [2, 3])
def test_layout_blocks_and_exchanges(n):
    _check(run_mpi(n, "layout_check.py"), n)


@pytest.mark.realdata
@pytest.mark.parametrize("n,args", [(2, ("ml-100k", "u1")), (3, ("netflix", "course")),
                                    (3, ("ml-latest-small",))])
def test_sharded_reading_equals_the_whole_file(n, args, ml100k, netflix_split, ml_latest_small):
    _check(run_mpi(n, "shard_check.py", *args), n)


@pytest.mark.parametrize("n", [2, 3])
def test_variable_projection_sums_over_ranks(n):
    _check(run_mpi(n, "problem_check.py"), n)


@pytest.mark.parametrize("n", [2, 3])
def test_distributed_als_is_bit_identical_to_one_process(n):
    _check(run_mpi(n, "als_check.py"), n)


@pytest.mark.realdata
def test_sharded_als_fit_equals_the_whole_data_fit(ml100k_u1):
    _check(run_mpi(2, "als_check.py", "ml-100k", "u1"), 2)


def test_a_failing_rank_ends_every_rank_with_its_message():
    result = run_mpi(3, "abort_check.py", timeout=120)  # a hang would time out
    assert result.returncode != 0
    assert "finished, which it must not" not in result.stdout
    assert "rank 1 of 3 failed, ending every rank" in result.stderr
    assert "disk full on rank 1" in result.stderr


@pytest.mark.parametrize("n", [2, 3])
def test_grassmann_family_dane_and_euclidean_gd_sum_over_ranks(n):
    _check(run_mpi(n, "grassmann_check.py"), n)


def _test_rmse(text: str) -> float:
    line = next(ln for ln in text.splitlines() if ln.startswith("test_rmse"))
    return float(line.split()[-1])


@pytest.mark.realdata
@pytest.mark.parametrize("shard", [False, True])
def test_command_line_under_mpiexec(netflix_split, shard, capsys):
    from mflib.cli import main

    argv = ["fit", "--model", "als", "--dataset", "netflix", "--split", "course",
            "--param", "max_iter=3", "--param", "n_jobs=1", "--param", "random_state=0"]
    assert main(argv) == 0
    alone = capsys.readouterr().out
    cmd = [_mpiexec(), "-n", "2", sys.executable, "-m", "mflib", *argv,
           *(["--shard"] if shard else [])]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                            env={**os.environ, "MFLIB_PROGRESS": "0", "NUMBA_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ALS: 3 iteration(s)") == 1  # rank 0 alone prints
    assert "peak memory per rank (MB)" in result.stdout
    assert _test_rmse(result.stdout) == pytest.approx(_test_rmse(alone), rel=1e-6)
