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
# # 01 · Baselines
#
# Before any factorisation: how far do means and biases go? We fit the global mean,
# user mean, item mean, their average, the regularised bias baseline
# $\hat r_{ui} = \mu + b_u + c_i$ with
# $\min_{b,c} \sum (r_{ui} - \mu - b_u - c_i)^2 + \lambda(\|b\|^2 + \|c\|^2)$,
# and popularity, on the course Netflix split and on a MovieLens split.
# Unseen users/items are predicted by the documented fallback (`mflib.base`).
#
# The course's own rule for the average of means fills a missing user mean (or item
# mean) with the global training mean before averaging; `UserItemMean(unknown="course")`
# reproduces the homework's number exactly, beside mflib's damped fallback.

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
movielens_dataset = "ml-100k"
split_method = "user"
test_size = 0.2
random_state = 0
bias_regularization = 5.0
record = 8560
k = 10

# %%
import matplotlib.pyplot as plt
import pandas as pd

from mflib import (
    BiasBaseline,
    GlobalMean,
    ItemMean,
    Popularity,
    UserItemMean,
    UserMean,
    load_dataset,
    load_predefined_split,
    make_split,
)
from mflib.experiment import clone_models, compare, predictions

# %% [markdown]
# ## Netflix course split (train.csv / test.csv)

# %%
course = load_predefined_split("netflix", "course")
course_models = {
    "global mean": GlobalMean(),
    "user mean": UserMean(),
    "item mean": ItemMean(),
    "(user + item mean) / 2": UserItemMean(),
    "(user + item mean) / 2, course rule": UserItemMean(unknown="course"),
    f"biases, λ={bias_regularization:g}": BiasBaseline(regularization=bias_regularization),
}
netflix_table = compare(course_models, course)
netflix_table

# %% [markdown]
# ### Test record 8560
# Row `record` of `test.csv` (0-based), predicted by each baseline.

# %%
row = course.test.take([record])
row.to_frame()

# %%
predictions(course_models, row).T.rename(columns={0: "prediction"})

# %% [markdown]
# ## MovieLens split
# The same baselines, refitted on MovieLens, plus popularity (which ranks items by their
# number of ratings). Ranking quality is on the whole catalogue (relevant = test rating
# ≥ 4; items rated in training are excluded). Popularity is a hard baseline to beat
# here; the means rank poorly because items with one high rating float to the top.

# %%
ratings = load_dataset(movielens_dataset)
split = make_split(ratings, split_method, test_size=test_size, random_state=random_state)
ml_models = {**clone_models(course_models), "popularity": Popularity()}
movielens_table = compare(ml_models, split, ranking_k=k)
movielens_table

# %%
test_rmse = pd.concat({"netflix course": netflix_table["test_rmse"],
                       f"{movielens_dataset} {split_method}": movielens_table["test_rmse"]},
                      axis=1)
test_rmse.plot.barh(figsize=(6, 4), xlim=(0.8, 1.2), title="test RMSE of the baselines")
plt.show()

# %% [markdown]
# ## Summary: test RMSE on both splits

# %%
# NBVAL_CHECK_OUTPUT
print(netflix_table[["test_rmse", "test_mae"]].round(4).to_string())
print(movielens_table[["test_rmse", f"precision@{k}", f"ndcg@{k}"]].round(4).to_string())
