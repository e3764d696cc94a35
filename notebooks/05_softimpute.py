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
# # 05 · SoftImpute: convex matrix completion
#
# Instead of fixing a rank, SoftImpute penalises the nuclear norm (the sum of singular
# values), a convex surrogate of rank:
#
# $$\min_Z \tfrac12 \|P_\Omega(X - Z)\|_F^2 + \lambda \|Z\|_*,$$
#
# where $X$ holds the ratings after removing the bias baseline $\mu + b_u + c_i$ and
# $P_\Omega$ keeps the observed cells. Each iteration soft-thresholds the singular values
# of $P_\Omega(X - Z) + Z$ by $\lambda$; that matrix is *sparse plus low rank*, so
# `mflib` applies it as an operator and never builds the dense users × items array.
# softImpute-ALS (Hastie et al. 2015) reaches the same solution by alternating ridge
# solves. Here we
#
# 1. walk the $\lambda$ path from $\lambda_{\max}$ (where $Z = 0$) downwards with warm
#    starts and pick $\lambda$ on a validation split (RMSE and rank against $\lambda$);
# 2. watch both solvers converge at the selected $\lambda$, against iterations and seconds;
# 3. compare with ALS at the selected rank and with the bias baseline on the test split.

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
test_size = 0.2
val_size = 0.1
random_state = 0
n_lambdas = 8
lambda_min_ratio = 0.2
max_rank = 100
max_iter = 100
tol = 1e-4
als_max_iter = 15
bias_regularization = 10.0
acceleration = "nesterov"

# %%
from mflib import (
    ALS,
    BiasBaseline,
    SoftImpute,
    SoftImputeALS,
    load_dataset,
    make_split,
    soft_impute_path,
)
from mflib.experiment import attribute, best_row, compare
from mflib.plots import plot_history, plot_lambda_path
from mflib.solvers.soft_impute import lambda_max

# %% [markdown]
# ## Data and split

# %%
ratings = load_dataset(dataset)
split = make_split(ratings, "random", test_size=test_size, val_size=val_size,
                   random_state=random_state)
split.summary()

# %% [markdown]
# ## The λ path
# $\lambda_{\max}$ is the largest singular value of $P_\Omega(X)$: every
# $\lambda \ge \lambda_{\max}$ gives $Z = 0$. The grid falls geometrically from there;
# each fit starts from the previous solution (warm start), so the whole path costs
# little more than one cold fit at the smallest $\lambda$.

# %%
template = SoftImpute(max_rank=max_rank, max_iter=max_iter, tol=tol,
                      acceleration=acceleration, bias_regularization=bias_regularization,
                      random_state=random_state)
top = lambda_max(split.train, "biases", bias_regularization)
path, best = soft_impute_path(split.train, split.validation, estimator=template,
                              n_lambdas=n_lambdas, lambda_min_ratio=lambda_min_ratio)
print(f"lambda_max = {top:.4g}")
path

# %%
axes = plot_lambda_path(path, title=f"{dataset}: SoftImpute λ path (validation picks λ)")

# %%
chosen = best_row(path)
selected_lambda, selected_rank = chosen["regularization"], int(chosen["rank"])
print(f"selected lambda = {selected_lambda:.4g} (rank {selected_rank}, "
      f"validation RMSE {chosen['val_rmse']:.4f})")

# %% [markdown]
# ## Convergence at the selected λ, from a cold start, and the test split
# SoftImpute's objective never rises (each step minimises a majoriser exactly over a
# subspace that contains the current $Z$). Plain SoftImpute is a proximal gradient
# method with step 1: on sparse data it contracts by roughly $1 - $ (fraction observed)
# per step. With `acceleration="nesterov"` each step starts from the extrapolated point
# $Y = Z_k + \theta_k (Z_k - Z_{k-1})$ (FISTA weights; still sparse plus low rank), and a
# step that would raise the objective is replaced by the plain one (a restart), so the
# objective still never rises. softImpute-ALS works at a fixed rank bound; we give it the
# selected rank plus a margin.
#
# ALS at the selected rank minimises the same penalised squared error in factored form,
# $\sum (r - \mu - b_u - c_i - p_u \cdot q_i)^2 + \lambda(\|P\|^2 + \|Q\|^2)$ (with biases
# fitted jointly), which is what the nuclear norm becomes at a fixed rank.

# %%
completion = {
    "SoftImpute": SoftImpute(selected_lambda, max_rank=max_rank, max_iter=max_iter, tol=tol,
                             acceleration=acceleration,
                             bias_regularization=bias_regularization,
                             random_state=random_state),
    "SoftImpute (no acceleration)": SoftImpute(selected_lambda, max_rank=max_rank,
                                               max_iter=max_iter, tol=tol, acceleration=None,
                                               bias_regularization=bias_regularization,
                                               random_state=random_state),
    "SoftImputeALS": SoftImputeALS(selected_lambda, n_factors=min(selected_rank + 5, max_rank),
                                   max_iter=max_iter, tol=tol,
                                   bias_regularization=bias_regularization,
                                   random_state=random_state),
}
models = {
    "bias baseline": BiasBaseline(regularization=bias_regularization),
    **completion,
    f"ALS (rank {selected_rank}, same λ)": ALS(n_factors=max(selected_rank, 1),
                                             regularization=selected_lambda,
                                             max_iter=als_max_iter, random_state=random_state),
}
comparison = compare(models, split, record={"rank": attribute("rank_")})
comparison

# %%
axes = plot_history(completion, metrics=("objective", "rank", "val_rmse"),
                    logy=("objective",), title="against iterations")
axes = plot_history(completion, metrics=("objective", "val_rmse"), x="time",
                    logy=("objective",), title="against solver seconds")

# %% [markdown]
# ## Summary

# %%
# NBVAL_CHECK_OUTPUT
print(f"lambda_max {top:.3f}, selected lambda {selected_lambda:.3f}, rank {selected_rank}")
print(comparison[["val_rmse", "test_rmse"]].round(3).to_string())
