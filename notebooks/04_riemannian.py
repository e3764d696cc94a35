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
# # 04 · Riemannian optimisation on the Grassmann manifold
#
# Matrix completion by **variable projection**: centre the ratings by the bias
# baseline, then for an orthonormal item basis $U$ (items × k) eliminate the user
# factors in closed form, $w_u = (U_{I_u}^\top U_{I_u} + \lambda I)^{-1} U_{I_u}^\top \tilde r_u$.
# What remains,
# $f(U) = \frac{1}{2N}\sum_u \big(\|\tilde r_u - U_{I_u} w_u\|^2 + \lambda\|w_u\|^2\big)$,
# depends only on the subspace spanned by $U$ — a function on the Grassmann manifold
# $\mathrm{Gr}(n_\text{items}, k)$. Its Euclidean gradient is $-\frac1N E^\top W$
# (envelope theorem, $E$ the sparse residuals) and the Riemannian gradient is
# $(I - UU^\top)\,G$.
#
# We compare, on the same split and objective: RGD with Armijo backtracking
# (Barzilai-Borwein initial steps), RAGD
# (Zhang & Sra), the variance-reduced R-SVRG / R-SARAH / R-SPIDER, Catalyst with each of
# them as inner solver, DANE with users split across simulated workers, and plain
# Euclidean gradient descent on $(U, W, b, c)$; ALS is the reference. Then the three
# retractions, and a picture of an optimisation path.

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
fallback_dataset = "ml-100k"
split_method = "random"
test_size = 0.2
val_size = 0.1
random_state = 0
n_factors = 10
regularization = 0.49
bias_regularization = 5.0
max_iter = 30
epochs = 6
batch_size = 64
sampling = "count"
catalyst_kappa = 0.01
n_workers = 4
dane_proximity = 0.01
als_regularization = 10.0
retraction_calls = 20

# %%

from mflib import (
    ALS,
    DANE,
    RAGD,
    RGD,
    RSARAH,
    RSPIDER,
    RSVRG,
    Catalyst,
    EuclideanGD,
    load_dataset,
    make_split,
)
from mflib.data import first_available
from mflib.experiment import compare, history_value, sweep
from mflib.plots import plot_history, plot_path
from mflib.solvers.riemannian import Grassmann, PathRecorder, time_retractions
from mflib.validation import check_random_state

# %% [markdown]
# ## Data and split

# %%
ratings = load_dataset(first_available(dataset, fallback_dataset))
split = make_split(ratings, split_method, test_size=test_size,
                   val_size=val_size, random_state=random_state)
split.summary()

# %% [markdown]
# ## Fit every optimiser on the same objective
# Shared settings: rank, $\lambda$, seed, bias-baseline centring. Deterministic methods
# run `max_iter` iterations; the stochastic ones `epochs` epochs (one epoch = one
# snapshot gradient plus about one pass over the users in minibatches, drawn with
# probability proportional to their rating counts). R-SVRG reads its snapshot's
# minibatch gradients from the snapshot's full evaluation (one user solve per sampled
# user and step) and averages its steps by heavy-ball momentum. Catalyst's $\kappa$ is set for
# this objective's scale ($f$ is an average over ratings, so its curvature is small;
# the class default $\kappa_0 = 0.1$ holds the iterates too close to the centres).

# %%
common = dict(n_factors=n_factors, regularization=regularization,
              bias_regularization=bias_regularization, random_state=random_state)
stochastic = dict(common, max_iter=epochs, batch_size=batch_size, sampling=sampling)
catalyst = dict(stochastic, max_iter=epochs // 2, kappa=catalyst_kappa, kappa_cvx=catalyst_kappa)
path = PathRecorder()
deterministic = {
    "RGD": RGD(max_iter=max_iter, callbacks=[path], **common),
    "RAGD": RAGD(max_iter=max_iter, **common),
}
variance_reduced = {
    "R-SVRG": RSVRG(**stochastic),
    "R-SARAH": RSARAH(**stochastic),
    "R-SPIDER": RSPIDER(**stochastic),
}
manifold_models = {
    **deterministic,
    **variance_reduced,
    "Catalyst(SVRG)": Catalyst(inner_solver="svrg", **catalyst),
    "Catalyst(SARAH)": Catalyst(inner_solver="sarah", **catalyst),
    "Catalyst(SPIDER)": Catalyst(inner_solver="spider", **catalyst),
    f"DANE({n_workers} workers)": DANE(n_workers=n_workers, proximity=dane_proximity,
                                       local_steps=3, max_iter=max_iter // 3, **common),
}
models = {
    **manifold_models,
    "Euclidean GD": EuclideanGD(max_iter=3 * max_iter, **common),
    "ALS (reference)": ALS(n_factors=n_factors, regularization=als_regularization,
                           random_state=random_state),
}
summary = compare(models, split, history=("grad_norm",), sort_by="best_val_rmse",
                  record={"user_gradients": history_value("user_gradients")})
summary

# %% [markdown]
# ## Convergence against iterations and against solver seconds
# The objective of Euclidean GD and ALS is a different function (their factors are
# free), so only their validation RMSE is comparable with the manifold methods.

# %%
_ = plot_history(manifold_models, metrics=("objective", "grad_norm"), logy=("grad_norm",))

# %%
_ = plot_history(manifold_models, metrics=("objective", "grad_norm"), x="time",
                 logy=("grad_norm",))

# %% [markdown]
# Against the cost the target counts: user-gradients (per-user ridge solves,
# snapshots and line-search trials included).

# %%
axes = plot_history({**deterministic, **variance_reduced}, metrics=("objective",),
                    x="user_gradients")
_ = axes[0].set_xlabel("user-gradients")

# %%
_ = plot_history(models, metrics=("val_rmse",))
_ = plot_history(models, metrics=("val_rmse",), x="time")

# %% [markdown]
# ## Retractions: time per call, and the objective RGD reaches with each
# On the Grassmann manifold QR and polar give the *same subspace* (both span
# $U + \xi$); the Cayley transform (computed through its rank-2k Woodbury form) is a
# different curve. All agree with the exponential map to first order.

# %%
manifold = Grassmann(split.train.n_items, n_factors)
timing = time_retractions(manifold, check_random_state(random_state), retraction_calls)
timing

# %%
by_retraction = sweep(RGD(max_iter=max_iter, **common), {"retraction": ["qr", "polar", "cayley"]},
                      split)
by_retraction[["retraction", "objective", "val_rmse", "solver_seconds"]]

# %% [markdown]
# ## The optimisation path of RGD, in the plane of its two principal components
# Iterates are aligned to the final one (orthogonal Procrustes), so the picture shows
# subspaces, not their arbitrary bases.

# %%
_ = plot_path(path.points, title="RGD path on Gr(n, k)")

# %% [markdown]
# ## Summary, sorted by best validation RMSE

# %%
# NBVAL_CHECK_OUTPUT
print(summary[["best_val_rmse", "val_rmse"]].round(3).to_string())
