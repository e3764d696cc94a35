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
# # 00 · Data: what we factorise
#
# The rating datasets mflib knows, what one of them looks like (size, sparsity, the
# rating scale, the long tail of activity) and the train / validation / test splits
# used by the later notebooks. Every number below comes from `mflib.data`.
#
# MovieLens may not be redistributed: `load_dataset` reads it from `$MFLIB_DATA_DIR`
# or the cache, or downloads it from GroupLens and checks its sha256.

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
course_dataset = "netflix"
test_size = 0.2
val_size = 0.1
temporal_test_size = 0.15
temporal_val_size = 0.15
cold_item_fraction = 0.1
n_folds = 5
random_state = 0

# %%
import matplotlib.pyplot as plt
import pandas as pd

from mflib.data import (
    list_datasets,
    load_dataset,
    load_predefined_split,
    make_split,
    summarize_splits,
)
from mflib.plots import plot_activity, plot_genres, plot_rating_histogram

# %% [markdown]
# ## The registry

# %%
list_datasets()

# %% [markdown]
# ## One dataset, summarised
# `summary()` counts users and items with at least one rating; density is
# ratings / (users × items).

# %%
ratings = load_dataset(dataset)
course = load_dataset(course_dataset)
summary = pd.concat([ratings.summary(), course.summary()], axis=1)
summary

# %%
plot_rating_histogram(ratings)
plt.show()

# %% [markdown]
# Most users rate few items and a few items collect most ratings: on log-log axes the
# sorted counts fall off steadily. This is why regularisation and popularity baselines
# matter so much.

# %%
plot_activity(ratings)
plt.show()

# %%
plot_genres(ratings)
plt.show()

# %% [markdown]
# ## Splits
# All splits share the parent's id maps and take the same size arguments (`test_size`,
# `val_size`). `unseen_*` counts validation/test pairs whose user or item has no
# training rating: they are kept, and every estimator predicts them by its documented
# fallback. The temporal split keeps each user's oldest ratings for training: the first
# ⌊0.7·n⌋ train, up to ⌊0.85·n⌋ validate, the rest test (the content study's rule).
# A k-fold split is one fold of `n_folds`, chosen by `fold`.

# %%
splits = {
    "random": make_split(ratings, "random", test_size=test_size, val_size=val_size,
                         random_state=random_state),
    "user": make_split(ratings, "user", test_size=test_size, val_size=val_size,
                       random_state=random_state),
    "temporal": make_split(ratings, "temporal", test_size=temporal_test_size,
                           val_size=temporal_val_size),
    "cold_start": make_split(ratings, "cold_start", test_size=cold_item_fraction,
                             val_size=val_size, random_state=random_state),
    "kfold (fold 1)": make_split(ratings, "kfold", n_splits=n_folds, fold=0,
                                 random_state=random_state),
    "course": load_predefined_split(course_dataset, "course"),
}
split_table = summarize_splits(splits)
split_table

# %% [markdown]
# The course split of the Netflix subset is a plain 50/50 random split, so about 2% of
# its test pairs involve a user or a movie that training never saw.

# %%
# NBVAL_CHECK_OUTPUT
print(summary.loc[["users", "items", "ratings"]].to_string())
print(split_table[["ratings", "users", "items", "unseen_pairs"]].to_string())
