# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all,tags
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Every solver family on the same splits
#
# One protocol for every family of mflib, so that their numbers can be compared:
#
# * **the splits**: ml-100k's five predefined folds `u1`…`u5` (each test part is a fifth
#   of the ratings, the five test parts are disjoint) and the Netflix course split;
# * **the settings**: each family's settings are chosen on a validation part carved from
#   the split's *training* ratings (10% by default); the test part is only predicted,
#   never used to choose, and never passed to `fit` (a test checks this);
# * **the scores**: RMSE and MAE on the test part, and Precision/Recall/NDCG/MAP@10
#   ranking the whole catalogue for every user (items rated in training excluded, a test
#   rating of 4 or more counts as relevant), the fit's seconds and its iterations;
# * **a blend** of all families: non-negative weights fitted on the validation part
#   (members fitted without it), then applied to the members refitted on all training
#   ratings.
#
# Then: mean ± standard deviation over the five folds, a paired comparison of the best
# models across folds, the validation RMSE of every iterative solver against seconds,
# and an explorer to refit one solver with other settings.

# %%
# Colab only (detected, not assumed): install mflib from MFLIB_SOURCE (see the README);
# elsewhere this cell does nothing. mflib downloads and checks the data when loading it.
import os
import subprocess
import sys

if "google.colab" in sys.modules and "MFLIB_SOURCE" not in os.environ:
    raise RuntimeError("In Colab, first run %env MFLIB_SOURCE=git+https://github.com/<you>/"
                       "<your copy of mflib> (a pip requirement for mflib), then this cell")
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    f"mflib[notebooks] @ {os.environ['MFLIB_SOURCE']}"], check=True)

# %% tags=["parameters"]
dataset = "ml-100k"
folds = ["u1", "u2", "u3", "u4", "u5"]
netflix_splits = ["course"]
grid = "quick"
val_size = 0.1
ranking_k = 10
top_models = 3
random_state = 0

# %%
import matplotlib.pyplot as plt
import seaborn as sns

from mflib.experiment import (
    compare,
    default_estimators,
    evaluate_families,
    evaluation_families,
    family_table,
    fold_summary,
    history_table,
    load_splits,
    paired_comparison,
    select_splits,
    validation_part,
)
from mflib.widgets import ConvergenceExplorer

# %% [markdown]
# ## The splits and the families
# `evaluation_families` lists one estimator per family with its default settings and a
# small search space around them (`grid="quick"`: one or two points per family, most
# families fitted at their defaults; `grid="full"`: the grids of
# `benchmarks/bench_evaluation.py`). The defaults themselves were chosen on validation
# parts of u1.base and of the Netflix training set (each estimator's docstring says how).

# %%
splits = load_splits({dataset: folds, "netflix": netflix_splits})
families = evaluation_families(grid, random_state=random_state)
family_table(families)

# %% [markdown]
# ## Tune on validation, fit on training, score on test
# For each split and family: a grid search on the validation part, a fit on all training
# ratings with the chosen settings, the scores on the test part; then the blend. This is
# the slow cell (minutes).

# %%
evaluation = evaluate_families(families, splits, val_size=val_size, ranking_k=ranking_k,
                               random_state=random_state)
table = evaluation.table
table.round(4)

# %% [markdown]
# ## Five folds: mean ± standard deviation
# The folds share most of their training ratings, so their scores are not independent
# draws; the spread says how much one fold's number can be trusted, not a confidence
# interval.

# %%
metrics = ("test_rmse", "test_mae", f"precision@{ranking_k}", f"recall@{ranking_k}",
           f"ndcg@{ranking_k}", f"map@{ranking_k}", "fit_seconds")
summary = fold_summary(table, metrics, dataset=dataset)
summary.round(4)

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
folds_only = select_splits(table, dataset=dataset)
sns.boxplot(data=folds_only, x="test_rmse", y="model", order=summary.index, ax=axes[0])
sns.stripplot(data=folds_only, x="test_rmse", y="model", order=summary.index, color="k",
              size=3, ax=axes[0])
axes[0].set_title(f"{dataset}: test RMSE over the folds")
sns.boxplot(data=folds_only, x=f"ndcg@{ranking_k}", y="model", order=summary.index,
            ax=axes[1])
axes[1].set_title(f"{dataset}: NDCG@{ranking_k} (full catalogue)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Paired comparison of the best models
# Each fold scores every model, so models are compared fold by fold: the mean and spread
# of the per-fold differences, the paired t-test and the Wilcoxon signed-rank test (with
# five folds its two-sided p-value cannot go below 0.0625, so it can only ever say
# "not shown").

# %%
pairs = paired_comparison(table, "test_rmse", top=top_models, dataset=dataset)
pairs.round(4)

# %% [markdown]
# ## The Netflix course split
# Sparser than ml-100k (51k training ratings for 2,000 users and 3,568 movies, 27% of
# test pairs on movies with at most 5 training ratings): the room above the bias
# baseline is smaller.

# %%
netflix = select_splits(table, dataset="netflix").set_index("model")
netflix[["test_rmse", "test_mae", f"ndcg@{ranking_k}", "fit_seconds", "n_iter",
         "params"]].sort_values("test_rmse").round(4)

# %% [markdown]
# ## The blend's weights
# One column per split: the non-negative weight of each family (and the intercept),
# fitted on that split's validation part. Families with weight 0 add nothing the others
# do not already carry.

# %%
weights = evaluation.weights()
fig, ax = plt.subplots(figsize=(1.1 * len(weights.columns) + 3, 5))
sns.heatmap(weights, annot=True, fmt=".2f", cmap="viridis", ax=ax)
ax.set_title("blend weights per split")
plt.show()

# %% [markdown]
# ## RMSE against seconds: every iterative solver
# Every iterative rating estimator of mflib with its default settings, fitted on the
# first fold's training part without its validation part, the validation RMSE recorded
# at each iteration against the solver's own seconds (evaluation excluded).

# %%
fit_part, validation = validation_part(splits[f"{dataset}/{folds[0]}"].train,
                                       val_size=val_size, random_state=random_state)
iterative = default_estimators(iterative_only=True, random_state=random_state,
                               exclude=("BiasBaseline", "DriftBaseline"))
curves = compare(iterative, train=fit_part, validation=validation)
long = history_table(iterative, ("time", "val_rmse"))
fig, ax = plt.subplots(figsize=(10, 5.5))
sns.lineplot(data=long, x="time", y="val_rmse", hue="model", style="model", ax=ax)
ax.set_xscale("log")
ax.set_ylim(top=min(1.05, float(long["val_rmse"].max())))
ax.set_xlabel("solver seconds (log)")
ax.set_ylabel("validation RMSE")
ax.legend(fontsize="x-small", ncol=2)
plt.show()
curves[["val_rmse", "best_val_rmse", "best_iteration", "n_iter", "solver_seconds",
        "stop_reason"]].sort_values("val_rmse").round(4)

# %% [markdown]
# ## Explorer
# Pick a solver and its main parameters: the model is refitted on the same fit part and
# its curves redrawn (in a live notebook). Under papermill and nbval the figure below is
# the default state, drawn once.

# %%
explorer = ConvergenceExplorer(fit_part, validation, random_state=random_state)
explorer.show()

# %% [markdown]
# ## Summary

# %%
# NBVAL_CHECK_OUTPUT
print(f"{dataset} folds {', '.join(folds)}: test RMSE mean (std) per model")
print(summary[["test_rmse_mean", "test_rmse_std"]].round(3).to_string())
print("netflix course split: test RMSE per model")
print(netflix["test_rmse"].sort_values().round(3).to_string())
