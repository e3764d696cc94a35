"""BayesianMF and SVD++: ml-100k u1 accuracy chosen on validation, a blend, and the
cost of one Gibbs sweep beside one ALS epoch.

    python -m benchmarks.bench_bayes                  (both parts; needs MFLIB_DATA_DIR)
    python -m benchmarks.bench_bayes --part u1        (accuracy and blend only)
    python -m benchmarks.bench_bayes --part speed     (10M synthetic ratings only)

Accuracy (``--part u1``). A validation split is carved from u1.base (10% of it, random,
``--seed``; the same split ``bench_als --tune-only`` uses); u1.test is not read until every
choice is made. BayesianMF: rank x observation precision (``--bmf-ranks``,
``--bmf-precisions``; "sample" draws it), each chain run for ``--bmf-sweeps`` sweeps
after ``--burn-in``, and the number of sweeps chosen too (the sweep of lowest running-
average validation RMSE). SVD++: rank x regularisation x learning rate, the epoch of
lowest validation RMSE. The chosen settings are refitted on all of u1.base and scored
once on u1.test, predictions clipped to [1, 5] (fixed beforehand; unclipped beside).

Blend. ``mflib.solvers.blend.Blend`` has not landed, so this is a simple stand-in,
labelled as such: non-negative least squares (``scipy.optimize.nnls``) of
``r - mu`` on the models' ``prediction - mu`` over the validation ratings, with every
model fitted on the rest of u1.base; the weights are then applied to the same models
refitted on all of u1.base and scored on u1.test. Blended: BayesianMF, SVD++ and biased
ALS with the settings ``bench_als --tune-only`` chose on this validation split (rank 10,
"sum", lambda 12, bias lambda 5, 31 epochs), to say whether SVD++ adds to a blend.

Speed (``--part speed``). The 10M-rating synthetic matrix of ``bench_als`` (70k x 10k,
planted rank 10, 10M training ratings); at ``--rank`` (32) ALS with biases (Cholesky,
the same (k+1)-dimensional row systems) and BayesianMF (sweeps after the first, which
keep a sample and update the running averages: the costlier kind). Runs alternate
``--repeats`` times; each figure is the median solver seconds per epoch / sweep
(evaluation excluded) and the ratio is taken within each repeat. Both do the same row
work (gather, Gram matrix by BLAS, one Cholesky per row, residuals); the sweep adds the
hyperparameter draws, the standard normals and one triangular solve per row, but forms
its targets ``r - mu - bias`` while gathering, where ALS builds them in separate passes
over the ratings first (what keeps the sweep close to the epoch).

Measured (2 shared cores, load average 5-9, default arguments, about 12 min):
BayesianMF chosen: rank 20, precision 1.5, 342 sweeps (burn-in 20), validation 0.8964,
u1.test 0.9038 clipped / 0.9041 unclipped (target <= 0.910). SVD++ chosen: rank 100,
lambda 0.1, eta 0.01, 43 epochs, validation 0.9143, u1.test 0.9212 (ALS: 0.9228). NNLS
weights on validation: BayesianMF + SVD++ 0.906 / 0.123, u1.test 0.9034; BayesianMF +
ALS 0.9041; BayesianMF + ALS + SVD++ 0.9038: SVD++ adds 0.0003-0.0004 to a blend, no more.
Rank 32 on 10M ratings: Gibbs sweep 5.87 s vs ALS epoch 5.35 s (medians), ratio per
repeat 1.09 / 1.14 / 1.21 (target <= 1.5); an earlier run at load 6-8 gave 0.67-0.83.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before numba starts its threads

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import nnls
from sklearn.base import clone

from benchmarks.common import machine_line, print_table
from mflib import ALS, BayesianMF, SVDpp, load_predefined_split, make_low_rank, make_split
from mflib.experiment import sweep
from mflib.metrics import rmse

#: biased ALS as ``bench_als --tune-only`` chose it on the same validation split
ALS_CHOSEN = {"regularization_scale": "sum", "n_factors": 10, "regularization": 12.0,
              "bias_regularization": 5.0, "max_iter": 31, "tol": 0.0}


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _precision(text: str):
    return text if text == "sample" else float(text)


def tune(template, grid, inner, keys, min_iter=1) -> tuple[pd.DataFrame, dict]:
    """The validation grid (best first) and the chosen parameters, epochs included."""
    t0 = time.perf_counter()
    table = sweep(template, grid, train=inner.train, validation=inner.test, clip=True)
    table = table.sort_values("best_val_rmse", ignore_index=True)
    print(f"{type(template).__name__}: {len(table)} validation fits in "
          f"{time.perf_counter() - t0:.0f} s | {_load()}", flush=True)
    best = table.iloc[0]
    # plain Python values (the table holds NumPy scalars), e.g. for printing
    chosen = {key: best[key].item() if hasattr(best[key], "item") else best[key]
              for key in keys}
    chosen["max_iter"] = max(int(best["best_iteration"]), min_iter)
    return table, chosen


def part_u1(args) -> list[pd.DataFrame]:
    u1 = load_predefined_split("ml-100k", "u1")
    inner = make_split(u1.train, "random", test_size=0.1, random_state=args.seed)
    bmf_template = BayesianMF(max_iter=args.bmf_sweeps, burn_in=args.burn_in,
                              random_state=args.seed)
    bmf_grid, bmf_params = tune(
        bmf_template, {"n_factors": args.bmf_ranks,
                       "precision": [_precision(p) for p in args.bmf_precisions]},
        inner, ["n_factors", "precision"], min_iter=args.burn_in + 1)
    svd_template = SVDpp(max_iter=args.svdpp_epochs, random_state=args.seed)
    svd_grid, svd_params = tune(
        svd_template, {"n_factors": args.svdpp_ranks, "regularization": args.svdpp_regs,
                       "learning_rate": args.svdpp_rates},
        inner, ["n_factors", "regularization", "learning_rate"])
    models = {
        "BayesianMF": clone(bmf_template).set_params(**bmf_params),
        "SVD++": clone(svd_template).set_params(**svd_params),
        "ALS (bench_als choice)": ALS(random_state=args.seed, **ALS_CHOSEN),
    }
    settings = dict(zip(models, (bmf_params, svd_params, ALS_CHOSEN), strict=True))
    val_pred, test_pred, rows = {}, {}, []
    mu = float(inner.train.ratings.mean())
    for name, model in models.items():
        val_pred[name] = clone(model).fit(inner.train).predict(inner.test)
        t0 = time.perf_counter()
        full = clone(model).fit(u1.train)
        seconds = time.perf_counter() - t0
        test_pred[name] = full.predict(u1.test)
        rows.append({"model": name, "settings": str(settings[name]),
                     "val RMSE": rmse(inner.test.ratings, np.clip(val_pred[name], 1, 5)),
                     "u1.test RMSE (clipped)": rmse(u1.test.ratings,
                                                    np.clip(test_pred[name], 1, 5)),
                     "u1.test RMSE (unclipped)": rmse(u1.test.ratings, test_pred[name]),
                     "fit s (u1.base)": seconds})
        print(rows[-1], flush=True)
    members = [["BayesianMF", "SVD++"], ["BayesianMF", "ALS (bench_als choice)"],
               ["BayesianMF", "ALS (bench_als choice)", "SVD++"]]
    for names in members:
        A = np.column_stack([val_pred[n] - mu for n in names])
        weights, _ = nnls(A, inner.test.ratings - mu)
        blend_val = mu + A @ weights
        blend_test = mu + np.column_stack([test_pred[n] - mu for n in names]) @ weights
        rows.append({"model": "NNLS blend (stand-in for Blend): " + " + ".join(names),
                     "settings": "weights " + ", ".join(f"{w:.3f}" for w in weights),
                     "val RMSE": rmse(inner.test.ratings, np.clip(blend_val, 1, 5)),
                     "u1.test RMSE (clipped)": rmse(u1.test.ratings, np.clip(blend_test, 1, 5)),
                     "u1.test RMSE (unclipped)": rmse(u1.test.ratings, blend_test),
                     "fit s (u1.base)": np.nan})
    show = ["n_factors", "precision", "regularization", "learning_rate", "best_val_rmse",
            "best_iteration", "seconds_per_iteration"]
    return [
        print_table(bmf_grid[[c for c in show if c in bmf_grid]].head(args.show),
                    "BayesianMF: validation grid on 10% of u1.base (best first)"),
        print_table(svd_grid[[c for c in show if c in svd_grid]].head(args.show),
                    "SVD++: validation grid on 10% of u1.base (best first)"),
        print_table(pd.DataFrame(rows), "Chosen on validation, refitted on u1.base, scored "
                    "on u1.test (blend val RMSE is in-sample: the weights are fitted there)"),
    ]


def part_speed(args) -> list[pd.DataFrame]:
    t0 = time.perf_counter()
    # the matrix of bench_als: 10M training ratings after a 10% test split
    rm, _ = make_low_rank(70_000, 10_000, 10, 10_000_000 / 0.9 / 7e8, noise=0.5,
                          global_mean=0.0, bias_scale=0.0, factor_scale=2.0,
                          random_state=args.seed)
    train = make_split(rm, "random", test_size=0.1, random_state=args.seed).train
    print(f"synthetic data: {train.nnz} training ratings in {time.perf_counter() - t0:.1f} s",
          flush=True)
    warm, _ = make_low_rank(50, 40, 2, 0.3, random_state=0)  # compile before timing
    ALS(n_factors=2, max_iter=1).fit(warm)
    BayesianMF(n_factors=2, max_iter=2, burn_in=1).fit(warm)
    rows = []
    k, n = args.rank, args.iters
    for rep in range(args.repeats):
        before = _load()
        als = ALS(n_factors=k, max_iter=n, tol=0.0, random_state=rep).fit(train)
        bmf = BayesianMF(n_factors=k, max_iter=n + 1, burn_in=1, random_state=rep).fit(train)
        als_epoch = float(np.median(np.diff(np.r_[0.0, als.history_["time"]])))
        sweeps = np.diff(np.r_[0.0, bmf.history_["time"]])[1:]  # the sweeps that keep samples
        bmf_sweep = float(np.median(sweeps))
        rows.append({"repeat": rep + 1, "rank": k, "ALS epoch s (median)": als_epoch,
                     "Gibbs sweep s (median)": bmf_sweep, "sweep / epoch": bmf_sweep / als_epoch,
                     "ALS train RMSE": als.history_["train_rmse"][-1],
                     "BMF train RMSE": bmf.history_["train_rmse"][-1],
                     "load before": before, "load after": _load()})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    summary = {"repeat": "median", "rank": k}
    for col in ("ALS epoch s (median)", "Gibbs sweep s (median)", "sweep / epoch"):
        summary[col] = float(table[col].median())
    table = pd.concat([table, pd.DataFrame([summary])], ignore_index=True)
    return [print_table(table, f"One Gibbs sweep vs one ALS epoch, rank {k}, "
                        f"{train.nnz} ratings (target: sweep / epoch <= 1.5)")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["all", "u1", "speed"], default="all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bmf-ranks", type=int, nargs="+", default=[10, 20, 40])
    ap.add_argument("--bmf-precisions", nargs="+", default=["sample", "1.25", "1.5", "2.0"],
                    help="observation precisions to try ('sample' draws it)")
    ap.add_argument("--bmf-sweeps", type=int, default=500)
    ap.add_argument("--burn-in", type=int, default=20)
    ap.add_argument("--svdpp-ranks", type=int, nargs="+", default=[20, 50, 100])
    ap.add_argument("--svdpp-regs", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    ap.add_argument("--svdpp-rates", type=float, nargs="+", default=[0.005, 0.01])
    ap.add_argument("--svdpp-epochs", type=int, default=60)
    ap.add_argument("--rank", type=int, default=32, help="rank of the speed part")
    ap.add_argument("--iters", type=int, default=3, help="ALS epochs / timed sweeps per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--show", type=int, default=8, help="grid rows printed")
    ap.add_argument("--out", default="benchmarks/results/bench_bayes.md",
                    help="markdown results ('' writes none)")
    args = ap.parse_args(argv)
    print(machine_line(), "|", _load(), flush=True)
    sections = []
    if args.part in ("all", "u1"):
        sections += part_u1(args)
    if args.part in ("all", "speed"):
        sections += part_speed(args)
    print(machine_line(), "|", _load(), "(after)", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        text = [machine_line()] + [df.to_markdown(index=False, floatfmt=".4g")
                                   for df in sections]
        Path(args.out).write_text("\n\n".join(text) + "\n")


if __name__ == "__main__":
    main()
