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
# # 02 · Alternating methods: ALS, biased BCD, Lasso-MF, parallel ALS
#
# Every method here fixes all parameters but one block and minimises over that block
# *exactly*, so the objective can only go down:
#
# * **ALS** ($\hat r_{ui} = p_u^\top q_i$, or $\mu + b_u + c_i + p_u^\top q_i$ with biases):
#   with $Q$ fixed every user's $p_u$ is a ridge regression; the course convention
#   $\frac{1}{|\Omega|}\sum_\Omega (r_{ui}-\hat r_{ui})^2 + \lambda(\|P\|^2+\|Q\|^2)$ puts
#   $\lambda|\Omega|$ in each row's normal equations.
# * **Biased BCD** ($\hat r_{ui} = \mu_u + \rho_i + p_u^\top q_i$): exact updates of
#   $\mu$, $\rho$ (means of residuals), then $P$ and $Q$ (ridge), in turn.
# * **Lasso-MF**: $L_1$-penalised factors; each row is a Lasso problem, solved for all rows
#   at once by coordinate descent with soft-thresholding. The course code fits one
#   scikit-learn `Lasso(alpha=λ)` per row (row $u$ solves
#   $\frac{1}{2n_u}\|r_u - Q_{J}p\|^2 + \lambda\|p\|_1$): `regularization_scale="sklearn"`
#   reproduces it. Under the SPEC's global formula
#   $\frac{1}{|\Omega|}\sum(\cdot)^2 + \lambda\sum\|p_u\|_1$ (`"course"`) the same λ puts a
#   threshold of $\lambda|\Omega|/2$ on every coordinate and all factors become zero
#   (shown below).
#
# Part 1 reproduces the course settings on the Netflix subset (RMSE and the prediction
# for test record 8560); part 2 fits biased ALS on MovieLens with a small
# regularisation sweep chosen on a validation split.

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
course_dataset = "netflix"
course_split = "course"
test_record = 8560
lasso_regularization = 0.1
lasso_n_factors = 3
lasso_sparse_regularization = 0.3
lasso_sparse_n_factors = 5
bcd_regularization = 0.1
bcd_n_factors = 3
als_course_regularization = 0.0001
als_course_n_factors = 5
max_iter = 20
n_jobs_values = [1, -1]
movielens_dataset = "ml-100k"
split_method = "random"
test_size = 0.2
val_size = 0.1
random_state = 0
als_n_factors = 20
als_regularization_scale = "weighted"
als_bias_regularization = 0.01
als_regularizations = [0.05, 0.08, 0.12, 0.2]

# %%
import matplotlib.pyplot as plt

from mflib import ALS, BiasedBCD, LassoMF, load_dataset, load_predefined_split, make_split
from mflib.experiment import attribute, best_fit, compare, factors_digest, prediction_of, sweep
from mflib.plots import plot_history

# %% [markdown]
# ## Part 1 · The course settings on the Netflix subset

# %%
course = load_predefined_split(course_dataset, course_split)
record = course.test.take([test_record])
course.train, course.test, record.to_frame()

# %%
common = dict(max_iter=max_iter, random_state=random_state)
course_models = {
    f"LassoMF λ={lasso_regularization:g} K={lasso_n_factors}": LassoMF(
        regularization=lasso_regularization, n_factors=lasso_n_factors,
        regularization_scale="sklearn", center="none", **common),
    f"LassoMF λ={lasso_sparse_regularization:g} K={lasso_sparse_n_factors}": LassoMF(
        regularization=lasso_sparse_regularization, n_factors=lasso_sparse_n_factors,
        regularization_scale="sklearn", center="none", **common),
    f"LassoMF λ={lasso_regularization:g} K={lasso_n_factors} (SPEC formula)": LassoMF(
        regularization=lasso_regularization, n_factors=lasso_n_factors,
        regularization_scale="course", center="none", **common),
    f"BiasedBCD λ={bcd_regularization:g} K={bcd_n_factors}": BiasedBCD(
        regularization=bcd_regularization, n_factors=bcd_n_factors, bias_regularization=0.0,
        **common),
    f"ALS λ={als_course_regularization:g} K={als_course_n_factors}": ALS(
        regularization=als_course_regularization, n_factors=als_course_n_factors,
        regularization_scale="course", use_bias=False, **common),
}
course_table = compare(course_models, course, fit_eval_set=False, record={
    f"prediction_record_{test_record}": prediction_of(record),
    "zero_fraction_P": attribute("user_zero_fraction_"),
    "zero_fraction_Q": attribute("item_zero_fraction_"),
})
course_table

# %% [markdown]
# The objective of each exact block method against its iterations (log scale): it never
# rises. (Each model's objective is in its own convention, so compare shapes, not levels.)

# %%
plot_history(course_models, ("objective", "train_rmse"), logy=("objective",))
plt.show()

# %% [markdown]
# ### Parallel ALS
# Each row's ridge problem is independent, so running the rows on more threads changes
# the time per iteration but not one bit of the factors: the digest of the factor arrays
# is the same for every `n_jobs`. (At 51k ratings and rank 5 an iteration takes
# milliseconds and thread start-up can outweigh the gain; the speed-up on large data is
# measured by `python -m benchmarks.bench_als`.)

# %%
als_course = ALS(regularization=als_course_regularization, n_factors=als_course_n_factors,
                 regularization_scale="course", use_bias=False, **common)
timing = sweep(als_course, {"n_jobs": n_jobs_values}, course, fit_eval_set=False,
               record={"factors_digest": factors_digest})
timing[["n_jobs", "seconds_per_iteration", "test_rmse", "factors_digest"]]

# %% [markdown]
# ## Part 2 · Biased ALS on MovieLens
# A validation split carved from training picks the regularisation; the test split is
# scored once per value only to show how well validation tracks it.

# %%
ratings = load_dataset(movielens_dataset)
split = make_split(ratings, split_method, test_size=test_size, val_size=val_size,
                   random_state=random_state)
split.summary()

# %%
biased_als = ALS(n_factors=als_n_factors, regularization_scale=als_regularization_scale,
                 bias_regularization=als_bias_regularization, **common)
als_sweep, als_models = sweep(biased_als, {"regularization": als_regularizations}, split,
                              return_models=True)
als_sweep

# %%
best, best_model = best_fit(als_sweep, als_models)
plot_history({f"ALS λ={best['regularization']:g}": best_model},
             ("objective", "train_rmse", "val_rmse"))
plt.show()

# %% [markdown]
# ## Summary
# Test RMSE of every course model on the Netflix test set with its prediction for the
# chosen test record, and biased ALS on the MovieLens test split at the
# validation-chosen λ.

# %%
# NBVAL_CHECK_OUTPUT
print(course_table[["test_rmse", f"prediction_record_{test_record}"]].round(3).to_string())
print(f"biased ALS on {movielens_dataset}: λ={best['regularization']:g}, "
      f"validation RMSE {best['val_rmse']:.3f}, test RMSE {best['test_rmse']:.3f}")
