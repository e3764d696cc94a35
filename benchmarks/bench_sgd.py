"""mflib's SGD beside scikit-surprise's ``SVD`` on the same 5 random folds of ml-100k.

    python -m benchmarks.bench_sgd                 (needs MFLIB_DATA_DIR)
    python -m benchmarks.bench_sgd --synthetic     (also 10M ratings at rank 64)

Surprise runs in its own environment (``benchmarks/.venvs/surprise``, built on first
use by :func:`peer_python`) as a subprocess that reads the very fold files mflib fits,
with the same factors, epochs, learning rate, regularisation and initial spread.
Both sides report test RMSE with predictions clipped to the rating scale (Surprise's
``test`` always clips). Each fold is fitted ``--repeats`` times by each library and the
fastest time kept, which damps the noise of a shared machine. Seconds per epoch are given
three ways for mflib: the epoch alone (shuffle + kernel), the solver (the epoch plus the
end-of-epoch objective and train RMSE) and the whole ``fit`` call divided by the epochs.
mflib's default settings are used otherwise (``parallel="auto"``: one thread on ml-100k).

``--synthetic``: the 10M-rating matrix of the other benchmarks at rank 64, every
parallel mode in float64 and float32; its layout is built by an untimed first fit, as a
user refitting the same data would have it, and each fit runs ``--synthetic-max-iter``
epochs. The ratio the target is stated in is the whole fit per epoch over the median
epoch kernel of the same fit.

Unless set otherwise, ``OMP_WAIT_POLICY=PASSIVE``: numba's OpenMP workers (of the
parallel scoring kernels) otherwise spin after each parallel region and, on a machine
with few or shared cores, slow the serial SGD epoch that follows by up to 2x.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before numba starts its threads

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import pandas as pd

from benchmarks.common import machine_line, peer_python, print_table
from mflib import SGD, make_low_rank
from mflib.data import kfold, load_dataset
from mflib.metrics import rmse

SURPRISE_REQUIREMENTS = ["scikit-surprise==1.1.4", "numpy<2"]  # its wheels need numpy 1.x

SURPRISE_SCRIPT = r"""
import json, sys, time
from surprise import SVD, Dataset, Reader, accuracy
from surprise.model_selection import PredefinedKFold

cfg = json.loads(sys.argv[1])
reader = Reader(line_format="user item rating", sep="\t", rating_scale=tuple(cfg["scale"]))
data = Dataset.load_from_folds([tuple(f) for f in cfg["folds"]], reader=reader)
for k, (train, test) in enumerate(PredefinedKFold().split(data)):
    times = []
    for _ in range(cfg["repeats"]):
        algo = SVD(n_factors=cfg["n_factors"], n_epochs=cfg["epochs"], lr_all=cfg["lr"],
                   reg_all=cfg["reg"], init_std_dev=cfg["init_std"], random_state=cfg["seed"])
        t0 = time.perf_counter()
        algo.fit(train)
        times.append(time.perf_counter() - t0)
    seconds = min(times)
    score = accuracy.rmse(algo.test(test), verbose=False)
    print(json.dumps({"fold": k, "fit_seconds": seconds, "rmse": score}), flush=True)
"""


def write_folds(folds, directory: Path) -> list[tuple[str, str]]:
    """One tab-separated (raw user, raw item, rating) file per fold part."""
    paths = []
    for k, split in enumerate(folds):
        pair = []
        for part in ("train", "test"):
            rm = getattr(split, part)
            path = directory / f"fold{k}_{part}.tsv"
            pd.DataFrame({"u": rm.user_ids[rm.users], "i": rm.item_ids[rm.items],
                          "r": rm.ratings}).to_csv(path, sep="\t", header=False, index=False)
            pair.append(str(path))
        paths.append(tuple(pair))
    return paths


def run_surprise(paths, args, scale) -> list[dict]:
    py = peer_python("surprise", SURPRISE_REQUIREMENTS)
    cfg = {"folds": paths, "n_factors": args.n_factors, "epochs": args.max_iter,
           "lr": args.learning_rate, "reg": args.regularization, "init_std": args.init_std,
           "seed": args.seed, "scale": scale, "repeats": args.repeats}
    out = subprocess.run([str(py), "-c", SURPRISE_SCRIPT, json.dumps(cfg)], check=True,
                         capture_output=True, text=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def run_mflib(folds, args) -> list[dict]:
    rows = []
    for k, split in enumerate(folds):
        runs = []
        for _ in range(args.repeats):  # same seed: same model; keep the fastest timings
            model = SGD(n_factors=args.n_factors, max_iter=args.max_iter,
                        learning_rate=args.learning_rate, regularization=args.regularization,
                        init_std=args.init_std, random_state=args.seed, verbose=0)
            t0 = time.perf_counter()
            model.fit(split.train)
            seconds = time.perf_counter() - t0
            h = model.history_
            runs.append({"fold": k, "fit_seconds": seconds,
                         "kernel_seconds": float(np.median(h["epoch_seconds"])),
                         "solver_seconds": float(h["time"][-1] / model.n_iter_)})
        row = {key: min(r[key] for r in runs) for key in runs[0]}
        row["rmse"] = rmse(split.test.ratings, model.predict(split.test, clip=True))
        rows.append(row)
    return rows


def synthetic_epoch(args) -> list[dict]:
    """Seconds per epoch on the 10M-rating synthetic matrix shared by the benchmarks
    (70k users x 10k items, planted rank 10), fitted at rank 64: every ``parallel`` mode
    (what "auto" chose in brackets), float64 and float32."""
    t0 = time.perf_counter()
    rm, _ = make_low_rank(70_000, 10_000, 10, 1e7 / 7e8, noise=0.5,
                          random_state=args.seed)
    made = time.perf_counter() - t0
    SGD(n_factors=2, max_iter=1, verbose=0).fit(rm)  # untimed: builds the layout once
    rows = []
    for dtype in args.synthetic_dtypes:
        for parallel in args.synthetic_parallel:
            parallel = None if parallel == "none" else parallel
            model = SGD(n_factors=args.synthetic_n_factors, max_iter=args.synthetic_max_iter,
                        learning_rate=args.learning_rate, regularization=args.regularization,
                        parallel=parallel, dtype=dtype, random_state=args.seed, verbose=0)
            t0 = time.perf_counter()
            model.fit(rm)
            fit = (time.perf_counter() - t0) / model.n_iter_
            h = model.history_
            kernel = float(np.median(h["epoch_seconds"]))
            mode = model.parallel_mode_
            rows.append({"ratings": rm.nnz, "dtype": dtype,
                         "parallel": f"auto ({mode})" if parallel == "auto" else mode,
                         "threads": numba.get_num_threads() if mode != "serial" else 1,
                         "kernel s/epoch (median)": kernel,
                         "solver s/epoch": float(h["time"][-1] / model.n_iter_),
                         "fit s/epoch": fit, "fit / kernel": fit / kernel,
                         "train_rmse": float(h["train_rmse"][-1]), "data s": made,
                         "load": os.getloadavg()[0]})
            print(rows[-1], flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-factors", type=int, default=100)
    ap.add_argument("--max-iter", type=int, default=20, help="epochs")
    ap.add_argument("--learning-rate", type=float, default=0.005)
    ap.add_argument("--regularization", type=float, default=0.02)
    ap.add_argument("--init-std", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=3,
                    help="fits per fold and library; the fastest timing is kept")
    ap.add_argument("--skip-peer", action="store_true", help="mflib only (no Surprise)")
    ap.add_argument("--synthetic", action="store_true", help="also time 10M ratings, rank 64")
    ap.add_argument("--synthetic-n-factors", type=int, default=64)
    ap.add_argument("--synthetic-max-iter", type=int, default=5)
    ap.add_argument("--synthetic-dtypes", nargs="+", default=["float64", "float32"])
    ap.add_argument("--synthetic-parallel", nargs="+", default=["auto", "none", "blocked",
                                                                "hogwild"],
                    help="SGD parallel modes on the 10M matrix ('none': one thread)")
    ap.add_argument("--out", default="benchmarks/results/bench_sgd.md")
    args = ap.parse_args(argv)

    print(machine_line(), "| load average", os.getloadavg(), flush=True)
    ratings = load_dataset("ml-100k")
    folds = kfold(ratings, args.folds, random_state=args.seed)
    sections = []
    theirs = [{"fit_seconds": np.nan, "rmse": np.nan}] * args.folds
    if not args.skip_peer:
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_folds(folds, Path(tmp))
            scale = [float(ratings.ratings.min()), float(ratings.ratings.max())]
            theirs = run_surprise(paths, args, scale)
    # the first fit of each setting compiles or loads its kernels (outside its clock,
    # but inside the fit's wall time): the fastest of --repeats fits is kept
    ours = run_mflib(folds, args)
    rows = []
    for a, b in zip(ours, theirs, strict=True):
        rows.append({
            "fold": a["fold"] + 1,
            "mflib kernel s/epoch": a["kernel_seconds"],
            "mflib solver s/epoch": a["solver_seconds"],
            "mflib fit s/epoch": a["fit_seconds"] / args.max_iter,
            "surprise fit s/epoch": b["fit_seconds"] / args.max_iter,
            "mflib RMSE": a["rmse"],
            "surprise RMSE": b["rmse"],
        })
    table = pd.DataFrame(rows)
    mean = table.mean(numeric_only=True).to_frame().T.assign(fold="mean")
    table = pd.concat([table, mean], ignore_index=True)
    m = mean.iloc[0]
    title = (f"SGD vs Surprise SVD, ml-100k, {args.folds} random folds (seed {args.seed}), "
             f"k={args.n_factors}, {args.max_iter} epochs, lr={args.learning_rate}, "
             f"reg={args.regularization}; load {os.getloadavg()[0]:.2f}")
    sections.append(print_table(table, title))
    speedup = m["surprise fit s/epoch"] / m["mflib fit s/epoch"]
    targets = [] if args.skip_peer else [
               {"target": "whole fit vs Surprise SVD (>= 5x)", "measured": speedup,
                "met": bool(speedup >= 5)},
               {"target": "RMSE - Surprise's (<= +0.002)",
                "measured": m["mflib RMSE"] - m["surprise RMSE"],
                "met": bool(m["mflib RMSE"] - m["surprise RMSE"] <= 0.002)},
               {"target": "(solver vs Surprise)",
                "measured": m["surprise fit s/epoch"] / m["mflib solver s/epoch"], "met": None},
               {"target": "(kernel vs Surprise)",
                "measured": m["surprise fit s/epoch"] / m["mflib kernel s/epoch"], "met": None}]
    if args.synthetic:
        synthetic = pd.DataFrame(synthetic_epoch(args))
        sections.append(print_table(synthetic, f"SGD on ~10M synthetic ratings, rank "
                                               f"{args.synthetic_n_factors}"))
        auto = synthetic[synthetic["parallel"].str.startswith("auto")]
        for _, row in auto.iterrows():
            targets.append({"target": f"10M whole fit / kernel epoch, {row['dtype']} "
                                      f"{row['parallel']} (<= 1.15)",
                            "measured": row["fit / kernel"],
                            "met": bool(row["fit / kernel"] <= 1.15)})
    sections.append(print_table(targets, "Targets (ratios from this run)"))
    print("load average after:", os.getloadavg())
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        text = [f"{machine_line()}; load average after {os.getloadavg()[0]:.2f}"]
        text += [df.to_markdown(index=False, floatfmt=".4g") for df in sections]
        Path(args.out).write_text("\n\n".join(text) + "\n")


if __name__ == "__main__":
    main()
