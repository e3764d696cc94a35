"""mflib beside its peers, on the same folds, out of the box: test RMSE and fit seconds.

    python -m benchmarks.bench_peers                    (needs MFLIB_DATA_DIR)
    python -m benchmarks.bench_peers --folds u1 --peers surprise libmf

Splits: ml-100k's predefined folds (``--folds``, default u1...u5) and the Netflix course
split (``--no-netflix`` leaves it out). Every library fits the very same training file
and predicts the very same test pairs (inner integer ids, written once per split).

Models, each with its own defaults (what a newcomer's first fit gets):

* mflib: every family of ``mflib.experiment.evaluation_families`` and a ``Blend`` of them
  (NNLS weights on a 10% holdout of the training ratings, members refitted on all);
* Surprise 1.1.4: ``BaselineOnly``, ``SVD``, ``SVDpp``, ``KNNBaseline``;
* Spark MLlib 3.5.3 ``ALS`` (``local[2]``; rank 10, regParam 0.1, 10 iterations);
* libmf 0.9.2 (its Python bindings; k 8, lambda 0.04, 20 iterations, 2 threads);
* fancyimpute 0.7.0 ``SoftImpute`` on the dense users x items matrix, its defaults but
  ``max_rank=100`` (randomized SVDs; with the default full SVD each iteration, one
  ml-100k fold took 359 s here, and the Netflix matrix is five times larger).

Every peer runs in its own environment under ``benchmarks/.venvs/`` (built on first use by
:func:`benchmarks.common.peer_python`), as a subprocess. A peer that cannot be installed
or fails is listed with its error, never dropped. A pair whose user or item has no
training rating is predicted by the training mean for the peers that cannot predict it
(Spark's and libmf's models, fancyimpute's empty rows and columns; the ``fallback pairs``
column counts them); Surprise and mflib use their own fallbacks. All predictions are
clipped to the rating scale (Surprise always clips). Fit seconds are wall-clock seconds of
the fit call in the library's own process (for Spark, the fit and the factor
materialisation, JVM start excluded), on the machine's shared cores: compare them within
one run, with the load average printed beside them.
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

from benchmarks.bench_als import SPARK_REQUIREMENTS
from benchmarks.bench_soft_impute import FANCYIMPUTE_REQUIREMENTS
from benchmarks.common import machine_line, peer_python, print_table
from mflib import Blend
from mflib.experiment import evaluation_families, load_splits
from mflib.metrics import rmse

SURPRISE_REQUIREMENTS = ["scikit-surprise==1.1.4", "numpy<2"]  # its wheels need numpy 1.x
LIBMF_REQUIREMENTS = ["libmf==0.9.2", "numpy<2"]

PEERS = ("surprise", "spark", "libmf", "fancyimpute")
REQUIREMENTS = {"surprise": SURPRISE_REQUIREMENTS, "spark": SPARK_REQUIREMENTS,
                "libmf": LIBMF_REQUIREMENTS, "fancyimpute": FANCYIMPUTE_REQUIREMENTS}

# Each peer script reads a JSON config (the split files) and prints one JSON line per
# (split, model): the test predictions go to a .npy file beside the split's files.
COMMON = r"""
import json, sys, time
import numpy as np
cfg = json.loads(sys.argv[1])
def load(path):
    data = np.loadtxt(path, delimiter=",", ndmin=2)
    return data[:, 0].astype(np.int64), data[:, 1].astype(np.int64), data[:, 2]
def report(split, model, seconds, pred):
    out = split["dir"] + "/" + model.replace(" ", "_") + ".npy"
    np.save(out, np.asarray(pred, dtype=np.float64))
    print(json.dumps({"split": split["name"], "model": model, "fit_seconds": seconds,
                      "predictions": out}), flush=True)
"""

SCRIPTS = {
    "surprise": COMMON + r"""
from surprise import SVD, SVDpp, BaselineOnly, KNNBaseline, Dataset, Reader
for split in cfg["splits"]:
    reader = Reader(line_format="user item rating", sep=",",
                    rating_scale=tuple(cfg["scale"]))
    trainset = Dataset.load_from_file(split["train"], reader=reader).build_full_trainset()
    tu, ti, _ = load(split["test"])
    tu, ti = [str(a) for a in tu.tolist()], [str(b) for b in ti.tolist()]  # raw ids as read
    for name, algo in (("BaselineOnly", BaselineOnly(verbose=False)),
                       ("SVD", SVD(random_state=0)),
                       ("SVDpp", SVDpp(random_state=0)),
                       ("KNNBaseline", KNNBaseline(verbose=False))):
        t0 = time.perf_counter()
        algo.fit(trainset)
        seconds = time.perf_counter() - t0
        pred = [algo.predict(a, b).est for a, b in zip(tu, ti)]
        report(split, name, seconds, pred)
""",
    "spark": COMMON + r"""
from pyspark.sql import SparkSession
from pyspark.ml.recommendation import ALS
spark = (SparkSession.builder.master("local[2]").appName("bench_peers")
         .config("spark.driver.memory", "2g").config("spark.ui.enabled", "false").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
schema = "u INT, i INT, r FLOAT"
for split in cfg["splits"]:
    train = spark.read.csv(split["train"], schema=schema).cache()
    test = spark.read.csv(split["test"], schema=schema)
    train.count()
    als = ALS(userCol="u", itemCol="i", ratingCol="r", coldStartStrategy="nan", seed=0)
    t0 = time.perf_counter()
    model = als.fit(train)
    model.userFactors.count(); model.itemFactors.count()  # force the lazy work
    seconds = time.perf_counter() - t0
    rows = model.transform(test).select("u", "i", "prediction").collect()
    got = {(row["u"], row["i"]): row["prediction"] for row in rows}
    tu, ti, _ = load(split["test"])
    pred = [got.get((a, b), float("nan")) for a, b in zip(tu.tolist(), ti.tolist())]
    pred = [float("nan") if p is None else p for p in pred]
    report(split, "ALS", seconds, pred)
spark.stop()
""",
    "libmf": COMMON + r"""
import warnings
warnings.simplefilter("ignore")
from libmf import mf
for split in cfg["splits"]:
    u, i, r = load(split["train"])
    model = mf.MF(nr_threads=cfg["threads"], quiet=True)
    t0 = time.perf_counter()
    model.fit(np.column_stack([u, i, r]))
    seconds = time.perf_counter() - t0
    tu, ti, _ = load(split["test"])
    report(split, "MF", seconds, model.predict(np.column_stack([tu, ti])))
""",
    "fancyimpute": COMMON + r"""
from fancyimpute import SoftImpute
for split in cfg["splits"]:
    u, i, r = load(split["train"])
    X = np.full(tuple(split["shape"]), np.nan)
    X[u, i] = r
    t0 = time.perf_counter()
    Z = SoftImpute(max_rank=cfg["fancyimpute_max_rank"], verbose=False).fit_transform(X)
    seconds = time.perf_counter() - t0
    tu, ti, _ = load(split["test"])
    report(split, "SoftImpute", seconds, Z[tu, ti])
""",
}


def write_split(name, split, directory: Path) -> dict:
    """The split's train and test ratings as CSV files of inner ids (both parts share the
    split's id maps), and what the peer scripts need to know of it."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for part in ("train", "test"):
        rm = getattr(split, part)
        path = directory / f"{part}.csv"
        pd.DataFrame({"u": rm.users, "i": rm.items, "r": rm.ratings}).to_csv(
            path, header=False, index=False, float_format="%.6g")
        paths[part] = str(path)
    return {"name": name, "dir": str(directory), **paths,
            "shape": [int(split.train.n_users), int(split.train.n_items)]}


def run_peer(peer: str, split_files: list, scale, threads: int, log) -> list[dict]:
    """Rows of one peer on every split, or one row per split naming why it failed."""
    def failed(reason):
        log(f"{peer}: {reason}")
        return [{"split": s["name"], "library": peer, "model": "-", "error": reason}
                for s in split_files]

    try:
        py = peer_python(peer, REQUIREMENTS[peer])
    except (subprocess.CalledProcessError, OSError) as exc:
        return failed(f"not installed: {exc}")
    cfg = {"splits": split_files, "scale": scale, "threads": threads,
           "fancyimpute_max_rank": 100}
    t0 = time.perf_counter()
    proc = subprocess.run([str(py), "-c", SCRIPTS[peer], json.dumps(cfg)], text=True,
                          capture_output=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 and not rows:
        return failed(f"failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
    log(f"{peer}: {len(rows)} fits in {time.perf_counter() - t0:.0f} s")
    out = [{**row, "library": peer} for row in rows]
    if proc.returncode != 0:
        out.append({"split": "-", "library": peer, "model": "-",
                    "error": f"exit {proc.returncode} after {len(rows)} fits: "
                             f"{proc.stderr.strip()[-300:]}"})
    return out


def score_peer_rows(rows, splits, scale) -> list[dict]:
    """RMSE of each peer row, the training mean standing in for non-finite predictions."""
    out = []
    for row in rows:
        if "predictions" not in row:
            out.append(row)
            continue
        split = splits[row["split"]]
        pred = np.load(row.pop("predictions"))
        missing = ~np.isfinite(pred)
        pred[missing] = split.train.ratings.mean()
        pred = np.clip(pred, *scale)
        out.append({**row, "test_rmse": rmse(split.test.ratings, pred),
                    "fallback_pairs": int(missing.sum())})
    return out


def run_mflib(splits, random_state, log) -> list[dict]:
    rows = []
    for name, split in splits.items():
        families = evaluation_families("quick", random_state=random_state)
        models = {f: model for f, (model, _) in families.items()}
        models["Blend (of the above)"] = Blend(list(models.items()), holdout_split="random",
                                               random_state=random_state)
        for model_name, model in models.items():
            t0 = time.perf_counter()
            model.fit(split.train)
            seconds = time.perf_counter() - t0
            pred, known = model.predict(split.test, clip=True, return_known=True)
            rows.append({"split": name, "library": "mflib", "model": model_name,
                         "fit_seconds": seconds, "test_rmse": rmse(split.test.ratings, pred),
                         "fallback_pairs": int((~known).sum())})
        log(f"mflib: {name} done")
    return rows


def summary_table(rows: list[dict], fold_names: list[str]) -> pd.DataFrame:
    """One row per (library, model): RMSE per split, the mean over the ml-100k folds,
    the mean fit seconds there, and the Netflix figures."""
    frame = pd.DataFrame(rows)
    ok = frame[frame.get("test_rmse").notna()] if "test_rmse" in frame else frame.iloc[:0]
    wide = ok.pivot_table(index=["library", "model"], columns="split", values="test_rmse")
    secs = ok.pivot_table(index=["library", "model"], columns="split", values="fit_seconds")
    out = pd.DataFrame(index=wide.index)
    folds = [f for f in fold_names if f in wide.columns]
    if folds:
        out["ml-100k folds RMSE (mean)"] = wide[folds].mean(axis=1)
        out["(std)"] = wide[folds].std(axis=1, ddof=1) if len(folds) > 1 else np.nan
        out["fit s (mean)"] = secs[folds].mean(axis=1)
    for col in wide.columns:
        if col not in folds:
            out[f"{col} RMSE"] = wide[col]
            out[f"{col} fit s"] = secs[col]
    for col in folds:
        out[col.split("/")[-1]] = wide[col]
    errors = frame[frame["error"].notna()] if "error" in frame else frame.iloc[:0]
    for _, err in errors.drop_duplicates(["library"]).iterrows():
        out.loc[(err["library"], "(not run)"), "ml-100k folds RMSE (mean)"] = np.nan
    out = out.reset_index().sort_values(
        out.columns[0] if folds else out.columns[-1], na_position="last")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", nargs="+", default=["u1", "u2", "u3", "u4", "u5"])
    ap.add_argument("--no-netflix", action="store_true")
    ap.add_argument("--peers", nargs="*", default=list(PEERS), choices=PEERS)
    ap.add_argument("--skip-mflib", action="store_true")
    ap.add_argument("--threads", type=int, default=2, help="libmf threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/bench_peers.md")
    args = ap.parse_args(argv)

    print(machine_line(), "| load average", os.getloadavg(), flush=True)
    predefined = {"ml-100k": args.folds}
    if not args.no_netflix:
        predefined["netflix"] = ["course"]
    splits = load_splits(predefined)
    fold_names = [f"ml-100k/{f}" for f in args.folds]
    scale = [1.0, 5.0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = [write_split(name, split, Path(tmp) / name.replace("/", "_"))
                 for name, split in splits.items()]
        for peer in args.peers:
            rows += score_peer_rows(run_peer(peer, files, scale, args.threads, print),
                                    splits, scale)
    if not args.skip_mflib:
        rows += run_mflib(splits, args.seed, print)
    errors = [r for r in rows if r.get("error")]
    table = summary_table(rows, fold_names)
    title = (f"Test RMSE and fit seconds, every model with its own defaults "
             f"({', '.join(predefined['ml-100k'])}"
             f"{' + Netflix course' if 'netflix' in predefined else ''}); "
             f"load average {os.getloadavg()[0]:.1f}")
    print_table(table, title, out=args.out)
    for err in {(e["library"], e["error"]) for e in errors}:
        print(f"not run: {err[0]}: {err[1]}")
    print("load average after:", os.getloadavg())


if __name__ == "__main__":
    main()
