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
from mflib.experiment import compare_models
from mflib.metrics import ranking_metrics


def baselines():
    return {
        "global mean": GlobalMean(),
        "user mean": UserMean(),
        "item mean": ItemMean(),
        "(user + item mean) / 2": UserItemMean(),
        f"biases, λ={bias_regularization:g}": BiasBaseline(regularization=bias_regularization),
    }


# %% [markdown]
# ## Netflix course split (train.csv / test.csv)

# %%
course = load_predefined_split("netflix", "course")
course_models = baselines()
netflix_table = compare_models(course_models, course)
netflix_table

# %% [markdown]
# ### Test record 8560
# Row `record` of `test.csv` (0-based), predicted by each baseline.

# %%
row = course.test.take([record])
print(f"test record {record}: user {row.user_ids[row.users[0]]}, "
      f"movie {row.item_ids[row.items[0]]}, true rating {row.ratings[0]:g}")
prediction_table = pd.Series({name: m.predict(row)[0] for name, m in course_models.items()},
                             name="prediction").to_frame()
prediction_table

# %% [markdown]
# ## MovieLens split

# %%
ratings = load_dataset(movielens_dataset)
split = make_split(ratings, split_method, test_size=test_size, random_state=random_state)
ml_models = {**baselines(), "popularity": Popularity()}
movielens_table = compare_models(ml_models, split)
movielens_table

# %%
rmse_table = pd.DataFrame({"netflix course": netflix_table["rmse"],
                           f"{movielens_dataset} {split_method}": movielens_table["rmse"]},
                          index=list(ml_models))
rmse_table.plot.barh(figsize=(6, 3.5), title="test RMSE of the baselines")
plt.xlim(0.8, 1.2)
plt.show()

# %% [markdown]
# ## Top-k on the whole catalogue
# Ranking quality on MovieLens (relevant = test rating ≥ 4; items rated in training are
# excluded). Popularity is a hard baseline to beat here; the means rank poorly because
# items with one high rating float to the top.

# %%
ranking_table = pd.DataFrame([ranking_metrics(m, split.test, k=k) for m in ml_models.values()],
                             index=list(ml_models))
ranking_table

# %%
print(rmse_table.round(4).to_string())
