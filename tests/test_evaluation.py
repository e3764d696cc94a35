"""The evaluation of notebook 07 (issue 13): validation parts carved from training data
only, no test rating ever reaching ``fit``, reused fits equal to fresh ones, the fold
summary and paired comparison against direct computations, and the explorer widget."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402
from sklearn.base import clone  # noqa: E402

from mflib import ALS, SGD, BiasBaseline, Blend, make_low_rank, make_split  # noqa: E402
from mflib.base import FactorizationEstimator  # noqa: E402
from mflib.data.ratings import as_rating_matrix  # noqa: E402
from mflib.experiment import (  # noqa: E402
    ReusedFits,
    default_estimators,
    evaluate_families,
    evaluation_families,
    fold_summary,
    history_table,
    paired_comparison,
    validation_part,
)


def _pairs(rm) -> set:
    """The (raw user, raw item) pairs of a RatingMatrix."""
    return set(zip(rm.user_ids[rm.users].tolist(), rm.item_ids[rm.items].tolist(),
                   strict=True))


def _ratings(rm) -> set:
    """The (raw user, raw item, rating) triples of a RatingMatrix: a test rating reaching a
    fit shows up as the same triple (a fit on other data, e.g. the tiny synthetic problem
    a first fit warms its kernels up on, shares raw ids but not ratings)."""
    return set(zip(rm.user_ids[rm.users].tolist(), rm.item_ids[rm.items].tolist(),
                   rm.ratings.tolist(), strict=True))


class FitSpy:
    """Wraps ``fit`` of every estimator class that defines one, recording the ratings of
    every training set and every ``eval_set`` passed to it (raw user, raw item, rating),
    and which split was being evaluated (:meth:`log`, given as the evaluation's ``log``,
    follows its progress)."""

    def __init__(self, monkeypatch):
        self.seen = []  # (split, class name, "X" or "eval_set", set of pairs)
        self.split = None
        classes, stack = set(), [FactorizationEstimator]
        while stack:
            cls = stack.pop()
            classes.add(cls)
            stack.extend(cls.__subclasses__())
        for cls in classes:
            if "fit" in vars(cls):
                monkeypatch.setattr(cls, "fit", self._wrap(cls.fit))

    def _wrap(self, fit):
        spy = self

        def spied(model, X, y=None, **kwargs):
            name = type(model).__name__
            spy.seen.append((spy.split, name, "X", _ratings(as_rating_matrix(X, y))))
            eval_set = kwargs.get("eval_set")
            if eval_set is not None:
                spy.seen.append((spy.split, name, "eval_set", _ratings(
                    as_rating_matrix(*eval_set) if isinstance(eval_set, tuple) else eval_set)))
            return fit(model, X, y, **kwargs)
        return spied

    def log(self, line: str) -> None:
        if line.startswith("[") and "] tuning" in line:
            self.split = line[1:line.index("]")]

    def leaks(self, test, split=None) -> list:
        """The recorded fits (of ``split``, or all) whose data hold a rating of ``test``."""
        held_out = _ratings(test)
        return [(name, what, len(pairs & held_out)) for s, name, what, pairs in self.seen
                if (split is None or s == split) and pairs & held_out]


@pytest.fixture
def two_splits():
    rm, _ = make_low_rank(60, 45, 3, 0.5, noise=0.3, random_state=1)
    return {f"fold{k}": make_split(rm, "random", test_size=0.2, random_state=k)
            for k in range(2)}


def _small_families():
    return {
        "biases": (BiasBaseline(), {"regularization": [1.0, 5.0]}),
        "ALS": (ALS(n_factors=2, max_iter=5, random_state=0), {"regularization": [1.0, 3.0]}),
        "SGD": (SGD(n_factors=2, max_iter=5, random_state=0), {}),
    }


def test_validation_part_is_carved_from_training_data_only(two_splits):
    train = two_splits["fold0"].train
    fit_part, validation = validation_part(train, val_size=0.2, random_state=3)
    assert _pairs(fit_part) | _pairs(validation) == _pairs(train)
    assert not _pairs(fit_part) & _pairs(validation)
    assert validation.nnz == pytest.approx(0.2 * train.nnz, abs=1)
    again = validation_part(train, val_size=0.2, random_state=3)[1]
    assert _pairs(again) == _pairs(validation)


def test_no_test_rating_reaches_fit_in_the_evaluation(two_splits, monkeypatch):
    spy = FitSpy(monkeypatch)
    # (the two folds share ratings: fold1's test pairs are in fold0's training part, so
    # each split's fits are checked against its own test part)
    result = evaluate_families(_small_families(), two_splits, val_size=0.2, ranking_k=5,
                               log=spy.log)
    for name, split in two_splits.items():
        fits = {cls for s, cls, _, _ in spy.seen if s == name}
        assert {"BiasBaseline", "ALS", "SGD", "Blend"} <= fits  # the spy saw every fit
        assert spy.leaks(split.test, name) == []
    # and the spy does catch a leak: a fit with a test part is reported
    spy.split = "leaky"
    ALS(n_factors=2, max_iter=2).fit(two_splits["fold1"].train,
                                     eval_set=two_splits["fold1"].test)
    assert spy.leaks(two_splits["fold1"].test, "leaky") == [("ALS", "eval_set", 270)]
    table = result.table
    assert set(table["model"]) == {"biases", "ALS", "SGD", "blend"}
    assert set(table["split"]) == set(two_splits)
    assert table[["test_rmse", "test_mae", "precision@5", "ndcg@5"]].notna().all().all()


def test_the_evaluation_blend_equals_a_blend_fitted_from_scratch(two_splits):
    families = _small_families()
    result = evaluate_families(families, {"fold0": two_splits["fold0"]}, val_size=0.2,
                               ranking_k=None, random_state=4, log=None)
    tuned = result.tuning["fold0"]
    members = [(name, est.set_params(**tuned[name].best_params))
               for name, (est, _) in families.items()]
    fresh = Blend(members, holdout=0.2, holdout_split="random", random_state=4)
    fresh.fit(two_splits["fold0"].train)
    reused = result.blends["fold0"]
    np.testing.assert_allclose(reused.weights_, fresh.weights_, rtol=1e-12)
    test = two_splits["fold0"].test
    np.testing.assert_allclose(reused.predict(test), fresh.predict(test), rtol=1e-12)
    # the individual rows are the blend's members: the same fitted models
    for name in families:
        np.testing.assert_allclose(result.models["fold0"][name].predict(test),
                                   dict(reused.estimators_)[name].predict(test))


def test_reused_fits_reuse_exactly_the_same_ratings_and_fit_others(two_splits, monkeypatch):
    train = two_splits["fold0"].train
    fitted = ALS(n_factors=2, max_iter=3, random_state=0).fit(train)
    spy = FitSpy(monkeypatch)
    wrapper = ReusedFits(ALS(n_factors=2, max_iter=3, random_state=0), [fitted])
    twin = clone(wrapper)
    assert twin.fit(train).model_ is fitted and not spy.seen  # no fit ran
    other = two_splits["fold1"].train
    assert twin.fit(other).model_ is not fitted and len(spy.seen) == 1
    assert wrapper.fit(other).model_ is twin.model_  # clones share what they fitted
    np.testing.assert_array_equal(twin.predict(other), twin.model_.predict(other))


def test_fold_summary_and_paired_comparison_match_direct_computations():
    rng = np.random.default_rng(0)
    folds = [f"u{k}" for k in range(1, 6)]
    scores = {"a": 0.90 + 0.01 * rng.random(5), "b": 0.92 + 0.01 * rng.random(5),
              "c": 0.91 + 0.01 * rng.random(5)}
    table = pd.DataFrame([{"split": f, "model": m, "test_rmse": s[k], "test_mae": s[k] - 0.2}
                          for m, s in scores.items() for k, f in enumerate(folds)]
                         + [{"split": "other", "model": "a", "test_rmse": 5.0,
                             "test_mae": 5.0}])
    summary = fold_summary(table, splits=folds)
    assert list(summary.index) == ["a", "c", "b"]  # sorted by mean RMSE
    # as load_splits names them: the folds of "data", and one split of another dataset
    named = table.assign(split=np.where(table["split"] == "other", "elsewhere/x",
                                        "data/" + table["split"]))
    pd.testing.assert_frame_equal(fold_summary(named, dataset="data"),
                                  fold_summary(named, splits=["data/" + f for f in folds]))
    assert fold_summary(named, dataset="data").loc["a", "n_splits"] == 5
    for m, s in scores.items():
        assert summary.loc[m, "test_rmse_mean"] == pytest.approx(s.mean())
        assert summary.loc[m, "test_rmse_std"] == pytest.approx(s.std(ddof=1))
        assert summary.loc[m, "n_splits"] == 5
    pairs = paired_comparison(table, splits=folds, top=2)
    assert len(pairs) == 1 and (pairs.loc[0, "model_a"], pairs.loc[0, "model_b"]) == ("a", "c")
    d = scores["a"] - scores["c"]
    assert pairs.loc[0, "mean_difference"] == pytest.approx(d.mean())
    assert pairs.loc[0, "t_pvalue"] == pytest.approx(stats.ttest_rel(scores["a"],
                                                                     scores["c"]).pvalue)
    assert pairs.loc[0, "wilcoxon_pvalue"] == pytest.approx(stats.wilcoxon(d).pvalue)
    assert pairs.loc[0, "a_wins"] == int((d < 0).sum())
    with pytest.raises(KeyError, match="not in the table"):
        paired_comparison(table, models=["a", "zzz"], splits=folds)


def test_history_table_and_default_estimators(two_splits):
    models = default_estimators(iterative_only=True, random_state=0)
    assert "BiasBaseline" in models and "Blend" not in models and "GlobalMean" not in models
    fitted = {"ALS": ALS(n_factors=2, max_iter=4, random_state=0).fit(
        two_splits["fold0"].train, eval_set=two_splits["fold0"].test)}
    long = history_table(fitted)
    assert list(long.columns) == ["model", "iteration", "time", "val_rmse"]
    assert len(long) == 4 and long["time"].is_monotonic_increasing


def test_evaluation_families_cover_the_issue_families():
    quick, full = evaluation_families("quick"), evaluation_families("full")
    assert list(quick) == list(full)
    for name in ("bias baseline", "ALS", "BCD", "Lasso-MF", "SGD", "SVRG", "Grassmann (RGD)",
                 "SoftImpute", "hybrid", "BayesianMF"):
        assert name in full
    for (model, space), (_, quick_space) in zip(full.values(), quick.values(), strict=True):
        assert set(space) <= set(model.get_params())
        assert set(quick_space) <= set(space)
    with pytest.raises(ValueError, match="grid"):
        evaluation_families("slow")


def test_the_explorer_builds_and_redraws_without_a_front_end(two_splits):
    pytest.importorskip("ipywidgets")
    from mflib.widgets import ConvergenceExplorer

    fit_part, validation = validation_part(two_splits["fold0"].train, val_size=0.2)
    solvers = {"ALS": ("ALS", {"n_factors": [1, 2], "regularization": [1.0, 3.0],
                               "max_iter": [3, 6]}),
               "RGD": ("RGD", {"n_factors": [1, 2], "max_iter": [4, 8]})}
    explorer = ConvergenceExplorer(fit_part, validation, solvers=solvers)
    # defaults outside the choices: the middle choice (the upper one of two)
    assert explorer.selection == {"solver": "ALS", "n_factors": 2, "regularization": 3.0,
                                  "max_iter": 6}
    assert explorer.model.n_iter_ <= 6 and explorer.figure is not None
    first = explorer.figure
    explorer.parameter_controls["max_iter"].value = 3  # an observer refits and redraws
    assert explorer.model.max_iter == 3 and explorer.figure is not first
    explorer.solver_control.value = "RGD"
    assert set(explorer.parameter_controls) == {"n_factors", "max_iter"}
    assert type(explorer.model).__name__ == "RGD" and "iterations" in explorer.status.value
    explorer.show()  # outside a notebook: displays the reprs, no front end needed
    with pytest.raises(ValueError, match="unknown solver"):
        ConvergenceExplorer(fit_part, validation, solvers=solvers, solver="nope")
