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
# # 03 · Stochastic solvers: biased SGD (Funk-SVD) and SVRG
#
# Both fit $\hat r_{ui} = \mu + b_u + c_i + p_u^\top q_i$ ($\mu$ the training mean) by
# minimising the mean per-rating loss
#
# $$f = \frac1N \sum_{(u,i)\in\Omega} \tfrac12 (r_{ui} - \hat r_{ui})^2
#   + \tfrac\lambda2 \left(b_u^2 + c_i^2 + \|p_u\|^2 + \|q_i\|^2\right).$$
#
# * **SGD** steps along the gradient of one rating's loss at a time, in a fresh random
#   order each epoch (the updates of Surprise's `SVD`).
# * **SVRG** takes a snapshot $\tilde\theta$ and its full gradient $g$ each epoch, then
#   makes minibatch steps with $v = \frac1B\sum_{j\in B}(\nabla l_j(\theta) -
#   \nabla l_j(\tilde\theta)) + g$, an unbiased gradient whose variance shrinks near the
#   snapshot. Rows a batch does not touch receive the constant $g$ part lazily.
#
# We compare loss, train RMSE and validation RMSE against epochs and against solver
# seconds, and tabulate a few learning rates of each.

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
test_size = 0.2
val_size = 0.1
random_state = 0
n_factors = 100
regularization = 0.02
max_iter = 20
sgd_learning_rate = 0.005
svrg_learning_rate = 0.01
svrg_batch_size = 100
sgd_learning_rates = [0.002, 0.005, 0.01, 0.02]
svrg_learning_rates = [0.001, 0.005, 0.01, 0.02]

# %%
import matplotlib.pyplot as plt

from mflib import SGD, SVRG, load_dataset, make_split
from mflib.data import first_available
from mflib.experiment import compare, sweep
from mflib.plots import plot_history

# %% [markdown]
# ## Data and split

# %%
ratings = load_dataset(first_available(dataset, fallback_dataset))
split = make_split(ratings, "random", test_size=test_size, val_size=val_size,
                   random_state=random_state)
split.summary()

# %% [markdown]
# ## Fit and evaluate
# SGD with a constant step; SVRG with its step decayed by 0.9 per epoch (the prototype's
# rule), minibatches of `svrg_batch_size` and one pass of $N/B$ steps per epoch.

# %%
common = dict(n_factors=n_factors, regularization=regularization, max_iter=max_iter,
              random_state=random_state)
models = {
    "SGD": SGD(learning_rate=sgd_learning_rate, **common),
    "SVRG": SVRG(learning_rate=svrg_learning_rate, batch_size=svrg_batch_size,
                 schedule="exponential", **common),
}
scores = compare(models, split, history=("grad_norm",))
scores

# %% [markdown]
# ## Convergence: against epochs (top) and solver seconds (bottom)

# %%
metrics = ("objective", "train_rmse", "val_rmse")
fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
plot_history(models, metrics, x="iteration", axes=axes[0])
plot_history(models, metrics, x="time", axes=axes[1])
fig.suptitle(f"SGD vs SVRG on {dataset} (k={n_factors}, λ={regularization:g})")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Learning rates tried
# Best validation RMSE over the epochs, the epoch it occurred at, and the final one
# (a large step overfits sooner: best early, worse at the end). SVRG's `learning_rate`
# is per rating (a step moves a row by $\eta B v$), so it reads on SGD's scale;
# 0.001 is the prototype's value, too small for 20 epochs here.

# %%
sgd_rates = sweep(SGD(**common), {"learning_rate": sgd_learning_rates}, split)
sgd_rates

# %%
svrg_rates = sweep(SVRG(batch_size=svrg_batch_size, schedule="exponential", **common),
                   {"learning_rate": svrg_learning_rates}, split)
svrg_rates

# %% [markdown]
# ## Summary
# Test RMSE of the two fits, and the best validation RMSE each solver reached over its
# learning rates (SVRG's within a few thousandths of SGD's).

# %%
# NBVAL_CHECK_OUTPUT
print(scores[["val_rmse", "best_val_rmse", "test_rmse"]].round(3).to_string())
print(f"best validation RMSE over learning rates: SGD {sgd_rates['best_val_rmse'].min():.3f},"
      f" SVRG {svrg_rates['best_val_rmse'].min():.3f}")
