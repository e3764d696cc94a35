"""Shared fixtures. Real-data tests skip without the archives, but fail when
``MFLIB_REQUIRE_DATA=1`` (CI sets it, with ``MFLIB_DATA_DIR=../shared/data``)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MFLIB_PROGRESS", "0")


def _require(name: str):
    from mflib.data import DataNotFoundError, load_dataset

    try:
        return load_dataset(name, download=False)
    except DataNotFoundError as exc:
        if os.environ.get("MFLIB_REQUIRE_DATA") == "1":
            pytest.fail(f"MFLIB_REQUIRE_DATA=1 but {name} is missing: {exc}")
        pytest.skip(f"{name} not available (set MFLIB_DATA_DIR): {exc}")


def require_split(name: str, split: str):
    """A predefined split of a real dataset, with the same skip/fail rule."""
    from mflib.data import DataNotFoundError, load_predefined_split

    try:
        return load_predefined_split(name, split, download=False)
    except DataNotFoundError as exc:
        if os.environ.get("MFLIB_REQUIRE_DATA") == "1":
            pytest.fail(f"MFLIB_REQUIRE_DATA=1 but {name} is missing: {exc}")
        pytest.skip(f"{name} not available (set MFLIB_DATA_DIR): {exc}")


@pytest.fixture(scope="session")
def ml100k():
    return _require("ml-100k")


@pytest.fixture(scope="session")
def ml_latest_small():
    return _require("ml-latest-small")


@pytest.fixture(scope="session")
def netflix_split():
    return require_split("netflix", "course")


@pytest.fixture(scope="session")
def ml100k_u1():
    return require_split("ml-100k", "u1")


@pytest.fixture
def small_low_rank():
    """A 60 x 50 planted rank-3 matrix with biases, 40% observed, noise 0.05."""
    from mflib.data import make_low_rank

    return make_low_rank(60, 50, 3, 0.4, noise=0.05, random_state=0)
