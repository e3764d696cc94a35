"""mflib's ALS beside Spark MLlib ALS, and the biased-ALS accuracy target on ml-100k u1.

    python -m benchmarks.bench_als                  (ml-100k u1 + 10M synthetic, ranks 10 64 128)
    python -m benchmarks.bench_als --skip-synthetic (ml-100k only)
    python -m benchmarks.bench_als --tune-only      (only the u1 tuning target)
    python -m benchmarks.bench_als --skip-tune --n-factors 64 --synthetic-spark-ranks 64
                                                    (the issue-11 targets: 10M at rank 64)

Speed. Both libraries fit ``r ~ p_u . q_i`` with the weighted-lambda penalty
``sum (r - p.q)^2 + lambda (sum n_u |p_u|^2 + sum n_i |q_i|^2)`` (Spark's ``regParam``
is this lambda; mflib ``ALS(use_bias=False, regularization_scale="weighted")``), at the
same rank, lambda, iterations and split. Spark runs ``local[2]`` in its own environment
(``benchmarks/.venvs/spark``, built on first use) on the very CSV files mflib fits.
mflib's seconds per epoch is solver time (evaluation excluded) / epochs; Spark's is its
``fit`` time / iterations (Spark has no per-iteration clock, so this includes its job
set-up). mflib's ``fit s/epoch`` column is its whole ``fit`` call / epochs. RMSE is
computed on test pairs whose user and item both occur in training
(Spark's ``coldStartStrategy="drop"``), for both. The synthetic matrix is a pure rank-10
matrix plus noise (no mean or biases: the model both libraries fit), 70k x 10k users and
items, with 10M training ratings after the 10% test split; both run
``--synthetic-max-iter`` (5) iterations on it. Unless ``--skip-skewed``, mflib also fits
a matrix with MovieLens-like skew (:func:`benchmarks.common.skewed_ratings`: lognormal
user activity, items up to ~40k ratings) with biases (``use_bias=True``, the model
Spark lacks) at the same size, ranks and solvers; the table of targets compares its
seconds per epoch with the uniform matrix's.

Accuracy target. Biased ALS is tuned on a validation split carved from u1.base (10% of it,
random): penalty convention ("sum" or "weighted"), rank, lambda, a separate bias lambda and
the number of epochs (see :func:`tune_u1`); the chosen settings are refitted on all of
u1.base and scored once on u1.test.
Measured (2 shared cores, 2026-11-23, default grid of 105 fits, about 5 min): chosen
"sum", rank 10, lambda 12, bias lambda 5, 31 epochs, validation RMSE 0.9122; u1.test RMSE
0.9228 (clipped), 0.9238 (unclipped). The issue's target 0.905 is NOT reached: with
``--tune-diagnostic 105`` (every grid point refitted on u1.base and scored on u1.test, a
diagnostic only) the best u1.test RMSE over the whole grid is 0.9219, so even choosing on
the test set would not reach it with this model (plain biased MF, point estimates).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from benchmarks.common import machine_line, peer_python, print_table, skewed_ratings
from mflib import ALS, load_predefined_split, make_low_rank, make_split
from mflib.experiment import sweep
from mflib.metrics import rmse

SPARK_REQUIREMENTS = ["pyspark==3.5.3", "numpy<2"]  # pyspark.ml imports numpy

SPARK_SCRIPT = r"""
import json, sys, time
from pyspark.sql import SparkSession
from pyspark.ml.recommendation import ALS
from pyspark.ml.evaluation import RegressionEvaluator

cfg = json.loads(sys.argv[1])
spark = (SparkSession.builder.master("local[2]").appName("bench_als")
         .config("spark.driver.memory", cfg["memory"])
         .config("spark.ui.enabled", "false").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
schema = "u INT, i INT, r FLOAT"
train = spark.read.csv(cfg["train"], schema=schema).cache()
test = spark.read.csv(cfg["test"], schema=schema).cache()
train.count(); test.count()
evaluator = RegressionEvaluator(metricName="rmse", labelCol="r", predictionCol="prediction")
for rank in cfg["ranks"]:
    als = ALS(rank=rank, maxIter=cfg["iters"], regParam=cfg["reg"], userCol="u", itemCol="i",
              ratingCol="r", coldStartStrategy="drop", seed=cfg["seed"], nonnegative=False)
    t0 = time.perf_counter()
    model = als.fit(train)
    model.userFactors.count(); model.itemFactors.count()  # force the lazy work
    seconds = time.perf_counter() - t0
    score = evaluator.evaluate(model.transform(test))
    print(json.dumps({"rank": rank, "fit_seconds": seconds, "rmse": score}), flush=True)
spark.stop()
"""


def write_csv(rm, path: Path) -> None:
    """Inner (user, item) indices and ratings; both libraries read the same file."""
    pd.DataFrame({"u": rm.users, "i": rm.items, "r": rm.ratings}).to_csv(
        path, header=False, index=False, float_format="%.6g")


def run_spark(train, test, ranks, args, tmp: Path, tag: str) -> dict[int, dict]:
    py = peer_python("spark", SPARK_REQUIREMENTS)
    paths = {part: tmp / f"{tag.replace(' ', '_')}_{part}.csv" for part in ("train", "test")}
    write_csv(train, paths["train"])
    write_csv(test, paths["test"])
    cfg = {"train": str(paths["train"]), "test": str(paths["test"]), "ranks": list(ranks),
           "iters": args.max_iter, "reg": args.regularization, "seed": args.seed,
           "memory": args.spark_memory}
    rows = {}
    with subprocess.Popen([str(py), "-c", SPARK_SCRIPT, json.dumps(cfg)], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        for line in proc.stdout:  # one JSON line per rank, shown as soon as it is done
            if line.startswith("{"):
                row = json.loads(line)
                rows[row["rank"]] = row
                print("spark", tag, row, flush=True)
        err = proc.stderr.read()
    if proc.returncode != 0:
        raise RuntimeError(f"Spark ALS failed (exit {proc.returncode}):\n{err[-3000:]}")
    return rows


def known_pairs(train, test):
    """The test ratings whose user and item occur in training (what Spark scores)."""
    seen_u = train.user_counts() > 0
    seen_i = train.item_counts() > 0
    return test.take(seen_u[test.users] & seen_i[test.items])


def run_mflib(train, test, rank, args, solver="cholesky", use_bias=False) -> dict:
    model = ALS(n_factors=rank, regularization=args.regularization,
                regularization_scale="weighted", use_bias=use_bias, max_iter=args.max_iter,
                tol=0.0, solver=solver, cg_steps=args.cg_steps, random_state=args.seed,
                verbose=0)
    t0 = time.perf_counter()
    model.fit(train)
    fit = time.perf_counter() - t0
    times = np.diff(np.r_[0.0, model.history_["time"]])
    return {"seconds": float(model.history_["time"][-1] / model.n_iter_),
            "median_epoch": float(np.median(times)), "fit": fit / model.n_iter_,
            "rmse": rmse(test.ratings, model.predict(test))}


def speed_table(name, train, test, args, tmp, spark_ranks=None, use_bias=False) -> list[dict]:
    test = known_pairs(train, test)
    spark_ranks = args.n_factors if spark_ranks is None else spark_ranks
    spark = ({} if args.skip_spark or not spark_ranks or use_bias
             else run_spark(train, test, spark_ranks, args, tmp, name))
    ALS(n_factors=2, max_iter=1, verbose=0).fit(train)  # untimed: the layout, built once
    rows = []
    for rank in args.n_factors:
        solvers = ["cholesky"] + (["cg"] if rank >= args.cg_from_rank else [])
        for solver in solvers:
            ours = run_mflib(train, test, rank, args, solver, use_bias)
            row = {"data": name, "ratings": train.nnz, "biases": use_bias, "rank": rank,
                   "mflib solver": solver, "mflib s/epoch": ours["seconds"],
                   "mflib median epoch s": ours["median_epoch"],
                   "mflib fit s/epoch": ours["fit"], "mflib RMSE": ours["rmse"]}
            if rank in spark:
                theirs = spark[rank]
                row.update({"spark s/iter": theirs["fit_seconds"] / args.max_iter,
                            "spark RMSE": theirs["rmse"],
                            "speed-up": theirs["fit_seconds"] / args.max_iter / ours["seconds"],
                            "RMSE diff": ours["rmse"] - theirs["rmse"]})
            row["load"] = os.getloadavg()[0]
            rows.append(row)
            print(row, flush=True)
    return rows


def target_table(rows: pd.DataFrame, rank: int = 64) -> pd.DataFrame:
    """The issue-11 targets at ``rank`` on 10M ratings, as ratios from this run."""
    def pick(data, solver, biases=False):
        hit = rows[rows["data"].str.startswith(data) & (rows["mflib solver"] == solver)
                   & (rows["rank"] == rank) & (rows["biases"] == biases)]
        return None if hit.empty else hit.iloc[0]

    out = []
    for solver, ratio in (("cholesky", 12.0), ("cg", 25.0)):
        row = pick("synthetic", solver)
        if row is not None and "speed-up" in row and np.isfinite(row["speed-up"]):
            out.append({"target": f"{solver} vs Spark local[2] (>= {ratio:g}x)",
                        "measured": row["speed-up"], "met": bool(row["speed-up"] >= ratio)})
        if row is not None and solver == "cholesky":
            out.append({"target": "cholesky s/epoch (<= 2.5)",
                        "measured": row["mflib s/epoch"],
                        "met": bool(row["mflib s/epoch"] <= 2.5)})
        skewed = pick("skewed", solver, True)
        if row is not None and skewed is not None:
            ratio_skew = skewed["mflib s/epoch"] / row["mflib s/epoch"]
            out.append({"target": f"{solver}: skewed with biases / uniform (<= 1.3)",
                        "measured": ratio_skew, "met": bool(ratio_skew <= 1.3)})
    return pd.DataFrame(out)


def tune_u1(args) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Biased ALS on ml-100k u1: every hyper-parameter chosen on validation, u1.test once.

    The validation split is 10% of u1.base (random, ``--seed``); u1.test is not read until
    the choice is made. The grid covers both penalty conventions with the bias penalty
    separate: ``"sum"`` (one lambda per row, log grid ``--tune-sum-regs``) and
    ``"weighted"`` (lambda n_u, ``--tune-weighted-regs``), ranks ``--tune-ranks``. Each
    fit runs ``--tune-iters`` epochs recording validation RMSE, and the number of epochs
    is chosen too (the epoch of lowest validation RMSE: early stopping on validation).
    The chosen settings are refitted on all of u1.base for that many epochs and scored
    once on u1.test, predictions clipped to the rating scale [1, 5] (fixed beforehand,
    not tuned; the unclipped figure is shown beside it).

    Returns the validation grid (best first) and a one-row result table; with
    ``--tune-diagnostic`` the result table has a row per ``--tune-diagnostic`` best
    validation settings, each refitted and scored on u1.test as a diagnostic of how much
    the choice matters (not used to choose anything).
    """
    u1 = load_predefined_split("ml-100k", "u1")
    inner = make_split(u1.train, "random", test_size=0.1, random_state=args.seed)
    template = ALS(max_iter=args.tune_iters, tol=0.0, random_state=args.seed, verbose=0,
                   n_jobs=args.tune_n_jobs)
    param_grid = [
        {"regularization_scale": ["sum"], "n_factors": args.tune_ranks,
         "regularization": args.tune_sum_regs, "bias_regularization": args.tune_sum_bias_regs},
        {"regularization_scale": ["weighted"], "n_factors": args.tune_ranks,
         "regularization": args.tune_weighted_regs,
         "bias_regularization": args.tune_weighted_bias_regs},
    ]
    t0 = time.perf_counter()
    grid = sweep(template, param_grid, train=inner.train, validation=inner.test, clip=True)
    grid = grid.sort_values("best_val_rmse", ignore_index=True)
    print(f"validation grid: {len(grid)} fits in {time.perf_counter() - t0:.0f} s", flush=True)
    keys = ["regularization_scale", "n_factors", "regularization", "bias_regularization"]
    results = []
    for rank_on_validation, row in grid.head(max(1, args.tune_diagnostic)).iterrows():
        params = {key: row[key] for key in keys}
        params["n_factors"] = int(params["n_factors"])
        model = clone(template).set_params(**params, max_iter=int(row["best_iteration"]))
        model.fit(u1.train)
        results.append({"validation rank": rank_on_validation + 1, **params,
                        "epochs": int(row["best_iteration"]),
                        "val_rmse": row["best_val_rmse"],
                        "u1.test RMSE (clipped)": rmse(u1.test.ratings,
                                                       model.predict(u1.test, clip=True)),
                        "u1.test RMSE (unclipped)": rmse(u1.test.ratings,
                                                         model.predict(u1.test))})
    return grid, pd.DataFrame(results)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-factors", type=int, nargs="+", default=[10, 64, 128],
                    help="ranks")
    ap.add_argument("--max-iter", type=int, default=15)
    ap.add_argument("--regularization", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cg-steps", type=int, default=3)
    ap.add_argument("--cg-from-rank", type=int, default=64)
    ap.add_argument("--synthetic-max-iter", type=int, default=5,
                    help="iterations on the 10M matrices (both libraries)")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--skip-skewed", action="store_true",
                    help="no skewed 10M matrix with biases")
    ap.add_argument("--skip-spark", action="store_true")
    ap.add_argument("--synthetic-spark-ranks", type=int, nargs="*", default=None,
                    help="ranks Spark runs on the 10M matrix (default: all of --ranks)")
    ap.add_argument("--spark-memory", default="8g")
    ap.add_argument("--tune-only", action="store_true")
    ap.add_argument("--skip-tune", action="store_true")
    ap.add_argument("--tune-ranks", type=int, nargs="+", default=[5, 10, 25, 50, 100])
    ap.add_argument("--tune-sum-regs", type=float, nargs="+",
                    default=[8.5, 10.0, 12.0, 14.0, 17.0], help="lambda, 'sum' convention")
    ap.add_argument("--tune-sum-bias-regs", type=float, nargs="+", default=[2.0, 5.0, 10.0])
    ap.add_argument("--tune-weighted-regs", type=float, nargs="+",
                    default=[0.07, 0.1, 0.14], help="lambda, 'weighted' convention")
    ap.add_argument("--tune-weighted-bias-regs", type=float, nargs="+", default=[0.01, 0.03])
    ap.add_argument("--tune-iters", type=int, default=40,
                    help="epochs per validation fit (the best one is chosen)")
    ap.add_argument("--tune-n-jobs", type=int, default=None)
    ap.add_argument("--tune-diagnostic", type=int, default=0,
                    help="also refit the N best validation settings and score them on "
                         "u1.test (diagnostic only; the choice is always the best on "
                         "validation)")
    ap.add_argument("--tune-show", type=int, default=15, help="grid rows printed")
    ap.add_argument("--out", default=None,
                    help="markdown results (default benchmarks/results/bench_als.md, or "
                         "bench_als_tune.md with --tune-only; '' writes none)")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = ("benchmarks/results/bench_als_tune.md" if args.tune_only
                    else "benchmarks/results/bench_als.md")

    print(machine_line(), "| load average", os.getloadavg(), flush=True)
    sections = []
    if not args.skip_tune:
        grid, result = tune_u1(args)
        sections.append(print_table(grid.head(args.tune_show),
                                    "Biased ALS: validation grid on 10% of u1.base (best first)"))
        sections.append(print_table(
            result, "Chosen on validation (row 1), refitted on u1.base, scored on u1.test"))
    if not args.tune_only:
        # (each fit loads its kernels before its clock starts: no warm-up needed here)
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            u1 = load_predefined_split("ml-100k", "u1")
            rows += speed_table("ml-100k u1", u1.train, u1.test, args, Path(tmp))
            if not args.skip_synthetic:
                t0 = time.perf_counter()
                # 10M training ratings after the 10% test split is taken out. A pure
                # rank-10 matrix (no mean, no biases): the model both libraries fit here.
                # With a 3.5 mean to carry in a factor, unbiased ALS converges slowly and
                # its RMSE after a few epochs depended on the seed by 0.015, which made
                # an RMSE comparison at equal epochs meaningless.
                rm, _ = make_low_rank(70_000, 10_000, 10, 10_000_000 / 0.9 / 7e8, noise=0.5,
                                      global_mean=0.0, bias_scale=0.0, factor_scale=2.0,
                                      random_state=args.seed)
                split = make_split(rm, "random", test_size=0.1, random_state=args.seed)
                print(f"synthetic data: {rm.nnz} ratings in {time.perf_counter() - t0:.1f} s",
                      flush=True)
                args.max_iter = args.synthetic_max_iter
                rows += speed_table("synthetic 70k x 10k", split.train, split.test, args,
                                    Path(tmp), args.synthetic_spark_ranks)
                del rm, split
                if not args.skip_skewed:
                    t0 = time.perf_counter()
                    sk = skewed_ratings(n_ratings=int(10_000_000 / 0.9),
                                        random_state=args.seed)
                    split = make_split(sk, "random", test_size=0.1, random_state=args.seed)
                    print(f"skewed data: {sk.nnz} ratings, largest item "
                          f"{sk.item_counts().max()}, user {sk.user_counts().max()}, in "
                          f"{time.perf_counter() - t0:.1f} s", flush=True)
                    rows += speed_table("skewed 70k x 10k", split.train, split.test, args,
                                        Path(tmp), use_bias=True)
        table = pd.DataFrame(rows)
        sections.append(print_table(table, "ALS seconds per epoch and RMSE"))
        if not args.skip_synthetic:
            sections.append(print_table(target_table(table), "Targets (ratios from this run)"))
    print("load average after:", os.getloadavg())
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        text = [machine_line()]
        text += [df.to_markdown(index=False, floatfmt=".4g") for df in sections]
        Path(args.out).write_text("\n\n".join(text) + "\n")


if __name__ == "__main__":
    main()
