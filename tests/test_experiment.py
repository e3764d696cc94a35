"""The one experiment API: compare and sweep report the same columns, computed from
the fitted models (checked against separate fits), never from the test set."""

from __future__ import annotations

import numpy as np
import pytest

from mflib import ALS, BiasBaseline, SoftImpute, make_split
from mflib.experiment import COLUMNS, best_row, compare, factors_digest, sweep
from mflib.metrics import rmse


@pytest.fixture(scope="module")
def split(request):
    from mflib.data import make_low_rank

    rm, _ = make_low_rank(60, 50, 3, 0.4, noise=0.05, random_state=0)
    return make_split(rm, "random", test_size=0.2, val_size=0.2, random_state=0)


def test_sweep_rows_match_separate_fits(split):
    template = ALS(n_factors=3, max_iter=8, tol=0.0, random_state=0)
    grid = sweep(template, {"regularization": [0.05, 500.0], "n_factors": [2, 3]}, split,
                 clip=True)
    assert len(grid) == 4 and list(grid.columns[:2]) == ["n_factors", "regularization"]
    for row in grid.itertuples():
        model = ALS(n_factors=row.n_factors, regularization=row.regularization, max_iter=8,
                    tol=0.0, random_state=0).fit(split.train, eval_set=split.validation)
        curve = model.history_["val_rmse"]
        assert row.val_rmse == pytest.approx(
            rmse(split.validation.ratings, model.predict(split.validation, clip=True)))
        assert row.test_rmse == pytest.approx(
            rmse(split.test.ratings, model.predict(split.test, clip=True)))
        assert row.best_iteration == np.argmin(curve) + 1
        assert row.best_val_rmse == pytest.approx(curve.min())
        assert row.n_iter == 8
        assert row.solver_seconds == pytest.approx(row.seconds_per_iteration * 8)
        assert row.fit_seconds >= row.solver_seconds
    assert best_row(grid)["val_rmse"] == grid["val_rmse"].min()


def test_sweep_refuses_an_empty_grid_and_warm_start_without_the_parameter(split):
    with pytest.raises(ValueError, match="param_grid is empty"):
        sweep(ALS(), [], split)
    with pytest.raises(TypeError, match="no warm_start parameter"):
        sweep(ALS(), {"n_factors": [2]}, split, warm_start=True)


def test_warm_sweep_refits_one_model_and_returns_copies(split):
    table, models = sweep(SoftImpute(max_iter=20, random_state=0),
                          {"regularization": [8.0, 4.0]}, split, warm_start=True,
                          record={"rank": lambda m: m.rank_}, return_models=True)
    assert models[0] is not models[1]
    assert [m.regularization for m in models] == [8.0, 4.0]
    assert list(table["rank"]) == [m.rank_ for m in models]


def test_compare_fits_in_place_with_one_vocabulary(split):
    models = {"bias": BiasBaseline(), "als": ALS(n_factors=3, random_state=0)}
    table = compare(models, split, history=("grad_norm",), ranking_k=5, sort_by="test_rmse")
    assert set(table.index) == {"bias", "als"} and table["test_rmse"].is_monotonic_increasing
    known = [c for c in table.columns if c in COLUMNS]
    assert known == [c for c in COLUMNS if c in table.columns]
    for name, model in models.items():
        assert table.loc[name, "test_rmse"] == pytest.approx(
            rmse(split.test.ratings, model.predict(split.test)))
        assert "val_rmse" in model.history_  # fitted with the validation part
    assert "precision@5" in table.columns


def test_compare_needs_training_data_and_one_way_to_give_it(split):
    with pytest.raises(TypeError, match="either split"):
        compare({"b": BiasBaseline()}, split, train=split.train)
    with pytest.raises(TypeError, match="no training ratings"):
        compare({"b": BiasBaseline()})


def test_factors_digest_tells_identical_fits(split):
    a = ALS(n_factors=3, max_iter=3, random_state=0, n_jobs=1).fit(split.train)
    b = ALS(n_factors=3, max_iter=3, random_state=0, n_jobs=-1).fit(split.train)
    c = ALS(n_factors=3, max_iter=3, random_state=1).fit(split.train)
    assert factors_digest(a) == factors_digest(b) != factors_digest(c)
